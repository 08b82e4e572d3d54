//! One node, end to end over Flight SQL with the stock Rust client: DDL, DML, queries,
//! prepared statements with parameters, metadata, auth and roles, bad input, and the
//! storage properties that SQL promises (point lookups do not scan, statements are atomic,
//! a subquery in a DELETE touches nothing it does not name).

use arrow::array::{Array, Int64Array, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema};
use domicile_tests::{Client, TestNode, column_strings, row_count};
use std::sync::Arc;
use tonic::Code;

async fn setup() -> (TestNode, Client) {
    let node = TestNode::start("eu-central").expect("node starts");
    let mut admin = node.client("admin").await.expect("admin logs in");
    admin
        .update(
            "CREATE TABLE accounts (id BIGINT PRIMARY KEY, region TEXT NOT NULL, name TEXT, \
             iban TEXT, balance DECIMAL(18,2) NOT NULL, opened DATE, seen TIMESTAMP, \
             vip BOOLEAN, score DOUBLE, tier INT, photo BYTEA, uid UUID) \
             WITH (locality = 'regional by row', region_column = 'region', pii = 'name, iban')",
        )
        .await
        .expect("create table");
    (node, admin)
}

fn rows_read(batches: &[arrow::array::RecordBatch]) -> u64 {
    let column = batches[0].column_by_name("rows_read").expect("rows_read");
    column
        .as_any()
        .downcast_ref::<UInt64Array>()
        .expect("u64")
        .value(0)
}

#[tokio::test]
async fn every_type_round_trips_and_sql_features_work() {
    let (_node, mut admin) = setup().await;
    let inserted = admin
        .update(
            "INSERT INTO accounts VALUES \
             (1, 'eu-central', 'Ana', 'DE89370400440532013000', 100.50, DATE '2024-01-02', \
              TIMESTAMP '2024-01-02 03:04:05.123456', true, 1.5, 7, X'00FF', '6f1c8a3e-0000-4000-8000-000000000001'), \
             (2, 'eu-central', 'Ben', NULL, 20, NULL, NULL, false, NULL, 1, NULL, NULL), \
             (3, 'eu-central', 'Cy', NULL, 5.25, NULL, NULL, NULL, NULL, 7, NULL, NULL)",
        )
        .await
        .expect("insert");
    assert_eq!(inserted, 3);

    let batches = admin
        .query("SELECT * FROM accounts WHERE id = 1")
        .await
        .expect("select");
    for (column, expected) in [
        ("balance", "100.50"),
        ("opened", "2024-01-02"),
        ("seen", "2024-01-02T03:04:05.123456"),
        ("vip", "true"),
        ("score", "1.5"),
        ("tier", "7"),
        ("photo", "00ff"),
        ("uid", "6f1c8a3e-0000-4000-8000-000000000001"),
        ("iban", "DE89370400440532013000"),
    ] {
        assert_eq!(
            column_strings(&batches, column),
            vec![expected.to_string()],
            "column {column}"
        );
    }

    // Joins, aggregates and window functions run on DataFusion over our tables.
    let batches = admin
        .query(
            "SELECT a.tier, count(*) AS n, sum(a.balance) AS total, \
                    rank() OVER (ORDER BY sum(a.balance) DESC) AS r \
             FROM accounts a JOIN accounts b ON a.id = b.id GROUP BY a.tier ORDER BY a.tier",
        )
        .await
        .expect("aggregate");
    assert_eq!(column_strings(&batches, "tier"), vec!["1", "7"]);
    assert_eq!(column_strings(&batches, "n"), vec!["1", "2"]);
    assert_eq!(column_strings(&batches, "total"), vec!["20.00", "105.75"]);
    assert_eq!(column_strings(&batches, "r"), vec!["2", "1"]);

    let updated = admin
        .update("UPDATE accounts SET balance = balance - 10 WHERE tier = 7")
        .await
        .expect("update");
    assert_eq!(updated, 2);
    let batches = admin
        .query("SELECT balance FROM accounts ORDER BY id")
        .await
        .expect("select");
    assert_eq!(
        column_strings(&batches, "balance"),
        vec!["90.50", "20.00", "-4.75"]
    );

    let deleted = admin
        .update("DELETE FROM accounts WHERE balance < 0")
        .await
        .expect("delete");
    assert_eq!(deleted, 1);
    let batches = admin
        .query("SELECT id FROM accounts ORDER BY id")
        .await
        .expect("select");
    assert_eq!(column_strings(&batches, "id"), vec!["1", "2"]);
}

