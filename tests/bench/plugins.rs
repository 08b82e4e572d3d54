//! `domicile-plugin-bench`: what a jurisdiction plugin costs. The EU residency policy
//! (`plugins/eu-gdpr`) compiled natively into this binary against the very same policy
//! as a WASM component in the node's sandbox, per row at batch sizes 1, 64 and 1024;
//! the fixed cost of one sandboxed call (fresh store + instantiation + a trivial call);
//! and the PII redactor's throughput in events per second.
//!
//! Run: `tests/bench/run.sh --plugins` (release build; components built first).

use std::time::{Duration, Instant};

use domicile::plugins::redactor_types::{ChangeEvent, EventBatch, Operation};
use domicile::plugins::residency_types as host;
use domicile::plugins::{PluginLimits, PluginRuntime, RedactorPlugin, ResidencyPolicyPlugin};
use domicile_sdk_wasm::residency as guest;
use domicile_sdk_wasm::residency::Guest as _;
use domicile_tests::wasm;

/// The bundled EU policy's own source, compiled natively into this binary: the baseline
/// is exactly the code the WASM component runs.
#[path = "../../plugins/eu-gdpr/src/lib.rs"]
#[expect(
    unreachable_pub,
    reason = "the policy crate's public items are private here"
)]
mod eu_gdpr;

const REGIONS: [&str; 3] = ["eu-central", "us-east", "ap-southeast"];
const COLUMNS: [(&str, host::DataClass); 6] = [
    ("id", host::DataClass::Public),
    ("region", host::DataClass::Public),
    ("name", host::DataClass::Pii),
    ("email", host::DataClass::Pii),
    ("iban", host::DataClass::Pii),
    ("balance", host::DataClass::Sensitive),
];

/// Row `i`: homes cycle through the three regions, so decisions differ per row.
fn host_row(i: usize) -> Vec<host::Value> {
    vec![
        host::Value::Bigint(i as i64),
        host::Value::Text(REGIONS[i % 3].into()),
        host::Value::Text(format!("Customer {i}")),
        host::Value::Text(format!("customer{i}@example.eu")),
        host::Value::Text(format!("DE89370400440{i:09}")),
        host::Value::Decimal(host::Decimal {
            unscaled: (i * 100).to_string(),
            scale: 2,
        }),
    ]
}

fn host_batch(rows: usize) -> host::RowBatch {
    host::RowBatch {
        table: host::Table {
            name: "accounts".into(),
            columns: COLUMNS
                .iter()
                .map(|(name, class)| host::Column {
                    name: (*name).into(),
                    class: *class,
                })
                .collect(),
        },
        regions: REGIONS.iter().map(|r| (*r).to_string()).collect(),
        home_regions: (0..rows).map(|i| (i % 3) as u16).collect(),
        rows: (0..rows).map(host_row).collect(),
    }
}

fn guest_class(class: host::DataClass) -> guest::DataClass {
    match class {
        host::DataClass::Public => guest::DataClass::Public,
        host::DataClass::Sensitive => guest::DataClass::Sensitive,
        host::DataClass::Pii => guest::DataClass::Pii,
    }
}

fn guest_value(value: &host::Value) -> guest::Value {
    match value {
        host::Value::Bigint(i) => guest::Value::Bigint(*i),
        host::Value::Text(t) => guest::Value::Text(t.clone()),
        host::Value::Decimal(d) => guest::Value::Decimal(guest::Decimal {
            unscaled: d.unscaled.clone(),
            scale: d.scale,
        }),
        _ => guest::Value::Null,
    }
}

fn guest_batch(batch: &host::RowBatch) -> guest::RowBatch {
    let columns: Vec<(&str, guest::DataClass)> = batch
        .table
        .columns
        .iter()
        .map(|c| (c.name.as_str(), guest_class(c.class)))
        .collect();
    let rows: Vec<(u16, Vec<guest::Value>)> = batch
        .home_regions
        .iter()
        .zip(&batch.rows)
        .map(|(home, row)| (*home, row.iter().map(guest_value).collect()))
        .collect();
    domicile_sdk_wasm::testing::batch("accounts", &columns, &REGIONS, &rows)
}

