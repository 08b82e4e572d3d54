//! The saga log: one record per saga on the node that started it, in node storage
//! (`saga/record/<id>`, and `saga/key/<idempotency key>` → id), rewritten in one
//! commit at every state change. The record is the whole truth of a saga: a restarted
//! node resumes every saga whose record is not terminal.
//!
//! ```text
//!  pending ──▶ running ──▶ committed
//!                 │
//!                 ▼   (a step refused, or failing past its timeout)
//!           compensating ──▶ compensated
//!                 │
//!                 ▼   (a compensation refused, or failing past its attempts)
//!               stuck   (support: retry → running / compensating)
//! ```

use serde::{Deserialize, Serialize};

use super::fields::Fields;
use crate::storage::{StorageError, Store, WriteContext};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SagaState {
    Pending,
    Running,
    Committed,
    Compensating,
    Compensated,
    Stuck,
}

impl SagaState {
    pub const ALL: [SagaState; 6] = [
        SagaState::Pending,
        SagaState::Running,
        SagaState::Committed,
        SagaState::Compensating,
        SagaState::Compensated,
        SagaState::Stuck,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SagaState::Pending => "pending",
            SagaState::Running => "running",
            SagaState::Committed => "committed",
            SagaState::Compensating => "compensating",
            SagaState::Compensated => "compensated",
            SagaState::Stuck => "stuck",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Done for good: nothing will change it again.
    pub fn is_terminal(self) -> bool {
        matches!(self, SagaState::Committed | SagaState::Compensated)
    }

    /// Whether the orchestrator drives a saga in this state on its own (stuck sagas
    /// wait for support).
    pub fn is_driven(self) -> bool {
        matches!(
            self,
            SagaState::Pending | SagaState::Running | SagaState::Compensating
        )
    }

    /// The transitions the diagram above allows.
    pub fn may_become(self, next: SagaState) -> bool {
        use SagaState::*;
        matches!(
            (self, next),
            (Pending, Running)
                | (Running, Running)
                | (Running, Committed)
                | (Running, Compensating)
                | (Pending, Compensating)
                | (Compensating, Compensating)
                | (Compensating, Compensated)
                | (Compensating | Running, Stuck)
                | (Stuck, Running | Compensating)
        )
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepState {
    Pending,
    Done,
    /// Its answer was lost (timeout, unreachable): it may have applied, so the saga
    /// compensates it too (a compensation of a step that never ran is a no-op that
    /// also bars it from running later).
    Uncertain,
    Compensated,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub name: String,
    /// The region whose node runs this step.
    pub region: String,
    pub state: StepState,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub result: Fields,
    /// The epoch at which this step's execute message (the saga's input) was decided
    /// may-leave for its region, durably, before it left; `None` for a step run here or
    /// not released yet. Until then the orchestrator confirms nothing about the step to
    /// that region (`GetSagaStep`), so a confirmation cannot test guesses of an input it
    /// was not sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub released_epoch: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SagaRecord {
    pub id: String,
    pub saga_type: String,
    pub idempotency_key: String,
    pub input: Fields,
    pub steps: Vec<StepRecord>,
    pub state: SagaState,
    /// Raised each time an orchestrator takes the saga up; participants refuse steps
    /// of an older epoch, so a stale orchestrator cannot act after a newer one began.
    pub epoch: u64,
    pub created_unix_ms: u64,
    pub updated_unix_ms: u64,
    pub last_error: Option<String>,
}

impl SagaRecord {
    /// A saga record for unit tests: no steps, no input, epoch 1, in `state`.
    #[cfg(test)]
    pub(crate) fn sample(id: &str, state: SagaState) -> Self {
        Self {
            id: id.into(),
            saga_type: "transfer".into(),
            idempotency_key: format!("key-{id}"),
            input: Vec::new(),
            steps: Vec::new(),
            state,
            epoch: 1,
            created_unix_ms: 0,
            updated_unix_ms: 0,
            last_error: None,
        }
    }

    /// Moves the saga to `next`: the only way its state changes, so every change is one
    /// the diagram above allows (`SagaState::may_become`; staying in a state is no
    /// change). Another move is a bug of the orchestrator: debug builds stop on it.
    pub fn set_state(&mut self, next: SagaState) {
        debug_assert!(
            self.state == next || self.state.may_become(next),
            "saga {}: {} may not become {}",
            self.id,
            self.state.as_str(),
            next.as_str()
        );
        self.state = next;
    }

    /// The step being worked on: the first pending one while running, the last done
    /// one while compensating.
    pub fn current_step(&self) -> Option<&StepRecord> {
        match self.state {
            SagaState::Compensating | SagaState::Stuck => self
                .steps
                .iter()
                .rev()
                .find(|s| matches!(s.state, StepState::Done | StepState::Uncertain))
                .or_else(|| self.steps.iter().find(|s| s.state == StepState::Pending)),
            _ => self.steps.iter().find(|s| s.state == StepState::Pending),
        }
    }

    pub fn attempts(&self) -> u32 {
        self.steps.iter().map(|s| s.attempts).sum()
    }

    /// Whether a start of `saga_type` with `input` asks for this saga again: an
    /// idempotency key stands for one request (as Stripe's keys do), so a retry must
    /// repeat it exactly. Another request under a used key is refused rather than
    /// answered with this saga, which would show one client another's transfer.
    pub fn is_request(&self, saga_type: &str, input: &Fields) -> bool {
        self.saga_type == saga_type && self.input == *input
    }

    /// The record as the node of a forwarded start answers it: everything the caller
    /// sent and where each step stands, but not the steps' results (data of the
    /// regions that ran them, which stay with the orchestrator).
    pub fn without_results(mut self) -> Self {
        for step in &mut self.steps {
            step.result.clear();
        }
        self
    }
}

fn record_key(id: &str) -> String {
    format!("saga/record/{id}")
}

fn idempotency_key(key: &str) -> String {
    format!("saga/key/{key}")
}

const RECORD_PREFIX: &str = "saga/record/";

fn encode(record: &SagaRecord) -> Result<Vec<u8>, StorageError> {
    serde_json::to_vec(record).map_err(|e| StorageError::Transaction(e.to_string()))
}

fn decode(bytes: &[u8]) -> Result<SagaRecord, StorageError> {
    serde_json::from_slice(bytes)
        .map_err(|e| StorageError::Transaction(format!("corrupt saga record: {e}")))
}

/// Inside a write: the saga started with `key`, or `record` stored as new. Returns the
/// saga and whether it was created now.
pub fn insert_or_existing(
    ctx: &mut WriteContext<'_>,
    record: SagaRecord,
) -> Result<(SagaRecord, bool), StorageError> {
    if let Some(existing) = by_key_in(ctx, &record.idempotency_key)? {
        return Ok((existing, false));
    }
    insert_unchecked(ctx, &record)?;
    Ok((record, true))
}

/// Inside a write: stores `record` as a new saga with its idempotency key, unless a
/// saga holds that key already (then writes nothing and returns `false`).
pub fn insert_new(ctx: &mut WriteContext<'_>, record: &SagaRecord) -> Result<bool, StorageError> {
    if by_key_in(ctx, &record.idempotency_key)?.is_some() {
        return Ok(false);
    }
    insert_unchecked(ctx, record)?;
    Ok(true)
}

fn insert_unchecked(ctx: &mut WriteContext<'_>, record: &SagaRecord) -> Result<(), StorageError> {
    ctx.put_state(
        idempotency_key(&record.idempotency_key),
        record.id.as_bytes().to_vec(),
    );
    put(ctx, record)
}

fn by_key_in(ctx: &mut WriteContext<'_>, key: &str) -> Result<Option<SagaRecord>, StorageError> {
    let Some(id) = ctx.get_state(&idempotency_key(key))? else {
        return Ok(None);
    };
    let id = String::from_utf8_lossy(&id).into_owned();
    ctx.get_state(&record_key(&id))?
        .map(|bytes| decode(&bytes))
        .transpose()
}

/// Inside a write: stores `record` as the saga's new state.
pub fn put(ctx: &mut WriteContext<'_>, record: &SagaRecord) -> Result<(), StorageError> {
    ctx.put_state(record_key(&record.id), encode(record)?);
    Ok(())
}

/// The saga this node recorded for idempotency key `key`, if any.
pub fn by_key(store: &Store, key: &str) -> Result<Option<SagaRecord>, StorageError> {
    let [id] = store.state_values([idempotency_key(key).as_str()])?;
    match id {
        Some(id) => load(store, &String::from_utf8_lossy(&id)),
        None => Ok(None),
    }
}

pub fn load(store: &Store, id: &str) -> Result<Option<SagaRecord>, StorageError> {
    let [bytes] = store.state_values([record_key(id).as_str()])?;
    bytes.map(|bytes| decode(&bytes)).transpose()
}

/// Every saga this node started, oldest first by id order of storage.
pub fn all(store: &Store) -> Result<Vec<SagaRecord>, StorageError> {
    store
        .state_with_prefix(RECORD_PREFIX)?
        .into_iter()
        .map(|(_, bytes)| decode(&bytes))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "committed may not become compensating")]
    fn a_move_the_diagram_does_not_allow_stops_a_debug_build() {
        let mut saga = SagaRecord::sample("s", SagaState::Committed);
        saga.set_state(SagaState::Committed);
        saga.set_state(SagaState::Compensating);
    }

    #[test]
    fn the_state_machine_allows_only_the_documented_moves() {
        use SagaState::*;
        assert!(Pending.may_become(Running));
        assert!(Running.may_become(Committed));
        assert!(Running.may_become(Compensating));
        assert!(Compensating.may_become(Compensated));
        assert!(Compensating.may_become(Stuck));
        assert!(Stuck.may_become(Compensating));
        assert!(!Committed.may_become(Compensating), "committed is final");
        assert!(!Compensated.may_become(Running), "compensated is final");
        assert!(!Compensating.may_become(Committed), "no way back to commit");
        assert!(Committed.is_terminal() && Compensated.is_terminal());
        assert!(!Stuck.is_terminal() && !Stuck.is_driven());
        for state in SagaState::ALL {
            assert_eq!(SagaState::parse(state.as_str()), Some(state));
        }
    }
}