#[tokio::test]
async fn point_lookups_and_region_filters_do_not_scan() {
    let (_node, mut admin) = setup().await;
    let values: Vec<String> = (0..2000)
        .map(|i| {
            format!(
                "({i}, 'eu-central', NULL, NULL, {i}, NULL, NULL, NULL, NULL, NULL, NULL, NULL)"
            )
        })
        .collect();
    admin
        .update(&format!(
            "INSERT INTO accounts VALUES {}",
            values.join(", ")
        ))
        .await
        .expect("insert");

    let before = rows_read(
        &admin
            .query("SELECT rows_read FROM system.node")
            .await
            .expect("node"),
    );
    let batches = admin
        .query("SELECT balance FROM accounts WHERE id = 1234")
        .await
        .expect("point");
    assert_eq!(column_strings(&batches, "balance"), vec!["1234.00"]);
    let batches = admin
        .query("SELECT id FROM accounts WHERE id IN (5, 6, 99999)")
        .await
        .expect("in list");
    assert_eq!(row_count(&batches), 2);
    let after = rows_read(
        &admin
            .query("SELECT rows_read FROM system.node")
            .await
            .expect("node"),
    );
    assert_eq!(
        after - before,
        3,
        "a point lookup reads exactly the rows it returns"
    );

    // A region this node does not hold prunes to an empty partition: no row is read.
    let before = after;
    let batches = admin
        .query("SELECT count(*) AS n FROM accounts WHERE region = 'us-east'")
        .await
        .expect("prune");
    assert_eq!(column_strings(&batches, "n"), vec!["0"]);
    let after = rows_read(
        &admin
            .query("SELECT rows_read FROM system.node")
            .await
            .expect("node"),
    );
    assert_eq!(
        after, before,
        "a filter on another region must not read this region's rows"
    );

    // A full scan does read them all: the counter is real.
    admin
        .query("SELECT count(*) FROM accounts WHERE balance > 10")
        .await
        .expect("scan");
    let scanned = rows_read(
        &admin
            .query("SELECT rows_read FROM system.node")
            .await
            .expect("node"),
    );
    assert_eq!(scanned - after, 2000);
}

#[tokio::test]
async fn prepared_statements_bind_parameters() {
    let (_node, mut admin) = setup().await;
    admin.update("INSERT INTO accounts (id, region, balance, tier) VALUES (1, 'eu-central', 10, 1), (2, 'eu-central', 20, 2)").await.expect("insert");

    let mut select = admin
        .inner
        .prepare("SELECT balance FROM accounts WHERE id = ?".into(), None)
        .await
        .expect("prepare");
    assert_eq!(select.parameter_schema().expect("params").fields().len(), 1);
    for (id, expected) in [(2i64, "20.00"), (1, "10.00")] {
        let schema = Arc::new(Schema::new(vec![Field::new("$1", DataType::Int64, false)]));
        let batch =
            arrow::array::RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![id]))])
                .expect("batch");
        select.set_parameters(batch).expect("bind");
        let info = select.execute().await.expect("execute");
        let batches = admin.fetch(info).await.expect("fetch");
        assert_eq!(
            column_strings(&batches, "balance"),
            vec![expected.to_string()]
        );
    }
    select.close().await.expect("close");

    let mut update = admin
        .inner
        .prepare(
            "UPDATE accounts SET balance = balance + $2 WHERE id = $1".into(),
            None,
        )
        .await
        .expect("prepare update");
    let schema = Arc::new(Schema::new(vec![
        Field::new("$1", DataType::Int64, false),
        Field::new("$2", DataType::Int64, false),
    ]));
    let batch = arrow::array::RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from(vec![1, 2])),
            Arc::new(Int64Array::from(vec![5, 7])),
        ],
    )
    .expect("batch");
    update.set_parameters(batch).expect("bind");
    assert_eq!(
        update.execute_update().await.expect("execute update"),
        2,
        "one execution per parameter row"
    );
    let batches = admin
        .query("SELECT balance FROM accounts ORDER BY id")
        .await
        .expect("select");
    assert_eq!(column_strings(&batches, "balance"), vec!["15.00", "27.00"]);
}

