//! Saga steps from real components: the bundled `transfer-saga` and the hostile
//! `saga-escape` guest, run by the node's saga host against a real store. A step is one
//! local transaction: its writes and the orchestrator's record commit together or not at
//! all, concurrent steps on one account lose no update, and a step cannot reach rows
//! homed elsewhere, undeclared tables, or unbounded host memory.

use std::sync::Arc;
use std::time::Duration;

use domicile::catalog::{ColumnDef, ColumnType, DataClass, Locality, TableDef};
use domicile::plugins::saga_types::{StepInput, Value};
use domicile::plugins::wit_values::Decimal;
use domicile::plugins::{
    CallError, PluginLimits, PluginRuntime, SagaStepPlugin, StepDirection, StepError,
};
use domicile::storage::{StorageError, Store, Value as Stored};
use domicile_tests::wasm;

const REGION: &str = "eu-central";

fn runtime(deadline: Duration) -> Arc<PluginRuntime> {
    PluginRuntime::new(PluginLimits {
        call_deadline: deadline,
        ..PluginLimits::default()
    })
    .expect("runtime")
}

fn accounts_def(id: u32) -> TableDef {
    let column = |id: u16, name: &str, column_type, class| ColumnDef {
        id,
        name: name.into(),
        column_type,
        nullable: false,
        class,
    };
    TableDef {
        id,
        name: "accounts".into(),
        columns: vec![
            column(0, "id", ColumnType::BigInt, DataClass::Public),
            column(1, "region", ColumnType::Text, DataClass::Public),
            column(
                2,
                "balance",
                ColumnType::Decimal {
                    precision: 18,
                    scale: 2,
                },
                DataClass::Sensitive,
            ),
            column(3, "currency", ColumnType::Text, DataClass::Public),
        ],
        primary_key: vec![0],
        locality: Locality::RegionalByRow {
            region_column: "region".into(),
        },
        next_column_id: 4,
        cdc: false,
        cache_ttl_ms: None,
    }
}

/// A store with `accounts` holding (id, cents) rows homed in eu-central, in EUR.
async fn bank(dir: &std::path::Path, balances: &[(i64, i128)]) -> Store {
    let store = Store::open(&dir.join("node.redb")).expect("store");
    let rows: Vec<(i64, i128)> = balances.to_vec();
    store
        .write(move |ctx| {
            ctx.create_table(|id| Ok(accounts_def(id)))?
                .map_err(|e| StorageError::Transaction(format!("{e:?}")))?;
            Ok::<_, StorageError>(())
        })
        .await
        .expect("create accounts");
    let def = store.table("accounts").expect("accounts");
    store
        .write(move |ctx| {
            for (id, cents) in rows {
                ctx.put_row(
                    &def,
                    REGION,
                    &[
                        Stored::BigInt(id),
                        Stored::Text(REGION.into()),
                        Stored::Decimal(cents),
                        Stored::Text("EUR".into()),
                    ],
                );
            }
            Ok::<_, StorageError>(())
        })
        .await
        .expect("seed accounts");
    store
}

fn balance(store: &Store, id: i64) -> Option<i128> {
    let def = store.table("accounts").expect("accounts");
    let row = store
        .snapshot()
        .expect("snapshot")
        .lookup(&def, REGION, &[Stored::BigInt(id)], &[2])
        .expect("lookup")?;
    match row[0] {
        Stored::Decimal(cents) => Some(cents),
        ref other => panic!("balance is {other:?}"),
    }
}

fn transfer(step: &str, from: i64, to: i64, cents: i64) -> StepInput {
    StepInput {
        saga_id: format!("saga-{from}-{to}-{cents}"),
        step: step.into(),
        fields: vec![
            ("from_account".into(), Value::Bigint(from)),
            ("to_account".into(), Value::Bigint(to)),
            (
                "amount".into(),
                Value::Decimal(Decimal {
                    unscaled: cents.to_string(),
                    scale: 2,
                }),
            ),
            ("currency".into(), Value::Text("EUR".into())),
            ("from_region".into(), Value::Text(REGION.into())),
            ("to_region".into(), Value::Text(REGION.into())),
        ],
    }
}

/// The orchestrator's record of a step, written through `also` in the step's commit.
fn record(
    key: String,
) -> impl Fn(&mut domicile::storage::WriteContext<'_>, &[(String, Value)]) -> Result<(), StepError>
+ Clone
+ Send
+ 'static {
    move |ctx, _result| {
        ctx.put_state(key.clone(), b"done".to_vec());
        Ok(())
    }
}

fn recorded(store: &Store, key: &str) -> bool {
    !store.state_with_prefix(key).expect("state").is_empty()
}

