//! Cross-region sagas on a three-region mesh, with the bundled `transfer-saga` plugin:
//! a US → EU transfer commits and moves the money exactly once (the same idempotency key
//! returns the same saga); a credit the EU refuses compensates the US debit; an
//! overdraft is refused before anything moves; an orchestrator killed with -9 while a
//! step is unreachable resumes after restart and commits, and the dead orchestrator's
//! epoch is fenced off; a participant unreachable past the step timeout makes the saga
//! compensate.

use std::time::Duration;

use domicile::cli::admin_client::AdminSession;
use domicile::peers::proto::RunStepRequest;
use domicile::peers::proto::peer_client::PeerClient;
use domicile::saga::fields::Field;
use domicile::saga::record::StepState;
use domicile::saga::{SagaRecord, SagaState};
use domicile_tests::bank::{balance, settled, transfer, writer_session};
use domicile_tests::{Mesh, column_strings, domicile_binary};
use tonic::transport::Channel;

/// A bank whose us-east ↔ eu-central link is cut, and a transfer of `cents` from 1001
/// (us-east) to 2001 (eu-central) started half a second ago: debited, credit retrying.
async fn transfer_while_eu_is_cut_off(cents: i64, key: &str) -> (Mesh, SagaRecord) {
    let mesh = bank().await;
    mesh.cut("us-east", "eu-central");
    let started = writer_session(mesh.node("us-east"))
        .await
        .start_saga("transfer", &transfer(1001, 2001, "eu-central", cents), key)
        .await
        .expect("start");
    tokio::time::sleep(Duration::from_millis(500)).await;
    (mesh, started)
}

/// A peer-API client of `to`'s node, authenticated with `from`'s certificate.
async fn peer_client(mesh: &Mesh, from: &str, to: &str) -> PeerClient<Channel> {
    PeerClient::new(mesh.peer_channel(from, to).await.expect("peer channel"))
}

