//! kill -9 loses nothing acknowledged: writers insert rows in a loop and record each
//! acknowledgement; the node is killed mid-stream and restarted; every acknowledged row is
//! there, and nothing that was never sent appears.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use domicile_tests::{TestNode, column_strings};

#[tokio::test]
async fn acknowledged_rows_survive_kill_9() {
    let mut node = TestNode::start("ap-southeast").expect("node starts");
    let mut admin = node.client("admin").await.expect("login");
    admin
        .update("CREATE TABLE events (id BIGINT PRIMARY KEY, writer INT NOT NULL, payload TEXT)")
        .await
        .expect("create");

    for round in 0..2 {
        let acknowledged: Arc<Mutex<BTreeSet<i64>>> = Arc::default();
        let attempted: Arc<Mutex<BTreeSet<i64>>> = Arc::default();
        let mut writers = Vec::new();
        for writer in 0..4i64 {
            let mut client = node.client("writer").await.expect("login");
            let acknowledged = Arc::clone(&acknowledged);
            let attempted = Arc::clone(&attempted);
            writers.push(tokio::spawn(async move {
                for sequence in 0.. {
                    let id = round * 10_000_000 + writer * 1_000_000 + sequence;
                    attempted.lock().expect("lock").insert(id);
                    let sql = format!("INSERT INTO events VALUES ({id}, {writer}, 'payload-{id}')");
                    match client.update(&sql).await {
                        Ok(1) => {
                            acknowledged.lock().expect("lock").insert(id);
                        }
                        Ok(other) => panic!("insert reported {other} rows"),
                        Err(_) => return, // the node died under us
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
        node.kill9();
        for writer in writers {
            writer.await.expect("writer task");
        }
        let acknowledged = acknowledged.lock().expect("lock").clone();
        assert!(
            acknowledged.len() > 20,
            "the load ran ({} acks)",
            acknowledged.len()
        );

        node.restart().expect("restart after kill -9");
        admin = node.client("admin").await.expect("login after restart");
        let batches = admin
            .query(&format!(
                "SELECT id FROM events WHERE id >= {} AND id < {}",
                round * 10_000_000,
                (round + 1) * 10_000_000
            ))
            .await
            .expect("select");
        let present: BTreeSet<i64> = column_strings(&batches, "id")
            .iter()
            .map(|s| s.parse().expect("id"))
            .collect();
        let missing: Vec<_> = acknowledged.difference(&present).collect();
        assert!(
            missing.is_empty(),
            "round {round}: acknowledged rows lost: {missing:?}"
        );
        let attempted = attempted.lock().expect("lock").clone();
        let invented: Vec<_> = present.difference(&attempted).collect();
        assert!(
            invented.is_empty(),
            "rows that were never sent: {invented:?}"
        );
    }
}