#[tokio::test]
async fn metadata_lists_catalogs_schemas_tables_and_types() {
    let (_node, mut admin) = setup().await;
    let info = admin
        .inner
        .get_tables(arrow_flight::sql::CommandGetTables {
            catalog: None,
            db_schema_filter_pattern: Some("public".into()),
            table_name_filter_pattern: None,
            table_types: vec![],
            include_schema: true,
        })
        .await
        .expect("get tables");
    let batches = admin.fetch(info).await.expect("fetch");
    assert_eq!(column_strings(&batches, "table_name"), vec!["accounts"]);
    // The table's schema carries Flight SQL's column metadata (what ADBC's get_objects
    // reports as XDBC type name, precision and scale).
    let schema_bytes = batches[0]
        .column_by_name("table_schema")
        .expect("table_schema")
        .as_any()
        .downcast_ref::<arrow::array::BinaryArray>()
        .expect("binary")
        .value(0)
        .to_vec();
    let schema = arrow::ipc::convert::try_schema_from_ipc_buffer(&schema_bytes).expect("schema");
    let meta = |column: &str, key: &str| {
        schema
            .field_with_name(column)
            .expect(column)
            .metadata()
            .get(&format!("ARROW:FLIGHT:SQL:{key}"))
            .cloned()
    };
    assert_eq!(meta("balance", "TYPE_NAME").as_deref(), Some("DECIMAL"));
    assert_eq!(meta("balance", "PRECISION").as_deref(), Some("18"));
    assert_eq!(meta("balance", "SCALE").as_deref(), Some("2"));
    assert_eq!(meta("id", "TYPE_NAME").as_deref(), Some("BIGINT"));
    assert_eq!(meta("uid", "TYPE_NAME").as_deref(), Some("UUID"));
    assert_eq!(meta("name", "TABLE_NAME").as_deref(), Some("accounts"));
    assert!(
        !schema
            .field_with_name("region")
            .expect("region")
            .is_nullable()
    );

    // Primary keys, for SQLAlchemy's reflection; no foreign keys, listed as none.
    let info = admin
        .inner
        .get_primary_keys(arrow_flight::sql::CommandGetPrimaryKeys {
            catalog: None,
            db_schema: Some("public".into()),
            table: "accounts".into(),
        })
        .await
        .expect("primary keys");
    let keys = admin.fetch(info).await.expect("fetch");
    assert_eq!(column_strings(&keys, "column_name"), vec!["id"]);
    assert_eq!(column_strings(&keys, "key_sequence"), vec!["1"]);
    assert_eq!(column_strings(&keys, "key_name"), vec!["accounts_pkey"]);
    let info = admin
        .inner
        .get_primary_keys(arrow_flight::sql::CommandGetPrimaryKeys {
            catalog: None,
            db_schema: Some("system".into()),
            table: "accounts".into(),
        })
        .await
        .expect("primary keys");
    assert_eq!(row_count(&admin.fetch(info).await.expect("fetch")), 0);
    let info = admin
        .inner
        .get_imported_keys(arrow_flight::sql::CommandGetImportedKeys {
            catalog: None,
            db_schema: None,
            table: "accounts".into(),
        })
        .await
        .expect("imported keys");
    assert_eq!(row_count(&admin.fetch(info).await.expect("fetch")), 0);

    let batches = admin.query("SELECT column_name, class FROM system.columns WHERE class <> 'public' ORDER BY column_name").await.expect("columns");
    assert_eq!(
        column_strings(&batches, "column_name"),
        vec!["iban", "name"]
    );
    let batches = admin
        .query("SELECT locality, region_column FROM system.tables")
        .await
        .expect("tables");
    assert_eq!(
        column_strings(&batches, "locality"),
        vec!["REGIONAL BY ROW"]
    );
    let batches = admin
        .query("SELECT region FROM system.node")
        .await
        .expect("node");
    assert_eq!(column_strings(&batches, "region"), vec!["eu-central"]);
    // One row per region of the mesh; alone, just this node's.
    let batches = admin
        .query("SELECT region, is_self FROM system.regions")
        .await
        .expect("regions");
    assert_eq!(column_strings(&batches, "region"), vec!["eu-central"]);
    // The table's earlier name says where it went.
    let renamed = admin
        .query("SELECT * FROM system.nodes")
        .await
        .expect_err("renamed");
    assert!(
        renamed.message().contains("renamed system.regions"),
        "{renamed:?}"
    );

    for (info, what) in [
        (admin.inner.get_catalogs().await, "catalogs"),
        (admin.inner.get_table_types().await, "table types"),
        (admin.inner.get_sql_info(vec![]).await, "sql info"),
        (
            admin
                .inner
                .get_xdbc_type_info(arrow_flight::sql::CommandGetXdbcTypeInfo { data_type: None })
                .await,
            "xdbc",
        ),
        (
            admin
                .inner
                .get_db_schemas(arrow_flight::sql::CommandGetDbSchemas {
                    catalog: None,
                    db_schema_filter_pattern: None,
                })
                .await,
            "schemas",
        ),
    ] {
        let info = info.unwrap_or_else(|e| panic!("{what}: {e}"));
        let batches = admin.fetch(info).await.expect("fetch");
        assert!(row_count(&batches) > 0, "{what} is empty");
    }
}

