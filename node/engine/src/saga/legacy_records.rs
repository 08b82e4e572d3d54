//! Moves participant records of the earlier layout (`saga/epoch/<saga>`,
//! `saga/done/<saga>/<step>/<direction>`, one id space for every orchestrator) under
//! their orchestrator's region (`participant`'s `saga/fence/<orchestrator>/<saga>` and
//! `saga/step/<orchestrator>/...`), once, at start, in one commit.
//!
//! The orchestrator of a saga is the region its epoch record was bound to (a peer's,
//! proven by its certificate at first contact); an unbound record belongs to this node
//! when its own saga log holds the saga, and otherwise to no one known: it goes under
//! `participant::UNBOUND`, where no peer may drive it (a step already done must not run
//! again under a region's name that cannot be proven).

use super::participant::{FENCE_PREFIX, STEP_PREFIX, UNBOUND, fence_key, read_fence};
use super::record;
use crate::storage::{StorageError, Store};

const LEGACY_EPOCH_PREFIX: &str = "saga/epoch/";
const LEGACY_DONE_PREFIX: &str = "saga/done/";

/// How many records the move rewrote: (fences, step records).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Moved {
    pub fences: usize,
    pub steps: usize,
    /// Sagas put under `UNBOUND`.
    pub unbound: usize,
}

/// The orchestrator a legacy epoch record names: the bytes after the 8-byte epoch.
fn bound_region(bytes: &[u8]) -> Option<String> {
    let (_, region) = bytes.split_first_chunk::<8>()?;
    (!region.is_empty()).then(|| String::from_utf8_lossy(region).into_owned())
}

/// Moves every legacy record of this node (region `region`); a node with none writes
/// nothing.
pub async fn move_to_orchestrators(store: &Store, region: &str) -> Result<Moved, StorageError> {
    let epochs = store.state_with_prefix(LEGACY_EPOCH_PREFIX)?;
    let dones = store.state_with_prefix(LEGACY_DONE_PREFIX)?;
    if epochs.is_empty() && dones.is_empty() {
        return Ok(Moved::default());
    }
    let mut moved = Moved::default();
    let mut orchestrators = std::collections::HashMap::new();
    let mut writes: Vec<(String, Option<Vec<u8>>)> = Vec::new();
    for (key, bytes) in &epochs {
        let saga = &key[LEGACY_EPOCH_PREFIX.len()..];
        let orchestrator = match bound_region(bytes) {
            Some(region) => region,
            None if record::load(store, saga)?.is_some() => region.to_string(),
            None => {
                moved.unbound += 1;
                UNBOUND.to_string()
            }
        };
        let epoch = read_fence(Some(bytes.clone()));
        writes.push((
            fence_key(&orchestrator, saga),
            Some(epoch.to_be_bytes().to_vec()),
        ));
        writes.push((key.clone(), None));
        orchestrators.insert(saga.to_string(), orchestrator);
        moved.fences += 1;
    }
    for (key, bytes) in &dones {
        let rest = &key[LEGACY_DONE_PREFIX.len()..];
        let saga = rest.split('/').next().unwrap_or_default();
        // Every step record was written with its saga's epoch record; one without is
        // not known to be anyone's.
        let orchestrator = orchestrators.entry(saga.to_string()).or_insert_with(|| {
            writes.push((fence_key(UNBOUND, saga), Some(0u64.to_be_bytes().to_vec())));
            moved.unbound += 1;
            UNBOUND.to_string()
        });
        writes.push((
            format!("{STEP_PREFIX}{orchestrator}/{rest}"),
            Some(bytes.clone()),
        ));
        writes.push((key.clone(), None));
        moved.steps += 1;
    }
    store
        .write(move |ctx| {
            for (key, value) in writes {
                match value {
                    Some(value) => ctx.put_state(key, value),
                    None => ctx.delete_state(key),
                }
            }
            Ok::<_, StorageError>(())
        })
        .await?;
    tracing::info!(
        fences = moved.fences,
        steps = moved.steps,
        unbound = moved.unbound,
        "saga participant records moved under their orchestrators' regions"
    );
    if moved.unbound > 0 {
        tracing::warn!(
            sagas = moved.unbound,
            prefix = %format!("{FENCE_PREFIX}{UNBOUND}/"),
            "participant records of sagas whose orchestrator is unknown: no peer may drive them"
        );
    }
    Ok(moved)
}

#[cfg(test)]
mod tests {
    use super::super::participant::step_key;
    use super::*;

    fn legacy_epoch(epoch: u64, bound: &str) -> Vec<u8> {
        let mut value = epoch.to_be_bytes().to_vec();
        value.extend_from_slice(bound.as_bytes());
        value
    }

    #[tokio::test]
    async fn legacy_records_move_under_the_region_they_were_bound_to_and_unbound_ones_under_none() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("node.redb")).expect("store");
        store
            .write(|ctx| {
                ctx.put_state("saga/epoch/s-bound".into(), legacy_epoch(3, "us-east"));
                ctx.put_state("saga/done/s-bound/credit/execute".into(), b"[1]".to_vec());
                ctx.put_state("saga/epoch/s-unbound".into(), legacy_epoch(1, ""));
                ctx.put_state("saga/done/s-unbound/credit/execute".into(), b"[2]".to_vec());
                ctx.put_state("saga/done/s-orphan/debit/compensate".into(), b"[]".to_vec());
                Ok::<_, StorageError>(())
            })
            .await
            .expect("legacy records");

        let moved = move_to_orchestrators(&store, "eu-central")
            .await
            .expect("move");
        assert_eq!(
            moved,
            Moved {
                fences: 2,
                steps: 3,
                unbound: 2
            }
        );
        let [
            bound_fence,
            bound_step,
            unbound_fence,
            unbound_step,
            orphan_fence,
            orphan_step,
        ] = store
            .state_values([
                fence_key("us-east", "s-bound").as_str(),
                step_key("us-east", "s-bound", "credit", "execute").as_str(),
                fence_key(UNBOUND, "s-unbound").as_str(),
                step_key(UNBOUND, "s-unbound", "credit", "execute").as_str(),
                fence_key(UNBOUND, "s-orphan").as_str(),
                step_key(UNBOUND, "s-orphan", "debit", "compensate").as_str(),
            ])
            .expect("read");
        assert_eq!(read_fence(bound_fence), 3);
        assert_eq!(bound_step.as_deref(), Some(&b"[1]"[..]));
        assert_eq!(read_fence(unbound_fence), 1);
        assert_eq!(unbound_step.as_deref(), Some(&b"[2]"[..]));
        assert!(
            orphan_fence.is_some(),
            "an orphan step record bars its saga too"
        );
        assert_eq!(orphan_step.as_deref(), Some(&b"[]"[..]));
        assert!(
            store
                .state_with_prefix("saga/epoch/")
                .expect("read")
                .is_empty()
        );
        assert!(
            store
                .state_with_prefix("saga/done/")
                .expect("read")
                .is_empty()
        );
        assert_eq!(
            move_to_orchestrators(&store, "eu-central")
                .await
                .expect("again"),
            Moved::default(),
            "a second start moves nothing"
        );
    }
}
