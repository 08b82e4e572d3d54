//! `--transactions`: local multi-statement transactions and bulk ingest, Domicile against
//! PostgreSQL in the same run.
//!
//! - Transfers: BEGIN; debit one account; insert a ledger line; credit another; COMMIT
//!   (five round trips each, on both systems: Flight SQL BeginTransaction, three
//!   CommandStatementUpdate, EndTransaction; PostgreSQL BEGIN, three statements, COMMIT
//!   over its extended protocol, unprepared on both). Domicile's ledger captures its
//!   changes (`cdc = 'on'`), so its commit also writes an outbox event. A serialization
//!   failure (SQLSTATE 40001) is retried; retries are counted. 1 and 8 clients.
//! - Ingest: rows/s of one Flight SQL bulk ingest (CommandStatementIngest, batches of
//!   10 000 rows, one commit) against PostgreSQL `COPY ... FROM STDIN` of the same rows,
//!   each into an empty table, median of three.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{ArrayRef, Decimal128Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use domicile_tests::{Client, TestNode};
use futures::SinkExt;

use super::{Keys, Measurement, Options, ms, run_clients};

const ACCOUNTS: i64 = 10_000;
const INGEST_ROWS: usize = 100_000;
const INGEST_BATCH_ROWS: usize = 10_000;