#[tokio::test]
async fn bad_input_gets_clear_errors_and_the_node_keeps_serving() {
    let (node, mut admin) = setup().await;
    admin.update("INSERT INTO accounts (id, region, name, balance) VALUES (1, 'eu-central', 'Zoë Secret', 1)").await.expect("insert");

    let cases: Vec<(&str, Code, &str)> = vec![
        ("SELEC 1", Code::InvalidArgument, "parse"),
        ("SELECT nope FROM accounts", Code::InvalidArgument, "nope"),
        ("SELECT * FROM missing", Code::InvalidArgument, "missing"),
        (
            "INSERT INTO accounts (id, region, balance) VALUES (1, 'eu-central', 5)",
            Code::AlreadyExists,
            "duplicate primary key (1)",
        ),
        (
            "INSERT INTO accounts (id, region, balance) VALUES (9, 'us-east', 5)",
            Code::FailedPrecondition,
            "us-east",
        ),
        (
            "INSERT INTO accounts (id, region, balance) VALUES (9, 'eu-central', NULL)",
            Code::InvalidArgument,
            "null",
        ),
        (
            "INSERT INTO accounts (id, region, balance, uid) VALUES (9, 'eu-central', 1, 'not-a-uuid')",
            Code::InvalidArgument,
            "UUID",
        ),
        (
            "INSERT INTO accounts (id, region, balance) VALUES (9, 'eu-central', 12345678901234567890)",
            Code::InvalidArgument,
            "too large",
        ),
        (
            "DELETE FROM accounts WHERE id IN (SELECT id FROM accounts)",
            Code::Unimplemented,
            "subquery",
        ),
        (
            "UPDATE accounts SET balance = 0 WHERE EXISTS (SELECT 1 FROM accounts)",
            Code::Unimplemented,
            "subquery",
        ),
        ("SAVEPOINT a", Code::Unimplemented, "savepoints"),
        (
            "CREATE TABLE t (v TEXT)",
            Code::InvalidArgument,
            "PRIMARY KEY",
        ),
        (
            "CREATE TABLE g (id INT PRIMARY KEY, email TEXT) WITH (locality = 'global', pii = 'email')",
            Code::InvalidArgument,
            "GLOBAL",
        ),
        // Its rows go to every region undecided: no class but public (issue 19).
        (
            "CREATE TABLE g (id INT PRIMARY KEY, fee DECIMAL(9,2)) WITH (locality = 'global', sensitive = 'fee')",
            Code::InvalidArgument,
            "may not hold sensitive column fee",
        ),
        (
            "CREATE TABLE accounts (id INT PRIMARY KEY)",
            Code::AlreadyExists,
            "already exists",
        ),
        ("DROP TABLE missing", Code::NotFound, "missing"),
    ];
    for (sql, code, needle) in cases {
        let error = admin.update(sql).await.expect_err(sql);
        assert_eq!(error.code(), code, "{sql}: {error}");
        assert!(
            error.message().contains(needle),
            "{sql}: {} lacks {needle}",
            error.message()
        );
        assert!(
            !error.message().contains("Zoë Secret"),
            "{sql}: error leaks a pii value"
        );
    }
    // A statement with one bad row changes nothing (atomic).
    let error = admin
        .update("INSERT INTO accounts (id, region, balance) VALUES (20, 'eu-central', 1), (21, 'us-east', 1)")
        .await
        .expect_err("mixed insert");
    assert_eq!(error.code(), Code::InvalidArgument);
    assert!(
        error.message().contains("homed in several regions"),
        "{error}"
    );
    let error = admin
        .update("UPDATE accounts SET id = 1 WHERE id <> 1 OR id = 1")
        .await;
    assert!(
        error.is_ok()
            || error
                .as_ref()
                .is_err_and(|e| e.code() == Code::AlreadyExists)
    );
    let batches = admin
        .query("SELECT count(*) AS n FROM accounts")
        .await
        .expect("count");
    assert_eq!(
        column_strings(&batches, "n"),
        vec!["1"],
        "nothing of a refused statement remains"
    );

    // An always-false WHERE deletes nothing (DataFusion once passed it as "no filter").
    assert_eq!(
        admin
            .update("DELETE FROM accounts WHERE 1 = 0")
            .await
            .expect("delete nothing"),
        0
    );
    assert_eq!(
        admin
            .update("DELETE FROM accounts WHERE id = 1 AND id = 2")
            .await
            .expect("delete nothing"),
        0
    );
    let batches = admin
        .query("SELECT count(*) AS n FROM accounts")
        .await
        .expect("count");
    assert_eq!(column_strings(&batches, "n"), vec!["1"]);

    // Oversized SQL is refused before parsing.
    let huge = format!("SELECT '{}'", "x".repeat(2 << 20));
    assert!(admin.query(&huge).await.is_err());

    // The node is still serving.
    let mut fresh = node.client("reader").await.expect("still serving");
    assert_eq!(
        row_count(&fresh.query("SELECT * FROM accounts").await.expect("select")),
        1
    );
}

