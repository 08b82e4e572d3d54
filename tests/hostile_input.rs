//! Hostile input against one node (issue 21): each test is an attack a client can make
//! with a stock Flight SQL client and nothing else, and asserts that the node refuses it
//! with an error naming the bound it hit, keeps serving, and loses nothing.

use domicile_tests::{Client, TestNode, column_strings, null_batch, to_status};
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

/// Issue 21: statements shaped to exhaust the planner rather than the storage — long
/// chains of operators (left-deep trees no parser recursion limit sees), huge IN lists,
/// deep nesting, giant identifiers. Each gets an answer or a clear error; the node keeps
/// serving.
#[tokio::test]
async fn statements_shaped_to_exhaust_the_planner_get_an_error_not_a_crash() {
    let (node, mut admin) = setup().await;
    let chain = |op: &str, terms: usize, term: &dyn Fn(usize) -> String| {
        (0..terms).map(term).collect::<Vec<_>>().join(op)
    };
    // At the bound, the deepest chain accepted is planned and answered without harm.
    let at_bound = admin
        .query(&format!(
            "SELECT {} AS n",
            chain(" + ", 127, &|_| "1".into())
        ))
        .await
        .expect("127 additions are within expression_depth_max");
    assert_eq!(column_strings(&at_bound, "n"), ["127"]);
    let statements = [
        (
            "a chain of 100 000 additions",
            format!("SELECT {} AS n", chain(" + ", 100_000, &|_| "1".into())),
            "expression_depth_max",
        ),
        (
            "a WHERE of 50 000 ORs",
            format!(
                "SELECT id FROM accounts WHERE {}",
                chain(" OR ", 50_000, &|i| format!("id = {i}"))
            ),
            "expression_depth_max",
        ),
        (
            "an IN list of 110 000 values",
            format!(
                "SELECT id FROM accounts WHERE id IN ({})",
                chain(",", 110_000, &|i| (i % 10).to_string())
            ),
            "in_list_values_max",
        ),
        (
            "10 000 nested parentheses",
            format!("SELECT {}1{} AS n", "(".repeat(10_000), ")".repeat(10_000)),
            "expression_depth_max",
        ),
        (
            "1 000 nested subqueries",
            format!(
                "SELECT * FROM {}accounts{}",
                "(SELECT * FROM ".repeat(1_000),
                ") AS t".repeat(1_000)
            ),
            "expression_depth_max",
        ),
        (
            "an identifier of 500 000 characters",
            format!("SELECT 1 AS {}", "x".repeat(500_000)),
            "identifier_length_max_bytes",
        ),
        (
            "a chain of 5 000 UNIONs",
            chain(" UNION ALL ", 5_000, &|i| format!("SELECT {i}")),
            "expression_depth_max",
        ),
    ];
    for (what, sql, bound) in statements {
        let status = admin.query(&sql).await.expect_err(what);
        assert!(
            status.message().contains(bound) && status.message().len() < 1024,
            "{what}: {:?} {}",
            status.code(),
            status.message().chars().take(300).collect::<String>()
        );
        still_serves(&mut admin).await;
    }
    // Wide but flat statements are answered: a CASE of 20 000 branches, an IN list of
    // 50 000 values.
    let case = admin
        .query(&format!(
            "SELECT CASE {} END AS c FROM accounts",
            chain(" ", 20_000, &|i| format!("WHEN id = {i} THEN {i}"))
        ))
        .await
        .expect("a CASE of 20 000 branches");
    assert_eq!(column_strings(&case, "c"), ["1"]);
    let within = admin
        .query(&format!(
            "SELECT id FROM accounts WHERE id IN ({})",
            chain(", ", 50_000, &|i| (i + 1).to_string())
        ))
        .await
        .expect("an IN list of 50 000 values");
    assert_eq!(column_strings(&within, "id"), ["1"]);
    drop(node);
}
