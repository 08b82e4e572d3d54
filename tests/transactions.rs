//! Interactive transactions over Flight SQL, attacked: each classic anomaly is played
//! as an interleaving of two real client connections, and the test fails if both
//! transactions commit (what snapshot isolation, or no isolation, would allow). Then a
//! seeded randomized bank of interleaved transfers, a transfer across two tables as one
//! transaction, SQL `BEGIN`/`COMMIT` in a session, kill -9 in the middle of a
//! transaction, and what a transaction refuses (another region's rows, sagas) or
//! commits first (DDL).

use domicile_tests::{Client, TestNode, column_strings};
use prost::bytes::Bytes;
use tonic::Code;

async fn node_with(tables: &[&str]) -> (TestNode, Client) {
    let node = TestNode::start("eu-central").expect("node starts");
    let mut admin = node.client("admin").await.expect("admin logs in");
    for table in tables {
        admin.update(table).await.expect("create table");
    }
    (node, admin)
}

const ACCOUNTS: &str = "CREATE TABLE accounts (id BIGINT PRIMARY KEY, region TEXT NOT NULL, \
     balance BIGINT NOT NULL) WITH (locality = 'regional by row', region_column = 'region')";

async fn one_number(client: &mut Client, transaction: &Bytes, sql: &str) -> i64 {
    let batches = client.query_in(transaction, sql).await.expect(sql);
    let values = column_strings(&batches, batches[0].schema().field(0).name());
    values
        .first()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{sql}: {values:?}"))
}

fn is_serialization_failure(outcome: &Result<(), tonic::Status>) -> bool {
    matches!(outcome, Err(status) if status.code() == Code::Aborted
        && status.message().contains("40001"))
}

/// Commits `first` then `second`; exactly one may commit, and it must be the first.
async fn only_the_first_commits(
    a: &mut Client,
    first: &Bytes,
    b: &mut Client,
    second: &Bytes,
    anomaly: &str,
) {
    a.commit(first).await.expect("the first committer wins");
    let outcome = b.commit(second).await;
    assert!(
        is_serialization_failure(&outcome),
        "{anomaly}: the second transaction committed too ({outcome:?})"
    );
}

/// Lost update: both read a balance, both write back what they read plus something.
#[tokio::test(flavor = "multi_thread")]
async fn lost_update_is_refused() {
    let (node, mut a) = node_with(&[ACCOUNTS]).await;
    a.update("INSERT INTO accounts VALUES (1, 'eu-central', 100)")
        .await
        .expect("seed");
    let mut b = node.client("admin").await.expect("second client");
    let (t1, t2) = (a.begin().await.expect("t1"), b.begin().await.expect("t2"));
    let read1 = one_number(&mut a, &t1, "SELECT balance FROM accounts WHERE id = 1").await;
    let read2 = one_number(&mut b, &t2, "SELECT balance FROM accounts WHERE id = 1").await;
    a.update_in(
        &t1,
        &format!("UPDATE accounts SET balance = {} WHERE id = 1", read1 + 10),
    )
    .await
    .expect("t1 write");
    b.update_in(
        &t2,
        &format!("UPDATE accounts SET balance = {} WHERE id = 1", read2 + 20),
    )
    .await
    .expect("t2 write");
    only_the_first_commits(&mut a, &t1, &mut b, &t2, "lost update").await;
    let batches = a.query("SELECT balance FROM accounts").await.expect("read");
    assert_eq!(column_strings(&batches, "balance"), vec!["110"]);
}