/// The bank with saga steps timing out after 2 s.
async fn bank() -> Mesh {
    domicile_tests::bank::bank(Duration::from_secs(2)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfers_commit_once_and_refusals_compensate() {
    let mesh = bank().await;
    let us = mesh.node("us-east");
    let eu = mesh.node("eu-central");
    let mut session = writer_session(us).await;

    let started = session
        .start_saga("transfer", &transfer(1001, 2001, "eu-central", 1000), "k-1")
        .await
        .expect("start");
    let saga = settled(&mut session, &started.id, Duration::from_secs(30)).await;
    assert_eq!(saga.state, SagaState::Committed, "{saga:?}");
    assert_eq!(balance(us, 1001).await, "90.00");
    assert_eq!(balance(eu, 2001).await, "15.00");
    // The same key is the same saga: no second transfer.
    let again = session
        .start_saga("transfer", &transfer(1001, 2001, "eu-central", 1000), "k-1")
        .await
        .expect("start again");
    assert_eq!(again.id, started.id);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(balance(us, 1001).await, "90.00");
    assert_eq!(balance(eu, 2001).await, "15.00");

    // A credit the EU refuses (no such account): the US debit is compensated.
    let refused = session
        .start_saga("transfer", &transfer(1001, 2999, "eu-central", 2500), "k-2")
        .await
        .expect("start");
    let saga = settled(&mut session, &refused.id, Duration::from_secs(30)).await;
    assert_eq!(saga.state, SagaState::Compensated, "{saga:?}");
    assert!(
        saga.last_error
            .as_deref()
            .unwrap_or("")
            .contains("account not found")
    );
    assert_eq!(balance(us, 1001).await, "90.00");

    // An overdraft is refused at the debit: nothing moved, nothing to undo.
    let overdraft = session
        .start_saga(
            "transfer",
            &transfer(1001, 2001, "eu-central", 1_000_000),
            "k-3",
        )
        .await
        .expect("start");
    let saga = settled(&mut session, &overdraft.id, Duration::from_secs(30)).await;
    assert_eq!(saga.state, SagaState::Compensated, "{saga:?}");
    assert_eq!(balance(us, 1001).await, "90.00");
    assert_eq!(balance(eu, 2001).await, "15.00");

    // A credit message the US policy refuses (it would carry an e-mail address),
    // decided before the debit ran and recorded by the debit's commit: the debit is
    // undone and nothing reaches the EU. Started and awaited in one call.
    let mut personal = transfer(1001, 2001, "eu-central", 500);
    personal.push((
        "holder_email".into(),
        Field::Text("someone@example.com".into()),
    ));
    let saga = session
        .start_saga_settled("transfer", &personal, "k-4", Duration::from_secs(30))
        .await
        .expect("start and wait");
    assert_eq!(saga.state, SagaState::Compensated, "{saga:?}");
    assert!(
        saga.last_error.as_deref().unwrap_or("").contains("CPRA"),
        "{saga:?}"
    );
    assert_eq!(saga.steps[0].state, StepState::Compensated, "{saga:?}");
    assert_eq!(saga.steps[1].attempts, 1, "{saga:?}");
    assert_eq!(balance(us, 1001).await, "90.00");
    assert_eq!(balance(eu, 2001).await, "15.00");

    // The CLI: the same key through `domicile saga start` is the same saga; `list`
    // filters by state; `show` names each step and its region.
    let cli = |args: &[&str]| {
        let output = std::process::Command::new(domicile_binary())
            .args(["saga", "--endpoint"])
            .arg(format!("http://{}", us.admin.expect("admin")))
            .args(["--user", "writer"])
            .args(args)
            .env("DOMICILE_PASSWORD", "writer-pw")
            .output()
            .expect("cli runs");
        assert!(output.status.success(), "{output:?}");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let start = |key: &str, amount: &str, more: &[&str]| {
        let mut args = vec![
            "start",
            "transfer",
            "--from",
            "1001",
            "--to",
            "2001",
            "--amount",
            amount,
            "--currency",
            "EUR",
            "--from-region",
            "us-east",
            "--to-region",
            "eu-central",
            "--idempotency-key",
            key,
        ];
        args.extend_from_slice(more);
        cli(&args)
    };
    let printed = start("k-1", "10.00", &[]);
    assert!(printed.starts_with(&started.id), "{printed}");
    let committed = cli(&["list", "--state", "committed", "-o", "json"]);
    let committed: serde_json::Value = serde_json::from_str(&committed).expect("JSON");
    let committed = committed.as_array().expect("an array");
    assert_eq!(committed.len(), 1, "{committed:?}");
    assert_eq!(committed[0]["state"], "committed");
    assert_eq!(committed[0]["id"], started.id.as_str());
    // A table for people, and a sentence when there is nothing to list.
    let table = cli(&["list"]);
    assert!(
        table.contains("idempotency_key") && table.contains(&started.id),
        "{table}"
    );
    assert_eq!(cli(&["list", "--state", "stuck"]).trim(), "no stuck sagas");
    // `--wait-ms` prints how the saga ended.
    let waited = start("k-5", "1.00", &["--wait-ms", "30000"]);
    assert!(waited.contains(" committed "), "{waited}");
    assert_eq!(balance(us, 1001).await, "89.00");
    let shown = cli(&["show", &started.id]);
    assert!(
        shown.contains("debit on us-east: done") && shown.contains("credit on eu-central: done"),
        "{shown}"
    );

    // A caller who waits gets the saga recorded by its first step's commit. An
    // overdraft refused there is recorded all the same, with one attempt, and
    // compensated; nothing moved.
    let wait = Duration::from_secs(30);
    let overdraft = transfer(1001, 2001, "eu-central", 1_000_000);
    let saga = session
        .start_saga_settled("transfer", &overdraft, "k-6", wait)
        .await
        .expect("start and wait");
    assert_eq!(saga.state, SagaState::Compensated, "{saga:?}");
    assert_eq!(saga.steps[0].attempts, 1, "{saga:?}");
    assert_eq!(saga.steps[0].state, StepState::Pending, "{saga:?}");
    assert!(
        saga.last_error
            .as_deref()
            .unwrap_or("")
            .contains("insufficient funds"),
        "{saga:?}"
    );
    // The same key, waited for again, is the same saga (k-5 committed above).
    let again = session
        .start_saga_settled(
            "transfer",
            &transfer(1001, 2001, "eu-central", 100),
            "k-5",
            wait,
        )
        .await
        .expect("start k-5 again");
    assert_eq!(again.state, SagaState::Committed, "{again:?}");
    // Eight callers with one key at once: each runs the debit, one commit records the
    // saga, the others' commits are called off; all get that saga, the money moves once.
    let endpoint = format!("http://{}", us.admin.expect("admin API"));
    let racing: Vec<_> = (0..8)
        .map(|_| {
            let endpoint = endpoint.clone();
            tokio::spawn(async move {
                AdminSession::connect(&endpoint, "writer", "writer-pw")
                    .await
                    .expect("admin session")
                    .start_saga_settled(
                        "transfer",
                        &transfer(1001, 2001, "eu-central", 100),
                        "k-7",
                        Duration::from_secs(30),
                    )
                    .await
                    .expect("racing start")
            })
        })
        .collect();
    let mut ids = std::collections::HashSet::new();
    for start in racing {
        let saga = start.await.expect("task");
        assert_eq!(saga.state, SagaState::Committed, "{saga:?}");
        ids.insert(saga.id);
    }
    assert_eq!(ids.len(), 1, "one saga per key: {ids:?}");
    assert_eq!(balance(us, 1001).await, "88.00");
    assert_eq!(balance(eu, 2001).await, "17.00");

    // Support sees every saga in SQL.
    let mut reader = us.client("reader").await.expect("login");
    let rows = reader
        .query("SELECT state FROM system.sagas ORDER BY state")
        .await
        .expect("system.sagas");
    assert_eq!(
        column_strings(&rows, "state"),
        [
            "committed",
            "committed",
            "committed",
            "compensated",
            "compensated",
            "compensated",
            "compensated"
        ]
    );
    // Every step message was decided by the US policy and audited once: the credits
    // of k-1, k-2, k-5 and k-7 went (k-7's racing starts decided it eight times, one
    // commit kept its entry), k-4's was refused, k-3 and k-6 stopped at their debit.
    let audit = reader
        .query("SELECT decision FROM system.audit WHERE path = 'saga-step' ORDER BY decision")
        .await
        .expect("audit");
    assert_eq!(
        column_strings(&audit, "decision"),
        ["allow", "allow", "allow", "allow", "deny"]
    );
}

/// The reproduction of issue 20: a transfer started on us-east with key K commits; the
/// client fails over and starts it again with K on eu-central (and on ap-southeast, in
/// SQL): the same saga answers and the money moves once. The key's saga lives on the
/// node of its first step's region only; a start while that region is unreachable is
/// refused (retryable) and records nothing; another request under K is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_idempotency_key_moves_money_once_through_any_node() {
    let mesh = bank().await;
    let (us, eu, ap) = (
        mesh.node("us-east"),
        mesh.node("eu-central"),
        mesh.node("ap-southeast"),
    );
    let wait = Duration::from_secs(30);
    let request = transfer(1001, 2001, "eu-central", 1000);
    let first = writer_session(us)
        .await
        .start_saga_settled("transfer", &request, "k-mesh", wait)
        .await
        .expect("start on us-east");
    assert_eq!(first.state, SagaState::Committed, "{first:?}");

    let again = writer_session(eu)
        .await
        .start_saga_settled("transfer", &request, "k-mesh", wait)
        .await
        .expect("the same start on eu-central");
    assert_eq!(
        again.id, first.id,
        "one key, one saga, whichever node is asked"
    );
    assert_eq!(again.state, SagaState::Committed, "{again:?}");
    assert!(
        again.steps.iter().all(|step| step.result.is_empty()),
        "a forwarded start answers no step results: {again:?}"
    );
    let mut writer = ap.client("writer").await.expect("login");
    let rows = writer
        .query(
            "SELECT id, state FROM start_saga('transfer', 'k-mesh', {
                'from_account': 1001, 'to_account': 2001, 'amount': 10.00, 'currency': 'EUR',
                'from_region': 'us-east', 'to_region': 'eu-central'})",
        )
        .await
        .expect("the same start in SQL on ap-southeast");
    assert_eq!(column_strings(&rows, "id"), [first.id.as_str()]);
    assert_eq!(balance(us, 1001).await, "90.00");
    assert_eq!(balance(eu, 2001).await, "15.00");

    // Another request under the key, through any node: refused, nothing moves.
    for node in [us, eu] {
        let reused = writer_session(node)
            .await
            .start_saga_settled(
                "transfer",
                &transfer(1001, 2001, "eu-central", 999),
                "k-mesh",
                wait,
            )
            .await
            .expect_err("another request under a used key");
        assert!(
            format!("{reused:#}").contains("started another saga"),
            "{reused:#}"
        );
    }

    // A new transfer started on eu-central is recorded and driven by us-east.
    let routed = writer_session(eu)
        .await
        .start_saga_settled(
            "transfer",
            &transfer(1001, 2001, "eu-central", 500),
            "k-routed",
            wait,
        )
        .await
        .expect("start through eu-central");
    assert_eq!(routed.state, SagaState::Committed, "{routed:?}");
    let logs = |node| async move {
        writer_session(node)
            .await
            .sagas(None)
            .await
            .expect("sagas")
            .into_iter()
            .map(|saga| saga.idempotency_key)
            .collect::<Vec<_>>()
    };
    let mut on_us = logs(us).await;
    on_us.sort();
    assert_eq!(on_us, ["k-mesh", "k-routed"]);
    assert!(logs(eu).await.is_empty() && logs(ap).await.is_empty());
    assert_eq!(balance(us, 1001).await, "85.00");

    // While us-east is out of reach from eu-central, a start there is refused as
    // retryable and nothing is recorded; once healed, the retry moves the money once.
    mesh.cut("eu-central", "us-east");
    let cut_off = writer_session(eu)
        .await
        .start_saga_settled(
            "transfer",
            &transfer(1001, 2001, "eu-central", 100),
            "k-cut",
            wait,
        )
        .await
        .expect_err("owner unreachable");
    let text = format!("{cut_off:#}");
    assert!(
        text.contains("unreachable") && text.contains("retry with the same idempotency key"),
        "{text}"
    );
    assert!(logs(eu).await.is_empty());
    mesh.heal("eu-central", "us-east");
    for node in [eu, ap] {
        let retried = writer_session(node)
            .await
            .start_saga_settled(
                "transfer",
                &transfer(1001, 2001, "eu-central", 100),
                "k-cut",
                wait,
            )
            .await
            .expect("retry after the heal");
        assert_eq!(retried.state, SagaState::Committed, "{retried:?}");
    }
    assert_eq!(balance(us, 1001).await, "84.00");
    assert_eq!(balance(eu, 2001).await, "21.00");
}

