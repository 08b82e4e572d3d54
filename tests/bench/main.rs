//! `domicile-bench`: primary-key point selects and durable single-row updates, through
//! Flight SQL prepared statements against a real `domicile` node, and the same two
//! workloads against PostgreSQL in the same run (`--postgres URL`), with 1 and 8
//! concurrent clients. Prints p50 / p99 latency, throughput and the ratios.
//!
//! Run it with `tests/bench/run.sh` (release build, starts PostgreSQL on a temp dir).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use arrow::array::{Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use domicile_tests::{Client, TestNode};
use futures::TryStreamExt;

mod cdc;
mod federation;
mod overload;
mod sagas;
mod transactions;

struct Options {
    rows: i64,
    seconds: u64,
    postgres: Option<String>,
    seed: u64,
    /// Measure the residency guard's cost (guard on vs off) instead of the PostgreSQL
    /// comparison.
    guard: bool,
    /// Measure local and routed reads and writes on a 3-region mesh with simulated WAN.
    wan: bool,
    /// Measure change data capture: write cost, relay throughput, end-to-end lag.
    cdc: bool,
    /// Measure cross-region transfers as sagas.
    sagas: bool,
    /// How many times each many-client saga measurement runs (runs on one machine
    /// spread by several percent; the median of a few says more than one).
    runs: usize,
    /// Sagas on loopback only (skip the simulated WAN).
    loopback_only: bool,
    /// Client counts of the many-client saga measurements (besides one client).
    saga_clients: Vec<usize>,
    /// Storage commit windows to measure sagas with (`None`: the node's default).
    commit_windows_us: Vec<Option<u64>>,
    /// Measure federated queries over the WAN (cold, cached) and the local row cache.
    federation: bool,
    /// Measure the steady workload with the hostile mix off, on and off again.
    overload: bool,
    /// Measure multi-statement transfers and bulk ingest against PostgreSQL.
    transactions: bool,
}

fn parse_options() -> anyhow::Result<Options> {
    let mut options = Options {
        rows: 10_000,
        seconds: 10,
        postgres: None,
        seed: 42,
        guard: false,
        wan: false,
        cdc: false,
        sagas: false,
        runs: 1,
        loopback_only: false,
        saga_clients: vec![32],
        commit_windows_us: vec![None],
        federation: false,
        overload: false,
        transactions: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--rows" => options.rows = value()?.parse()?,
            "--seconds" => options.seconds = value()?.parse()?,
            "--postgres" => options.postgres = Some(value()?),
            "--seed" => options.seed = value()?.parse()?,
            "--guard" => options.guard = true,
            "--wan" => options.wan = true,
            "--cdc" => options.cdc = true,
            "--sagas" => options.sagas = true,
            "--runs" => options.runs = value()?.parse::<usize>()?.max(1),
            "--loopback-only" => options.loopback_only = true,
            "--commit-window-us" => {
                options.commit_windows_us = value()?
                    .split(',')
                    .map(|us| us.trim().parse::<u64>().map(Some))
                    .collect::<Result<_, _>>()?;
            }
            "--clients" => {
                options.saga_clients = value()?
                    .split(',')
                    .map(|n| n.trim().parse::<usize>())
                    .collect::<Result<_, _>>()?;
            }
            "--federation" => options.federation = true,
            "--overload" => options.overload = true,
            "--transactions" => options.transactions = true,
            other => anyhow::bail!(
                "unknown argument {other} (--rows N --seconds S --postgres URL --seed N \
                 --guard | --wan | --cdc | --sagas [--runs N --loopback-only --clients N,M --commit-window-us A,B] | --federation | --overload | --transactions)"
            ),
        }
    }
    Ok(options)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Workload {
    PointSelect,
    Update,
    Insert,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::PointSelect => "point select",
            Workload::Update => "durable update",
            Workload::Insert => "durable insert",
        }
    }
}

struct Measurement {
    latencies: Vec<Duration>,
    elapsed: Duration,
}

impl Measurement {
    fn percentile(&self, p: f64) -> Duration {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
        sorted.get(index).copied().unwrap_or_default()
    }

    fn throughput(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }
}

/// A tiny deterministic generator: the same seed gives the same key sequence.
struct Keys(u64);

impl Keys {
    fn next(&mut self, rows: i64) -> i64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % rows as u64) as i64
    }
}