/// Write skew: two doctors on call; each checks that another is on call, then leaves.
#[tokio::test(flavor = "multi_thread")]
async fn write_skew_is_refused() {
    let (node, mut a) =
        node_with(&["CREATE TABLE doctors (id BIGINT PRIMARY KEY, on_call BOOLEAN NOT NULL)"])
            .await;
    a.update("INSERT INTO doctors VALUES (1, true), (2, true)")
        .await
        .expect("seed");
    let mut b = node.client("admin").await.expect("second client");
    let (t1, t2) = (a.begin().await.expect("t1"), b.begin().await.expect("t2"));
    let count = "SELECT count(*) AS n FROM doctors WHERE on_call";
    assert_eq!(one_number(&mut a, &t1, count).await, 2);
    assert_eq!(one_number(&mut b, &t2, count).await, 2);
    a.update_in(&t1, "UPDATE doctors SET on_call = false WHERE id = 1")
        .await
        .expect("t1 leaves");
    b.update_in(&t2, "UPDATE doctors SET on_call = false WHERE id = 2")
        .await
        .expect("t2 leaves");
    only_the_first_commits(&mut a, &t1, &mut b, &t2, "write skew").await;
    let batches = a.query(count).await.expect("read");
    assert_eq!(
        column_strings(&batches, "n"),
        vec!["1"],
        "someone stays on call"
    );
}

/// Read skew: a reader of two rows sees both before or both after a concurrent
/// transfer between them.
#[tokio::test(flavor = "multi_thread")]
async fn read_skew_cannot_happen() {
    let (node, mut a) = node_with(&[ACCOUNTS]).await;
    a.update("INSERT INTO accounts VALUES (1, 'eu-central', 50), (2, 'eu-central', 50)")
        .await
        .expect("seed");
    let mut b = node.client("admin").await.expect("second client");
    let reader = a.begin().await.expect("reader");
    let x = one_number(&mut a, &reader, "SELECT balance FROM accounts WHERE id = 1").await;
    let transfer = b.begin().await.expect("transfer");
    b.update_in(
        &transfer,
        "UPDATE accounts SET balance = balance - 50 WHERE id = 1",
    )
    .await
    .expect("debit");
    b.update_in(
        &transfer,
        "UPDATE accounts SET balance = balance + 50 WHERE id = 2",
    )
    .await
    .expect("credit");
    b.commit(&transfer).await.expect("transfer commits");
    let y = one_number(&mut a, &reader, "SELECT balance FROM accounts WHERE id = 2").await;
    assert_eq!(
        x + y,
        100,
        "the reader saw {x} and {y}: two different states"
    );
    let sum = one_number(&mut a, &reader, "SELECT sum(balance) FROM accounts").await;
    assert_eq!(sum, 100);
    a.commit(&reader).await.expect("a reader commits");
}

/// Phantom: a transaction that decided on a predicate (no account over 1000) fails
/// when another commits a row matching it, though no row it read changed.
#[tokio::test(flavor = "multi_thread")]
async fn phantom_is_refused() {
    let (node, mut a) = node_with(&[
        ACCOUNTS,
        "CREATE TABLE audit_notes (id BIGINT PRIMARY KEY, note TEXT)",
    ])
    .await;
    a.update("INSERT INTO accounts VALUES (1, 'eu-central', 10)")
        .await
        .expect("seed");
    let mut b = node.client("admin").await.expect("second client");
    let checker = a.begin().await.expect("checker");
    let rich = "SELECT count(*) AS n FROM accounts WHERE balance > 1000";
    assert_eq!(one_number(&mut a, &checker, rich).await, 0);
    a.update_in(
        &checker,
        "INSERT INTO audit_notes VALUES (1, 'no large accounts')",
    )
    .await
    .expect("note");
    let inserter = b.begin().await.expect("inserter");
    b.update_in(
        &inserter,
        "INSERT INTO accounts VALUES (2, 'eu-central', 5000)",
    )
    .await
    .expect("phantom row");
    only_the_first_commits(&mut b, &inserter, &mut a, &checker, "phantom").await;
    let notes = a
        .query("SELECT count(*) AS n FROM audit_notes")
        .await
        .expect("read");
    assert_eq!(column_strings(&notes, "n"), vec!["0"]);
}

