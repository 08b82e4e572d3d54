//! The plugin registry with real signed components: only a correctly signed component of
//! the right world for a trusted jurisdiction becomes active; every refusal leaves the
//! active version answering; a v2 changes decisions at once and a rollback restores v1,
//! while concurrent calls keep succeeding; the active version survives a restart.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use domicile::plugins::residency_types::{
    BatchDecision, Column, DataClass, Decision, RowBatch, Table, Value,
};
use domicile::plugins::signing::{
    generate_key_pair, parse_public_key, parse_signing_key, sha256_hex, sign, signed_message,
};
use domicile::plugins::{
    LoadError, PluginKind, PluginLimits, PluginRegistry, PluginRuntime, PluginUpload, Trust,
    UploadError,
};
use domicile::storage::Store;
use domicile_tests::wasm;

struct Keys {
    eu_secret: String,
    us_secret: String,
    trusted: HashMap<String, Vec<ed25519_dalek::VerifyingKey>>,
}

fn keys() -> Keys {
    let (eu_secret, eu_public) = generate_key_pair();
    let (us_secret, us_public) = generate_key_pair();
    let trusted = HashMap::from([
        (
            "EU".to_string(),
            vec![parse_public_key(&eu_public).expect("eu key")],
        ),
        (
            "US".to_string(),
            vec![parse_public_key(&us_public).expect("us key")],
        ),
    ]);
    Keys {
        eu_secret,
        us_secret,
        trusted,
    }
}

fn signed(secret: &str, jurisdiction: &str, version: u64, bytes: Vec<u8>) -> PluginUpload {
    signed_kind(
        PluginKind::ResidencyPolicy,
        secret,
        jurisdiction,
        version,
        bytes,
    )
}

fn signed_kind(
    kind: PluginKind,
    secret: &str,
    jurisdiction: &str,
    version: u64,
    bytes: Vec<u8>,
) -> PluginUpload {
    let key = parse_signing_key(secret).expect("secret");
    let message = signed_message(jurisdiction, kind.as_str(), version, &sha256_hex(&bytes));
    PluginUpload {
        jurisdiction: jurisdiction.into(),
        kind,
        version,
        bytes,
        signature_hex: sign(&key, &message),
    }
}

fn eu_rows() -> RowBatch {
    RowBatch {
        table: Table {
            name: "accounts".into(),
            columns: vec![Column {
                name: "id".into(),
                class: DataClass::Public,
            }],
        },
        regions: vec!["eu-central".into()],
        home_regions: vec![0],
        rows: vec![vec![Value::Bigint(1)]],
    }
}

/// Whether the active EU policy lets an EU row be stored in eu-central (v1 yes, v2 no).
fn eu_allows_home_storage(registry: &PluginRegistry) -> bool {
    let active = registry
        .residency_policy("EU")
        .expect("an active EU policy");
    let decision: BatchDecision = active.plugin.may_store(&eu_rows(), 0).expect("call");
    matches!(decision.default, Decision::Allow)
}

fn open(dir: &std::path::Path, trusted: impl Into<Trust>) -> (Store, Arc<PluginRegistry>) {
    // Generous: calls run concurrently with component compilation in a debug build on
    // two cores; these tests are about versions, not deadlines.
    let limits = PluginLimits {
        call_deadline: Duration::from_secs(5),
        ..PluginLimits::default()
    };
    let runtime = PluginRuntime::new(limits).expect("runtime");
    let store = Store::open(&dir.join("node.redb")).expect("store");
    let registry =
        PluginRegistry::open(runtime, store.clone(), trusted, Arc::from(*b"test secret"))
            .expect("registry");
    (store, registry)
}

/// What a refused upload's error must look like.
type Expectation = fn(&UploadError) -> bool;

