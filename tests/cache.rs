//! The hybrid cache: another region's answers to `mesh` queries are served from it for
//! their TTL (the other node is not asked again) and not after; they survive a restart
//! on disk and are never served expired; a policy that forbids storing them keeps them
//! out; point reads of local rows are cached and a local write is visible at once.

use std::time::{Duration, Instant};

use domicile_tests::{Client, Mesh, TestNode, column_strings};

const MERCHANTS: &str = "CREATE TABLE merchants (
    id BIGINT PRIMARY KEY, region TEXT NOT NULL, name TEXT NOT NULL, volume BIGINT NOT NULL
) WITH (locality = 'regional by row', region_column = 'region', pii = 'name')";

/// Same shape; its answers are kept 30 s.
const SLOW_MERCHANTS: &str = "CREATE TABLE slow_merchants (
    id BIGINT PRIMARY KEY, region TEXT NOT NULL, name TEXT NOT NULL, volume BIGINT NOT NULL
) WITH (locality = 'regional by row', region_column = 'region', pii = 'name',
        cache_ttl_ms = '30000')";

async fn mesh() -> Mesh {
    let mesh = Mesh::start_with(
        &["eu-central", "ap-southeast"],
        "\n[cache]\nremote_ttl_ms = 1500\n",
    )
    .expect("mesh");
    for node in &mesh.nodes {
        let mut admin = node.client("admin").await.expect("login");
        admin.update(MERCHANTS).await.expect("merchants");
        admin.update(SLOW_MERCHANTS).await.expect("slow merchants");
    }
    let mut eu = mesh
        .node("eu-central")
        .client("admin")
        .await
        .expect("login");
    for table in ["merchants", "slow_merchants"] {
        eu.update(&format!(
            "INSERT INTO {table} VALUES (11, 'eu-central', 'Dorfladen Meier', 700), \
             (12, 'eu-central', 'Elbe Reisen', 300)"
        ))
        .await
        .expect("EU rows");
    }
    mesh
}

/// How often the EU node released rows to ap-southeast (one audit entry per leg).
async fn eu_releases(mesh: &Mesh) -> usize {
    let mut admin = mesh
        .node("eu-central")
        .client("admin")
        .await
        .expect("login");
    let rows = admin
        .query(
            "SELECT seq FROM system.audit \
             WHERE path = 'query-result' AND destination_region = 'ap-southeast'",
        )
        .await
        .expect("audit");
    column_strings(&rows, "seq").len()
}

