//! The WASM plugin host against real components built from `plugins/` and the hostile
//! guests in `tests/guests/`: a real policy decides; garbage, the wrong world and
//! oversized components are refused at load; an infinite loop, a memory bomb, a trap and
//! an oversized answer are contained at call time (fail closed) while other calls keep
//! being answered.

use std::sync::Arc;
use std::time::{Duration, Instant};

use domicile::plugins::residency_types::{
    BatchDecision, Column, ColumnAction, DataClass, Decision, Purpose, RowBatch, StepPayload,
    Table, Value,
};
use domicile::plugins::{CallError, LoadError, PluginLimits, PluginRuntime, ResidencyPolicyPlugin};
use domicile_tests::wasm;

/// A deadline generous enough for a debug build on a loaded 2-core machine; the
/// infinite-loop guest proves the deadline still stops a call.
fn runtime() -> Arc<PluginRuntime> {
    let limits = PluginLimits {
        call_deadline: Duration::from_millis(250),
        ..PluginLimits::default()
    };
    PluginRuntime::new(limits).expect("engine")
}

fn accounts(homes: &[u16]) -> RowBatch {
    RowBatch {
        table: Table {
            name: "accounts".into(),
            columns: vec![
                Column {
                    name: "id".into(),
                    class: DataClass::Public,
                },
                Column {
                    name: "email".into(),
                    class: DataClass::Pii,
                },
                Column {
                    name: "balance".into(),
                    class: DataClass::Sensitive,
                },
            ],
        },
        regions: vec!["eu-central".into(), "us-east".into(), "ap-southeast".into()],
        home_regions: homes.to_vec(),
        rows: homes
            .iter()
            .enumerate()
            .map(|(i, _)| {
                vec![
                    Value::Bigint(i as i64),
                    Value::Text(format!("user{i}@example.eu")),
                    Value::Null,
                ]
            })
            .collect(),
    }
}

fn refused_rows(decision: &BatchDecision, rows: usize) -> Vec<usize> {
    (0..rows)
        .filter(|row| {
            let effective = decision
                .exceptions
                .iter()
                .find(|(index, _)| *index as usize == *row)
                .map_or(&decision.default, |(_, d)| d);
            matches!(effective, Decision::Deny(_))
        })
        .collect()
}

#[test]
fn the_eu_policy_decides_as_its_readme_says() {
    let runtime = runtime();
    let policy = ResidencyPolicyPlugin::load(&runtime, &wasm("eu_gdpr")).expect("eu-gdpr loads");

    let decision = policy.may_store(&accounts(&[0, 1, 0]), 1).expect("call");
    assert_eq!(
        refused_rows(&decision, 3),
        vec![0, 2],
        "EU rows may not be stored in us-east"
    );
    let decision = policy.may_store(&accounts(&[0, 1]), 0).expect("call");
    assert!(refused_rows(&decision, 2).is_empty());

    let decision = policy
        .may_leave(&accounts(&[0]), 2, Purpose::QueryResult)
        .expect("call");
    let Decision::AllowWith(actions) = &decision.default else {
        panic!("a result leaving the EU is allowed with column actions");
    };
    assert!(matches!(
        actions.as_slice(),
        [ColumnAction::Keep, ColumnAction::Mask, ColumnAction::Remove]
    ));
    let decision = policy
        .may_leave(&accounts(&[0]), 1, Purpose::SagaStep)
        .expect("call");
    let Decision::Deny(denial) = decision.default else {
        panic!("saga transfer of EU rows must be denied")
    };
    assert_eq!(denial.code, 44);

    let payload = StepPayload {
        saga_type: "transfer-saga".into(),
        step: "credit".into(),
        fields: vec![("iban".into(), Value::Text("DE89370400440532013000".into()))],
    };
    assert!(matches!(
        futures::executor::block_on(policy.may_send_step(&payload, "us-east", "eu-central")),
        Ok(Decision::Deny(_))
    ));
}