/// G2 (anti-dependency cycle over a predicate): each transaction inserts a booking
/// only if no booking of the room exists; both see none. Snapshot isolation commits
/// both, double-booking the room.
#[tokio::test(flavor = "multi_thread")]
async fn predicate_anti_dependency_cycle_g2_is_refused() {
    let (node, mut a) =
        node_with(&["CREATE TABLE bookings (id BIGINT PRIMARY KEY, room BIGINT NOT NULL)"]).await;
    let mut b = node.client("admin").await.expect("second client");
    let (t1, t2) = (a.begin().await.expect("t1"), b.begin().await.expect("t2"));
    let taken = "SELECT count(*) AS n FROM bookings WHERE room = 7";
    assert_eq!(one_number(&mut a, &t1, taken).await, 0);
    assert_eq!(one_number(&mut b, &t2, taken).await, 0);
    a.update_in(&t1, "INSERT INTO bookings VALUES (1, 7)")
        .await
        .expect("t1 books");
    b.update_in(&t2, "INSERT INTO bookings VALUES (2, 7)")
        .await
        .expect("t2 books");
    only_the_first_commits(&mut a, &t1, &mut b, &t2, "G2").await;
    let batches = a.query(taken).await.expect("read");
    assert_eq!(
        column_strings(&batches, "n"),
        vec!["1"],
        "the room is booked once"
    );
}

/// Seeded: clients run transfers between random accounts as read, check, debit,
/// credit, interleaved at random across connections; a transfer that loses its commit
/// is retried. No money is created or lost and no balance goes negative.
#[tokio::test(flavor = "multi_thread")]
async fn interleaved_transfers_keep_the_bank_balanced() {
    use domicile_tests::sql_gen::Rng;
    let seed: u64 = std::env::var("DOMICILE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
                | 1
        });
    eprintln!("seed {seed} (replay: DOMICILE_SEED={seed})");
    const ACCOUNT_COUNT: i64 = 6;
    const START: i64 = 100;
    let (node, mut admin) = node_with(&[ACCOUNTS]).await;
    let values: Vec<String> = (0..ACCOUNT_COUNT)
        .map(|id| format!("({id}, 'eu-central', {START})"))
        .collect();
    admin
        .update(&format!(
            "INSERT INTO accounts VALUES {}",
            values.join(", ")
        ))
        .await
        .expect("seed");
    let mut workers = Vec::new();
    for worker in 0..4u64 {
        let mut client = node.client("admin").await.expect("client");
        workers.push(tokio::spawn(async move {
            // xorshift needs a non-zero state.
            let mut rng = Rng((seed ^ (worker << 32)) | 1);
            let (mut committed, mut aborted) = (0u32, 0u32);
            for _ in 0..12 {
                let count = ACCOUNT_COUNT as usize;
                let from = rng.below(count) as i64;
                let to = (from + 1 + rng.below(count - 1) as i64) % ACCOUNT_COUNT;
                let amount = 1 + rng.below(80) as i64;
                for _attempt in 0..50 {
                    let txn = client.begin().await.expect("begin");
                    let have = one_number(
                        &mut client,
                        &txn,
                        &format!("SELECT balance FROM accounts WHERE id = {from}"),
                    )
                    .await;
                    if have < amount {
                        client.rollback(&txn).await.expect("rollback");
                        break;
                    }
                    client
                        .update_in(
                            &txn,
                            &format!(
                                "UPDATE accounts SET balance = {} WHERE id = {from}",
                                have - amount
                            ),
                        )
                        .await
                        .expect("debit");
                    tokio::task::yield_now().await;
                    client
                        .update_in(
                            &txn,
                            &format!(
                                "UPDATE accounts SET balance = balance + {amount} WHERE id = {to}"
                            ),
                        )
                        .await
                        .expect("credit");
                    let outcome = client.commit(&txn).await;
                    if outcome.is_ok() {
                        committed += 1;
                        break;
                    }
                    assert!(
                        is_serialization_failure(&outcome),
                        "seed {seed}: {outcome:?}"
                    );
                    aborted += 1;
                }
            }
            (committed, aborted)
        }));
    }
    let mut committed = 0;
    for worker in workers {
        committed += worker.await.expect("worker").0;
    }
    assert!(committed > 0, "seed {seed}: nothing committed");
    let batches = admin
        .query("SELECT sum(balance) AS total, min(balance) AS low FROM accounts")
        .await
        .expect("totals");
    assert_eq!(
        column_strings(&batches, "total"),
        vec![(ACCOUNT_COUNT * START).to_string()],
        "seed {seed}: money created or lost"
    );
    let low: i64 = column_strings(&batches, "low")[0].parse().expect("low");
    assert!(low >= 0, "seed {seed}: a balance went to {low}");
}