#[tokio::test]
async fn authentication_and_roles() {
    let (node, _admin) = setup().await;
    let wrong = domicile_tests::Client::connect(&node.endpoint(), "admin", "wrong").await;
    assert!(wrong.is_err(), "wrong password must be refused");
    let unknown = domicile_tests::Client::connect(&node.endpoint(), "mallory", "admin-pw").await;
    assert!(unknown.is_err(), "unknown user must be refused");

    // No token at all.
    let channel = tonic::transport::Endpoint::from_shared(node.endpoint())
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let mut anonymous = arrow_flight::sql::client::FlightSqlServiceClient::new(channel.clone());
    let error = anonymous
        .execute("SELECT 1".into(), None)
        .await
        .expect_err("no token");
    assert_eq!(
        domicile_tests::to_status(error).code(),
        Code::Unauthenticated
    );
    // A forged token.
    let mut forged = arrow_flight::sql::client::FlightSqlServiceClient::new(channel);
    forged.set_token("forged".into());
    let error = forged
        .execute("SELECT 1".into(), None)
        .await
        .expect_err("forged token");
    assert_eq!(
        domicile_tests::to_status(error).code(),
        Code::Unauthenticated
    );

    let mut reader = node.client("reader").await.expect("reader");
    reader
        .query("SELECT * FROM accounts")
        .await
        .expect("reader may select");
    let error = reader
        .update("INSERT INTO accounts (id, region, balance) VALUES (1, 'eu-central', 1)")
        .await
        .expect_err("reader may not write");
    assert_eq!(error.code(), Code::PermissionDenied);

    let mut writer = node.client("writer").await.expect("writer");
    writer
        .update("INSERT INTO accounts (id, region, balance) VALUES (1, 'eu-central', 1)")
        .await
        .expect("writer may write");
    let error = writer
        .update("DROP TABLE accounts")
        .await
        .expect_err("writer may not drop");
    assert_eq!(error.code(), Code::PermissionDenied);
}