#[test]
fn bad_components_are_refused_at_load() {
    let runtime = runtime();
    let garbage = ResidencyPolicyPlugin::load(&runtime, b"\0asm garbage that is not a component")
        .unwrap_err();
    assert!(matches!(garbage, LoadError::NotAComponent(_)), "{garbage}");

    let wrong = ResidencyPolicyPlugin::load(&runtime, &wasm("guest_wrong_world")).unwrap_err();
    assert!(matches!(wrong, LoadError::WrongWorld { .. }), "{wrong}");

    // Imports keyed-hash, which only the cdc-redactor world grants: cannot be linked.
    let greedy = ResidencyPolicyPlugin::load(&runtime, &wasm("guest_extra_import")).unwrap_err();
    assert!(matches!(greedy, LoadError::WrongWorld { .. }), "{greedy}");
    assert!(greedy.to_string().contains("keyed-hash"), "{greedy}");

    let small = PluginRuntime::new(PluginLimits {
        component_size_max_bytes: 1024,
        ..PluginLimits::default()
    })
    .expect("engine");
    let too_large = ResidencyPolicyPlugin::load(&small, &wasm("eu_gdpr")).unwrap_err();
    assert!(
        too_large.to_string().contains("plugin_size_max_bytes"),
        "{too_large}"
    );
}

/// What a hostile guest's failure must look like.
type Expectation = fn(&CallError) -> bool;