/// The payment processor's local transfer: debit, ledger line and outbox event (a CDC
/// table) as one transaction; invisible to others until COMMIT, gone after ROLLBACK.
#[tokio::test(flavor = "multi_thread")]
async fn a_three_statement_transfer_commits_whole_or_not_at_all() {
    let (node, mut a) = node_with(&[
        ACCOUNTS,
        "CREATE TABLE ledger (id BIGINT PRIMARY KEY, account BIGINT NOT NULL, \
         amount BIGINT NOT NULL) WITH (cdc = 'true')",
    ])
    .await;
    a.update("INSERT INTO accounts VALUES (1, 'eu-central', 100), (2, 'eu-central', 0)")
        .await
        .expect("seed");
    let mut observer = node.client("admin").await.expect("observer");
    for (commit, ledger_id) in [(false, 10), (true, 11)] {
        let txn = a.begin().await.expect("begin");
        a.update_in(
            &txn,
            "UPDATE accounts SET balance = balance - 30 WHERE id = 1",
        )
        .await
        .expect("debit");
        a.update_in(
            &txn,
            &format!("INSERT INTO ledger VALUES ({ledger_id}, 1, -30)"),
        )
        .await
        .expect("ledger");
        a.update_in(
            &txn,
            "UPDATE accounts SET balance = balance + 30 WHERE id = 2",
        )
        .await
        .expect("credit");
        // Inside: its own writes. Outside: nothing yet.
        assert_eq!(
            one_number(&mut a, &txn, "SELECT balance FROM accounts WHERE id = 1").await,
            70
        );
        let outside = observer
            .query("SELECT balance FROM accounts ORDER BY id")
            .await
            .expect("read");
        assert_eq!(column_strings(&outside, "balance"), vec!["100", "0"]);
        let ledger = observer
            .query("SELECT count(*) AS n FROM ledger")
            .await
            .expect("read");
        assert_eq!(column_strings(&ledger, "n"), vec!["0"]);
        if commit {
            a.commit(&txn).await.expect("commit");
        } else {
            a.rollback(&txn).await.expect("rollback");
            // Ended: its id is gone.
            let late = a.update_in(&txn, "DELETE FROM ledger").await;
            assert_eq!(late.expect_err("ended").code(), Code::NotFound);
        }
    }
    let balances = observer
        .query("SELECT balance FROM accounts ORDER BY id")
        .await
        .expect("read");
    assert_eq!(column_strings(&balances, "balance"), vec!["70", "30"]);
    let ledger = observer.query("SELECT id FROM ledger").await.expect("read");
    assert_eq!(column_strings(&ledger, "id"), vec!["11"]);
}

