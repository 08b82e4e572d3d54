//! Residency enforcement end to end, against real nodes with their jurisdiction's bundled
//! policy: results leaving for a principal of another region carry exactly what the
//! policy allows; a row homed elsewhere is refused and leaves no byte on disk; a policy
//! v2 uploaded at run time changes outcomes and a rollback restores them; every decision
//! is in `system.audit`; a tampered audit entry is caught by `domicile audit verify`.

use std::process::Command;

use domicile_tests::{Client, TestNode, column_strings, domicile_binary, row_count};
use tonic::Code;

const ACCOUNTS: &str = "CREATE TABLE accounts (id BIGINT PRIMARY KEY, region TEXT NOT NULL, \
     name TEXT, email TEXT, iban TEXT, balance DECIMAL(18,2) NOT NULL, currency TEXT NOT NULL) \
     WITH (locality = 'regional by row', region_column = 'region', pii = 'name, email, iban', \
     sensitive = 'balance')";

async fn eu_node_with_accounts() -> (TestNode, Client) {
    let node = TestNode::start("eu-central").expect("node starts");
    let mut admin = node.client("admin").await.expect("admin logs in");
    admin.update(ACCOUNTS).await.expect("create accounts");
    admin
        .update(
            "INSERT INTO accounts VALUES \
             (1, 'eu-central', 'Ana Lopez', 'ana.lopez@example.eu', 'DE89370400440532013000', 120.50, 'EUR'), \
             (2, 'eu-central', 'Jan Novak', 'jan@example.eu', NULL, 7.00, 'EUR')",
        )
        .await
        .expect("EU rows stored on the EU node");
    (node, admin)
}

