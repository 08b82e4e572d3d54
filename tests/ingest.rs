//! Bulk ingest (Flight SQL CommandStatementIngest) against a real node: every row passes
//! the residency guard as an INSERT's would, a load commits whole or not at all, the
//! modes do what the Flight SQL spec says (replace keeps the table's residency
//! declarations), errors never quote a value, and hostile streams get an error while
//! the node keeps serving.

use std::sync::Arc;

use arrow::array::{ArrayRef, Decimal128Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use domicile_tests::{Client, TestNode, column_strings, row_count};
use tonic::Code;

const ACCOUNTS: &str = "CREATE TABLE accounts (id BIGINT PRIMARY KEY, region TEXT NOT NULL, \
     name TEXT, iban TEXT, balance DECIMAL(18,2) NOT NULL) \
     WITH (locality = 'regional by row', region_column = 'region', pii = 'name, iban', \
     sensitive = 'balance')";

const IBAN: &str = "DE89370400440532013000";

/// Rows of `accounts` (id, region, name, iban, balance in cents), in a schema whose
/// column order and types differ from the table's (ingest matches by name and casts).
fn accounts(rows: &[(i64, &str, &str, i64)]) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("balance", DataType::Decimal128(12, 2), false),
        Field::new("id", DataType::Int64, false),
        Field::new("region", DataType::Utf8, false),
        Field::new("iban", DataType::Utf8, true),
        Field::new("name", DataType::Utf8, true),
    ]));
    let balance = Decimal128Array::from_iter_values(rows.iter().map(|r| i128::from(r.3)))
        .with_precision_and_scale(12, 2)
        .expect("decimal");
    let columns: Vec<ArrayRef> = vec![
        Arc::new(balance),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|_| IBAN))),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.2))),
    ];
    RecordBatch::try_new(schema, columns).expect("batch")
}

async fn eu_node() -> (TestNode, Client) {
    let node = TestNode::start("eu-central").expect("node starts");
    let mut admin = node.client("admin").await.expect("admin logs in");
    admin.update(ACCOUNTS).await.expect("create accounts");
    (node, admin)
}

async fn ids(client: &mut Client, table: &str) -> Vec<String> {
    let rows = client
        .query(&format!("SELECT id FROM {table} ORDER BY id"))
        .await
        .expect("read");
    column_strings(&rows, "id")
}

async fn store_decisions(client: &mut Client) -> usize {
    let rows = client
        .query("SELECT decision FROM system.audit WHERE path = 'store'")
        .await
        .expect("system.audit");
    row_count(&rows)
}