#[test]
fn hostile_guests_are_contained_and_others_keep_being_served() {
    let runtime = runtime();
    let good = Arc::new(ResidencyPolicyPlugin::load(&runtime, &wasm("eu_gdpr")).expect("eu-gdpr"));

    // A good policy keeps answering on another thread the whole time.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let answered = {
        let (good, stop) = (Arc::clone(&good), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut answered = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                good.may_store(&accounts(&[0]), 0)
                    .expect("good policy answers");
                answered += 1;
            }
            answered
        })
    };

    let cases: [(&str, Expectation); 4] = [
        ("guest_infinite_loop", |e| {
            matches!(e, CallError::Timeout { .. })
        }),
        ("guest_memory_bomb", |e| {
            matches!(e, CallError::OutOfMemory { .. })
        }),
        ("guest_trap", |e| matches!(e, CallError::Trap(_))),
        ("guest_oversized_output", |e| {
            matches!(e, CallError::InvalidOutput(_))
        }),
    ];
    // Only the infinite loop should meet the deadline; the others get a deadline so
    // generous that what stops them must be the limit under test (memory, traps, checks).
    let generous = PluginRuntime::new(PluginLimits {
        call_deadline: Duration::from_secs(10),
        ..PluginLimits::default()
    })
    .expect("engine");
    for (name, expected) in cases {
        let sandbox = if name == "guest_infinite_loop" {
            &runtime
        } else {
            &generous
        };
        let hostile = ResidencyPolicyPlugin::load(sandbox, &wasm(name))
            .unwrap_or_else(|e| panic!("{name} loads: {e}"));
        let started = Instant::now();
        let error = hostile.may_store(&accounts(&[0]), 1).expect_err(name);
        assert!(expected(&error), "{name}: unexpected {error:?}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{name} was not stopped promptly"
        );
        // The same plugin fails the same way again: nothing leaked between calls.
        assert!(expected(
            &hostile.may_store(&accounts(&[0]), 1).expect_err(name)
        ));
        let stats = hostile.stats().snapshot();
        assert_eq!(
            (stats.calls, stats.errors),
            (2, 2),
            "{name}: every failure is counted"
        );
        let expected_timeouts = u64::from(name == "guest_infinite_loop") * 2;
        assert_eq!(
            stats.timeouts, expected_timeouts,
            "{name}: timeouts counted"
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let answered = answered.join().expect("good policy thread");
    assert!(
        answered > 10,
        "the good policy kept answering ({answered} calls)"
    );
}

#[test]
fn concurrent_calls_each_get_their_own_instance() {
    let runtime = runtime();
    let policy =
        Arc::new(ResidencyPolicyPlugin::load(&runtime, &wasm("eu_gdpr")).expect("eu-gdpr"));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let policy = Arc::clone(&policy);
            std::thread::spawn(move || {
                for _ in 0..50 {
                    let decision = policy.may_store(&accounts(&[0, 1]), 1).expect("call");
                    assert_eq!(refused_rows(&decision, 2), vec![0]);
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("thread");
    }
}

#[test]
fn every_bundled_policy_loads_and_decides_by_its_jurisdictions_rules() {
    let runtime = runtime();
    let us = ResidencyPolicyPlugin::load(&runtime, &wasm("us_ccpa")).expect("us-ccpa loads");
    let sg = ResidencyPolicyPlugin::load(&runtime, &wasm("sg_pdpa")).expect("sg-pdpa loads");
    // Region indexes of `accounts`: 0 eu-central, 1 us-east, 2 ap-southeast.
    let us_rows = accounts(&[1]);
    assert!(
        refused_rows(&us.may_store(&us_rows, 0).expect("call"), 1).is_empty(),
        "CCPA does not localise"
    );
    let sg_rows = accounts(&[2]);
    assert_eq!(
        refused_rows(&sg.may_store(&sg_rows, 1).expect("call"), 1),
        vec![0],
        "PDPA: not to us-east"
    );
    assert!(
        refused_rows(&sg.may_store(&sg_rows, 0).expect("call"), 1).is_empty(),
        "PDPA: EU is comparable"
    );
}

#[test]
fn the_pii_redactor_drops_masks_and_tokenizes_with_the_hosts_keyed_hash() {
    use domicile::plugins::RedactorPlugin;
    use domicile::plugins::redactor_types::{
        ChangeEvent, Column as EventColumn, DataClass as EventClass, EventBatch, Operation,
        Table as EventTable, Value as EventValue,
    };
    let runtime = runtime();
    let batch = || EventBatch {
        table: EventTable {
            name: "accounts".into(),
            columns: vec![
                EventColumn {
                    name: "id".into(),
                    class: EventClass::Public,
                },
                EventColumn {
                    name: "name".into(),
                    class: EventClass::Pii,
                },
                EventColumn {
                    name: "email".into(),
                    class: EventClass::Pii,
                },
                EventColumn {
                    name: "iban".into(),
                    class: EventClass::Pii,
                },
            ],
        },
        source_region: "eu-central".into(),
        events: vec![ChangeEvent {
            op: Operation::Update,
            key: vec![EventValue::Bigint(7)],
            before: None,
            after: Some(vec![
                EventValue::Bigint(7),
                EventValue::Text("Zoë Canary".into()),
                EventValue::Text("zoe.canary@example.eu".into()),
                EventValue::Text("DE89370400440532013000".into()),
            ]),
        }],
    };
    let iban_token = |secret: &[u8]| {
        let redactor = RedactorPlugin::load(&runtime, &wasm("pii_redactor"), secret)
            .expect("pii-redactor loads");
        let redacted = redactor.redact(&batch()).expect("redact");
        let names: Vec<String> = redacted.columns.iter().map(|c| c.name.clone()).collect();
        assert_eq!(
            names,
            vec!["id", "email", "iban"],
            "the name column is dropped"
        );
        let after = redacted.events[0]
            .as_ref()
            .and_then(|e| e.after.clone())
            .expect("after");
        let text = |v: &EventValue| match v {
            EventValue::Text(t) => t.clone(),
            other => panic!("expected text, got {other:?}"),
        };
        assert_eq!(text(&after[1]), "z***@example.eu");
        let token = text(&after[2]);
        assert!(
            token.starts_with("tok_") && !token.contains("DE89"),
            "{token}"
        );
        let everything = format!("{redacted:?}");
        assert!(
            !everything.contains("Canary") && !everything.contains("370400"),
            "no PII in the output"
        );
        token
    };
    let first = iban_token(b"eu-central secret");
    assert_eq!(
        first,
        iban_token(b"eu-central secret"),
        "tokens are stable for one secret"
    );
    assert_ne!(
        first,
        iban_token(b"another secret"),
        "tokens depend on the node's secret"
    );

    // A residency policy is not a redactor.
    assert!(RedactorPlugin::load(&runtime, &wasm("eu_gdpr"), b"s").is_err());
}

/// Plugins are called from async code in the node. A guest that writes to stderr (a
/// panic message) or waits must neither panic the caller's runtime nor hold the call
/// past its deadline, under either runtime flavour.
fn guests_that_print_or_wait_are_contained_inside_an_async_runtime(
    runtime_builder: fn() -> tokio::runtime::Runtime,
) {
    let sandbox = PluginRuntime::new(PluginLimits {
        call_deadline: Duration::from_secs(10),
        ..PluginLimits::default()
    })
    .expect("engine");
    let trap = ResidencyPolicyPlugin::load(&sandbox, &wasm("guest_trap")).expect("trap loads");
    let sleeper =
        ResidencyPolicyPlugin::load(&sandbox, &wasm("guest_sleeper")).expect("sleeper loads");
    runtime_builder().block_on(async {
        let error = trap.may_store(&accounts(&[0]), 1).expect_err("trap");
        assert!(matches!(error, CallError::Trap(_)), "{error:?}");
        let started = Instant::now();
        let error = sleeper.may_store(&accounts(&[0]), 1).expect_err("sleeper");
        assert!(
            matches!(&error, CallError::Trap(text) if text.contains("may not wait")),
            "{error:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the wait was refused at once"
        );
    });
}

#[test]
fn printing_and_waiting_guests_under_a_multi_threaded_runtime() {
    guests_that_print_or_wait_are_contained_inside_an_async_runtime(|| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("runtime")
    });
}

#[test]
fn printing_and_waiting_guests_under_a_current_thread_runtime() {
    guests_that_print_or_wait_are_contained_inside_an_async_runtime(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    });
}

/// The saga path awaits its policy calls on the caller's worker thread, where a guest
/// runs on a fiber. On a current-thread runtime (one thread for everything), an
/// infinite loop must still let other tasks run (the guest yields at every epoch tick)
/// and stop at the deadline; a panicking or waiting guest fails closed.
#[test]
fn awaited_calls_share_their_thread_and_fail_closed() {
    let deadline = Duration::from_millis(300);
    let sandbox = PluginRuntime::new(PluginLimits {
        call_deadline: deadline,
        ..PluginLimits::default()
    })
    .expect("engine");
    let looping =
        ResidencyPolicyPlugin::load(&sandbox, &wasm("guest_infinite_loop")).expect("loop loads");
    let trap = ResidencyPolicyPlugin::load(&sandbox, &wasm("guest_trap")).expect("trap loads");
    let sleeper =
        ResidencyPolicyPlugin::load(&sandbox, &wasm("guest_sleeper")).expect("sleeper loads");
    let payload = StepPayload {
        saga_type: "transfer-saga".into(),
        step: "credit".into(),
        fields: vec![("amount".into(), Value::Text("10.00".into()))],
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let ticks = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let ticker = tokio::spawn({
            let ticks = Arc::clone(&ticks);
            async move {
                loop {
                    ticks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        });
        tokio::task::yield_now().await;
        let before = ticks.load(std::sync::atomic::Ordering::Relaxed);
        let started = Instant::now();
        let error = looping
            .may_send_step(&payload, "us-east", "eu-central")
            .await
            .expect_err("an infinite loop has no answer");
        let took = started.elapsed();
        let during = ticks.load(std::sync::atomic::Ordering::Relaxed) - before;
        assert_eq!(error, CallError::Timeout { deadline_ms: 300 });
        assert!(took >= deadline, "stopped before its deadline: {took:?}");
        assert!(took < Duration::from_secs(5), "not stopped: {took:?}");
        // Without yields the ticker would not run once while the guest spins.
        assert!(
            during >= 10,
            "the one thread ran other tasks only {during} times during a {took:?} call"
        );
        assert_eq!(looping.stats().snapshot().timeouts, 1);

        let error = trap
            .may_send_step(&payload, "us-east", "eu-central")
            .await
            .expect_err("a panic is no answer");
        assert!(matches!(error, CallError::Trap(_)), "{error:?}");
        let error = sleeper
            .may_send_step(&payload, "us-east", "eu-central")
            .await
            .expect_err("a wait is refused");
        assert!(
            matches!(&error, CallError::Trap(text) if text.contains("may not wait")),
            "{error:?}"
        );
        ticker.abort();
    });
}
