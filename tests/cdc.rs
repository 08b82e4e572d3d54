//! CDC over the embedded transport, on a three-region mesh: changes of `accounts`
//! (cdc = on) reach every other region's `global.accounts` as the source's redactor and
//! residency policy let them (never a name, email or IBAN in clear, in no file of
//! another region); updates and deletes replicate; kill -9 of the source or of a
//! consumer mid-stream loses nothing; without a redactor, or with a failing one, events
//! are held and published once a working one is active; a redactor swapped at run time
//! applies to later events; a change the policy refuses to let leave is withheld and
//! audited, and the stream moves past it.

use std::collections::BTreeSet;
use std::time::Duration;

use domicile_tests::{Mesh, TestNode, column_strings, ids, row_count, spawn_acked_writer};

const REGIONS: [&str; 3] = ["us-east", "eu-central", "ap-southeast"];

const ACCOUNTS: &str = "CREATE TABLE accounts (
    id BIGINT PRIMARY KEY, region TEXT NOT NULL, name TEXT NOT NULL, email TEXT, iban TEXT,
    balance DECIMAL(18,2) NOT NULL, currency TEXT NOT NULL
) WITH (locality = 'regional by row', region_column = 'region',
        pii = 'name, email, iban', sensitive = 'balance', cdc = 'on')";

/// A mesh whose nodes all have `accounts`; `redactors` lists the regions that get the
/// bundled PII redactor now.
async fn mesh_with_accounts(redactors: &[&str]) -> Mesh {
    let mesh = Mesh::start(&REGIONS).expect("mesh starts");
    for node in &mesh.nodes {
        if redactors.contains(&node.region.as_str()) {
            node.upload_plugin("cdc-redactor", "pii_redactor", 1)
                .expect("redactor upload");
        }
        let mut admin = node.client("admin").await.expect("login");
        admin.update(ACCOUNTS).await.expect("create accounts");
    }
    mesh
}

fn insert(id: u64, region: &str, name: &str, email: &str, iban: &str) -> String {
    format!(
        "INSERT INTO accounts VALUES ({id}, '{region}', '{name}', '{email}', '{iban}', 10.00, 'EUR')"
    )
}

/// Runs `sql` on `node` until `done` accepts the answer, or panics after 30 s.
async fn wait_for(
    node: &TestNode,
    sql: &str,
    done: impl Fn(&[arrow::array::RecordBatch]) -> bool,
) -> Vec<arrow::array::RecordBatch> {
    node.wait_for(sql, Duration::from_secs(30), done).await
}

