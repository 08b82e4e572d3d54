//! Many clients decrementing one balance concurrently lose no update: every acknowledged
//! `UPDATE ... SET balance = balance - 10` is reflected exactly once.

use domicile_tests::{TestNode, column_strings};

#[tokio::test]
async fn concurrent_decrements_lose_nothing() {
    const CLIENTS: i64 = 8;
    const UPDATES_PER_CLIENT: i64 = 40;
    let node = TestNode::start("us-east").expect("node starts");
    let mut admin = node.client("admin").await.expect("login");
    admin
        .update("CREATE TABLE t (id BIGINT PRIMARY KEY, balance BIGINT NOT NULL)")
        .await
        .expect("create");
    admin
        .update("INSERT INTO t VALUES (1, 1000000), (2, 0)")
        .await
        .expect("insert");

    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let mut client = node.client("writer").await.expect("login");
        tasks.push(tokio::spawn(async move {
            let mut acknowledged = 0i64;
            for _ in 0..UPDATES_PER_CLIENT {
                let changed = client
                    .update("UPDATE t SET balance = balance - 10 WHERE id = 1")
                    .await
                    .expect("update");
                assert_eq!(changed, 1);
                acknowledged += 1;
            }
            acknowledged
        }));
    }
    let mut acknowledged = 0;
    for task in tasks {
        acknowledged += task.await.expect("client task");
    }
    assert_eq!(acknowledged, CLIENTS * UPDATES_PER_CLIENT);
    let batches = admin
        .query("SELECT id, balance FROM t ORDER BY id")
        .await
        .expect("select");
    let expected = 1_000_000 - 10 * acknowledged;
    assert_eq!(
        column_strings(&batches, "balance"),
        vec![expected.to_string(), "0".to_string()]
    );

    // Group commit folded concurrent statements into fewer fsyncs.
    let batches = admin
        .query("SELECT commits, statements_committed FROM system.node")
        .await
        .expect("node");
    let commits: u64 = column_strings(&batches, "commits")[0]
        .parse()
        .expect("number");
    let statements: u64 = column_strings(&batches, "statements_committed")[0]
        .parse()
        .expect("number");
    assert!(
        statements >= acknowledged as u64 + 2,
        "every statement committed"
    );
    assert!(
        commits <= statements,
        "commits {commits} statements {statements}"
    );
}