async fn run_clients<F, Fut>(clients: usize, seconds: u64, make: F) -> anyhow::Result<Measurement>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Vec<Duration>>> + Send + 'static,
{
    let mut tasks = Vec::new();
    for client in 0..clients {
        tasks.push(tokio::spawn(make(client)));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    // Every client measures for exactly `seconds` after its own connect and prepare.
    Ok(Measurement {
        latencies,
        elapsed: Duration::from_secs(seconds),
    })
}

async fn domicile_workload(
    node: &TestNode,
    workload: Workload,
    clients: usize,
    options: &Options,
) -> anyhow::Result<Measurement> {
    domicile_workload_as(node, ("writer", "writer-pw"), workload, clients, options).await
}

async fn domicile_workload_as(
    node: &TestNode,
    (user, password): (&'static str, &'static str),
    workload: Workload,
    clients: usize,
    options: &Options,
) -> anyhow::Result<Measurement> {
    let endpoint = node.endpoint();
    let (rows, seconds, seed) = (options.rows, options.seconds, options.seed);
    run_clients(clients, seconds, move |index| {
        let endpoint = endpoint.clone();
        async move {
            let mut client = Client::connect(&endpoint, user, password).await?;
            let sql = match workload {
                Workload::PointSelect => "SELECT balance, filler FROM bench_accounts WHERE id = $1",
                Workload::Update => {
                    "UPDATE bench_accounts SET balance = balance - 10 WHERE id = $1"
                }
                Workload::Insert => "INSERT INTO bench_accounts VALUES ($1, 1000000, 'new')",
            };
            // Fresh keys per client for inserts, far above the loaded rows.
            let mut next_insert = rows + (index as i64 + 1) * 1_000_000_000;
            let mut prepared = client.inner.prepare(sql.to_string(), None).await?;
            let schema = Arc::new(Schema::new(vec![Field::new("$1", DataType::Int64, false)]));
            let mut keys = Keys(seed + index as u64 * 7919 + 1);
            let deadline = Instant::now() + Duration::from_secs(seconds);
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let id = if workload == Workload::Insert {
                    next_insert += 1;
                    next_insert
                } else {
                    keys.next(rows)
                };
                let batch = RecordBatch::try_new(
                    Arc::clone(&schema),
                    vec![Arc::new(Int64Array::from(vec![id]))],
                )?;
                let started = Instant::now();
                prepared.set_parameters(batch)?;
                match workload {
                    Workload::PointSelect => {
                        let info = prepared.execute().await?;
                        let ticket = info.endpoint[0].ticket.clone().context("ticket")?;
                        let batches: Vec<RecordBatch> =
                            client.inner.do_get(ticket).await?.try_collect().await?;
                        anyhow::ensure!(
                            batches.iter().map(|b| b.num_rows()).sum::<usize>() == 1,
                            "row {id} missing"
                        );
                    }
                    Workload::Update | Workload::Insert => {
                        let changed = prepared.execute_update().await?;
                        anyhow::ensure!(changed == 1, "write of {id} changed {changed} rows");
                    }
                }
                latencies.push(started.elapsed());
            }
            Ok(latencies)
        }
    })
    .await
}

/// Residency guard cost: the same workloads on two nodes, one with the bundled EU
/// policy enforcing (the default), one with the guard off.
async fn guard_overhead(options: &Options) -> anyhow::Result<()> {
    let on = TestNode::start("eu-central")?;
    let off = TestNode::start_with("eu-central", "\n[residency]\nguard = \"off\"\n", |_| Ok(()))?;
    load_domicile(&on, options.rows).await?;
    load_domicile(&off, options.rows).await?;
    println!();
    println!(
        "| workload | guard on p50 / p99 ms | ops/s | guard off p50 / p99 ms | ops/s | throughput on/off |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    let cases = [
        (
            "point select, reader at home",
            ("writer", "writer-pw"),
            Workload::PointSelect,
        ),
        (
            "point select, reader from ap-southeast",
            ("apac", "apac-pw"),
            Workload::PointSelect,
        ),
        (
            "single-row insert",
            ("writer", "writer-pw"),
            Workload::Insert,
        ),
        (
            "single-row update",
            ("writer", "writer-pw"),
            Workload::Update,
        ),
    ];
    for (label, user, workload) in cases {
        let with = domicile_workload_as(&on, user, workload, 1, options).await?;
        let without = domicile_workload_as(&off, user, workload, 1, options).await?;
        println!("| {label} | {} |", versus_cells(&with, &without));
    }
    Ok(())
}