#[tokio::test(flavor = "multi_thread")]
async fn ingested_rows_pass_the_guard_and_commit_whole_or_not_at_all() {
    let (node, mut admin) = eu_node().await;
    let mut writer = node.client("writer").await.expect("writer");
    let audited = store_decisions(&mut admin).await;
    let loaded = writer
        .ingest(
            "accounts",
            "append",
            &[],
            None,
            vec![
                accounts(&[(1, "eu-central", "Ana", 12050)]),
                accounts(&[(2, "eu-central", "Jan", 700), (3, "eu-central", "Eva", 1)]),
            ],
        )
        .await
        .expect("append");
    assert_eq!(loaded, 3);
    assert_eq!(ids(&mut admin, "accounts").await, ["1", "2", "3"]);
    assert!(
        store_decisions(&mut admin).await > audited,
        "the storage decision for the ingested rows is audited"
    );

    // A duplicate key in the last batch: nothing of the load is stored, and the error
    // names the key column, never the IBAN of the row.
    let duplicate = writer
        .ingest(
            "accounts",
            "append",
            &[],
            None,
            vec![
                accounts(&[(4, "eu-central", "Ola", 1)]),
                accounts(&[(1, "eu-central", "Ana", 1)]),
            ],
        )
        .await
        .expect_err("duplicate key");
    assert!(!duplicate.message().contains(IBAN), "{duplicate:?}");
    assert!(!duplicate.message().contains("Ana"), "{duplicate:?}");
    assert_eq!(ids(&mut admin, "accounts").await, ["1", "2", "3"]);

    // Rows homed in two regions: refused as an INSERT of them is, nothing stored.
    let mixed = writer
        .ingest(
            "accounts",
            "append",
            &[],
            None,
            vec![accounts(&[
                (5, "eu-central", "Ola", 1),
                (6, "us-east", "Bob", 1),
            ])],
        )
        .await
        .expect_err("two regions");
    assert!(mixed.message().contains("several regions"), "{mixed:?}");
    assert!(!mixed.message().contains(IBAN), "{mixed:?}");
    // Rows homed only elsewhere go to their home node (none is configured here): never
    // stored on this one.
    writer
        .ingest(
            "accounts",
            "append",
            &[],
            None,
            vec![accounts(&[(7, "us-east", "Bob", 1)])],
        )
        .await
        .expect_err("no us-east node to forward to");
    assert_eq!(ids(&mut admin, "accounts").await, ["1", "2", "3"]);

    // A reader may not ingest; a writer may append but not create a table.
    let mut reader = node.client("reader").await.expect("reader");
    let refused = reader
        .ingest(
            "accounts",
            "append",
            &[],
            None,
            vec![accounts(&[(8, "eu-central", "X", 1)])],
        )
        .await
        .expect_err("reader");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    let refused = writer
        .ingest(
            "fresh",
            "create",
            &[],
            None,
            vec![accounts(&[(9, "eu-central", "X", 1)])],
        )
        .await
        .expect_err("writer creating a table");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn modes_create_append_and_replace_keep_the_residency_declarations() {
    let (node, mut admin) = eu_node().await;
    // Create from the data, with the residency options a DataFrame cannot carry.
    let options = [
        ("domicile.locality", "regional by row"),
        ("domicile.region_column", "region"),
        ("domicile.pii", "name, iban"),
        ("domicile.sensitive", "balance"),
    ];
    admin
        .ingest(
            "customers",
            "create",
            &options,
            None,
            vec![accounts(&[(1, "eu-central", "Ana", 100)])],
        )
        .await
        .expect("create");
    let exists = admin
        .ingest(
            "customers",
            "create",
            &[],
            None,
            vec![accounts(&[(2, "eu-central", "B", 1)])],
        )
        .await
        .expect_err("create when it exists");
    assert_eq!(exists.code(), Code::AlreadyExists, "{exists:?}");
    let missing = admin
        .ingest(
            "nowhere",
            "append",
            &[],
            None,
            vec![accounts(&[(2, "eu-central", "B", 1)])],
        )
        .await
        .expect_err("append to nothing");
    assert_eq!(missing.code(), Code::NotFound, "{missing:?}");
    admin
        .ingest(
            "customers",
            "create_append",
            &[],
            None,
            vec![accounts(&[(2, "eu-central", "Jan", 200)])],
        )
        .await
        .expect("create_append appends");
    assert_eq!(ids(&mut admin, "customers").await, ["1", "2"]);

    // Replace: the rows are replaced in one commit and the classes stay: a reader of
    // another region still gets the pii columns masked and the sensitive one withheld.
    admin
        .ingest(
            "customers",
            "replace",
            &[],
            None,
            vec![accounts(&[(3, "eu-central", "Eva Kowalska", 300)])],
        )
        .await
        .expect("replace");
    assert_eq!(ids(&mut admin, "customers").await, ["3"]);
    let mut apac = node.client("apac").await.expect("apac");
    let away = apac
        .query("SELECT id, name, iban FROM customers")
        .await
        .expect("read from ap-southeast");
    let names = column_strings(&away, "name");
    assert_eq!(names.len(), 1);
    assert_ne!(names[0], "Eva Kowalska", "pii is masked for another region");
    assert!(column_strings(&away, "iban").iter().all(|v| v != IBAN));

    // A replace whose rows are refused leaves the old rows.
    let refused = admin
        .ingest(
            "customers",
            "replace",
            &[],
            None,
            vec![accounts(&[
                (4, "eu-central", "A", 1),
                (4, "eu-central", "B", 1),
            ])],
        )
        .await
        .expect_err("duplicate key in the data");
    assert!(!refused.message().contains(IBAN), "{refused:?}");
    assert_eq!(ids(&mut admin, "customers").await, ["3"]);

    // A create whose load fails leaves no table behind.
    admin
        .ingest(
            "doomed",
            "create",
            &[],
            None,
            vec![accounts(&[
                (1, "eu-central", "A", 1),
                (1, "eu-central", "B", 1),
            ])],
        )
        .await
        .expect_err("duplicate key");
    let gone = admin
        .query("SELECT id FROM doomed")
        .await
        .expect_err("dropped again");
    assert!(gone.message().contains("doomed"), "{gone:?}");

    // No primary key option and no `id` column: refused with what to do.
    let keyless =
        RecordBatch::try_from_iter([("code", Arc::new(StringArray::from(vec!["x"])) as ArrayRef)])
            .expect("batch");
    let refused = admin
        .ingest("keyless", "create", &[], None, vec![keyless.clone()])
        .await
        .expect_err("no key");
    assert!(
        refused.message().contains("domicile.primary_key"),
        "{refused:?}"
    );
    admin
        .ingest(
            "keyless",
            "create",
            &[("domicile.primary_key", "code")],
            None,
            vec![keyless],
        )
        .await
        .expect("keyed by option");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ingest_in_a_transaction_commits_with_it_and_rolls_back_with_it() {
    let (node, mut admin) = eu_node().await;
    let mut writer = node.client("writer").await.expect("writer");
    let txn = writer.begin().await.expect("begin");
    writer
        .ingest(
            "accounts",
            "append",
            &[],
            Some(&txn),
            vec![accounts(&[(1, "eu-central", "Ana", 1)])],
        )
        .await
        .expect("ingest in a transaction");
    writer
        .update_in(
            &txn,
            "UPDATE accounts SET balance = balance + 1 WHERE id = 1",
        )
        .await
        .expect("the transaction sees its ingested row");
    assert!(
        ids(&mut admin, "accounts").await.is_empty(),
        "not before commit"
    );
    writer.rollback(&txn).await.expect("rollback");
    assert!(ids(&mut admin, "accounts").await.is_empty());

    let txn = writer.begin().await.expect("begin");
    writer
        .ingest(
            "accounts",
            "append",
            &[],
            Some(&txn),
            vec![accounts(&[(2, "eu-central", "Jan", 1)])],
        )
        .await
        .expect("ingest");
    // Rows homed elsewhere cannot join a transaction here (that is a saga's work).
    let elsewhere = writer
        .ingest(
            "accounts",
            "append",
            &[],
            Some(&txn),
            vec![accounts(&[(3, "us-east", "Bob", 1)])],
        )
        .await
        .expect_err("another region's rows");
    assert!(elsewhere.message().contains("saga"), "{elsewhere:?}");
    writer.commit(&txn).await.expect("commit");
    assert_eq!(ids(&mut admin, "accounts").await, ["2"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_ingest_streams_get_an_error_and_the_node_keeps_serving() {
    let (_node, mut admin) = eu_node().await;
    // No data at all (not even a schema).
    admin
        .ingest("accounts", "append", &[], None, vec![])
        .await
        .expect_err("no schema");
    // A column the table does not have, a nested column, a value that does not fit.
    let extra = RecordBatch::try_from_iter([
        ("id", Arc::new(Int64Array::from(vec![1])) as ArrayRef),
        ("surprise", Arc::new(Int64Array::from(vec![1])) as ArrayRef),
    ])
    .expect("batch");
    let refused = admin
        .ingest("accounts", "append", &[], None, vec![extra])
        .await
        .expect_err("unknown column");
    assert!(refused.message().contains("surprise"), "{refused:?}");
    let nested = RecordBatch::try_from_iter([(
        "id",
        Arc::new(arrow::array::ListArray::from_iter_primitive::<
            arrow::datatypes::Int64Type,
            _,
            _,
        >(vec![Some(vec![Some(1)])])) as ArrayRef,
    )])
    .expect("batch");
    let refused = admin
        .ingest("accounts", "append", &[], None, vec![nested])
        .await
        .expect_err("nested");
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    let wide = RecordBatch::try_from_iter([
        ("id", Arc::new(Int64Array::from(vec![1])) as ArrayRef),
        (
            "region",
            Arc::new(StringArray::from(vec!["eu-central"])) as ArrayRef,
        ),
        (
            "balance",
            Arc::new(
                Decimal128Array::from(vec![i128::MAX / 10])
                    .with_precision_and_scale(38, 2)
                    .expect("decimal"),
            ) as ArrayRef,
        ),
    ])
    .expect("batch");
    let refused = admin
        .ingest("accounts", "append", &[], None, vec![wide])
        .await
        .expect_err("does not fit DECIMAL(18,2)");
    assert!(refused.message().contains("balance"), "{refused:?}");
    // A reserved table option name cannot smuggle SQL into CREATE TABLE.
    let refused = admin
        .ingest(
            "smuggled",
            "create",
            &[("domicile.pii = 'x'); DROP TABLE accounts; --", "x")],
            None,
            vec![accounts(&[(1, "eu-central", "A", 1)])],
        )
        .await
        .expect_err("not an option");
    assert!(
        refused.message().contains("not a table option"),
        "{refused:?}"
    );
    admin
        .update("INSERT INTO accounts VALUES (1, 'eu-central', NULL, NULL, 1)")
        .await
        .expect("the node keeps serving");
    assert_eq!(ids(&mut admin, "accounts").await, ["1"]);
}
