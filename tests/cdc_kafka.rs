//! CDC through Kafka (a real tansu broker): three regions publish their redacted change
//! streams to `domicile.cdc.<region>.<table>` and replicate from each other's topics.
//! Every message of every topic is read back by two Kafka clients no one here wrote
//! (librdkafka through `domicile audit scan --kafka`, and Python's confluent-kafka): no
//! name, email or IBAN in clear in any key, value or header, the redacted forms are
//! there, the envelopes are valid; a planted canary is found. kill -9 of a publishing
//! node loses no change.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use domicile_tests::{
    KafkaBroker, Mesh, TestNode, column_strings, domicile_binary, ids, spawn_acked_writer,
};

const REGIONS: [&str; 3] = ["us-east", "eu-central", "ap-southeast"];

const ACCOUNTS: &str = "CREATE TABLE accounts (
    id BIGINT PRIMARY KEY, region TEXT NOT NULL, name TEXT NOT NULL, email TEXT, iban TEXT,
    balance DECIMAL(18,2) NOT NULL, currency TEXT NOT NULL
) WITH (locality = 'regional by row', region_column = 'region',
        pii = 'name, email, iban', sensitive = 'balance', cdc = 'on')";

/// (home region, canary values) of the rows this test writes.
const CANARIES: [(&str, [&str; 3]); 2] = [
    (
        "us-east",
        [
            "Kafka Usname",
            "kafka.us@example.com",
            "US00KAFKA00000000001",
        ],
    ),
    (
        "eu-central",
        [
            "Kafka Euname",
            "kafka.eu@example.eu",
            "DE00KAFKA00000000002",
        ],
    ),
];

/// Runs `sql` on `node` until `done` accepts the answer, or panics after 60 s.
async fn wait_for(
    node: &TestNode,
    sql: &str,
    done: impl Fn(&[arrow::array::RecordBatch]) -> bool,
) -> Vec<arrow::array::RecordBatch> {
    node.wait_for(sql, Duration::from_secs(60), done).await
}

fn python() -> PathBuf {
    std::env::var_os("DOMICILE_PYTHON")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|home| PathBuf::from(home).join(".cache/domicile/venv/bin/python"))
        })
        .expect("DOMICILE_PYTHON or HOME")
}

fn canary_file(dir: &std::path::Path) -> PathBuf {
    let mut text = String::new();
    for (region, values) in CANARIES {
        for value in values {
            text.push_str(&format!(
                "[[canary]]\nregion = \"{region}\"\nvalue = \"{value}\"\n"
            ));
        }
    }
    let path = dir.join("canaries.toml");
    std::fs::write(&path, text).expect("canary file");
    path
}