/// SQL BEGIN / COMMIT / ROLLBACK act on the client's session (as `domicile sql` sends
/// them): statements between them run in one transaction.
#[tokio::test(flavor = "multi_thread")]
async fn sql_begin_and_commit_bind_a_transaction_to_the_session() {
    let (node, mut a) = node_with(&[ACCOUNTS]).await;
    let mut observer = node.client("admin").await.expect("observer");
    a.query("BEGIN").await.expect("begin");
    a.query("INSERT INTO accounts VALUES (1, 'eu-central', 5)")
        .await
        .expect("insert");
    let seen = a
        .query("SELECT count(*) AS n FROM accounts")
        .await
        .expect("read");
    assert_eq!(column_strings(&seen, "n"), vec!["1"]);
    let outside = observer
        .query("SELECT count(*) AS n FROM accounts")
        .await
        .expect("read");
    assert_eq!(column_strings(&outside, "n"), vec!["0"]);
    let nested = a.query("BEGIN").await.expect_err("one at a time");
    assert_eq!(nested.code(), Code::FailedPrecondition);
    a.update("ROLLBACK").await.expect("rollback");
    let after = observer
        .query("SELECT count(*) AS n FROM accounts")
        .await
        .expect("read");
    assert_eq!(column_strings(&after, "n"), vec!["0"]);

    a.update("START TRANSACTION").await.expect("begin");
    a.update("INSERT INTO accounts VALUES (2, 'eu-central', 5)")
        .await
        .expect("insert");
    a.update("COMMIT").await.expect("commit");
    let after = observer
        .query("SELECT id FROM accounts")
        .await
        .expect("read");
    assert_eq!(column_strings(&after, "id"), vec!["2"]);
    // COMMIT with nothing open does nothing, as in PostgreSQL.
    a.update("COMMIT").await.expect("no transaction");

    a.update("BEGIN READ ONLY").await.expect("begin read only");
    let refused = a
        .update("INSERT INTO accounts VALUES (3, 'eu-central', 5)")
        .await
        .expect_err("read only");
    assert!(refused.message().contains("25006"), "{refused:?}");
    a.update("COMMIT").await.expect("commit");
}

/// What a transaction cannot hold is refused with a reason, and the transaction goes
/// on: rows homed in another region, sagas; DDL commits it first. Only its owner may
/// use it.
#[tokio::test(flavor = "multi_thread")]
async fn a_transaction_refuses_what_it_cannot_commit_here() {
    let (node, mut a) = node_with(&[ACCOUNTS]).await;
    let txn = a.begin().await.expect("begin");
    let elsewhere = a
        .update_in(&txn, "INSERT INTO accounts VALUES (9, 'us-east', 1)")
        .await
        .expect_err("another region's row");
    assert_eq!(elsewhere.code(), Code::FailedPrecondition, "{elsewhere:?}");
    assert!(elsewhere.message().contains("saga"), "{elsewhere:?}");
    a.update_in(&txn, "INSERT INTO accounts VALUES (1, 'eu-central', 1)")
        .await
        .expect("the transaction goes on");
    // DDL commits the transaction first (as SqlInfo says) and runs on its own ...
    a.update_in(&txn, "CREATE TABLE t (id BIGINT PRIMARY KEY)")
        .await
        .expect("DDL in a transaction");
    let mut other = node.client("writer").await.expect("writer");
    let committed = other.query("SELECT id FROM accounts").await.expect("read");
    assert_eq!(column_strings(&committed, "id"), vec!["1"]);
    // ... and the id goes on in a new transaction that sees the new table.
    a.update_in(&txn, "INSERT INTO t VALUES (7)")
        .await
        .expect("the new table, in the new transaction");
    a.update_in(&txn, "INSERT INTO accounts VALUES (2, 'eu-central', 1)")
        .await
        .expect("insert");
    // Another user does not see it exist.
    let stolen = other
        .update_in(&txn, "DELETE FROM accounts")
        .await
        .expect_err("not the owner");
    assert_eq!(stolen.code(), Code::NotFound);
    let stolen = other.commit(&txn).await.expect_err("not the owner");
    assert_eq!(stolen.code(), Code::NotFound);
    a.rollback(&txn).await.expect("rollback");
    let rows = a.query("SELECT id FROM t").await.expect("read");
    assert!(column_strings(&rows, "id").is_empty());
    let rows = a.query("SELECT id FROM accounts").await.expect("read");
    assert_eq!(column_strings(&rows, "id"), vec!["1"]);
}