pub(crate) async fn transactions(options: &Options) -> anyhow::Result<()> {
    let url = options.postgres.clone().ok_or_else(|| {
        anyhow::anyhow!(
            "--transactions compares with PostgreSQL: run it through tests/bench/run.sh"
        )
    })?;
    let node = TestNode::start("eu-central")?;
    let mut admin = node.client("admin").await?;
    admin
        .update(
            "CREATE TABLE tx_accounts (id BIGINT PRIMARY KEY, balance BIGINT NOT NULL) \
             WITH (sensitive = 'balance')",
        )
        .await?;
    admin
        .update(
            "CREATE TABLE tx_ledger (id BIGINT PRIMARY KEY, account BIGINT NOT NULL, \
             amount BIGINT NOT NULL) WITH (cdc = 'on')",
        )
        .await?;
    for start in (0..ACCOUNTS).step_by(1000) {
        let values: Vec<String> = (start..start + 1000)
            .map(|id| format!("({id}, 1000000)"))
            .collect();
        admin
            .update(&format!(
                "INSERT INTO tx_accounts VALUES {}",
                values.join(", ")
            ))
            .await?;
    }
    let (pg, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    pg.batch_execute(&format!(
        "DROP TABLE IF EXISTS tx_accounts, tx_ledger, ingest_0, ingest_1, ingest_2; \
         CREATE TABLE tx_accounts (id BIGINT PRIMARY KEY, balance BIGINT NOT NULL); \
         CREATE TABLE tx_ledger (id BIGINT PRIMARY KEY, account BIGINT NOT NULL, amount BIGINT NOT NULL); \
         INSERT INTO tx_accounts SELECT g, 1000000 FROM generate_series(0, {}) g",
        ACCOUNTS - 1
    ))
    .await?;
    // Alone: a batch of several statements is one transaction, and VACUUM refuses one.
    pg.batch_execute("VACUUM ANALYZE tx_accounts").await?;

    println!();
    println!(
        "{:<26} {:>7} {:<10} {:>9} {:>9} {:>11} {:>8}",
        "workload", "clients", "system", "p50 ms", "p99 ms", "txn/s", "retries"
    );
    let mut ratios = Vec::new();
    for clients in [1usize, 8] {
        let (ours, our_retries) = domicile_transfers(&node, clients, options).await?;
        print_transfer_row(clients, "domicile", &ours, our_retries);
        let (theirs, their_retries) = postgres_transfers(&url, clients, options).await?;
        print_transfer_row(clients, "postgres", &theirs, their_retries);
        ratios.push((clients, ours, theirs));
    }
    // Money is neither made nor lost: every committed transfer moved 1 and wrote one
    // ledger line.
    let sum = admin
        .query("SELECT sum(balance) AS s FROM tx_accounts")
        .await?;
    let total = domicile_tests::column_strings(&sum, "s");
    anyhow::ensure!(
        total == [format!("{}", ACCOUNTS * 1_000_000)],
        "balances do not add up: {total:?}"
    );

    let (ours, theirs) = ingest(&node, &pg).await?;
    println!();
    println!(
        "bulk ingest of {INGEST_ROWS} rows (4 columns), median of 3: domicile {:.0} rows/s \
         (Flight SQL CommandStatementIngest, one commit), postgres {:.0} rows/s (COPY FROM STDIN)",
        ours, theirs
    );
    println!();
    println!("ratios domicile / postgres (throughput > 1 and latency < 1 favour domicile):");
    for (clients, ours, theirs) in ratios {
        println!(
            "  transfer (3 statements) {clients} client(s): throughput {:.2}x, p50 latency {:.2}x, \
             p99 latency {:.2}x",
            ours.throughput() / theirs.throughput(),
            ms(ours.percentile(0.5)) / ms(theirs.percentile(0.5)),
            ms(ours.percentile(0.99)) / ms(theirs.percentile(0.99)),
        );
    }
    println!("  bulk ingest: {:.2}x", ours / theirs);
    Ok(())
}

fn print_transfer_row(clients: usize, system: &str, m: &Measurement, retries: usize) {
    println!(
        "{:<26} {:>7} {:<10} {:>9.3} {:>9.3} {:>11.0} {:>8}",
        "transfer (3 statements)",
        clients,
        system,
        ms(m.percentile(0.5)),
        ms(m.percentile(0.99)),
        m.throughput(),
        retries
    );
}

/// The accounts and ledger id of transfer `n` of client `index`.
fn transfer(keys: &mut Keys, index: usize, n: i64, clients: usize) -> (i64, i64, i64) {
    let from = keys.next(ACCOUNTS);
    let mut to = keys.next(ACCOUNTS);
    if to == from {
        to = (to + 1) % ACCOUNTS;
    }
    // Ledger ids never collide across clients, runs or retries.
    let ledger = (clients as i64 * 1_000 + index as i64) * 1_000_000_000 + n;
    (from, to, ledger)
}

async fn domicile_transfers(
    node: &TestNode,
    clients: usize,
    options: &Options,
) -> anyhow::Result<(Measurement, usize)> {
    let endpoint = node.endpoint();
    let (seconds, seed) = (options.seconds, options.seed);
    let retries = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = Arc::clone(&retries);
    let measurement = run_clients(clients, seconds, move |index| {
        let endpoint = endpoint.clone();
        let retries = Arc::clone(&counted);
        async move {
            let mut client = Client::connect(&endpoint, "writer", "writer-pw").await?;
            let mut keys = Keys(seed + index as u64 * 7919 + 1);
            let deadline = Instant::now() + Duration::from_secs(seconds);
            let mut latencies = Vec::new();
            let mut n = 0i64;
            while Instant::now() < deadline {
                let started = Instant::now();
                loop {
                    n += 1;
                    let (from, to, ledger) = transfer(&mut keys, index, n, clients);
                    match domicile_transfer(&mut client, from, to, ledger).await {
                        Ok(()) => break,
                        Err(status) if status.code() == tonic::Code::Aborted => {
                            retries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        Err(status) => return Err(status.into()),
                    }
                }
                latencies.push(started.elapsed());
            }
            Ok(latencies)
        }
    })
    .await?;
    Ok((
        measurement,
        retries.load(std::sync::atomic::Ordering::Relaxed),
    ))
}

async fn domicile_transfer(
    client: &mut Client,
    from: i64,
    to: i64,
    ledger: i64,
) -> Result<(), tonic::Status> {
    let txn = client.begin().await?;
    let statements = [
        format!("UPDATE tx_accounts SET balance = balance - 1 WHERE id = {from}"),
        format!("INSERT INTO tx_ledger VALUES ({ledger}, {from}, -1)"),
        format!("UPDATE tx_accounts SET balance = balance + 1 WHERE id = {to}"),
    ];
    for sql in &statements {
        if let Err(status) = client.update_in(&txn, sql).await {
            let _ = client.rollback(&txn).await;
            return Err(status);
        }
    }
    client.commit(&txn).await
}

async fn postgres_transfers(
    url: &str,
    clients: usize,
    options: &Options,
) -> anyhow::Result<(Measurement, usize)> {
    let url = url.to_string();
    let (seconds, seed) = (options.seconds, options.seed);
    let retries = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = Arc::clone(&retries);
    let measurement = run_clients(clients, seconds, move |index| {
        let url = url.clone();
        let retries = Arc::clone(&counted);
        async move {
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
            tokio::spawn(connection);
            let mut keys = Keys(seed + index as u64 * 7919 + 1);
            let deadline = Instant::now() + Duration::from_secs(seconds);
            let mut latencies = Vec::new();
            let mut n = 0i64;
            while Instant::now() < deadline {
                let started = Instant::now();
                loop {
                    n += 1;
                    let (from, to, ledger) = transfer(&mut keys, index, n, clients);
                    match postgres_transfer(&client, from, to, ledger).await {
                        Ok(()) => break,
                        Err(error)
                            if error.code()
                                == Some(
                                    &tokio_postgres::error::SqlState::T_R_SERIALIZATION_FAILURE,
                                ) =>
                        {
                            let _ = client.execute("ROLLBACK", &[]).await;
                            retries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        Err(error) => return Err(error.into()),
                    }
                }
                latencies.push(started.elapsed());
            }
            Ok(latencies)
        }
    })
    .await?;
    Ok((
        measurement,
        retries.load(std::sync::atomic::Ordering::Relaxed),
    ))
}

/// The same transfer on PostgreSQL, at the isolation Domicile gives (serializable).
async fn postgres_transfer(
    client: &tokio_postgres::Client,
    from: i64,
    to: i64,
    ledger: i64,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute("BEGIN ISOLATION LEVEL SERIALIZABLE", &[])
        .await?;
    client
        .execute(
            &format!("UPDATE tx_accounts SET balance = balance - 1 WHERE id = {from}"),
            &[],
        )
        .await?;
    client
        .execute(
            &format!("INSERT INTO tx_ledger VALUES ({ledger}, {from}, -1)"),
            &[],
        )
        .await?;
    client
        .execute(
            &format!("UPDATE tx_accounts SET balance = balance + 1 WHERE id = {to}"),
            &[],
        )
        .await?;
    client.execute("COMMIT", &[]).await?;
    Ok(())
}

/// The ingest rows: id, merchant, amount, currency.
fn ingest_batches() -> Vec<RecordBatch> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("merchant", DataType::Utf8, false),
        Field::new("amount", DataType::Decimal128(12, 2), false),
        Field::new("currency", DataType::Utf8, false),
    ]));
    (0..INGEST_ROWS)
        .step_by(INGEST_BATCH_ROWS)
        .map(|start| {
            let ids = start as i64..(start + INGEST_BATCH_ROWS) as i64;
            let columns: Vec<ArrayRef> = vec![
                Arc::new(Int64Array::from_iter_values(ids.clone())),
                Arc::new(StringArray::from_iter_values(
                    ids.clone().map(|id| format!("merchant-{:06}", id % 5000)),
                )),
                Arc::new(
                    Decimal128Array::from_iter_values(
                        ids.clone().map(|id| i128::from(id % 100_000)),
                    )
                    .with_precision_and_scale(12, 2)
                    .expect("decimal"),
                ),
                Arc::new(StringArray::from_iter_values(ids.map(|_| "EUR"))),
            ];
            RecordBatch::try_new(Arc::clone(&schema), columns).expect("batch")
        })
        .collect()
}