/// `domicile audit scan --kafka`: its exit status and report.
fn scan_topics(
    broker: &KafkaBroker,
    canaries: &std::path::Path,
) -> (std::process::ExitStatus, String) {
    let scan = Command::new(domicile_binary())
        .args(["audit", "scan", "--canaries"])
        .arg(canaries)
        .args(["--kafka", &broker.brokers()])
        .output()
        .expect("audit scan runs");
    (
        scan.status,
        String::from_utf8_lossy(&scan.stdout).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_topics_carry_only_redacted_valid_envelopes() {
    let broker = KafkaBroker::start().expect("tansu starts");
    let config = format!("\n[cdc]\nkafka_brokers = \"{}\"\n", broker.brokers());
    let mut mesh = Mesh::start_with(&REGIONS, &config).expect("mesh starts");
    for node in &mesh.nodes {
        node.upload_plugin("cdc-redactor", "pii_redactor", 1)
            .expect("redactor upload");
        let mut admin = node.client("admin").await.expect("login");
        admin.update(ACCOUNTS).await.expect("create accounts");
    }
    for (index, (region, [name, email, iban])) in CANARIES.into_iter().enumerate() {
        let mut writer = mesh.node(region).client("writer").await.expect("login");
        writer
            .update(&format!(
                "INSERT INTO accounts VALUES ({}, '{region}', '{name}', '{email}', '{iban}', 5.00, 'EUR')",
                index + 1
            ))
            .await
            .expect("insert");
    }
    let mut us_writer = mesh.node("us-east").client("writer").await.expect("login");
    us_writer
        .update("UPDATE accounts SET currency = 'USD' WHERE id = 1")
        .await
        .expect("update");

    // Replicas through Kafka, redacted.
    for node in [mesh.node("eu-central"), mesh.node("ap-southeast")] {
        wait_for(
            node,
            "SELECT email, currency FROM global.accounts WHERE id = 1",
            |b| {
                column_strings(b, "email") == ["k***@example.com"]
                    && column_strings(b, "currency") == ["USD"]
            },
        )
        .await;
    }
    wait_for(
        mesh.node("us-east"),
        "SELECT email FROM global.accounts WHERE id = 2",
        |b| column_strings(b, "email") == ["k***@example.eu"],
    )
    .await;

    // kill -9 of the US node while it publishes: nothing acknowledged is lost.
    let endpoint = mesh.node("us-east").endpoint();
    let writer = spawn_acked_writer(
        endpoint,
        (100..400u64)
            .map(|id| {
                let sql = format!(
                    "INSERT INTO accounts VALUES ({id}, 'us-east', 'N', 'n@example.com', 'X', 1.00, 'USD')"
                );
                (id.to_string(), sql)
            })
            .collect(),
    );
    domicile_tests::wait_for_more_ids(
        mesh.node("us-east"),
        "SELECT id FROM accounts WHERE id >= 100",
        20,
        Duration::from_secs(60),
    )
    .await;
    mesh.kill9("us-east");
    let acked = writer.await.expect("writer");
    assert!(acked.len() > 10, "the writer got going: {}", acked.len());
    mesh.restart("us-east").expect("restart");
    let source = ids(
        mesh.node("us-east"),
        "SELECT id FROM accounts WHERE id >= 100",
    )
    .await;
    assert!(
        acked.is_subset(&source),
        "acknowledged rows lost at the source"
    );
    wait_for(
        mesh.node("eu-central"),
        "SELECT id FROM global.accounts WHERE id >= 100",
        |b| column_strings(b, "id").into_iter().collect::<BTreeSet<_>>() == source,
    )
    .await;

    // Every byte of every message, read by librdkafka (`domicile audit scan --kafka`).
    let dir = tempfile::tempdir().expect("tempdir");
    let canaries = canary_file(dir.path());
    let (status, report) = scan_topics(&broker, &canaries);
    assert!(status.success(), "leaks in the topics: {report}");
    let messages: usize = report
        .split("scanned ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(messages >= source.len() + 3, "{report}");

    // Python's confluent-kafka validates every envelope and searches every byte.
    let mut check = Command::new(python());
    check
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/python/tools/check_cdc_topics.py"
        ))
        .arg(broker.brokers())
        .arg((source.len() + 3).to_string());
    for (_, values) in CANARIES {
        check.args(values);
    }
    let checked = check
        .output()
        .expect("python runs (run tests/run.sh once for its venv)");
    assert!(
        checked.status.success(),
        "envelope check failed: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&checked.stdout).expect("summary JSON");
    let tables: BTreeSet<String> = summary["tables"]
        .as_array()
        .expect("tables")
        .iter()
        .map(|t| {
            format!(
                "{}.{}",
                t[0].as_str().unwrap_or(""),
                t[1].as_str().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(
        tables,
        BTreeSet::from([
            "eu-central.accounts".to_string(),
            "us-east.accounts".to_string()
        ])
    );

    // The scan can fail: a canary planted in a topic is found (and the nodes' consumers
    // skip the garbage message).
    let planted = Command::new(python())
        .arg("-c")
        .arg(format!(
            "from confluent_kafka import Producer\n\
             errors = []\n\
             p = Producer({{'bootstrap.servers': '{}'}})\n\
             p.produce('domicile.cdc.eu-central.accounts', key=b'{{}}', value=b'leaked {}',\n\
                       on_delivery=lambda err, msg: errors.append(err))\n\
             assert p.flush(30) == 0 and errors == [None], errors\n",
            broker.brokers(),
            CANARIES[1].1[2]
        ))
        .output()
        .expect("python runs");
    assert!(planted.status.success(), "{planted:?}");
    let (status, report) = scan_topics(&broker, &canaries);
    assert_eq!(status.code(), Some(1), "{report}");
    assert!(
        report.contains("LEAK") && report.contains("DE00KAFKA00000000002"),
        "{report}"
    );
}

/// Issue 21: the consumer trusted what it read. Forged and broken messages written to a
/// region's topic (a `u64::MAX` sequence number, an envelope naming another region, a
/// decimal no reader can decode, garbage, a topic of a region outside the mesh) are
/// quarantined and listed in `system.cdc_quarantine`; the replica stays readable and
/// keeps following real changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_messages_are_quarantined_and_replication_goes_on() {
    let broker = KafkaBroker::start().expect("tansu starts");
    let config = format!("\n[cdc]\nkafka_brokers = \"{}\"\n", broker.brokers());
    let regions = ["us-east", "eu-central"];
    let mesh = Mesh::start_with(&regions, &config).expect("mesh starts");
    for node in &mesh.nodes {
        node.upload_plugin("cdc-redactor", "pii_redactor", 1)
            .expect("redactor upload");
        let mut admin = node.client("admin").await.expect("login");
        admin.update(ACCOUNTS).await.expect("create accounts");
    }
    let mut writer = mesh.node("us-east").client("writer").await.expect("login");
    writer
        .update(
            "INSERT INTO accounts VALUES (1, 'us-east', 'A', 'a@example.com', 'US00', 1.00, 'USD')",
        )
        .await
        .expect("insert");
    let eu = mesh.node("eu-central");
    wait_for(eu, "SELECT id FROM global.accounts", |b| {
        column_strings(b, "id") == ["1"]
    })
    .await;

    let forged = Command::new(python())
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python/tools/forge_cdc_messages.py"))
        .args([&broker.brokers(), "us-east", "accounts", "eu-central"])
        .output()
        .expect("python runs (run tests/run.sh once for its venv)");
    assert!(forged.status.success(), "{forged:?}");

    let records = wait_for(
        eu,
        "SELECT reason FROM system.cdc_quarantine ORDER BY quarantined_at",
        |b| column_strings(b, "reason").len() >= 5,
    )
    .await;
    let reasons = column_strings(&records, "reason").join("\n");
    for expected in [
        "outside 1..=i64::MAX",
        "the envelope names region eu-central",
        "DECIMAL",
        "unreadable envelope",
        "domicile.cdc.xx-evil.accounts",
    ] {
        assert!(
            reasons.contains(expected),
            "{expected} missing in:\n{reasons}"
        );
    }
    // Real changes still replicate, and the replica reads (no panic on a bad decimal).
    writer
        .update(
            "INSERT INTO accounts VALUES (2, 'us-east', 'B', 'b@example.com', 'US01', 2.00, 'USD')",
        )
        .await
        .expect("insert after the attack");
    writer
        .update("UPDATE accounts SET currency = 'EUR' WHERE id = 1")
        .await
        .expect("update after the attack");
    let rows = wait_for(
        eu,
        "SELECT id, currency FROM global.accounts ORDER BY id",
        |b| column_strings(b, "currency") == ["EUR", "USD"],
    )
    .await;
    assert_eq!(column_strings(&rows, "id"), ["1", "2"]);
    let mut reader = eu.client("admin").await.expect("login");
    let all = reader
        .query("SELECT * FROM global.accounts")
        .await
        .expect("the replica reads");
    assert!(
        all[0].schema().field_with_name("fee").is_err(),
        "no column came from a refused message"
    );
    let cdc = reader
        .query("SELECT quarantined_messages FROM system.cdc")
        .await
        .expect("system.cdc");
    assert_eq!(column_strings(&cdc, "quarantined_messages"), ["5"]);
    let sources = reader
        .query("SELECT DISTINCT source_region FROM global.accounts")
        .await
        .expect("sources");
    assert_eq!(
        column_strings(&sources, "source_region"),
        ["us-east"],
        "nothing from a region outside the mesh"
    );
}