#[tokio::test(flavor = "multi_thread")]
async fn only_signed_components_of_the_right_world_become_active() {
    let keys = keys();
    let dir = tempfile::tempdir().expect("tempdir");
    let (_store, registry) = open(dir.path(), keys.trusted.clone());
    assert!(
        registry.residency_policy("EU").is_none(),
        "nothing is active before an upload"
    );

    let record = registry
        .upload(signed(&keys.eu_secret, "EU", 1, wasm("eu_gdpr")))
        .await
        .expect("v1 accepted");
    assert_eq!(record.version, 1);
    assert!(eu_allows_home_storage(&registry));

    let mut unsigned = signed(&keys.eu_secret, "EU", 2, wasm("guest_strict_policy"));
    unsigned.signature_hex.clear();
    let mut tampered = signed(&keys.eu_secret, "EU", 2, wasm("guest_strict_policy"));
    let last = tampered.bytes.len() - 1;
    tampered.bytes[last] ^= 0xFF;
    let mut relabelled = signed(&keys.eu_secret, "EU", 2, wasm("guest_strict_policy"));
    relabelled.version = 3;
    let oversized = signed(&keys.eu_secret, "EU", 2, vec![0; (16 << 20) + 1]);
    let refusals: Vec<(&str, PluginUpload, Expectation)> = vec![
        ("unsigned", unsigned, |e| matches!(e, UploadError::Unsigned)),
        (
            "wrong key",
            signed(&keys.us_secret, "EU", 2, wasm("guest_strict_policy")),
            |e| matches!(e, UploadError::BadSignature(_)),
        ),
        (
            "untrusted jurisdiction",
            signed(&keys.eu_secret, "SG", 2, wasm("guest_strict_policy")),
            |e| matches!(e, UploadError::UntrustedJurisdiction(_)),
        ),
        ("tampered bytes", tampered, |e| {
            matches!(e, UploadError::BadSignature(_))
        }),
        ("signed for another version", relabelled, |e| {
            matches!(e, UploadError::BadSignature(_))
        }),
        (
            "garbage",
            signed(&keys.eu_secret, "EU", 2, b"garbage".to_vec()),
            |e| matches!(e, UploadError::Load(LoadError::NotAComponent(_))),
        ),
        (
            "wrong world",
            signed(&keys.eu_secret, "EU", 2, wasm("guest_wrong_world")),
            |e| matches!(e, UploadError::Load(LoadError::WrongWorld { .. })),
        ),
        ("oversized", oversized, |e| {
            matches!(e, UploadError::Load(LoadError::TooLarge { .. }))
        }),
        (
            "not newer",
            signed(&keys.eu_secret, "EU", 1, wasm("guest_strict_policy")),
            |e| matches!(e, UploadError::VersionNotNewer { .. }),
        ),
    ];
    for (what, upload, expected) in refusals {
        let error = registry.upload(upload).await.expect_err(what);
        assert!(expected(&error), "{what}: unexpected {error}");
        let active = registry.residency_policy("EU").expect("still active");
        assert_eq!(active.record.version, 1, "{what} must leave v1 active");
        assert!(
            eu_allows_home_storage(&registry),
            "{what}: v1 still answers"
        );
    }
    let listed = registry.list().expect("list");
    assert_eq!(listed.len(), 1, "refused uploads are not stored");
}