async fn audit(client: &mut Client) -> Vec<(String, String, String, String)> {
    let batches = client
        .query(
            "SELECT principal, path, decision, destination_region FROM system.audit ORDER BY seq",
        )
        .await
        .expect("system.audit");
    let column = |name| column_strings(&batches, name);
    let (principals, paths, decisions, destinations) = (
        column("principal"),
        column("path"),
        column("decision"),
        column("destination_region"),
    );
    (0..principals.len())
        .map(|i| {
            (
                principals[i].clone(),
                paths[i].clone(),
                decisions[i].clone(),
                destinations[i].clone(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reader_from_another_region_gets_exactly_what_the_eu_policy_allows() {
    let (node, mut admin) = eu_node_with_accounts().await;
    let sql = "SELECT id, name, email, iban, balance, currency FROM accounts ORDER BY id";

    // At home: everything.
    let home = admin.query(sql).await.expect("local read");
    assert_eq!(
        column_strings(&home, "email"),
        ["ana.lopez@example.eu", "jan@example.eu"]
    );
    assert_eq!(column_strings(&home, "balance"), ["120.50", "7.00"]);

    // From ap-southeast: EU README — pii masked (last four characters), sensitive
    // removed, public kept.
    let mut apac = node.client("apac").await.expect("apac logs in");
    let away = apac.query(sql).await.expect("read from another region");
    assert_eq!(column_strings(&away, "id"), ["1", "2"]);
    assert_eq!(column_strings(&away, "currency"), ["EUR", "EUR"]);
    assert_eq!(column_strings(&away, "name"), ["*****opez", "*****ovak"]);
    assert_eq!(
        column_strings(&away, "email"),
        ["****************e.eu", "**********e.eu"]
    );
    assert_eq!(
        column_strings(&away, "iban"),
        ["******************3000", ""]
    );
    assert_eq!(
        column_strings(&away, "balance"),
        ["", ""],
        "sensitive: removed"
    );
    // Derived values are computed from what was released, never from the originals.
    let derived = apac
        .query("SELECT count(*) AS n, max(length(email)) AS longest FROM accounts WHERE email LIKE 'ana%'")
        .await
        .expect("aggregate from another region");
    assert_eq!(
        column_strings(&derived, "n"),
        ["0"],
        "a filter cannot see masked values"
    );

    let entries = audit(&mut admin).await;
    assert!(entries.contains(&(
        "admin".into(),
        "store".into(),
        "allow".into(),
        "eu-central".into()
    )));
    let releases: Vec<_> = entries
        .iter()
        .filter(|(principal, path, _, _)| principal == "apac" && path == "query-result")
        .collect();
    assert_eq!(releases.len(), 2, "both queries audited: {entries:?}");
    assert!(
        releases
            .iter()
            .all(|(_, _, decision, to)| decision == "allow-with" && to == "ap-southeast")
    );
    assert!(
        !entries
            .iter()
            .any(|(principal, path, _, _)| principal == "admin" && path == "query-result"),
        "a read at home is no transfer"
    );
    let reasons = admin
        .query("SELECT reason, plugin_jurisdiction, plugin_version FROM system.audit WHERE principal = 'apac'")
        .await
        .expect("reasons");
    let reason = &column_strings(&reasons, "reason")[0];
    assert!(
        reason.contains("email=mask") && reason.contains("balance=remove"),
        "{reason}"
    );
    assert_eq!(column_strings(&reasons, "plugin_version")[0], "1");
    let text = format!(
        "{:?}",
        admin
            .query("SELECT * FROM system.audit")
            .await
            .expect("audit")
    );
    assert!(!text.contains("ana.lopez") && !text.contains("Ana Lopez") && !text.contains("DE89"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_row_homed_elsewhere_is_refused_and_leaves_no_byte_on_disk() {
    let mut node = TestNode::start("us-east").expect("node starts");
    let mut admin = node.client("admin").await.expect("admin logs in");
    admin.update(ACCOUNTS).await.expect("create accounts");
    admin
        .update("INSERT INTO accounts VALUES (10, 'us-east', 'Sam Lee', 'sam@example.com', NULL, 1.00, 'USD')")
        .await
        .expect("a US row is stored on the US node");
    let canary = "canary-eu-only-7f3a9c";
    let refused = admin
        .update(&format!(
            "INSERT INTO accounts VALUES (11, 'eu-central', '{canary}', '{canary}@example.eu', 'DE00{canary}', 5.00, 'EUR')"
        ))
        .await
        .expect_err("an EU-homed row on the US node");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused}");
    assert!(
        refused
            .message()
            .contains("region eu-central is not a peer of this node"),
        "{refused}"
    );
    assert!(
        !refused.message().contains(canary),
        "no PII in the error: {refused}"
    );
    assert_eq!(
        row_count(&admin.query("SELECT id FROM accounts").await.expect("read")),
        1
    );

    node.stop().expect("clean stop");
    let mut found = Vec::new();
    for entry in walk(&node.data_dir()) {
        let bytes = std::fs::read(&entry).expect("read file");
        if bytes.windows(canary.len()).any(|w| w == canary.as_bytes()) {
            found.push(entry);
        }
    }
    assert!(found.is_empty(), "the refused row reached {found:?}");
    let logs = node.logs();
    assert!(!logs.contains(canary), "the refused row reached the log");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("data dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[tokio::test(flavor = "multi_thread")]
async fn a_policy_uploaded_at_run_time_changes_outcomes_and_rollback_restores_them() {
    let (node, mut admin) = eu_node_with_accounts().await;
    let mut apac = node.client("apac").await.expect("apac logs in");
    apac.query("SELECT id, email FROM accounts")
        .await
        .expect("v1 releases masked rows");

    node.upload_policy("guest_strict_policy", 2)
        .expect("v2 uploaded");
    let store = admin
        .update("INSERT INTO accounts VALUES (3, 'eu-central', 'Eva', 'eva@example.eu', NULL, 1.00, 'EUR')")
        .await
        .expect_err("v2 stores nothing");
    assert_eq!(store.code(), Code::PermissionDenied, "{store}");
    assert!(
        store.message().contains("strict policy: nothing is stored"),
        "{store}"
    );
    let read = apac
        .query("SELECT id, email FROM accounts")
        .await
        .expect_err("v2 releases nothing");
    assert!(
        read.message().contains("strict policy: nothing leaves"),
        "{read}"
    );
    assert_eq!(
        row_count(
            &admin
                .query("SELECT id FROM accounts")
                .await
                .expect("home read")
        ),
        2,
        "reads at home need no transfer decision"
    );

    let rollback = Command::new(domicile_binary())
        .args(["plugin", "rollback", "--endpoint"])
        .arg(format!("http://{}", node.admin.expect("admin api")))
        .args([
            "--user",
            "admin",
            "--jurisdiction",
            "EU",
            "--kind",
            "residency-policy",
        ])
        .env("DOMICILE_PASSWORD", "admin-pw")
        .output()
        .expect("rollback");
    assert!(
        rollback.status.success(),
        "{}",
        String::from_utf8_lossy(&rollback.stderr)
    );
    admin
        .update("INSERT INTO accounts VALUES (3, 'eu-central', 'Eva', 'eva@example.eu', NULL, 1.00, 'EUR')")
        .await
        .expect("v1 again stores");

    let decisions = admin
        .query("SELECT path, decision, plugin_version FROM system.audit WHERE decision = 'deny' ORDER BY seq")
        .await
        .expect("audit");
    assert_eq!(
        column_strings(&decisions, "path"),
        ["store", "query-result"]
    );
    assert_eq!(column_strings(&decisions, "plugin_version"), ["2", "2"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn no_active_policy_means_nothing_is_stored() {
    let node = TestNode::start_with("eu-central", "", |_| Ok(())).expect("node without policy");
    let mut admin = node.client("admin").await.expect("admin logs in");
    admin.update(ACCOUNTS).await.expect("create accounts");
    let refused = admin
        .update(
            "INSERT INTO accounts VALUES (1, 'eu-central', 'A', 'a@example.eu', NULL, 1.00, 'EUR')",
        )
        .await
        .expect_err("fail closed");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused}");
    assert!(
        refused
            .message()
            .contains("no residency policy is active for jurisdiction EU"),
        "{refused}"
    );
    let audit = admin
        .query("SELECT decision, reason FROM system.audit")
        .await
        .expect("audit");
    assert_eq!(column_strings(&audit, "decision"), ["deny"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tampered_audit_entry_is_caught() {
    let (mut node, mut admin) = eu_node_with_accounts().await;
    let mut apac = node.client("apac").await.expect("apac logs in");
    apac.query("SELECT id FROM accounts")
        .await
        .expect("release");
    admin
        .update("INSERT INTO accounts VALUES (5, 'eu-central', 'Bo', 'bo@example.eu', NULL, 2.00, 'EUR')")
        .await
        .expect("store");
    node.stop().expect("clean stop");

    let verify = || {
        Command::new(domicile_binary())
            .args(["audit", "verify", "--data-dir"])
            .arg(node.data_dir())
            .output()
            .expect("audit verify")
    };
    let intact = verify();
    let said = String::from_utf8_lossy(&intact.stdout).to_string();
    assert!(intact.status.success(), "{said}");
    assert!(said.contains("intact: 3 entries"), "{said}");

    // Rewrite the release to apac as if it went to someone else: same length, every copy
    // of it in the file.
    let path = node.data_dir().join("domicile.redb");
    let mut bytes = std::fs::read(&path).expect("read db");
    let (from, to) = (b"\"principal\":\"apac\"", b"\"principal\":\"apaX\"");
    let mut edits = 0;
    for start in 0..bytes.len().saturating_sub(from.len()) {
        if &bytes[start..start + from.len()] == from {
            bytes[start..start + from.len()].copy_from_slice(to);
            edits += 1;
        }
    }
    assert!(edits > 0, "the entry is in the file");
    std::fs::write(&path, bytes).expect("write db");

    let broken = verify();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&broken.stdout),
        String::from_utf8_lossy(&broken.stderr)
    );
    assert_eq!(broken.status.code(), Some(1), "{said}");
    assert!(said.contains("audit chain broken at entry 3"), "{said}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_leak_scan_finds_a_planted_canary_and_nothing_on_a_correct_node() {
    let mut node = TestNode::start("us-east").expect("node starts");
    let mut admin = node.client("admin").await.expect("admin logs in");
    admin.update(ACCOUNTS).await.expect("create accounts");
    admin
        .update("CREATE TABLE notes (id INT PRIMARY KEY, body TEXT) WITH (locality = 'global')")
        .await
        .expect("create a global table");
    admin
        .update("INSERT INTO accounts VALUES (1, 'us-east', 'canary-us-east-z1x', 'z@example.com', NULL, 1.00, 'USD')")
        .await
        .expect("a US canary at home");
    let dir = tempfile::tempdir().expect("dir");
    let canaries = dir.path().join("canaries.toml");
    std::fs::write(
        &canaries,
        "[[canary]]\nregion = \"eu-central\"\nvalue = \"canary-eu-central-q8w\"\n\n\
         [[canary]]\nregion = \"us-east\"\nvalue = \"canary-us-east-z1x\"\n",
    )
    .expect("canary file");
    let node_dir = node.data_dir().parent().expect("node dir").to_path_buf();
    let scan = || {
        let out = Command::new(domicile_binary())
            .args(["audit", "scan", "--region", "us-east", "--canaries"])
            .arg(&canaries)
            .arg(&node_dir)
            .output()
            .expect("audit scan");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
        )
    };

    node.stop().expect("stop");
    let (code, said) = scan();
    assert_eq!(code, Some(0), "{said}");
    assert!(
        said.contains("1 canaries of other regions: 0 found"),
        "{said}"
    );

    // A mistake that leaks: an EU customer's name typed into a public column of a
    // GLOBAL table, which every region stores.
    node.restart().expect("restart");
    let mut admin = node.client("admin").await.expect("admin logs in");
    admin
        .update("INSERT INTO notes VALUES (1, 'called back canary-eu-central-q8w')")
        .await
        .expect("a GLOBAL row");
    node.stop().expect("stop");
    let (code, said) = scan();
    assert_eq!(code, Some(1), "{said}");
    assert!(
        said.contains("LEAK canary canary-eu-central-q8w (home eu-central) in")
            && said.contains("domicile.redb"),
        "{said}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn evaluation_errors_and_logs_carry_no_stored_values() {
    let (node, mut admin) = eu_node_with_accounts().await;
    let failed = admin
        .query("SELECT CAST(name AS INT) FROM accounts")
        .await
        .expect_err("a name is no number");
    assert!(failed.message().contains("value withheld"), "{failed}");
    for secret in ["Ana Lopez", "Jan Novak"] {
        assert!(!failed.message().contains(secret), "{failed}");
        assert!(
            !node.logs().contains(secret),
            "a stored value reached the log"
        );
    }
}