/// One region's view of the mesh: p50 / p99 of statements run on its node, for rows
/// homed `home`, through links with the seed scenario's round trips.
async fn wan(options: &Options) -> anyhow::Result<()> {
    const REGIONS: [&str; 3] = ["us-east", "eu-central", "ap-southeast"];
    let mesh = domicile_tests::Mesh::start(&REGIONS)?;
    for (a, b, rtt) in [
        ("us-east", "eu-central", 80),
        ("eu-central", "ap-southeast", 160),
        ("us-east", "ap-southeast", 170),
    ] {
        mesh.set_rtt(a, b, Duration::from_millis(rtt));
    }
    for node in &mesh.nodes {
        let mut admin = node.client("admin").await?;
        admin
            .update(
                "CREATE TABLE wan_accounts (id BIGINT PRIMARY KEY, region TEXT NOT NULL, \
                 balance BIGINT NOT NULL) WITH (locality = 'regional by row', region_column = 'region')",
            )
            .await?;
        let values: Vec<String> = (0..1000)
            .map(|id| format!("({id}, '{}', 100)", node.region))
            .collect();
        admin
            .update(&format!(
                "INSERT INTO wan_accounts VALUES {}",
                values.join(", ")
            ))
            .await?;
    }
    // Peers measure RTT every 200 ms; let them see the simulated links.
    tokio::time::sleep(Duration::from_secs(2)).await;
    println!();
    println!("| on node | rows homed in | point read p50 / p99 ms | write p50 / p99 ms |");
    println!("| --- | --- | --- | --- |");
    for node in &mesh.nodes {
        let mut client = node.client("writer").await?;
        for home in REGIONS {
            let mut reads = Vec::new();
            let mut writes = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(options.seconds);
            let mut next = 1_000_000
                + REGIONS.iter().position(|r| *r == node.region).unwrap_or(0) as i64 * 100_000;
            let mut keys = Keys(options.seed + 1);
            while Instant::now() < deadline {
                let id = keys.next(1000);
                let started = Instant::now();
                let rows = client
                    .query(&format!(
                        "SELECT balance FROM wan_accounts WHERE region = '{home}' AND id = {id}"
                    ))
                    .await?;
                anyhow::ensure!(rows.iter().map(RecordBatch::num_rows).sum::<usize>() == 1);
                reads.push(started.elapsed());
                next += 1;
                let started = Instant::now();
                client
                    .update(&format!(
                        "INSERT INTO wan_accounts VALUES ({next}, '{home}', 1)"
                    ))
                    .await?;
                writes.push(started.elapsed());
            }
            let (reads, writes) = (
                Measurement {
                    latencies: reads,
                    elapsed: Duration::from_secs(options.seconds),
                },
                Measurement {
                    latencies: writes,
                    elapsed: Duration::from_secs(options.seconds),
                },
            );
            println!(
                "| {} | {home} | {:.1} / {:.1} | {:.1} / {:.1} |",
                node.region,
                ms(reads.percentile(0.5)),
                ms(reads.percentile(0.99)),
                ms(writes.percentile(0.5)),
                ms(writes.percentile(0.99)),
            );
        }
    }
    Ok(())
}

async fn postgres_workload(
    url: &str,
    workload: Workload,
    clients: usize,
    options: &Options,
) -> anyhow::Result<Measurement> {
    let url = url.to_string();
    let (rows, seconds, seed) = (options.rows, options.seconds, options.seed);
    run_clients(clients, seconds, move |index| {
        let url = url.clone();
        async move {
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
            tokio::spawn(connection);
            let sql = match workload {
                Workload::PointSelect => "SELECT balance, filler FROM bench_accounts WHERE id = $1",
                Workload::Update => {
                    "UPDATE bench_accounts SET balance = balance - 10 WHERE id = $1"
                }
                Workload::Insert => "INSERT INTO bench_accounts VALUES ($1, 1000000, 'new')",
            };
            let statement = client.prepare(sql).await?;
            let mut keys = Keys(seed + index as u64 * 7919 + 1);
            let deadline = Instant::now() + Duration::from_secs(seconds);
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let id = keys.next(rows);
                let started = Instant::now();
                match workload {
                    Workload::PointSelect => {
                        let found = client.query(&statement, &[&id]).await?;
                        anyhow::ensure!(found.len() == 1, "row {id} missing");
                    }
                    Workload::Update | Workload::Insert => {
                        let changed = client.execute(&statement, &[&id]).await?;
                        anyhow::ensure!(changed == 1, "update of {id} changed {changed} rows");
                    }
                }
                latencies.push(started.elapsed());
            }
            Ok(latencies)
        }
    })
    .await
}