#[tokio::test(flavor = "multi_thread")]
async fn hot_swap_and_rollback_under_load_and_across_restart() {
    let keys = keys();
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, registry) = open(dir.path(), keys.trusted.clone());
    registry
        .upload(signed(&keys.eu_secret, "EU", 1, wasm("eu_gdpr")))
        .await
        .expect("v1");

    // Callers hammer the active policy during the swaps; every call must succeed.
    let stop = Arc::new(AtomicBool::new(false));
    let callers: Vec<_> = (0..4)
        .map(|_| {
            let (registry, stop) = (Arc::clone(&registry), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut calls = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    let active = registry
                        .residency_policy("EU")
                        .expect("always an active version");
                    active
                        .plugin
                        .may_store(&eu_rows(), 0)
                        .expect("call during swap succeeds");
                    calls += 1;
                }
                calls
            })
        })
        .collect();

    registry
        .upload(signed(
            &keys.eu_secret,
            "EU",
            2,
            wasm("guest_strict_policy"),
        ))
        .await
        .expect("v2");
    assert!(
        !eu_allows_home_storage(&registry),
        "v2 decides differently, without a restart"
    );
    let record = registry
        .rollback("EU", PluginKind::ResidencyPolicy)
        .await
        .expect("rollback");
    assert_eq!(record.version, 1);
    assert!(
        eu_allows_home_storage(&registry),
        "rollback restores v1's decision"
    );
    registry
        .activate("EU", PluginKind::ResidencyPolicy, 2)
        .await
        .expect("activate v2");
    assert!(!eu_allows_home_storage(&registry));
    registry
        .rollback("EU", PluginKind::ResidencyPolicy)
        .await
        .expect("rollback again");

    stop.store(true, Ordering::Relaxed);
    for caller in callers {
        assert!(caller.join().expect("caller thread") > 0);
    }
    let listed = registry.list().expect("list");
    let active: Vec<u64> = listed
        .iter()
        .filter(|(_, active)| *active)
        .map(|(r, _)| r.version)
        .collect();
    assert_eq!(active, vec![1]);

    // Restart: the registry comes back with v1 active.
    let closed = store.close_watch();
    drop(registry);
    drop(store);
    assert!(closed.wait(Duration::from_secs(5)), "storage closes");
    let (_store, registry) = open(dir.path(), keys.trusted);
    assert_eq!(
        registry
            .residency_policy("EU")
            .expect("active after restart")
            .record
            .version,
        1
    );
    assert!(eu_allows_home_storage(&registry));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_loads_its_active_plugins_at_start_and_lists_them_in_sql() {
    let keys = keys();
    let eu_public: String = keys.trusted["EU"][0]
        .to_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let extra =
        format!("\n[[trusted_keys]]\njurisdiction = \"EU\"\npublic_key = \"{eu_public}\"\n");
    let trusted = keys.trusted.clone();
    let eu_secret = keys.eu_secret.clone();
    let node = domicile_tests::TestNode::start_with("eu-central", &extra, move |data_dir| {
        // Upload through the registry into the node's own database file, then close it
        // (on a thread of its own: this closure runs inside the test's runtime).
        let data_dir = data_dir.to_path_buf();
        std::thread::spawn(move || {
            tokio::runtime::Runtime::new()?.block_on(async {
                let (store, registry) = open_at(&data_dir.join("domicile.redb"), trusted);
                registry
                    .upload(signed(&eu_secret, "EU", 1, wasm("eu_gdpr")))
                    .await?;
                registry
                    .upload(signed(&eu_secret, "EU", 2, wasm("guest_strict_policy")))
                    .await?;
                registry.rollback("EU", PluginKind::ResidencyPolicy).await?;
                let closed = store.close_watch();
                drop(registry);
                drop(store);
                anyhow::ensure!(closed.wait(Duration::from_secs(5)), "storage did not close");
                Ok(())
            })
        })
        .join()
        .map_err(|_| anyhow::anyhow!("setup thread panicked"))?
    })
    .expect("node starts");
    let mut admin = node.client("admin").await.expect("login");
    let batches = admin
        .query("SELECT jurisdiction, kind, version, active FROM system.plugins ORDER BY version")
        .await
        .expect("system.plugins");
    assert_eq!(
        domicile_tests::column_strings(&batches, "version"),
        vec!["1", "2"]
    );
    assert_eq!(
        domicile_tests::column_strings(&batches, "active"),
        vec!["true", "false"]
    );
    assert_eq!(
        domicile_tests::column_strings(&batches, "kind"),
        vec!["residency-policy"; 2]
    );
}

fn open_at(
    path: &std::path::Path,
    trusted: HashMap<String, Vec<ed25519_dalek::VerifyingKey>>,
) -> (Store, Arc<PluginRegistry>) {
    let runtime = PluginRuntime::new(PluginLimits::default()).expect("runtime");
    let store = Store::open(path).expect("store");
    let registry =
        PluginRegistry::open(runtime, store.clone(), trusted, Arc::from(*b"test secret"))
            .expect("registry");
    (store, registry)
}

