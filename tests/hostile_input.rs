//! Hostile input against one node (issue 21): each test is an attack a client can make
//! with a stock Flight SQL client and nothing else, and asserts that the node refuses it
//! with an error naming the bound it hit, keeps serving, and loses nothing.

use std::sync::Arc;

use arrow::array::{ArrayRef, NullArray, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use domicile_tests::{Client, TestNode, column_strings, to_status};
use tonic::Code;

async fn setup() -> (TestNode, Client) {
    let node = TestNode::start("eu-central").expect("node starts");
    let mut admin = node.client("admin").await.expect("admin logs in");
    admin
        .update(
            "CREATE TABLE accounts (id BIGINT PRIMARY KEY, region TEXT NOT NULL, \
             balance BIGINT NOT NULL) \
             WITH (locality = 'regional by row', region_column = 'region')",
        )
        .await
        .expect("create table");
    admin
        .update("INSERT INTO accounts (id, region, balance) VALUES (1, 'eu-central', 10)")
        .await
        .expect("insert");
    (node, admin)
}

/// A batch of `columns` NULL columns and `rows` rows: a few hundred bytes on the wire
/// whatever its size once every cell is a value.
fn null_batch(columns: usize, rows: usize) -> RecordBatch {
    let fields: Vec<Field> = (1..=columns)
        .map(|i| Field::new(format!("${i}"), DataType::Null, true))
        .collect();
    let arrays: Vec<ArrayRef> = (0..columns)
        .map(|_| Arc::new(NullArray::new(rows)) as ArrayRef)
        .collect();
    RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).expect("batch")
}

async fn still_serves(admin: &mut Client) {
    let batches = admin
        .query("SELECT balance FROM accounts WHERE id = 1")
        .await
        .expect("the node keeps serving");
    assert_eq!(column_strings(&batches, "balance"), vec!["10"]);
}

/// Issue 21: parameters were collected whole and every cell converted before any bound
/// was checked. 100k rows of 100 NULL parameters is 10 M values (~640 MB in the node);
/// it must be refused naming `parameter_cells_max`, and a batch wider than the statement
/// naming both counts.
#[tokio::test]
async fn parameter_batches_are_bounded_before_they_are_decoded() {
    let (_node, mut admin) = setup().await;
    let columns = 100;
    let select: Vec<String> = (1..=columns).map(|i| format!("${i} AS c{i}")).collect();
    let mut statement = admin
        .inner
        .prepare(format!("SELECT {}", select.join(", ")), None)
        .await
        .expect("prepare");
    statement
        .set_parameters(null_batch(columns, 100_000))
        .expect("bind locally");
    let status = statement.execute().await.map_err(to_status).unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains("parameter_cells_max"),
        "{status:?}"
    );

    // Wider than the statement: refused before a single value is read.
    let mut narrow = admin
        .inner
        .prepare("SELECT balance FROM accounts WHERE id = $1".into(), None)
        .await
        .expect("prepare");
    narrow
        .set_parameters(null_batch(5_000, 10))
        .expect("bind locally");
    let status = narrow.execute().await.map_err(to_status).unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("takes 1 parameter") && status.message().contains("5000"),
        "{status:?}"
    );
    still_serves(&mut admin).await;
}

/// Issue 21: one client could hold every prepared-statement slot of the node, for ever.
/// Now a session holds at most `prepared_statements_per_session_max`; another session of
/// the same user still prepares, and closing frees a slot.
#[tokio::test]
async fn one_session_cannot_hold_every_prepared_statement() {
    let (node, mut admin) = setup().await;
    let mut held = Vec::new();
    let refused = loop {
        match admin.inner.prepare("SELECT 1 AS one".into(), None).await {
            Ok(statement) => held.push(statement),
            Err(error) => break to_status(error),
        }
        assert!(held.len() <= 10_000, "no bound on prepared statements");
    };
    assert_eq!(held.len(), 256, "the per-session bound");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(
        refused
            .message()
            .contains("prepared_statements_per_session_max"),
        "{refused:?}"
    );

    let mut other_session = node.client("admin").await.expect("second session");
    other_session
        .inner
        .prepare("SELECT 1 AS one".into(), None)
        .await
        .expect("another session of the same user still prepares");

    let statement = held.pop().expect("one held");
    statement.close().await.expect("close");
    admin
        .inner
        .prepare("SELECT 1 AS one".into(), None)
        .await
        .expect("a closed statement frees its slot");
    still_serves(&mut admin).await;
}

/// Issue 21: every handshake ran argon2 (19 MiB, tens of ms) however often a client
/// guessed. After `login_failures_free` failures from one address, even the right
/// password is refused at once (argon2 not run) with the time to wait; sessions already
/// open keep working; after the back-off the right password logs in again.
#[tokio::test]
async fn password_guessing_is_throttled_and_open_sessions_keep_working() {
    let (node, mut admin) = setup().await;
    let endpoint = node.endpoint();
    for attempt in 0..5 {
        let refused = Client::connect(&endpoint, "admin", "guess")
            .await
            .err()
            .unwrap_or_else(|| panic!("guess {attempt} accepted"));
        assert!(
            format!("{refused:#}").contains("invalid user name or password"),
            "{refused:#}"
        );
    }
    let blocked = node
        .client("admin")
        .await
        .err()
        .expect("the right password is refused while blocked");
    let text = format!("{blocked:#}");
    assert!(
        text.contains("too many failed logins") && text.contains("retry in"),
        "{text}"
    );
    still_serves(&mut admin).await;
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    let mut back = node
        .client("admin")
        .await
        .expect("logs in after the back-off");
    still_serves(&mut back).await;
}