// Multi-threaded: `stop` blocks while the server closes client connections, which the
// client side must keep serving.
#[tokio::test(flavor = "multi_thread")]
async fn clean_stop_and_restart_keep_the_catalog_and_rows() {
    let (mut node, mut admin) = setup().await;
    admin
        .update("INSERT INTO accounts (id, region, balance) VALUES (7, 'eu-central', 70)")
        .await
        .expect("insert");
    drop(admin);
    let status = node.stop().expect("stops on SIGTERM");
    assert!(status.success(), "clean exit, got {status}");
    assert!(
        node.logs().contains("storage closed cleanly"),
        "storage must close before exit"
    );
    node.restart().expect("restarts");
    let mut admin = node.client("admin").await.expect("login again");
    let batches = admin
        .query("SELECT balance FROM accounts WHERE id = 7")
        .await
        .expect("select");
    assert_eq!(column_strings(&batches, "balance"), vec!["70.00"]);
    let batches = admin
        .query("SELECT class FROM system.columns WHERE column_name = 'iban'")
        .await
        .expect("catalog");
    assert_eq!(column_strings(&batches, "class"), vec!["pii"]);
    let value = batches[0].column(0);
    assert_eq!(value.len(), 1);
}

/// ListActions names exactly the actions the node implements. Before, it listed every
/// Flight SQL action (transactions, savepoints, cancellation, Substrait) and none of
/// Flight's own (session options, CancelFlightInfo), and a client
/// that believed it failed later with UNIMPLEMENTED. Each action left out is checked to
/// be really unimplemented (a well-formed request is answered UNIMPLEMENTED), so the list
/// and the service cannot drift apart unnoticed.
#[tokio::test]
async fn list_actions_names_only_the_actions_the_node_implements() {
    use arrow_flight::sql::{
        ActionBeginSavepointRequest, ActionCreatePreparedSubstraitPlanRequest,
        ActionEndSavepointRequest, ProstMessageExt,
    };
    use futures::TryStreamExt;
    use prost::Message;

    let (_node, mut admin) = setup().await;
    let token = admin.inner.token().cloned().expect("a session token");
    let flight = admin.inner.inner_mut();
    let listed: std::collections::BTreeSet<String> = flight
        .list_actions(tonic::Request::new(arrow_flight::Empty {}))
        .await
        .expect("list actions")
        .into_inner()
        .map_ok(|action| action.r#type)
        .try_collect()
        .await
        .expect("the listed actions");
    assert_eq!(
        listed,
        [
            "BeginTransaction",
            "CancelFlightInfo",
            "CancelQuery",
            "CloseSession",
            "ClosePreparedStatement",
            "CreatePreparedStatement",
            "EndTransaction",
            "GetSessionOptions",
            "SetSessionOptions",
        ]
        .map(String::from)
        .into(),
        "ListActions must name the implemented actions and only those"
    );
    let unlisted = [
        (
            "BeginSavepoint",
            ActionBeginSavepointRequest::default()
                .as_any()
                .encode_to_vec(),
        ),
        (
            "EndSavepoint",
            ActionEndSavepointRequest::default()
                .as_any()
                .encode_to_vec(),
        ),
        (
            "CreatePreparedSubstraitPlan",
            ActionCreatePreparedSubstraitPlanRequest::default()
                .as_any()
                .encode_to_vec(),
        ),
    ];
    for (name, body) in unlisted {
        let mut request = tonic::Request::new(arrow_flight::Action::new(name, body));
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {token}").parse().expect("header value"),
        );
        let answer = flight.do_action(request).await;
        let code = answer.err().map(|status| status.code());
        assert_eq!(
            code,
            Some(Code::Unimplemented),
            "{name} is not listed, so it must be unimplemented"
        );
    }
}