async fn cache_counter(node: &TestNode, kind: &str, counter: &str) -> u64 {
    let mut reader = node.client("reader").await.expect("login");
    let rows = reader
        .query(&format!(
            "SELECT {counter} AS n FROM system.cache WHERE kind = '{kind}'"
        ))
        .await
        .expect("system.cache");
    column_strings(&rows, "n")
        .first()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Waits until `node` counted at least `at_least` of `counter` for `kind`.
async fn wait_counter(node: &TestNode, kind: &str, counter: &str, at_least: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while cache_counter(node, kind, counter).await < at_least {
        assert!(Instant::now() < deadline, "{kind} {counter} < {at_least}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn eu_names(client: &mut Client, table: &str) -> Vec<String> {
    let rows = client
        .query(&format!(
            "SELECT name FROM mesh.{table} WHERE mesh_region = 'eu-central' ORDER BY id"
        ))
        .await
        .expect("mesh query");
    column_strings(&rows, "name")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_answers_are_served_within_their_ttl_and_asked_again_after() {
    let mut mesh = mesh().await;
    let masked = ["***********eier", "*******isen"];
    let ap = mesh.node("ap-southeast");
    let mut reader = ap.client("reader").await.expect("login");

    let before = eu_releases(&mesh).await;
    assert_eq!(eu_names(&mut reader, "merchants").await, masked);
    assert_eq!(
        eu_releases(&mesh).await,
        before + 1,
        "the first query asks the EU"
    );
    wait_counter(ap, "remote-result", "inserts", 1).await;
    // Within the TTL: the same answer, and the EU node is not asked.
    assert_eq!(eu_names(&mut reader, "merchants").await, masked);
    assert_eq!(
        eu_releases(&mesh).await,
        before + 1,
        "served from the cache"
    );
    assert!(cache_counter(ap, "remote-result", "hits").await >= 1);
    // After it: asked again.
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert_eq!(eu_names(&mut reader, "merchants").await, masked);
    assert_eq!(eu_releases(&mesh).await, before + 2, "expired: asked again");
    // Caching was this node's policy's decision, audited here.
    let mut ap_admin = ap.client("admin").await.expect("login");
    let decisions = ap_admin
        .query("SELECT decision, source_region FROM system.audit WHERE path = 'cache'")
        .await
        .expect("audit");
    assert!(
        column_strings(&decisions, "decision")
            .iter()
            .all(|d| d == "allow")
    );
    assert_eq!(column_strings(&decisions, "source_region")[0], "eu-central");

    // A restart: the disk tier still answers within the TTL (30 s table) ...
    assert_eq!(eu_names(&mut reader, "slow_merchants").await, masked);
    wait_counter(ap, "remote-result", "inserts", 3).await;
    // ... and never after it (the 1.5 s table's answer, expired while the node was down).
    drop(reader);
    drop(ap_admin);
    mesh.stop("ap-southeast").expect("clean stop");
    tokio::time::sleep(Duration::from_millis(1600)).await;
    mesh.restart("ap-southeast").expect("restart");
    let ap = mesh.node("ap-southeast");
    let mut reader = ap.client("reader").await.expect("login");
    let released = eu_releases(&mesh).await;
    assert_eq!(eu_names(&mut reader, "slow_merchants").await, masked);
    assert_eq!(eu_releases(&mesh).await, released, "the disk tier answered");
    assert_eq!(eu_names(&mut reader, "merchants").await, masked);
    assert_eq!(
        eu_releases(&mesh).await,
        released + 1,
        "an expired entry on disk is not served"
    );
    assert!(cache_counter(ap, "remote-result", "expired").await >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_that_forbids_storing_keeps_answers_out_of_the_cache() {
    let mesh = mesh().await;
    let ap = mesh.node("ap-southeast");
    ap.upload_policy("guest_strict_policy", 2)
        .expect("strict policy on ap-southeast");
    let mut reader = ap.client("reader").await.expect("login");
    let before = eu_releases(&mesh).await;
    eu_names(&mut reader, "slow_merchants").await;
    wait_counter(ap, "remote-result", "refused", 1).await;
    eu_names(&mut reader, "slow_merchants").await;
    assert_eq!(
        eu_releases(&mesh).await,
        before + 2,
        "nothing cached: asked twice"
    );
    assert_eq!(cache_counter(ap, "remote-result", "inserts").await, 0);
    let mut admin = ap.client("admin").await.expect("login");
    let refusals = admin
        .query("SELECT decision FROM system.audit WHERE path = 'cache'")
        .await
        .expect("audit");
    assert!(
        column_strings(&refusals, "decision")
            .iter()
            .all(|d| d == "deny")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_local_rows_never_hide_a_write() {
    let node = TestNode::start("eu-central").expect("node");
    let mut admin = node.client("admin").await.expect("login");
    admin
        .update("CREATE TABLE counters (id BIGINT PRIMARY KEY, n BIGINT NOT NULL)")
        .await
        .expect("table");
    admin
        .update("INSERT INTO counters VALUES (1, 0), (2, 0)")
        .await
        .expect("rows");
    // A reader hammering the row while a writer bumps it: every read after a write's
    // answer sees that write (or a later one).
    let mut reader = node.client("reader").await.expect("login");
    for expected in 1..=60 {
        admin
            .update(&format!("UPDATE counters SET n = {expected} WHERE id = 1"))
            .await
            .expect("update");
        for _ in 0..2 {
            let rows = reader
                .query("SELECT n FROM counters WHERE id = 1")
                .await
                .expect("point read");
            assert_eq!(column_strings(&rows, "n"), [expected.to_string()]);
        }
    }
    let hits = cache_counter(&node, "local-row", "hits").await;
    assert!(hits >= 50, "point reads were served from the cache: {hits}");
    admin
        .update("DELETE FROM counters WHERE id = 1")
        .await
        .expect("delete");
    let rows = reader
        .query("SELECT n FROM counters WHERE id = 1")
        .await
        .expect("read");
    assert!(
        column_strings(&rows, "n").is_empty(),
        "a deleted row is gone at once"
    );
}