#[tokio::test]
async fn transfer_steps_move_money_and_commit_with_the_orchestrators_record() {
    let dir = tempfile::tempdir().expect("dir");
    let store = bank(dir.path(), &[(1, 10_000), (2, 500)]).await;
    let plugin = SagaStepPlugin::load(&runtime(Duration::from_secs(5)), &wasm("transfer_saga"))
        .expect("transfer-saga loads");
    let steps: Vec<&str> = plugin.saga_types()[0]
        .steps
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(
        (plugin.saga_types()[0].name.as_str(), steps),
        ("transfer", vec!["debit", "credit"])
    );

    let debit = transfer("debit", 1, 2, 2_550);
    let result = plugin
        .run_step(
            &store,
            REGION,
            &debit,
            "transfer",
            StepDirection::Execute,
            record("k/debit".into()),
        )
        .await
        .expect("debit commits");
    assert_eq!(result[0].0, "debited");
    assert_eq!(balance(&store, 1), Some(7_450));
    assert!(
        recorded(&store, "k/debit"),
        "the record commits with the step"
    );

    let credit = transfer("credit", 1, 2, 2_550);
    plugin
        .run_step(
            &store,
            REGION,
            &credit,
            "transfer",
            StepDirection::Execute,
            record("k/credit".into()),
        )
        .await
        .expect("credit commits");
    assert_eq!(balance(&store, 2), Some(3_050));

    // An overdraft is refused: nothing written, the record included.
    let overdraft = transfer("debit", 2, 1, 1_000_000);
    let refused = plugin
        .run_step(
            &store,
            REGION,
            &overdraft,
            "transfer",
            StepDirection::Execute,
            record("k/over".into()),
        )
        .await;
    assert!(
        matches!(&refused, Err(StepError::Rejected(r)) if r.contains("insufficient")),
        "{refused:?}"
    );
    assert_eq!(balance(&store, 2), Some(3_050));
    assert!(
        !recorded(&store, "k/over"),
        "a refused step records nothing"
    );

    // Compensations undo exactly.
    for step in [&credit, &debit] {
        plugin
            .run_step(
                &store,
                REGION,
                step,
                "transfer",
                StepDirection::Compensate,
                record(format!("k/undo/{}", step.step)),
            )
            .await
            .expect("compensation commits");
    }
    assert_eq!(
        (balance(&store, 1), balance(&store, 2)),
        (Some(10_000), Some(500))
    );

    let unknown = plugin
        .run_step(
            &store,
            REGION,
            &transfer("refund", 1, 2, 1),
            "transfer",
            StepDirection::Execute,
            record("k/x".into()),
        )
        .await;
    assert!(
        matches!(unknown, Err(StepError::UnknownStep { .. })),
        "{unknown:?}"
    );
}

#[tokio::test]
async fn concurrent_debits_of_one_account_lose_no_update() {
    let dir = tempfile::tempdir().expect("dir");
    let store = bank(dir.path(), &[(1, 5_000), (2, 0)]).await;
    let plugin = Arc::new(
        SagaStepPlugin::load(&runtime(Duration::from_secs(5)), &wasm("transfer_saga"))
            .expect("transfer-saga loads"),
    );
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let (plugin, store) = (Arc::clone(&plugin), store.clone());
            tokio::spawn(async move {
                let debit = transfer("debit", 1, 2, 1_000);
                // Lost commit races are retried, as the orchestrator does.
                loop {
                    match plugin
                        .run_step(
                            &store,
                            REGION,
                            &debit,
                            "transfer",
                            StepDirection::Execute,
                            record(format!("k/{i}")),
                        )
                        .await
                    {
                        Err(StepError::Conflict) => continue,
                        other => return other.map(|_| ()),
                    }
                }
            })
        })
        .collect();
    let mut committed = 0;
    let mut rejected = 0;
    for task in tasks {
        match task.await.expect("task") {
            Ok(()) => committed += 1,
            Err(StepError::Rejected(_)) => rejected += 1,
            Err(other) => panic!("unexpected {other}"),
        }
    }
    assert_eq!(
        (committed, rejected),
        (5, 3),
        "50.00 covers exactly five debits of 10.00"
    );
    assert_eq!(balance(&store, 1), Some(0));
}

/// What a refused step's error must look like.
type Expectation = fn(&StepError) -> bool;

#[tokio::test]
async fn a_step_cannot_escape_its_transaction() {
    let dir = tempfile::tempdir().expect("dir");
    let store = bank(dir.path(), &[(1, 100)]).await;
    let plugin = SagaStepPlugin::load(
        &runtime(Duration::from_millis(500)),
        &wasm("guest_saga_escape"),
    )
    .expect("guest loads");
    let input = |step: &str| StepInput {
        saga_id: "s".into(),
        step: step.into(),
        fields: vec![("region".into(), Value::Text(REGION.into()))],
    };
    let cases: [(&str, Expectation); 5] = [
        (
            "foreign-row",
            |e| matches!(e, StepError::Retryable(r) if r.contains("homed in us-east")),
        ),
        (
            "undeclared-table",
            |e| matches!(e, StepError::Retryable(r) if r.contains("not declared")),
        ),
        (
            "too-many-rows",
            |e| matches!(e, StepError::Retryable(r) if r.contains("at most")),
        ),
        ("spin", |e| {
            matches!(e, StepError::Plugin(CallError::Timeout { .. }))
        }),
        ("trap", |e| {
            matches!(e, StepError::Plugin(CallError::Trap(_)))
        }),
    ];
    for (step, expected) in cases {
        let outcome = plugin
            .run_step(
                &store,
                REGION,
                &input(step),
                "escape",
                StepDirection::Execute,
                record(format!("k/{step}")),
            )
            .await;
        match &outcome {
            Err(error) => assert!(expected(error), "{step}: {error}"),
            Ok(_) => panic!("{step} committed"),
        }
        assert_eq!(
            balance(&store, 1),
            Some(100),
            "{step}: its first write was discarded"
        );
        assert_eq!(balance(&store, 2), None, "{step}");
        assert!(!recorded(&store, &format!("k/{step}")), "{step}");
    }
    // The same plugin still runs a well-behaved step afterwards.
    plugin
        .run_step(
            &store,
            REGION,
            &input("fine"),
            "escape",
            StepDirection::Execute,
            record("k/fine".into()),
        )
        .await
        .expect("fine");
    assert_eq!(balance(&store, 1), Some(1));
}