/// Redactors and saga steps are hosted like policies: signed for their kind, checked
/// against their world, active per (jurisdiction, kind), and reloaded at start.
#[tokio::test(flavor = "multi_thread")]
async fn redactors_and_saga_steps_are_registered_per_kind() {
    use domicile::plugins::redactor_types::{ChangeEvent, EventBatch, Operation};

    let keys = keys();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("node.redb");
    let (store, registry) = open(dir.path(), keys.trusted.clone());

    // A component of another world, or signed for another kind, is refused.
    let wrong_world = registry
        .upload(signed_kind(
            PluginKind::CdcRedactor,
            &keys.eu_secret,
            "EU",
            1,
            wasm("eu_gdpr"),
        ))
        .await;
    assert!(
        matches!(
            wrong_world,
            Err(UploadError::Load(LoadError::WrongWorld { .. }))
        ),
        "{wrong_world:?}"
    );
    let mut wrong_kind = signed(&keys.eu_secret, "EU", 1, wasm("pii_redactor"));
    wrong_kind.kind = PluginKind::CdcRedactor;
    assert!(matches!(
        registry.upload(wrong_kind).await,
        Err(UploadError::BadSignature(_))
    ));

    registry
        .upload(signed_kind(
            PluginKind::CdcRedactor,
            &keys.eu_secret,
            "EU",
            1,
            wasm("pii_redactor"),
        ))
        .await
        .expect("redactor accepted");
    registry
        .upload(signed_kind(
            PluginKind::SagaStep,
            &keys.eu_secret,
            "EU",
            1,
            wasm("transfer_saga"),
        ))
        .await
        .expect("saga steps accepted");
    assert!(
        registry.residency_policy("EU").is_none(),
        "kinds do not mix"
    );

    let events = EventBatch {
        table: Table {
            name: "accounts".into(),
            columns: vec![
                Column {
                    name: "id".into(),
                    class: DataClass::Public,
                },
                Column {
                    name: "iban".into(),
                    class: DataClass::Pii,
                },
            ],
        },
        source_region: "eu-central".into(),
        events: vec![ChangeEvent {
            op: Operation::Create,
            key: vec![Value::Bigint(1)],
            before: None,
            after: Some(vec![
                Value::Bigint(1),
                Value::Text("DE89370400440532013000".into()),
            ]),
        }],
    };
    let token = |registry: &PluginRegistry| {
        let redacted = registry
            .redactor("EU")
            .expect("active redactor")
            .plugin
            .redact(&events)
            .expect("redact");
        format!("{:?}", redacted.events)
    };
    let before_restart = token(&registry);
    assert!(before_restart.contains("tok_"), "{before_restart}");
    assert!(!before_restart.contains("DE89"), "{before_restart}");
    let saga_types = registry.saga_steps("EU").expect("active saga steps");
    assert_eq!(saga_types.plugin.saga_types()[0].name, "transfer");
    let closed = store.close_watch();
    drop((store, registry, saga_types));
    assert!(closed.wait(Duration::from_secs(5)), "storage did not close");

    let (_store, reopened) = open_at(&path, keys.trusted);
    assert_eq!(
        token(&reopened),
        before_restart,
        "same secret, same token after restart"
    );
    assert!(reopened.saga_steps("EU").is_some());
    let kinds: Vec<String> = reopened
        .list()
        .expect("list")
        .into_iter()
        .filter(|(_, active)| *active)
        .map(|(record, _)| record.kind)
        .collect();
    assert_eq!(kinds, ["cdc-redactor", "saga-step"]);
}

