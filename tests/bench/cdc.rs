//! `domicile-bench --cdc`: what change data capture costs and how fast it delivers.
//!
//! 1. Write cost: single-row inserts into two tables of one node, identical but for
//!    `cdc = 'on'`, 1 and 8 clients (the outbox event is written in the same commit).
//! 2. Relay throughput: an outbox of N events held (no redactor yet), then the bundled
//!    redactor is uploaded and the time until the outbox is empty gives events/s
//!    (redactor call, policy call, envelope encoding, one commit per 256 events).
//! 3. End-to-end lag: inserts on us-east at a steady rate; for every row replicated to
//!    eu-central, `replicated_at - source_commit_time` (both stamped on this machine's
//!    clock). Embedded transport on loopback, embedded with an 80 ms us-east ↔
//!    eu-central round trip, and Kafka (tansu) on loopback.

use std::time::{Duration, Instant};

use anyhow::Context;
use arrow::array::{Array, RecordBatch, TimestampMicrosecondArray};
use domicile_tests::{Client, KafkaBroker, Mesh, TestNode};

use super::{Measurement, Options, ms, versus_cells};

const TABLE: &str = "(id BIGINT PRIMARY KEY, region TEXT NOT NULL, name TEXT, email TEXT, \
                     balance DECIMAL(18,2) NOT NULL)";
const OPTIONS: &str = "locality = 'regional by row', region_column = 'region', \
                       pii = 'name, email', sensitive = 'balance'";

fn create(name: &str, cdc: bool) -> String {
    let cdc = if cdc { ", cdc = 'on'" } else { "" };
    format!("CREATE TABLE {name} {TABLE} WITH ({OPTIONS}{cdc})")
}

fn insert(table: &str, id: i64, region: &str) -> String {
    format!(
        "INSERT INTO {table} VALUES ({id}, '{region}', 'Name {id}', 'user{id}@example.com', 10.00)"
    )
}

pub(crate) async fn cdc(options: &Options) -> anyhow::Result<()> {
    write_cost(options).await?;
    relay_throughput().await?;
    println!();
    println!(
        "| transport | link us-east ↔ eu-central | events | lag p50 ms | lag p99 ms | max ms |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    lag(options, "embedded", None, None).await?;
    lag(options, "embedded", Some(Duration::from_millis(80)), None).await?;
    let broker = KafkaBroker::start()?;
    lag(options, "kafka (tansu)", None, Some(&broker)).await?;
    Ok(())
}

async fn write_cost(options: &Options) -> anyhow::Result<()> {
    let node = TestNode::start("us-east")?;
    node.upload_plugin("cdc-redactor", "pii_redactor", 1)?;
    let mut admin = node.client("admin").await?;
    admin.update(&create("with_cdc", true)).await?;
    admin.update(&create("without_cdc", false)).await?;
    println!();
    println!("| clients | cdc on p50 / p99 ms | ops/s | cdc off p50 / p99 ms | ops/s | on/off |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for clients in [1usize, 8] {
        let with = inserts(&node, "with_cdc", clients, options.seconds).await?;
        let without = inserts(&node, "without_cdc", clients, options.seconds).await?;
        println!("| {clients} | {} |", versus_cells(&with, &without));
    }
    Ok(())
}

/// `clients` writers inserting fresh rows into `table` for `seconds`.
async fn inserts(
    node: &TestNode,
    table: &'static str,
    clients: usize,
    seconds: u64,
) -> anyhow::Result<Measurement> {
    let endpoint = node.endpoint();
    let region = node.region.clone();
    super::run_clients(clients, seconds, move |index| {
        let endpoint = endpoint.clone();
        let region = region.clone();
        async move {
            let mut client = Client::connect(&endpoint, "writer", "writer-pw").await?;
            // Ids distinct across clients (the low 4 bits are the client) and across runs
            // on the same table (the start time, in µs, moves on by more than a run writes).
            let started_us = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_micros() as i64;
            let mut id = started_us * 16 + index as i64;
            let deadline = Instant::now() + Duration::from_secs(seconds);
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                id += 16;
                let started = Instant::now();
                client.update(&insert(table, id, &region)).await?;
                latencies.push(started.elapsed());
            }
            Ok(latencies)
        }
    })
    .await
}