/// Every byte of every file under `node`'s data directory.
fn files_contain(node: &TestNode, needle: &str) -> Option<String> {
    let mut stack = vec![node.data_dir()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("data dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path)
                && memchr::memmem::find(&bytes, needle.as_bytes()).is_some()
            {
                return Some(path.display().to_string());
            }
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_hold_only_what_redactor_and_policy_let_leave() {
    let mesh = mesh_with_accounts(&REGIONS).await;
    let us = mesh.node("us-east");
    let eu = mesh.node("eu-central");
    let ap = mesh.node("ap-southeast");
    let mut us_writer = us.client("writer").await.expect("login");
    let mut eu_writer = eu.client("writer").await.expect("login");
    us_writer
        .update(&insert(
            1001,
            "us-east",
            "Canary Usname",
            "canary.us@example.com",
            "US00CANARY0000000001",
        ))
        .await
        .expect("us insert");
    eu_writer
        .update(&insert(
            2001,
            "eu-central",
            "Canary Euname",
            "canary.eu@example.eu",
            "DE00CANARY0000000002",
        ))
        .await
        .expect("eu insert");

    // Each region's redactor masks the email and tokenizes the IBAN (declaring both
    // de-identified); the policies let those leave. Name (pii) and balance (sensitive)
    // never leave.
    for (id, home, email, others) in [
        (1001, "us-east", "c***@example.com", [eu, ap]),
        (2001, "eu-central", "c***@example.eu", [us, ap]),
    ] {
        for node in others {
            let batches = wait_for(
                node,
                &format!("SELECT * FROM global.accounts WHERE id = {id}"),
                |b| row_count(b) == 1,
            )
            .await;
            let schema = batches[0].schema();
            assert!(schema.field_with_name("name").is_err(), "{schema:?}");
            assert!(schema.field_with_name("balance").is_err(), "{schema:?}");
            assert_eq!(column_strings(&batches, "email"), [email]);
            let iban = column_strings(&batches, "iban");
            assert!(iban[0].starts_with("tok_"), "{iban:?}");
            assert_eq!(column_strings(&batches, "source_region"), [home]);
            assert_eq!(column_strings(&batches, "region"), [home]);
            assert_eq!(column_strings(&batches, "currency"), ["EUR"]);
        }
    }

    // Updates and deletes replicate.
    us_writer
        .update("UPDATE accounts SET email = 'new.address@example.org' WHERE id = 1001")
        .await
        .expect("update");
    for node in [eu, ap] {
        wait_for(
            node,
            "SELECT email FROM global.accounts WHERE id = 1001",
            |b| column_strings(b, "email") == ["n***@example.org"],
        )
        .await;
    }
    eu_writer
        .update("DELETE FROM accounts WHERE id = 2001")
        .await
        .expect("delete");
    for node in [us, ap] {
        wait_for(
            node,
            "SELECT id FROM global.accounts WHERE id = 2001",
            |b| row_count(b) == 0,
        )
        .await;
    }

    // Replicas are read-only.
    let mut admin = ap.client("admin").await.expect("login");
    let refused = admin
        .update("DELETE FROM global.accounts")
        .await
        .expect_err("replicas are read-only");
    assert!(refused.message().contains("read-only replica"), "{refused}");

    // No clear-text PII of a region in any file of another region's node.
    for (home, canaries) in [
        (
            "us-east",
            [
                "Canary Usname",
                "canary.us@example.com",
                "US00CANARY0000000001",
                "new.address@example.org",
            ],
        ),
        (
            "eu-central",
            [
                "Canary Euname",
                "canary.eu@example.eu",
                "DE00CANARY0000000002",
                "Canary Euname",
            ],
        ),
    ] {
        for node in mesh.nodes.iter().filter(|n| n.region != home) {
            for canary in canaries {
                assert_eq!(
                    files_contain(node, canary),
                    None,
                    "{home}'s {canary} found on {}",
                    node.region
                );
            }
        }
    }

    // Lag per source region is visible, and each publication was audited.
    wait_for(
        ap,
        "SELECT region FROM system.regions WHERE NOT is_self AND replica_lag_ms = 0",
        |b| row_count(b) == 2,
    )
    .await;
    let mut us_reader = us.client("reader").await.expect("login");
    let audit = us_reader
        .query("SELECT decision, destination_region FROM system.audit WHERE path = 'replication'")
        .await
        .expect("audit");
    assert!(row_count(&audit) >= 2, "replication decisions audited");
    assert!(
        column_strings(&audit, "destination_region")
            .iter()
            .all(|d| d.contains("eu-central") && d.contains("ap-southeast"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_of_source_or_consumer_mid_stream_loses_no_change() {
    let mut mesh = mesh_with_accounts(&REGIONS).await;
    let endpoint = mesh.node("us-east").endpoint();
    // A writer on us-east, one row per statement, recording what was acknowledged.
    let writer = spawn_acked_writer(
        endpoint,
        (10_000..10_400u64)
            .map(|id| {
                let sql = insert(id, "us-east", "N", "n@example.com", "X");
                (id.to_string(), sql)
            })
            .collect(),
    );
    // Kill the consumer while changes flow, then the source.
    domicile_tests::wait_for_more_ids(
        mesh.node("us-east"),
        "SELECT id FROM accounts WHERE id >= 10000",
        20,
        Duration::from_secs(60),
    )
    .await;
    mesh.kill9("eu-central");
    tokio::time::sleep(Duration::from_millis(500)).await;
    mesh.kill9("us-east");
    let acked = writer.await.expect("writer task");
    assert!(acked.len() > 10, "the writer got going: {}", acked.len());
    mesh.restart("us-east").expect("us restarts");
    mesh.restart("eu-central").expect("eu restarts");

    // The source's rows after recovery: every acknowledged row, maybe a few more
    // (committed, the acknowledgement lost in the crash).
    let source = ids(mesh.node("us-east"), "SELECT id FROM accounts").await;
    assert!(
        acked.is_subset(&source),
        "acknowledged rows lost at the source"
    );
    // Both replicas converge to exactly the source's rows.
    for region in ["eu-central", "ap-southeast"] {
        wait_for(
            mesh.node(region),
            "SELECT id FROM global.accounts WHERE source_region = 'us-east' ORDER BY id",
            |b| column_strings(b, "id").into_iter().collect::<BTreeSet<_>>() == source,
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_held_without_a_working_redactor_and_swaps_apply_to_later_events() {
    // us-east starts without a redactor.
    let mesh = mesh_with_accounts(&["eu-central", "ap-southeast"]).await;
    let us = mesh.node("us-east");
    let eu = mesh.node("eu-central");
    let mut writer = us.client("writer").await.expect("login");
    let mut reader = us.client("reader").await.expect("login");
    writer
        .update(&insert(
            1,
            "us-east",
            "Held Name",
            "held@example.com",
            "US11",
        ))
        .await
        .expect("insert");
    let held = wait_for(
        us,
        "SELECT outbox_events, held_reason FROM system.cdc",
        |b| column_strings(b, "held_reason")[0].contains("no CDC redactor"),
    )
    .await;
    assert_eq!(column_strings(&held, "outbox_events"), ["1"]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut eu_reader = eu.client("reader").await.expect("login");
    let none = eu_reader
        .query("SELECT id FROM global.accounts")
        .await
        .map(|b| row_count(&b))
        .unwrap_or(0);
    assert_eq!(none, 0, "nothing published without a redactor");

    // With the bundled redactor (v1) the held event goes out, redacted.
    us.upload_plugin("cdc-redactor", "pii_redactor", 1)
        .expect("upload v1");
    wait_for(eu, "SELECT email FROM global.accounts WHERE id = 1", |b| {
        column_strings(b, "email") == ["h***@example.com"]
    })
    .await;

    // A failing redactor holds later events; nothing is dropped or sent in clear.
    us.upload_plugin("cdc-redactor", "guest_failing_redactor", 2)
        .expect("upload v2");
    writer
        .update(&insert(
            2,
            "us-east",
            "Second Name",
            "second@example.com",
            "US22",
        ))
        .await
        .expect("insert");
    wait_for(us, "SELECT held_reason FROM system.cdc", |b| {
        column_strings(b, "held_reason")[0].contains("failing redactor")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let absent = eu_reader
        .query("SELECT id FROM global.accounts WHERE id = 2")
        .await
        .expect("replica");
    assert_eq!(row_count(&absent), 0, "held while the redactor fails");
    let metrics = reader
        .query("SELECT outbox_events FROM system.cdc")
        .await
        .expect("cdc");
    assert_eq!(column_strings(&metrics, "outbox_events"), ["1"]);

    // Swapped for a stricter one (v3): the held event leaves without email and IBAN,
    // and the earlier event keeps what v1 made of it.
    us.upload_plugin("cdc-redactor", "guest_public_only_redactor", 3)
        .expect("upload v3");
    let rows = wait_for(
        eu,
        "SELECT id, email, iban FROM global.accounts ORDER BY id",
        |b| row_count(b) == 2,
    )
    .await;
    assert_eq!(column_strings(&rows, "email"), ["h***@example.com", ""]);
    let iban = column_strings(&rows, "iban");
    assert!(
        iban[0].starts_with("tok_") && iban[1].is_empty(),
        "{iban:?}"
    );
    wait_for(
        us,
        "SELECT held_reason, outbox_events FROM system.cdc",
        |b| column_strings(b, "held_reason") == [""] && column_strings(b, "outbox_events") == ["0"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_the_policy_refuses_to_replicate_is_withheld_and_audited() {
    // us-east without a redactor: its change waits in the outbox.
    let mesh = mesh_with_accounts(&["eu-central", "ap-southeast"]).await;
    let us = mesh.node("us-east");
    let eu = mesh.node("eu-central");
    let mut writer = us.client("writer").await.expect("login");
    writer
        .update(&insert(
            7,
            "us-east",
            "Kept Home",
            "kept@example.com",
            "US77",
        ))
        .await
        .expect("insert");
    // A policy that lets nothing leave, then a redactor: the event is decided, refused,
    // recorded, and the stream moves past it.
    us.upload_policy("guest_strict_policy", 2)
        .expect("strict policy");
    us.upload_plugin("cdc-redactor", "pii_redactor", 1)
        .expect("redactor");
    let cdc = wait_for(
        us,
        "SELECT outbox_events, withheld_events, relayed_events, held_reason FROM system.cdc",
        |b| column_strings(b, "outbox_events") == ["0"],
    )
    .await;
    assert_eq!(column_strings(&cdc, "withheld_events"), ["1"]);
    assert_eq!(column_strings(&cdc, "relayed_events"), ["0"]);
    assert_eq!(column_strings(&cdc, "held_reason"), [""]);
    let mut reader = us.client("reader").await.expect("login");
    let audit = reader
        .query(
            "SELECT decision, reason FROM system.audit WHERE path = 'replication' \
             AND table_name = 'accounts'",
        )
        .await
        .expect("audit");
    assert_eq!(column_strings(&audit, "decision"), ["deny"]);
    assert!(column_strings(&audit, "reason")[0].contains("strict policy"));
    // eu-central's follower moves past the withheld change without a row for it.
    wait_for(
        eu,
        "SELECT replica_applied_seq FROM system.regions WHERE region = 'us-east'",
        |b| column_strings(b, "replica_applied_seq") == ["1"],
    )
    .await;
    let mut eu_reader = eu.client("reader").await.expect("login");
    let rows = eu_reader
        .query("SELECT id FROM global.accounts")
        .await
        .map(|b| row_count(&b))
        .unwrap_or(0);
    assert_eq!(rows, 0, "a withheld change never reaches a replica");
}
