//! Query cancellation (Flight's CancelFlightInfo, Flight SQL's CancelQuery) against a
//! real node: a running query's DoGet ends with CANCELLED at once and its work stops; the
//! answer is CANCELLED only once the work has stopped (CANCELLING before); a statement
//! cancelled before its DoGet never runs; only the user who runs a query can cancel it.

use std::time::{Duration, Instant};

use arrow_flight::sql::{ActionCancelQueryRequest, ProstMessageExt};
use arrow_flight::{CancelFlightInfoRequest, CancelFlightInfoResult, CancelStatus, FlightInfo};
use domicile_tests::{Client, TestNode};
use futures::TryStreamExt;
use prost::Message;
use tonic::Code;

/// Rows of `spin`.
const SPIN_ROWS: usize = 2000;

/// A sum over a three-way cross join of `spin`: 8 * 10^9 combinations, minutes of work.
/// Every join's batches pass a budget check, so its task yields and stops when aborted.
const LONG: &str = "SELECT sum(a.v + b.v + c.v) AS n FROM spin a, spin b, spin c";

/// A nested-loop join whose filter rejects every combination: DataFusion probes a whole
/// batch against the build side inside one poll, a step that cannot be interrupted.
const STUBBORN: &str = "SELECT count(*) AS n FROM spin a, spin b, spin c WHERE a.v + b.v + c.v < 0";

async fn node_with_spin_table() -> (TestNode, Client) {
    let node = TestNode::start("eu-central").expect("node starts");
    let mut admin = node.client("admin").await.expect("admin logs in");
    admin
        .update("CREATE TABLE spin (id BIGINT PRIMARY KEY, v BIGINT NOT NULL)")
        .await
        .expect("create");
    let values: Vec<String> = (0..SPIN_ROWS).map(|i| format!("({i}, {i})")).collect();
    admin
        .update(&format!("INSERT INTO spin VALUES {}", values.join(", ")))
        .await
        .expect("rows");
    (node, admin)
}

/// Runs a Flight action as `client`'s user; returns the first result's body.
async fn action(client: &mut Client, name: &str, body: Vec<u8>) -> Result<Vec<u8>, tonic::Status> {
    let token = client.inner.token().cloned().expect("a session token");
    let mut request = tonic::Request::new(arrow_flight::Action::new(name, body));
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header value"),
    );
    let results: Vec<arrow_flight::Result> = client
        .inner
        .inner_mut()
        .do_action(request)
        .await?
        .into_inner()
        .try_collect()
        .await?;
    Ok(results.first().map(|r| r.body.to_vec()).unwrap_or_default())
}

async fn cancel_flight_info(client: &mut Client, info: &FlightInfo) -> Result<i32, tonic::Status> {
    let body = CancelFlightInfoRequest {
        info: Some(info.clone()),
    }
    .encode_to_vec();
    let answer = action(client, "CancelFlightInfo", body).await?;
    Ok(CancelFlightInfoResult::decode(&*answer)
        .expect("CancelFlightInfoResult")
        .status)
}

/// Starts the DoGet of `info` on its own connection; the task ends with its outcome and
/// how long it ran.
async fn run_in_background(
    node: &TestNode,
    info: &FlightInfo,
) -> tokio::task::JoinHandle<(Result<usize, tonic::Status>, Duration)> {
    let mut runner = node.client("admin").await.expect("runner");
    let info = info.clone();
    tokio::spawn(async move {
        let started = Instant::now();
        let outcome = runner.fetch(info).await.map(|batches| batches.len());
        (outcome, started.elapsed())
    })
}

/// CPU seconds the node spends in `window`.
async fn busy(node: &TestNode, window: Duration) -> f64 {
    let from = node.cpu_seconds().expect("cpu");
    tokio::time::sleep(window).await;
    node.cpu_seconds().expect("cpu") - from
}

/// Runs `sql`, cancels it while it runs, and checks what every cancellation promises:
/// the DoGet ends with CANCELLED within seconds, and CANCELLED is answered only when the
/// node has stopped working on it. Returns the status the first cancellation answered.
async fn cancel_while_running(sql: &str) -> i32 {
    let (node, mut admin) = node_with_spin_table().await;
    let info = admin
        .inner
        .execute(sql.to_string(), None)
        .await
        .expect("announced");
    let running = run_in_background(&node, &info).await;
    // The query is seen working: some half second in which the node spent over 0.2 s of
    // CPU. Looked for over up to 10 s, since a test beside this one on 2 cores may take
    // the CPU for a while (CI failed once on a single window: 0.14 s).
    let mut working = 0.0;
    for _ in 0..20 {
        working = busy(&node, Duration::from_millis(500)).await;
        if working > 0.2 {
            break;
        }
    }
    assert!(
        working > 0.2,
        "the query runs ({working} s of CPU in the last 0.5 s of 10 s)"
    );

    // Another user cannot reach it: it is unknown to them.
    let mut reader = node.client("reader").await.expect("reader");
    let refused = cancel_flight_info(&mut reader, &info)
        .await
        .expect_err("not the reader's query");
    assert_eq!(refused.code(), Code::NotFound, "{refused:?}");

    let cancelled_at = Instant::now();
    let status = cancel_flight_info(&mut admin, &info).await.expect("cancel");
    let (outcome, _) = tokio::time::timeout(Duration::from_secs(20), running)
        .await
        .expect("the DoGet ends soon after the cancellation")
        .expect("task");
    let stopped_in = cancelled_at.elapsed();
    assert_eq!(
        outcome.expect_err("cancelled, not answered").code(),
        Code::Cancelled
    );
    assert!(
        stopped_in < Duration::from_secs(5),
        "stopped in {stopped_in:?}"
    );
    let last = until_cancelled(&mut admin, &info, status).await;
    if last == CancelStatus::Cancelled as i32 {
        let after = busy(&node, Duration::from_millis(500)).await;
        assert!(
            after < 0.15,
            "CANCELLED, yet the node spent {after} s of CPU in 0.5 s"
        );
    }
    admin
        .query("SELECT 1")
        .await
        .expect("the node keeps serving");
    last
}