/// Median wall time of `f` over `samples` runs, after `samples / 10` warm-up runs.
fn median(samples: usize, mut f: impl FnMut()) -> Duration {
    for _ in 0..samples / 10 {
        f();
    }
    let mut times: Vec<Duration> = (0..samples)
        .map(|_| {
            let started = Instant::now();
            f();
            started.elapsed()
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}

fn samples_for(batch: usize) -> usize {
    match batch {
        1 => 5_000,
        64 => 1_000,
        _ => 200,
    }
}

fn nanos(d: Duration) -> f64 {
    d.as_secs_f64() * 1e9
}

fn main() -> anyhow::Result<()> {
    let runtime = PluginRuntime::new(PluginLimits {
        // A bench measures cost, not the deadline; keep it out of the way.
        call_deadline: Duration::from_secs(5),
        ..PluginLimits::default()
    })?;
    let policy = ResidencyPolicyPlugin::load(&runtime, &wasm("eu_gdpr"))?;
    let redactor = RedactorPlugin::load(&runtime, &wasm("pii_redactor"), b"bench secret")?;

    println!("EU residency policy, may-leave (query result to ap-southeast), median per call:");
    println!();
    println!("| batch | native ns/row | WASM ns/row | WASM / native | WASM us/call |");
    println!("| --- | --- | --- | --- | --- |");
    for rows in [1usize, 64, 1024] {
        let host = host_batch(rows);
        let native_input = guest_batch(&host);
        let samples = samples_for(rows);
        let native = median(samples, || {
            std::hint::black_box(eu_gdpr::EuGdpr::may_leave(
                native_input.clone(),
                2,
                guest::Purpose::QueryResult,
            ));
        });
        let sandboxed = median(samples, || {
            std::hint::black_box(
                policy
                    .may_leave(&host, 2, host::Purpose::QueryResult)
                    .expect("policy answers"),
            );
        });
        println!(
            "| {rows} | {:.0} | {:.0} | {:.1}x | {:.1} |",
            nanos(native) / rows as f64,
            nanos(sandboxed) / rows as f64,
            nanos(sandboxed) / nanos(native),
            nanos(sandboxed) / 1e3,
        );
    }

    let empty = host::StepPayload {
        saga_type: "transfer".into(),
        step: "debit".into(),
        fields: Vec::new(),
    };
    let fixed = median(5_000, || {
        std::hint::black_box(
            futures::executor::block_on(policy.may_send_step(&empty, "eu-central", "us-east"))
                .expect("policy answers"),
        );
    });
    println!();
    println!(
        "fixed cost of one sandboxed call (fresh store, instantiation, trivial call): {:.1} us median",
        nanos(fixed) / 1e3
    );

    println!();
    println!("PII redactor (drop name, mask email, tokenize IBAN with the host's HMAC):");
    println!();
    println!("| batch | us/batch | events/s |");
    println!("| --- | --- | --- |");
    let table = host_batch(0).table;
    for events in [1usize, 64, 1024] {
        let batch = EventBatch {
            table: table.clone(),
            source_region: "eu-central".into(),
            events: (0..events)
                .map(|i| ChangeEvent {
                    op: Operation::Update,
                    key: vec![host::Value::Bigint(i as i64)],
                    before: Some(host_row(i)),
                    after: Some(host_row(i + 1)),
                })
                .collect(),
        };
        let per_batch = median(samples_for(events), || {
            std::hint::black_box(redactor.redact(&batch).expect("redactor answers"));
        });
        println!(
            "| {events} | {:.1} | {:.0} |",
            nanos(per_batch) / 1e3,
            events as f64 / per_batch.as_secs_f64()
        );
    }
    Ok(())
}
