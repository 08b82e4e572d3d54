//! `domicile-bench --sagas`: cross-region transfers as sagas, on loopback and with the
//! seed scenario's round trips. Clients start transfers through the us-east node's admin
//! API (debit in us-east, credit in eu-central) and wait for each to commit (the admin
//! API's `StartSaga` with `wait_ms` answers when the saga ends); throughput
//! is committed sagas per second, latency from start request to committed.

use std::time::{Duration, Instant};

use domicile::cli::admin_client::AdminSession;
use domicile::saga::SagaState;
use domicile::saga::fields::{Field, Fields};
use domicile_tests::{Mesh, TestNode, column_strings};

use super::{Measurement, Options, ms};

const ACCOUNTS: &str = "CREATE TABLE accounts (
    id BIGINT PRIMARY KEY, region TEXT NOT NULL, name TEXT NOT NULL,
    balance DECIMAL(18,2) NOT NULL, currency TEXT NOT NULL
) WITH (locality = 'regional by row', region_column = 'region', pii = 'name',
        sensitive = 'balance')";
/// Accounts per side: clients pick among them so they rarely touch the same row.
const ACCOUNTS_PER_REGION: i64 = 1000;

pub(crate) async fn sagas(options: &Options) -> anyhow::Result<()> {
    println!();
    println!(
        "| link us-east ↔ eu-central | clients | committed/s | p50 ms | p99 ms \
         | us-east commits per saga | us-east statements per commit \
         | eu-central commits per saga |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for rtt in [None, Some(Duration::from_millis(80))] {
        let mesh = Mesh::start(&["us-east", "eu-central"])?;
        if let Some(rtt) = rtt {
            mesh.set_rtt("us-east", "eu-central", rtt);
        }
        for (index, node) in mesh.nodes.iter().enumerate() {
            node.upload_plugin("saga-step", "transfer_saga", 1)?;
            let mut admin = node.client("admin").await?;
            admin.update(ACCOUNTS).await?;
            let values: Vec<String> = (0..ACCOUNTS_PER_REGION)
                .map(|i| {
                    format!(
                        "({}, '{}', 'Holder', 1000000.00, 'EUR')",
                        (index as i64 + 1) * 100_000 + i,
                        node.region
                    )
                })
                .collect();
            admin
                .update(&format!(
                    "INSERT INTO accounts VALUES {}",
                    values.join(", ")
                ))
                .await?;
        }
        let endpoint = format!(
            "http://{}",
            mesh.node("us-east")
                .admin
                .ok_or_else(|| anyhow::anyhow!("no admin"))?
        );
        let (us, eu) = (mesh.node("us-east"), mesh.node("eu-central"));
        for clients in [1usize, 32] {
            let (us_before, eu_before) = (commits(us).await?, commits(eu).await?);
            let m = run(&endpoint, clients, options.seconds).await?;
            let (us_after, eu_after) = (commits(us).await?, commits(eu).await?);
            let sagas = m.latencies.len().max(1) as f64;
            let us_commits = us_after.0.saturating_sub(us_before.0) as f64;
            let us_statements = us_after.1.saturating_sub(us_before.1) as f64;
            let eu_commits = eu_after.0.saturating_sub(eu_before.0) as f64;
            println!(
                "| {} | {clients} | {:.0} | {:.1} | {:.1} | {:.2} | {:.1} | {:.2} |",
                rtt.map_or("loopback".to_string(), |r| format!(
                    "{} ms RTT",
                    r.as_millis()
                )),
                m.throughput(),
                ms(m.percentile(0.5)),
                ms(m.percentile(0.99)),
                us_commits / sagas,
                us_statements / us_commits.max(1.0),
                eu_commits / sagas,
            );
        }
    }
    Ok(())
}

/// The node's fsync'd commits and the statements they carried, since it started
/// (`system.node`): group commit shares one commit among concurrent statements.
async fn commits(node: &TestNode) -> anyhow::Result<(u64, u64)> {
    let mut client = node.client("admin").await?;
    let batches = client
        .query("SELECT commits, statements_committed FROM system.node")
        .await?;
    let read = |column: &str| -> anyhow::Result<u64> {
        column_strings(&batches, column)
            .first()
            .ok_or_else(|| anyhow::anyhow!("system.node has no row"))?
            .parse()
            .map_err(|e| anyhow::anyhow!("{column}: {e}"))
    };
    Ok((read("commits")?, read("statements_committed")?))
}

async fn run(endpoint: &str, clients: usize, seconds: u64) -> anyhow::Result<Measurement> {
    let endpoint = endpoint.to_string();
    super::run_clients(clients, seconds, move |index| {
        let endpoint = endpoint.clone();
        async move {
            let mut session = AdminSession::connect(&endpoint, "writer", "writer-pw").await?;
            let deadline = Instant::now() + Duration::from_secs(seconds);
            let mut latencies = Vec::new();
            let mut n = 0i64;
            let run_id = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_micros();
            while Instant::now() < deadline {
                n += 1;
                let account = (index as i64 * 31 + n) % ACCOUNTS_PER_REGION;
                let fields: Fields = vec![
                    ("from_account".into(), Field::Bigint(100_000 + account)),
                    ("to_account".into(), Field::Bigint(200_000 + account)),
                    ("amount".into(), Field::Decimal("1".into(), 2)),
                    ("currency".into(), Field::Text("EUR".into())),
                    ("from_region".into(), Field::Text("us-east".into())),
                    ("to_region".into(), Field::Text("eu-central".into())),
                ];
                let started = Instant::now();
                let saga = session
                    .start_saga_settled(
                        "transfer",
                        &fields,
                        &format!("bench-{run_id}-{index}-{n}"),
                        Duration::from_secs(30),
                    )
                    .await?;
                anyhow::ensure!(
                    saga.state == SagaState::Committed,
                    "transfer {} ended {:?}",
                    saga.id,
                    saga.state
                );
                latencies.push(started.elapsed());
            }
            Ok(latencies)
        }
    })
    .await
}
