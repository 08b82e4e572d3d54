//! Federated metadata queries over the simulated WAN, cold (every region asked) and
//! cached (other regions' answers from the hybrid cache), and local point reads with
//! the row cache on and off.

use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use domicile_tests::{Mesh, TestNode};

use super::{Measurement, Options, Workload, domicile_workload, load_domicile, ms, versus_cells};

const REGIONS: [&str; 3] = ["us-east", "eu-central", "ap-southeast"];

/// Same table twice: answers of `fed_cold` are never cached, of `fed_cached` for a minute.
const TABLES: [(&str, &str); 2] = [("fed_cold", "0"), ("fed_cached", "60000")];

pub(crate) async fn federation(options: &Options) -> anyhow::Result<()> {
    wan_queries(options).await?;
    local_point_reads(options).await
}

async fn wan_queries(options: &Options) -> anyhow::Result<()> {
    let mesh = Mesh::start(&REGIONS)?;
    for (a, b, rtt) in [
        ("us-east", "eu-central", 80),
        ("eu-central", "ap-southeast", 160),
        ("us-east", "ap-southeast", 170),
    ] {
        mesh.set_rtt(a, b, Duration::from_millis(rtt));
    }
    for node in &mesh.nodes {
        let mut admin = node.client("admin").await?;
        for (table, ttl) in TABLES {
            admin
                .update(&format!(
                    "CREATE TABLE {table} (id BIGINT PRIMARY KEY, region TEXT NOT NULL, \
                     category TEXT NOT NULL, volume BIGINT NOT NULL) \
                     WITH (locality = 'regional by row', region_column = 'region', \
                     cache_ttl_ms = '{ttl}')"
                ))
                .await?;
            let values: Vec<String> = (0..1000)
                .map(|id| {
                    format!(
                        "({id}, '{}', 'c{}', {})",
                        node.region,
                        id % 7,
                        (id * 37) % 1000
                    )
                })
                .collect();
            admin
                .update(&format!("INSERT INTO {table} VALUES {}", values.join(", ")))
                .await?;
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let queries = [
        (
            "per-region count and sum",
            "SELECT mesh_region, count(*) AS n, sum(volume) AS total FROM mesh.{t} \
             GROUP BY mesh_region",
        ),
        (
            "filtered rows, limit 20",
            "SELECT id, mesh_region, volume FROM mesh.{t} WHERE category = 'c3' \
             AND volume > 900 LIMIT 20",
        ),
    ];
    println!();
    println!(
        "| on node | query | cold p50 / p99 ms | cached p50 / p99 ms | queries cold / cached |"
    );
    println!("| --- | --- | --- | --- | --- |");
    for region in ["us-east", "ap-southeast"] {
        let node = mesh.node(region);
        let mut client = node.client("reader").await?;
        for (label, template) in queries {
            let mut measured = Vec::new();
            for (table, _) in TABLES {
                let sql = template.replace("{t}", table);
                // One query first: connections warm, the cached table's entries filled.
                client.query(&sql).await?;
                tokio::time::sleep(Duration::from_millis(200)).await;
                let mut latencies = Vec::new();
                let deadline = Instant::now() + Duration::from_secs(options.seconds);
                while Instant::now() < deadline {
                    let started = Instant::now();
                    let rows = client.query(&sql).await?;
                    anyhow::ensure!(rows.iter().map(RecordBatch::num_rows).sum::<usize>() > 0);
                    latencies.push(started.elapsed());
                }
                measured.push(Measurement {
                    latencies,
                    elapsed: Duration::from_secs(options.seconds),
                });
            }
            let (cold, cached) = (&measured[0], &measured[1]);
            println!(
                "| {region} | {label} | {:.1} / {:.1} | {:.1} / {:.1} | {} / {} |",
                ms(cold.percentile(0.5)),
                ms(cold.percentile(0.99)),
                ms(cached.percentile(0.5)),
                ms(cached.percentile(0.99)),
                cold.latencies.len(),
                cached.latencies.len(),
            );
        }
    }
    Ok(())
}

async fn local_point_reads(options: &Options) -> anyhow::Result<()> {
    let cached = TestNode::start("eu-central")?;
    let uncached =
        TestNode::start_with_policy("eu-central", "\n[cache]\nlocal_rows = false\n", None)?;
    load_domicile(&cached, options.rows).await?;
    load_domicile(&uncached, options.rows).await?;
    println!();
    println!(
        "| point select (Flight SQL, prepared) | clients | cache on p50 / p99 ms | ops/s | cache off p50 / p99 ms | ops/s | on/off |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for clients in [1usize, 8] {
        // A first pass fills the cache; the measured one reads the same keys again.
        domicile_workload(&cached, Workload::PointSelect, clients, options).await?;
        let on = domicile_workload(&cached, Workload::PointSelect, clients, options).await?;
        let off = domicile_workload(&uncached, Workload::PointSelect, clients, options).await?;
        println!(
            "| {} rows | {clients} | {} |",
            options.rows,
            versus_cells(&on, &off)
        );
    }
    Ok(())
}