/// The peer API's saga start, called with a peer's own certificate: a node runs starts
/// only for sagas whose first step it runs (no second hop), and only for writers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_saga_starts_are_checked_by_the_owner() {
    use domicile::peers::proto::{ForwardedPrincipal, StartSagaRequest};
    let mesh = bank().await;
    let request = |role: &str, from_region: &str| {
        let mut input = transfer(1001, 2001, "eu-central", 100);
        input[4].1 = Field::Text(from_region.into());
        StartSagaRequest {
            region: "ap-southeast".into(),
            principal: Some(ForwardedPrincipal {
                user: "mallory".into(),
                role: role.into(),
                home_region: "ap-southeast".into(),
            }),
            saga_type: "transfer".into(),
            fields_json: serde_json::to_string(&input).expect("json"),
            idempotency_key: "k-peer".into(),
            wait_ms: 0,
            placement: vec![format!("debit@{from_region}"), "credit@eu-central".into()],
        }
    };
    let mut client = peer_client(&mesh, "ap-southeast", "eu-central").await;
    let hop = client
        .start_saga(request("writer", "us-east"))
        .await
        .expect_err("eu-central does not run the first step");
    assert_eq!(hop.code(), tonic::Code::FailedPrecondition, "{hop}");
    let mut client = peer_client(&mesh, "ap-southeast", "us-east").await;
    let reader = client
        .start_saga(request("reader", "us-east"))
        .await
        .expect_err("a reader starts nothing");
    assert_eq!(reader.code(), tonic::Code::PermissionDenied, "{reader}");
    let mut misplaced = request("writer", "us-east");
    misplaced.placement[1] = "credit@ap-southeast".into();
    let differs = client
        .start_saga(misplaced)
        .await
        .expect_err("the plugins would disagree on the key's owner");
    assert_eq!(differs.code(), tonic::Code::FailedPrecondition, "{differs}");
    assert!(differs.message().contains("place the steps"), "{differs}");
    let mut claims_other = request("writer", "us-east");
    claims_other.region = "eu-central".into();
    let forged = client
        .start_saga(claims_other)
        .await
        .expect_err("a certificate of ap-southeast does not speak for eu-central");
    assert_eq!(forged.code(), tonic::Code::PermissionDenied, "{forged}");
    assert!(
        writer_session(mesh.node("us-east"))
            .await
            .sagas(None)
            .await
            .expect("sagas")
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_starts_sagas_for_writers_once_per_key() {
    let mesh = bank().await;
    let us = mesh.node("us-east");
    let start = |key: &str, to: i64| {
        format!(
            "SELECT id, state, idempotency_key FROM start_saga('transfer', '{key}', {{
                'from_account': 1001, 'to_account': {to}, 'amount': 12.50, 'currency': 'EUR',
                'from_region': 'us-east', 'to_region': 'eu-central'}})"
        )
    };
    let saga_count = || async {
        let mut reader = us.client("reader").await.expect("login");
        let rows = reader
            .query("SELECT count(*) AS n FROM system.sagas")
            .await
            .expect("count");
        column_strings(&rows, "n").join("")
    };

    // A reader may look but not start; EXPLAIN plans without starting.
    let mut reader = us.client("reader").await.expect("login");
    let refused = reader
        .query(&start("sql-1", 2001))
        .await
        .expect_err("readers cannot start sagas");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused}");
    let mut writer = us.client("writer").await.expect("login");
    let plan = writer
        .query(&format!("EXPLAIN {}", start("sql-1", 2001)))
        .await
        .expect("explain");
    assert!(
        column_strings(&plan, "plan")
            .join("\n")
            .contains("StartSagaExec"),
        "{plan:?}"
    );
    assert_eq!(saga_count().await, "0");

    let rows = writer.query(&start("sql-1", 2001)).await.expect("start");
    let [id] = column_strings(&rows, "id").try_into().expect("one saga");
    assert_eq!(column_strings(&rows, "idempotency_key"), ["sql-1"]);
    let saga = settled(&mut writer_session(us).await, &id, Duration::from_secs(30)).await;
    assert_eq!(saga.state, SagaState::Committed, "{saga:?}");
    assert_eq!(
        saga.input.iter().find(|(name, _)| name == "amount"),
        Some(&("amount".to_string(), Field::Decimal("1250".into(), 2))),
        "a decimal literal reaches the steps exactly"
    );
    assert_eq!(balance(us, 1001).await, "87.50");
    assert_eq!(balance(mesh.node("eu-central"), 2001).await, "17.50");

    // The same key is the same saga; under another request it is refused.
    let rows = writer.query(&start("sql-1", 2001)).await.expect("again");
    assert_eq!(column_strings(&rows, "id"), [id.as_str()]);
    assert_eq!(column_strings(&rows, "state"), ["committed"]);
    let reused = writer
        .query(&start("sql-1", 2999))
        .await
        .expect_err("a used key under another request");
    assert!(
        reused.message().contains("started another saga"),
        "{reused}"
    );
    assert_eq!(balance(us, 1001).await, "87.50");

    // Bad calls say what is wrong and start nothing.
    for (sql, expected) in [
        (
            "SELECT * FROM start_saga('transfer', 'sql-2')".to_string(),
            "three constant arguments",
        ),
        (
            "SELECT * FROM start_saga('transfer', 'sql-2', {'from_account': 1001})".to_string(),
            "needs input field from_region",
        ),
        (
            "SELECT * FROM start_saga('payroll', 'sql-2', {'a': 1})".to_string(),
            "saga type payroll is not declared",
        ),
        (
            "SELECT * FROM start_saga('transfer', 'sql-2', {'ids': [1, 2]})".to_string(),
            "cannot carry",
        ),
        (
            "SELECT * FROM start_saga('transfer', 'sql-2', {'at': random()})".to_string(),
            "constant",
        ),
        (
            "SELECT * FROM start_saga('transfer', 'sql-2', 42)".to_string(),
            "must be a struct",
        ),
    ] {
        let error = writer.query(&sql).await.expect_err(&sql);
        assert!(error.message().contains(expected), "{sql}: {error}");
    }
    assert_eq!(saga_count().await, "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_stopping_mid_saga_stops_cleanly_and_resumes_it() {
    let (mut mesh, started) = transfer_while_eu_is_cut_off(100, "k-stop").await;
    // SIGTERM while the credit is being retried: the drive ends at its next wait and
    // storage closes cleanly (no crash recovery at the next start).
    let status = mesh.stop("us-east").expect("stop");
    assert!(status.success(), "{status}");
    let logs = mesh.node("us-east").logs();
    assert!(logs.contains("storage closed cleanly"), "{logs}");
    mesh.heal("us-east", "eu-central");
    mesh.restart("us-east").expect("restart");
    let mut session = writer_session(mesh.node("us-east")).await;
    let saga = settled(&mut session, &started.id, Duration::from_secs(30)).await;
    assert_eq!(saga.state, SagaState::Committed, "{saga:?}");
    assert_eq!(balance(mesh.node("us-east"), 1001).await, "99.00");
    assert_eq!(balance(mesh.node("eu-central"), 2001).await, "6.00");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_orchestrator_resumes_and_an_unreachable_participant_compensates() {
    // The EU is unreachable: the debit commits, the credit keeps failing...
    let (mut mesh, started) = transfer_while_eu_is_cut_off(700, "k-crash").await;
    // ...when the orchestrator dies.
    mesh.kill9("us-east");
    mesh.heal("us-east", "eu-central");
    mesh.restart("us-east").expect("restart");
    let mut session = writer_session(mesh.node("us-east")).await;
    let saga = settled(&mut session, &started.id, Duration::from_secs(30)).await;
    assert_eq!(saga.state, SagaState::Committed, "{saga:?}");
    assert!(
        saga.epoch >= 2,
        "the restarted orchestrator took a new epoch"
    );
    assert_eq!(balance(mesh.node("us-east"), 1001).await, "93.00");
    assert_eq!(balance(mesh.node("eu-central"), 2001).await, "12.00");

    // Fencing: a step request of the dead orchestrator's epoch (1) is refused by the
    // participant, which has seen the newer one; nothing moves.
    let stale = RunStepRequest {
        region: "us-east".into(),
        saga_id: started.id.clone(),
        saga_type: "transfer".into(),
        step: "credit".into(),
        direction: "compensate".into(),
        epoch: 1,
        fields_json: serde_json::to_string(&transfer(1001, 2001, "eu-central", 700)).expect("json"),
    };
    let refused = peer_client(&mesh, "us-east", "eu-central")
        .await
        .run_step(stale)
        .await
        .expect_err("stale epoch refused");
    assert_eq!(refused.code(), tonic::Code::Aborted, "{refused:?}");
    assert_eq!(balance(mesh.node("eu-central"), 2001).await, "12.00");

    // The EU stays unreachable past the step timeout (2 s): the saga compensates once
    // the link is back (the credit's compensation reaches the EU and bars the credit).
    mesh.cut("us-east", "eu-central");
    let timed_out = session
        .start_saga(
            "transfer",
            &transfer(1001, 2001, "eu-central", 300),
            "k-timeout",
        )
        .await
        .expect("start");
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let during = session.saga(&timed_out.id).await.expect("saga");
    assert_eq!(during.state, SagaState::Compensating, "{during:?}");
    mesh.heal("us-east", "eu-central");
    let saga = settled(&mut session, &timed_out.id, Duration::from_secs(60)).await;
    assert_eq!(saga.state, SagaState::Compensated, "{saga:?}");
    assert_eq!(balance(mesh.node("us-east"), 1001).await, "93.00");
    assert_eq!(balance(mesh.node("eu-central"), 2001).await, "12.00");
}
