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
        "| link us-east ↔ eu-central | commit window µs | clients | committed/s | p50 ms | p99 ms \
         | us-east commits per saga | us-east statements per commit \
         | eu-central commits per saga | writer busy us-east / eu-central | us-east commit ms \
         | CPU ms per saga us-east / eu-central |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    let links: &[Option<Duration>] = if options.loopback_only {
        &[None]
    } else {
        &[None, Some(Duration::from_millis(80))]
    };
    let cases = links.iter().flat_map(|&rtt| {
        options
            .commit_windows_us
            .iter()
            .map(move |&window| (rtt, window))
    });
    for (rtt, window) in cases {
        // The node's default window unless one is given.
        let storage = window.map_or(String::new(), |us| {
            format!("\n[storage]\ncommit_window_us = {us}\n")
        });
        let mesh = Mesh::start_with(&["us-east", "eu-central"], &storage)?;
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
        let cells = std::iter::once(1usize).chain(
            options
                .saga_clients
                .iter()
                .flat_map(|&clients| std::iter::repeat_n(clients, options.runs)),
        );
        let mut many: std::collections::BTreeMap<usize, Vec<f64>> = Default::default();
        for clients in cells {
            let (us_before, eu_before) = (writer(us).await?, writer(eu).await?);
            let cpu_before = (us.cpu_seconds(), eu.cpu_seconds());
            let started = Instant::now();
            let m = run(&endpoint, clients, options.seconds).await?;
            let wall_us = started.elapsed().as_micros().max(1) as f64;
            let cpu_ms = |before: Option<f64>, node: &TestNode| -> String {
                match (before, node.cpu_seconds()) {
                    (Some(before), Some(after)) => format!(
                        "{:.2}",
                        (after - before) * 1000.0 / m.latencies.len().max(1) as f64
                    ),
                    _ => "-".into(),
                }
            };
            let (us_work, eu_work) = (
                writer(us).await?.since(&us_before),
                writer(eu).await?.since(&eu_before),
            );
            let sagas = m.latencies.len().max(1) as f64;
            println!(
                "| {} | {} | {clients} | {:.0} | {:.1} | {:.1} | {:.2} | {:.1} | {:.2} \
                 | {:.0} % / {:.0} % | {:.2} | {} / {} |",
                rtt.map_or("loopback".to_string(), |r| format!(
                    "{} ms RTT",
                    r.as_millis()
                )),
                window.map_or("default".to_string(), |us| us.to_string()),
                m.throughput(),
                ms(m.percentile(0.5)),
                ms(m.percentile(0.99)),
                us_work.commits / sagas,
                us_work.statements / us_work.commits.max(1.0),
                eu_work.commits / sagas,
                100.0 * us_work.busy_us / wall_us,
                100.0 * eu_work.busy_us / wall_us,
                us_work.commit_us / us_work.commits.max(1.0) / 1000.0,
                cpu_ms(cpu_before.0, us),
                cpu_ms(cpu_before.1, eu),
            );
            if clients > 1 {
                many.entry(clients).or_default().push(m.throughput());
            }
        }
        for (clients, mut runs) in many.into_iter().filter(|(_, runs)| runs.len() > 1) {
            runs.sort_by(f64::total_cmp);
            println!(
                "median of {} runs at {clients} clients, commit window {}: {:.0}/s \
                 (min {:.0}, max {:.0})",
                runs.len(),
                window.map_or("default".to_string(), |us| format!("{us} µs")),
                runs[runs.len() / 2],
                runs[0],
                runs[runs.len() - 1]
            );
        }
    }
    Ok(())
}

/// What a node's storage writer did since it started (`system.node`): fsync'd commits,
/// the statements they carried (group commit shares one commit among concurrent
/// statements), and the time it was busy, and committing, in microseconds.
struct WriterWork {
    commits: f64,
    statements: f64,
    busy_us: f64,
    commit_us: f64,
}

impl WriterWork {
    fn since(&self, before: &WriterWork) -> WriterWork {
        WriterWork {
            commits: self.commits - before.commits,
            statements: self.statements - before.statements,
            busy_us: self.busy_us - before.busy_us,
            commit_us: self.commit_us - before.commit_us,
        }
    }
}

async fn writer(node: &TestNode) -> anyhow::Result<WriterWork> {
    let mut client = node.client("admin").await?;
    let batches = client
        .query("SELECT commits, statements_committed, writer_busy_us, commit_us FROM system.node")
        .await?;
    let read = |column: &str| -> anyhow::Result<f64> {
        column_strings(&batches, column)
            .first()
            .ok_or_else(|| anyhow::anyhow!("system.node has no row"))?
            .parse()
            .map_err(|e| anyhow::anyhow!("{column}: {e}"))
    };
    Ok(WriterWork {
        commits: read("commits")?,
        statements: read("statements_committed")?,
        busy_us: read("writer_busy_us")?,
        commit_us: read("commit_us")?,
    })
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