async fn relay_throughput() -> anyhow::Result<()> {
    const EVENTS: i64 = 20_000;
    let node = TestNode::start("us-east")?;
    let mut admin = node.client("admin").await?;
    admin.update(&create("relayed", true)).await?;
    for start in (0..EVENTS).step_by(500) {
        let values: Vec<String> = (start..start + 500)
            .map(|id| format!("({id}, 'us-east', 'Name {id}', 'user{id}@example.com', 10.00)"))
            .collect();
        admin
            .update(&format!("INSERT INTO relayed VALUES {}", values.join(", ")))
            .await?;
    }
    anyhow::ensure!(
        outbox(&mut admin).await? == EVENTS as u64,
        "outbox not full"
    );
    let started = Instant::now();
    node.upload_plugin("cdc-redactor", "pii_redactor", 1)?;
    while outbox(&mut admin).await? > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed();
    println!();
    println!(
        "relay: {EVENTS} held events published in {:.2} s after the redactor arrived: {:.0} events/s \
         (redactor + policy + envelope + stream commit; includes the plugin upload, ~0.1 s)",
        elapsed.as_secs_f64(),
        EVENTS as f64 / elapsed.as_secs_f64()
    );
    Ok(())
}

async fn outbox(client: &mut Client) -> anyhow::Result<u64> {
    let batches = client.query("SELECT outbox_events FROM system.cdc").await?;
    let column = batches
        .first()
        .context("system.cdc empty")?
        .column(0)
        .as_any()
        .downcast_ref::<arrow::array::UInt64Array>()
        .context("outbox_events type")?
        .value(0);
    Ok(column)
}

async fn lag(
    options: &Options,
    transport: &str,
    rtt: Option<Duration>,
    kafka: Option<&KafkaBroker>,
) -> anyhow::Result<()> {
    const REGIONS: [&str; 3] = ["us-east", "eu-central", "ap-southeast"];
    const RATE_PER_SEC: u64 = 200;
    let extra = kafka.map_or(String::new(), |broker| {
        format!("\n[cdc]\nkafka_brokers = \"{}\"\n", broker.brokers())
    });
    let mesh = Mesh::start_with(&REGIONS, &extra)?;
    if let Some(rtt) = rtt {
        mesh.set_rtt("us-east", "eu-central", rtt);
    }
    let table = format!("lag_{}", transport.split(' ').next().unwrap_or("t"));
    for node in &mesh.nodes {
        node.upload_plugin("cdc-redactor", "pii_redactor", 1)?;
        node.client("admin")
            .await?
            .update(&create(&table, true))
            .await?;
    }
    let us = mesh.node("us-east");
    let mut writer = us.client("writer").await?;
    let total = RATE_PER_SEC * options.seconds;
    let started = Instant::now();
    for n in 0..total {
        let due = started + Duration::from_micros(n * 1_000_000 / RATE_PER_SEC);
        tokio::time::sleep_until(due.into()).await;
        writer.update(&insert(&table, n as i64, "us-east")).await?;
    }
    let eu = mesh.node("eu-central");
    let mut reader = eu.client("reader").await?;
    let query = format!("SELECT source_commit_time, replicated_at FROM global.{table}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let batches = loop {
        let batches = reader.query(&query).await.unwrap_or_default();
        if batches.iter().map(RecordBatch::num_rows).sum::<usize>() as u64 == total {
            break batches;
        }
        anyhow::ensure!(Instant::now() < deadline, "replica never caught up");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut lags = Vec::new();
    for batch in &batches {
        let times = |i: usize| {
            batch
                .column(i)
                .as_any()
                .downcast_ref::<TimestampMicrosecondArray>()
                .cloned()
                .context("timestamp column")
        };
        let (committed, applied) = (times(0)?, times(1)?);
        for row in 0..batch.num_rows() {
            let micros = applied.value(row) - committed.value(row);
            lags.push(Duration::from_micros(u64::try_from(micros.max(0))?));
        }
    }
    let lags = Measurement {
        latencies: lags,
        elapsed: Duration::from_secs(options.seconds),
    };
    println!(
        "| {transport} | {} | {total} at {RATE_PER_SEC}/s | {:.1} | {:.1} | {:.1} |",
        rtt.map_or("loopback".to_string(), |r| format!(
            "{} ms RTT",
            r.as_millis()
        )),
        ms(lags.percentile(0.5)),
        ms(lags.percentile(0.99)),
        ms(lags.percentile(1.0)),
    );
    Ok(())
}