/// kill -9 with a transaction open (its writes made, not committed): after restart
/// nothing of it is there, and what committed before is.
#[tokio::test(flavor = "multi_thread")]
async fn kill_9_mid_transaction_leaves_nothing_of_it() {
    let (mut node, mut a) = node_with(&[ACCOUNTS]).await;
    a.update("INSERT INTO accounts VALUES (1, 'eu-central', 100)")
        .await
        .expect("committed before");
    let txn = a.begin().await.expect("begin");
    for id in 2..50 {
        a.update_in(
            &txn,
            &format!("INSERT INTO accounts VALUES ({id}, 'eu-central', 1)"),
        )
        .await
        .expect("insert");
    }
    a.update_in(&txn, "UPDATE accounts SET balance = 0 WHERE id = 1")
        .await
        .expect("update");
    node.kill9();
    node.restart().expect("restart");
    let mut b = node.client("admin").await.expect("login again");
    let rows = b
        .query("SELECT id, balance FROM accounts")
        .await
        .expect("read");
    assert_eq!(column_strings(&rows, "id"), vec!["1"]);
    assert_eq!(column_strings(&rows, "balance"), vec!["100"]);
    let gone = b
        .commit(&txn)
        .await
        .expect_err("the transaction died with the node");
    assert_eq!(gone.code(), Code::NotFound);
}

/// `domicile sql -f`: a script's BEGIN ... COMMIT runs as one transaction of the CLI's
/// session, and a script that ends in ROLLBACK after a failed statement leaves nothing.
#[tokio::test(flavor = "multi_thread")]
async fn the_cli_runs_a_transfer_script_as_one_transaction() {
    let (node, mut admin) = node_with(&[
        ACCOUNTS,
        "CREATE TABLE ledger (id BIGINT PRIMARY KEY, account BIGINT NOT NULL, \
         amount BIGINT NOT NULL) WITH (cdc = 'true')",
    ])
    .await;
    admin
        .update("INSERT INTO accounts VALUES (1, 'eu-central', 100), (2, 'eu-central', 0)")
        .await
        .expect("seed");
    let dir = tempfile::tempdir().expect("dir");
    let run = |name: &str, script: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, script).expect("script");
        let output = std::process::Command::new(domicile_tests::domicile_binary())
            .args([
                "sql",
                "--endpoint",
                &node.endpoint(),
                "--user",
                "admin",
                "-f",
            ])
            .arg(&path)
            .env("DOMICILE_PASSWORD", "admin-pw")
            .output()
            .expect("domicile sql");
        (
            output.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        )
    };
    let (ok, out) = run(
        "abandoned.sql",
        "BEGIN;\n\
         UPDATE accounts SET balance = balance - 30 WHERE id = 1;\n\
         INSERT INTO ledger VALUES (1, 1, -30);\n\
         INSERT INTO ledger VALUES (1, 1, -30);\n\
         ROLLBACK;\n",
    );
    assert!(!ok && out.contains("duplicate primary key"), "{out}");
    let (ok, out) = run(
        "transfer.sql",
        "BEGIN;\n\
         UPDATE accounts SET balance = balance - 30 WHERE id = 1;\n\
         INSERT INTO ledger VALUES (2, 1, -30);\n\
         UPDATE accounts SET balance = balance + 30 WHERE id = 2;\n\
         COMMIT;\n",
    );
    assert!(ok, "{out}");
    let balances = admin
        .query("SELECT balance FROM accounts ORDER BY id")
        .await
        .expect("read");
    assert_eq!(column_strings(&balances, "balance"), vec!["70", "30"]);
    let ledger = admin.query("SELECT id FROM ledger").await.expect("read");
    assert_eq!(column_strings(&ledger, "id"), vec!["2"]);
}