/// Median rows/s of three ingests on each system, each into an empty table.
async fn ingest(node: &TestNode, pg: &tokio_postgres::Client) -> anyhow::Result<(f64, f64)> {
    let batches = ingest_batches();
    let mut admin = node.client("admin").await?;
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    let text: String = batches
        .iter()
        .flat_map(|batch| {
            let ids = batch
                .column(0)
                .as_any()
                .downcast_ref::<Int64Array>()
                .expect("ids");
            (0..batch.num_rows())
                .map(|row| {
                    let id = ids.value(row);
                    format!(
                        "{id}\tmerchant-{:06}\t{}.{:02}\tEUR\n",
                        id % 5000,
                        (id % 100_000) / 100,
                        (id % 100_000) % 100
                    )
                })
                .collect::<Vec<_>>()
        })
        .collect();
    for run in 0..3 {
        let table = format!("ingest_{run}");
        admin
            .update(&format!(
                "CREATE TABLE {table} (id BIGINT PRIMARY KEY, merchant TEXT NOT NULL, \
                 amount DECIMAL(12,2) NOT NULL, currency TEXT NOT NULL)"
            ))
            .await?;
        let started = Instant::now();
        let loaded = admin
            .ingest(&table, "append", &[], None, batches.clone())
            .await?;
        let elapsed = started.elapsed();
        anyhow::ensure!(loaded as usize == INGEST_ROWS, "ingested {loaded} rows");
        ours.push(INGEST_ROWS as f64 / elapsed.as_secs_f64());

        pg.batch_execute(&format!(
            "CREATE TABLE {table} (id BIGINT PRIMARY KEY, merchant TEXT NOT NULL, \
             amount NUMERIC(12,2) NOT NULL, currency TEXT NOT NULL)"
        ))
        .await?;
        let started = Instant::now();
        let sink = pg
            .copy_in::<_, prost::bytes::Bytes>(&format!("COPY {table} FROM STDIN"))
            .await?;
        futures::pin_mut!(sink);
        sink.send(prost::bytes::Bytes::from(text.clone())).await?;
        let copied = sink.finish().await?;
        let elapsed = started.elapsed();
        anyhow::ensure!(copied as usize == INGEST_ROWS, "copied {copied} rows");
        theirs.push(INGEST_ROWS as f64 / elapsed.as_secs_f64());
    }
    Ok((median(&mut ours), median(&mut theirs)))
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}