/// Issue 21: trust was checked at upload only. Removing a key from `trusted_keys` now
/// deactivates what it signed at the next start (listed with the reason), `activate`
/// re-verifies, and a minimum version forbids downgrades by `activate` and `rollback`.
#[tokio::test(flavor = "multi_thread")]
async fn trust_is_checked_again_at_start_and_activation() {
    let keys = keys();
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (store, registry) = open(dir.path(), keys.trusted.clone());
        for version in [1, 2] {
            registry
                .upload(signed(&keys.eu_secret, "EU", version, wasm("eu_gdpr")))
                .await
                .expect("signed upload");
        }
        assert_eq!(
            registry.residency_policy("EU").map(|a| a.record.version),
            Some(2)
        );
        close(store, registry);
    }

    // The EU key is no longer trusted (another one is): nothing it signed is active.
    let (other_secret, other_public) = generate_key_pair();
    let mut rotated = keys.trusted.clone();
    rotated.insert(
        "EU".into(),
        vec![parse_public_key(&other_public).expect("key")],
    );
    {
        let (store, registry) = open(dir.path(), rotated.clone());
        assert!(
            registry.residency_policy("EU").is_none(),
            "a version signed by a removed key is not active after a restart"
        );
        let listed = registry.list().expect("list");
        assert_eq!(listed.len(), 2);
        for (record, active) in &listed {
            assert!(!active);
            let reason = registry.refusal(record).expect("refused").to_string();
            assert!(reason.contains("no longer trusted"), "{reason}");
        }
        let refused = registry
            .activate("EU", PluginKind::ResidencyPolicy, 1)
            .await
            .expect_err("activate re-verifies");
        assert!(
            matches!(refused, UploadError::NoLongerTrusted { version: 1, .. }),
            "{refused}"
        );
        // Versions signed by the removed key do not count as the latest: a key that
        // signed a huge version before it was removed cannot block later uploads.
        registry
            .upload(signed(&other_secret, "EU", 1, wasm("eu_gdpr")))
            .await
            .expect("newer than every trusted version");
        assert_eq!(
            registry.residency_policy("EU").map(|a| a.record.version),
            Some(1)
        );
        close(store, registry);
    }

    // Trusted again, with a minimum version: the active v1 (signed by the other key,
    // and below the minimum) is not active; v2 activates; v1 can no longer be reached.
    let trust = Trust {
        keys: keys.trusted.clone(),
        minimum_versions: HashMap::from([(("EU".to_string(), PluginKind::ResidencyPolicy), 2)]),
    };
    {
        let (store, registry) = open(dir.path(), trust.clone());
        assert!(registry.residency_policy("EU").is_none());
        registry
            .activate("EU", PluginKind::ResidencyPolicy, 2)
            .await
            .expect("v2 is trusted and not below the minimum");
        let downgrade = registry
            .activate("EU", PluginKind::ResidencyPolicy, 1)
            .await
            .expect_err("below the minimum");
        assert!(
            matches!(downgrade, UploadError::BelowMinimum { minimum: 2, .. }),
            "{downgrade}"
        );
        assert!(matches!(
            registry.rollback("EU", PluginKind::ResidencyPolicy).await,
            Err(UploadError::NothingToRollBack { .. })
        ));
        assert_eq!(
            registry.residency_policy("EU").map(|a| a.record.version),
            Some(2),
            "a refused downgrade leaves the active version"
        );
        close(store, registry);
    }
    // A minimum above every stored version deactivates at start.
    let strict = Trust {
        keys: keys.trusted.clone(),
        minimum_versions: HashMap::from([(("EU".to_string(), PluginKind::ResidencyPolicy), 3)]),
    };
    let (_store, registry) = open(dir.path(), strict);
    assert!(registry.residency_policy("EU").is_none());
    let below = registry
        .upload(signed(&keys.eu_secret, "EU", 1, wasm("eu_gdpr")))
        .await
        .expect_err("an upload below the minimum is refused");
    assert!(matches!(below, UploadError::BelowMinimum { .. }), "{below}");
}

/// Drops a registry and its store and waits until the database is closed, so the next
/// `open` of the same folder gets its lock.
fn close(store: Store, registry: Arc<PluginRegistry>) {
    let closed = store.close_watch();
    drop((store, registry));
    assert!(closed.wait(Duration::from_secs(5)), "storage did not close");
}