/// Asks again while the answer is CANCELLING (Flight: "the client may retry"), for up
/// to 10 s; returns the last answer. How long the first cancellation waits is no
/// promise a test can hold a loaded machine to; what is promised is that CANCELLING
/// turns into CANCELLED once the work has stopped, and never before.
async fn until_cancelled(client: &mut Client, info: &FlightInfo, first: i32) -> i32 {
    assert!(
        first == CancelStatus::Cancelled as i32 || first == CancelStatus::Cancelling as i32,
        "{first}"
    );
    let mut last = first;
    let deadline = Instant::now() + Duration::from_secs(10);
    while last == CancelStatus::Cancelling as i32 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        last = cancel_flight_info(client, info)
            .await
            .expect("cancel again");
    }
    last
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_flight_info_stops_a_running_query() {
    let status = cancel_while_running(LONG).await;
    assert_eq!(
        status,
        CancelStatus::Cancelled as i32,
        "a query that yields stops, and is then reported CANCELLED"
    );
}

/// Known limit: a nested-loop join's step runs to its end. What is promised then is an
/// honest answer (CANCELLING while it runs) and a response that ends at once.
#[tokio::test(flavor = "multi_thread")]
async fn a_step_that_cannot_be_interrupted_is_reported_as_cancelling() {
    cancel_while_running(STUBBORN).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_statement_cancelled_before_its_doget_never_runs() {
    let (node, mut admin) = node_with_spin_table().await;
    let info = admin
        .inner
        .execute(LONG.to_string(), None)
        .await
        .expect("announced");
    let status = cancel_flight_info(&mut admin, &info).await.expect("cancel");
    assert_eq!(status, CancelStatus::Cancelled as i32);
    let started = Instant::now();
    let refused = admin.fetch(info).await.expect_err("cancelled");
    assert_eq!(refused.code(), Code::Cancelled, "{refused:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    // The same SQL announced again is another query, and runs.
    let quick = admin
        .query("SELECT count(*) AS n FROM spin")
        .await
        .expect("another query");
    assert_eq!(
        domicile_tests::column_strings(&quick, "n"),
        [SPIN_ROWS.to_string()]
    );
    drop(node);
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_query_stops_a_running_prepared_statement() {
    let (node, mut admin) = node_with_spin_table().await;
    let mut prepared = admin
        .inner
        .prepare(LONG.to_string(), None)
        .await
        .expect("prepare");
    let info = prepared.execute().await.expect("announced");
    let running = run_in_background(&node, &info).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let body = ActionCancelQueryRequest {
        info: info.encode_to_vec().into(),
    }
    .as_any()
    .encode_to_vec();
    let answer = action(&mut admin, "CancelQuery", body)
        .await
        .expect("cancel");
    let any = arrow_flight::sql::Any::decode(&*answer).expect("an Any");
    let result = any
        .unpack::<arrow_flight::sql::ActionCancelQueryResult>()
        .expect("decodes")
        .expect("an ActionCancelQueryResult");
    // CancelResult: 1 = CANCELLED, 2 = CANCELLING (the same numbers as CancelStatus).
    assert!(matches!(result.result, 1 | 2), "{result:?}");
    let (outcome, _) = tokio::time::timeout(Duration::from_secs(20), running)
        .await
        .expect("the DoGet ends")
        .expect("task");
    assert_eq!(outcome.expect_err("cancelled").code(), Code::Cancelled);
    // Asked again, the answer becomes CANCELLED, and stays so.
    let again = until_cancelled(&mut admin, &info, result.result).await;
    assert_eq!(again, CancelStatus::Cancelled as i32);
    let again = cancel_flight_info(&mut admin, &info).await.expect("again");
    assert_eq!(again, CancelStatus::Cancelled as i32);
    // A prepared statement that never ran has nothing to cancel.
    let mut idle = admin
        .inner
        .prepare("SELECT count(*) FROM spin".to_string(), None)
        .await
        .expect("prepare");
    let idle_info = idle.execute().await.expect("announced");
    let nothing = cancel_flight_info(&mut admin, &idle_info)
        .await
        .expect_err("idle");
    assert_eq!(nothing.code(), Code::NotFound, "{nothing:?}");
    // The cancelled one stays usable: it runs again (and is cancelled again).
    let rerun = run_in_background(&node, &info).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let status = cancel_flight_info(&mut admin, &info).await.expect("cancel");
    let status = until_cancelled(&mut admin, &info, status).await;
    assert_eq!(status, CancelStatus::Cancelled as i32);
    let (outcome, _) = tokio::time::timeout(Duration::from_secs(20), rerun)
        .await
        .expect("the DoGet ends")
        .expect("task");
    assert_eq!(outcome.expect_err("cancelled").code(), Code::Cancelled);
    // Garbage instead of a FlightInfo: invalid, and the node keeps serving.
    let garbage = action(&mut admin, "CancelFlightInfo", vec![0xff; 32])
        .await
        .expect_err("garbage");
    assert_eq!(garbage.code(), Code::InvalidArgument, "{garbage:?}");
    admin.query("SELECT 1").await.expect("serving");
}
