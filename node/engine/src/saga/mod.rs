//! Cross-region sagas: a workflow (e.g. a transfer from a US account to an EU one) made
//! of local ACID steps on the nodes that own the data, run by the node that started it,
//! with compensations instead of distributed locks.
//!
//! `record` is the durable saga log and its state machine; `orchestrator` drives sagas
//! (retries, timeouts, compensation, resume after a crash, epochs); `participant` runs
//! one step exactly once on the node that owns its data (here, or for a peer through
//! the mesh's `RunStep`); `fields` is how inputs and results are stored and carried;
//! `waiters` hands a settled saga to the callers waiting for it; `legacy_records` moves
//! participant records of the earlier layout under their orchestrators, once.
//! The steps themselves come from the jurisdiction's saga-step plugin
//! (`plugins::SagaStepPlugin`).

mod deadline;
pub mod fields;
pub mod legacy_records;
mod orchestrator;
pub mod participant;
pub mod record;
mod waiters;

pub use orchestrator::{
    COMPENSATION_ATTEMPTS_MAX, IDEMPOTENCY_KEY_MAX_BYTES, SagaEngine, SagaError,
};
pub use record::{SagaRecord, SagaState, StepRecord, StepState};