async fn load_domicile(node: &TestNode, rows: i64) -> anyhow::Result<()> {
    let mut admin = node.client("admin").await?;
    admin
        .update(
            "CREATE TABLE bench_accounts (id BIGINT PRIMARY KEY, balance BIGINT NOT NULL, \
             filler TEXT) WITH (sensitive = 'balance', pii = 'filler')",
        )
        .await?;
    for start in (0..rows).step_by(1000) {
        let values: Vec<String> = (start..(start + 1000).min(rows))
            .map(|id| format!("({id}, 1000000, 'filler-{id:08}')"))
            .collect();
        admin
            .update(&format!(
                "INSERT INTO bench_accounts VALUES {}",
                values.join(", ")
            ))
            .await?;
    }
    Ok(())
}

async fn load_postgres(url: &str, rows: i64) -> anyhow::Result<()> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    client
        .batch_execute(
            "DROP TABLE IF EXISTS bench_accounts; \
             CREATE TABLE bench_accounts (id BIGINT PRIMARY KEY, balance BIGINT NOT NULL, filler TEXT)",
        )
        .await?;
    client
        .execute(
            "INSERT INTO bench_accounts SELECT g, 1000000, 'filler-' || lpad(g::text, 8, '0') FROM generate_series(0, $1::bigint - 1) g",
            &[&rows],
        )
        .await?;
    client
        .batch_execute("VACUUM ANALYZE bench_accounts")
        .await?;
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = parse_options()?;
    println!(
        "domicile-bench: {} rows, {} s per run, seed {}, PostgreSQL baseline: {}",
        options.rows,
        options.seconds,
        options.seed,
        options.postgres.as_deref().map_or("none", |_| "yes")
    );
    if options.guard {
        return guard_overhead(&options).await;
    }
    if options.wan {
        return wan(&options).await;
    }
    if options.cdc {
        return cdc::cdc(&options).await;
    }
    if options.sagas {
        return sagas::sagas(&options).await;
    }
    if options.federation {
        return federation::federation(&options).await;
    }
    if options.overload {
        return overload::overload(&options).await;
    }
    if options.transactions {
        return transactions::transactions(&options).await;
    }
    let node = TestNode::start("eu-central")?;
    load_domicile(&node, options.rows).await?;
    if let Some(url) = &options.postgres {
        load_postgres(url, options.rows).await?;
    }

    println!();
    println!(
        "{:<15} {:>7} {:<10} {:>9} {:>9} {:>11}",
        "workload", "clients", "system", "p50 ms", "p99 ms", "ops/s"
    );
    let mut ratios = Vec::new();
    for workload in [Workload::PointSelect, Workload::Update] {
        for clients in [1usize, 8] {
            let ours = domicile_workload(&node, workload, clients, &options).await?;
            print_row(workload, clients, "domicile", &ours);
            if let Some(url) = &options.postgres {
                let theirs = postgres_workload(url, workload, clients, &options).await?;
                print_row(workload, clients, "postgres", &theirs);
                ratios.push((workload, clients, ours, theirs));
            }
        }
    }
    if !ratios.is_empty() {
        println!();
        println!("ratios domicile / postgres (throughput > 1 and latency < 1 favour domicile):");
        for (workload, clients, ours, theirs) in ratios {
            println!(
                "  {:<15} {} client(s): throughput {:.2}x, p50 latency {:.2}x, p99 latency {:.2}x",
                workload.name(),
                clients,
                ours.throughput() / theirs.throughput(),
                ms(ours.percentile(0.5)) / ms(theirs.percentile(0.5)),
                ms(ours.percentile(0.99)) / ms(theirs.percentile(0.99)),
            );
        }
    }
    Ok(())
}

/// The cells of an "on vs off" row: p50 / p99 ms and ops/s of each, and the ratio of
/// their throughputs.
fn versus_cells(on: &Measurement, off: &Measurement) -> String {
    format!(
        "{:.3} / {:.3} | {:.0} | {:.3} / {:.3} | {:.0} | {:.2}x",
        ms(on.percentile(0.5)),
        ms(on.percentile(0.99)),
        on.throughput(),
        ms(off.percentile(0.5)),
        ms(off.percentile(0.99)),
        off.throughput(),
        on.throughput() / off.throughput(),
    )
}

fn print_row(workload: Workload, clients: usize, system: &str, m: &Measurement) {
    println!(
        "{:<15} {:>7} {:<10} {:>9.3} {:>9.3} {:>11.0}",
        workload.name(),
        clients,
        system,
        ms(m.percentile(0.5)),
        ms(m.percentile(0.99)),
        m.throughput()
    );
}
