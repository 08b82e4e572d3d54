//! The orchestrator: drives the sagas this node started, step by step, on the nodes
//! that own each step's data, and compensates in reverse when a step cannot be done.
//!
//! Every state change is written to the saga log before the next call goes out, so a
//! restarted node knows exactly where each saga stood (`resume_all`). A step is retried
//! with backoff while it fails transiently, until `step_timeout`; then, or when it is
//! refused, the saga compensates: every step that is done, or whose answer was lost,
//! in reverse order. A compensation is retried until `COMPENSATION_ATTEMPTS_MAX`; one
//! that is refused or keeps failing leaves the saga `stuck` for support. Each drive
//! raises the saga's epoch; participants refuse older epochs.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::clock::{Backoff, now_unix_ms};
use crate::error_kind::{Classify, ErrorKind};

use thiserror::Error;

use super::deadline::StepDeadline;
use super::fields::{self, Fields};
use super::participant::{self, ParticipantError, StepRequest};
use super::record::{self, SagaRecord, SagaState, StepRecord, StepState};
use super::waiters::{SettledWaiters, Waiter};
use crate::auth::Principal;
pub use crate::limits::{COMPENSATION_ATTEMPTS_MAX, IDEMPOTENCY_KEY_MAX_BYTES};
use crate::limits::{SAGA_RETRY_BACKOFF_MAX, SAGA_RETRY_BACKOFF_MIN};
use crate::peers::proto::{GetSagaStepRequest, RunStepRequest, StartSagaRequest};
use crate::peers::{ForwardError, PeerRouter};
use crate::plugins::{CallError, PluginRegistry, StepDirection, StepError};
use crate::residency::{AuditEntry, ResidencyGuard};
use crate::storage::{StorageError, Store};

#[derive(Debug, Error)]
pub enum SagaError {
    #[error("no saga-step plugin is active for jurisdiction {0}")]
    NoPlugin(String),
    #[error("saga type {0} is not declared by the active saga-step plugin")]
    UnknownType(String),
    #[error("step {step} needs input field {field} (text naming its region)")]
    MissingRegion { step: String, field: String },
    #[error("the idempotency key must be 1..={IDEMPOTENCY_KEY_MAX_BYTES} bytes")]
    BadKey,
    #[error("no saga {0}")]
    NotFound(String),
    #[error("saga {id} is {state}; {action} needs {needed}")]
    WrongState {
        id: String,
        state: &'static str,
        action: &'static str,
        needed: &'static str,
    },
    #[error("saga {0} is driven by a newer orchestrator epoch")]
    Fenced(String),
    #[error("the node is stopping; saga {0} resumes at the next start")]
    Stopping(String),
    #[error(
        "the idempotency key started another saga (another type or input): a retry repeats its request exactly; a new request needs a new key"
    )]
    KeyInUse,
    #[error(
        "the first step of this saga runs in {0}: the node of that region records the saga and its idempotency key"
    )]
    NotKeyOwner(String),
    #[error(
        "region {0} is not a peer of this node; a saga whose first step runs there starts on that region's node"
    )]
    UnknownOwner(String),
    #[error(
        "the saga-step plugins of {caller} and {region} place the steps of saga type {saga_type} differently, so they would not agree on which node keeps its idempotency key; align the plugins"
    )]
    PlacementDiffers {
        caller: String,
        region: String,
        saga_type: String,
    },
    #[error("this node's residency policy refused to send the saga start to {region}: {reason}")]
    StartRefused { region: String, reason: String },
    #[error(
        "region {region}, which records this saga (its first step runs there), is unreachable ({detail}); retry with the same idempotency key"
    )]
    OwnerUnreachable { region: String, detail: String },
    #[error("region {region} refused the saga start: {message}")]
    OwnerRefused {
        region: String,
        /// The owner's own answer's kind, passed on as it is.
        kind: ErrorKind,
        message: String,
    },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl Classify for SagaError {
    fn kind(&self) -> ErrorKind {
        match self {
            SagaError::NoPlugin(_)
            | SagaError::WrongState { .. }
            | SagaError::NotKeyOwner(_)
            | SagaError::PlacementDiffers { .. } => ErrorKind::Precondition,
            SagaError::Fenced(_) => ErrorKind::Fenced,
            SagaError::StartRefused { .. } => ErrorKind::Refused,
            SagaError::Stopping(_) | SagaError::OwnerUnreachable { .. } => ErrorKind::Unavailable,
            SagaError::UnknownType(_)
            | SagaError::MissingRegion { .. }
            | SagaError::BadKey
            | SagaError::UnknownOwner(_) => ErrorKind::Invalid,
            SagaError::KeyInUse => ErrorKind::AlreadyExists,
            SagaError::NotFound(_) => ErrorKind::NotFound,
            // The owner's own answer, under its own kind.
            SagaError::OwnerRefused { kind, .. } => *kind,
            SagaError::Storage(error) => error.kind(),
        }
    }
}

/// The message of step `index` to another region, decided before the local step ahead
/// of it ran, and made durable (audit entry and the saga's progress) by that step's
/// commit: the message may leave without a commit of its own.
struct DecidedAhead {
    index: usize,
    refusal: Option<String>,
    /// The saga's epoch when it was decided.
    epoch: u64,
}

/// How one call of a step ended.
enum StepCall {
    Done(Fields),
    /// A business rule refused it (nothing written): do not retry.
    Refused(String),
    /// Unknown outcome or transient failure: retry.
    Transient(String),
    Fenced,
}

pub struct SagaEngine {
    store: Store,
    plugins: Arc<PluginRegistry>,
    guard: Arc<ResidencyGuard>,
    router: Arc<PeerRouter>,
    region: String,
    jurisdiction: String,
    step_timeout: Duration,
    /// Sagas a task of this process is driving: never two at once.
    driving: Mutex<HashSet<String>>,
    /// Every durable state change (saga id, new state), for callers waiting on a saga.
    /// Callers waiting for sagas to settle (`wait_settled`).
    settled: SettledWaiters,
    /// Raised when the node stops: drives end at their next wait, where the log
    /// already holds their state.
    stopping: tokio::sync::watch::Sender<bool>,
    tasks: Mutex<tokio::task::JoinSet<()>>,
}

/// A time-ordered id (UUIDv7, 74 random bits). The sagas in flight, whose records
/// and step records are rewritten at every step, then sit together at the end of the
/// log's key range: a group commit dirties a few storage pages, not one per saga.
fn new_saga_id(now_unix_ms: u64) -> String {
    let random = uuid::Uuid::new_v4().into_bytes();
    // Bytes 6 and 8 of a v4 id carry its version and variant, not randomness.
    let mut tail = [0u8; 10];
    tail[..6].copy_from_slice(&random[..6]);
    tail[6..].copy_from_slice(&random[9..13]);
    uuid::Builder::from_unix_timestamp_millis(now_unix_ms, &tail)
        .into_uuid()
        .to_string()
}

/// Ended, or waiting for support: nothing changes it on its own any more.
fn is_settled(state: SagaState) -> bool {
    state.is_terminal() || state == SagaState::Stuck
}

/// Why a saga compensates when its step `step` was refused.
fn refused(step: &str, reason: &str) -> String {
    format!("step {step} refused: {reason}")
}

/// The request for step `index` of `saga` in `direction`.
/// The span of one step attempt, at the orchestrator (which records `saga.attempt`)
/// or at the region that runs it for a peer (which records `saga.orchestrator`, the
/// caller's certificate's region). Names and ids only: the step's fields are not in it.
fn step_span(
    saga_id: &str,
    saga_type: &str,
    step: &str,
    region: &str,
    direction: StepDirection,
) -> tracing::Span {
    tracing::info_span!(
        "saga step",
        saga.id = %saga_id,
        saga.type_name = %saga_type,
        saga.step = %step,
        saga.step_region = %region,
        saga.direction = super::participant::direction_name(direction),
        saga.attempt = tracing::field::Empty,
        saga.orchestrator = tracing::field::Empty,
    )
}

fn step_request(saga: &SagaRecord, index: usize, direction: StepDirection) -> StepRequest {
    StepRequest {
        saga_id: saga.id.clone(),
        saga_type: saga.saga_type.clone(),
        step: saga.steps[index].name.clone(),
        direction,
        epoch: saga.epoch,
        fields: saga.input.clone(),
        orchestrator: None,
    }
}

/// Where each step of `saga` runs, "name@region" in order: what two nodes must agree
/// on before one forwards a start to the other.
fn placement_of(saga: &SagaRecord) -> Vec<String> {
    saga.steps
        .iter()
        .map(|step| format!("{}@{}", step.name, step.region))
        .collect()
}

/// A saga to drive as `start` left it: its record and the message it decided ahead.
type Claimed = (SagaRecord, Option<DecidedAhead>);

/// Step `index` done with `result`, as `execute` records it.
fn mark_done(saga: &mut SagaRecord, index: usize, result: Fields) {
    let step = &mut saga.steps[index];
    step.state = StepState::Done;
    step.result = result;
    step.last_error = None;
}

impl SagaEngine {
    pub fn new(
        store: Store,
        plugins: Arc<PluginRegistry>,
        guard: Arc<ResidencyGuard>,
        router: Arc<PeerRouter>,
        identity: (&str, &str),
        step_timeout: Duration,
    ) -> Self {
        Self {
            store,
            plugins,
            guard,
            router,
            region: identity.0.to_string(),
            jurisdiction: identity.1.to_string(),
            step_timeout,
            driving: Mutex::new(HashSet::new()),
            settled: SettledWaiters::default(),
            stopping: tokio::sync::watch::Sender::new(false),
            tasks: Mutex::new(tokio::task::JoinSet::new()),
        }
    }

    /// Stops driving: no new drive starts, running ones end at their next wait (a step
    /// call in flight finishes first), for at most `grace`. What they did is in the log.
    pub async fn stop(&self, grace: Duration) {
        self.stopping.send_replace(true);
        let mut tasks = match self.tasks.lock() {
            Ok(mut tasks) => std::mem::take(&mut *tasks),
            Err(_) => return,
        };
        let drained =
            tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            tracing::warn!("saga drives still running at stop; they resume at the next start");
        }
    }

    /// Waits `duration`, or less if the node stops (then `Err`).
    async fn pause(&self, id: &str, duration: Duration) -> Result<(), SagaError> {
        let mut stopping = self.stopping.subscribe();
        if *stopping.borrow_and_update() {
            return Err(SagaError::Stopping(id.to_string()));
        }
        tokio::select! {
            () = tokio::time::sleep(duration) => Ok(()),
            _ = stopping.changed() => Err(SagaError::Stopping(id.to_string())),
        }
    }

    /// The saga once it has ended (committed, compensated or stuck), or as it stands
    /// when `wait` runs out.
    pub async fn wait_settled(
        &self,
        id: &str,
        wait: Duration,
    ) -> Result<Option<SagaRecord>, SagaError> {
        // Registered before reading, so an end between the two is not missed.
        let waiter = self.settled.watch(id);
        let saga = self.get(id)?;
        if saga.as_ref().is_none_or(|s| is_settled(s.state)) {
            return Ok(saga);
        }
        Ok(self.settled_or_read(waiter, wait).await?.or(saga))
    }

    /// The saga `waiter` waits for, as it settled; or as the log has it when `wait`
    /// runs out or the node stops first.
    async fn settled_or_read(
        &self,
        waiter: Waiter<'_>,
        wait: Duration,
    ) -> Result<Option<SagaRecord>, SagaError> {
        let id = waiter.id().to_string();
        match waiter.settled(wait, self.stopping.subscribe()).await {
            Some(saga) => Ok(Some(saga)),
            None => self.get(&id),
        }
    }

    /// Starts a saga for `on_behalf_of`, or answers the one its idempotency key started.
    ///
    /// The key belongs to the node of the saga's first step's region: that node records
    /// the saga (durably, before answering) and drives it, so a start on any node of the
    /// mesh with a used key finds the first saga (a start elsewhere is forwarded there,
    /// and refused with a retryable error while that region is unreachable). A key
    /// stands for one request: the same type and input return the first saga, another
    /// request under it is refused (`KeyInUse`). With a `wait`, answers once the saga
    /// has ended, or as it stands when the wait runs out. A forwarded start answers
    /// the record without its steps' results, which stay with the orchestrator.
    pub async fn start(
        self: &Arc<Self>,
        saga_type: &str,
        input: Fields,
        idempotency_key: &str,
        wait: Duration,
        on_behalf_of: &Principal,
    ) -> Result<SagaRecord, SagaError> {
        let fresh = self.fresh_record(saga_type, input, idempotency_key)?;
        match fresh.steps.first() {
            Some(first) if first.region != self.region => {
                let owner = first.region.clone();
                self.start_at_owner(&owner, fresh, wait, on_behalf_of).await
            }
            _ => self.start_here(fresh, wait).await,
        }
    }

    /// A start a peer forwarded for one of its clients: only for a saga whose first
    /// step runs here (no second hop). Answers without the steps' results.
    pub async fn start_for_peer(
        self: &Arc<Self>,
        caller: &str,
        saga_type: &str,
        input: Fields,
        idempotency_key: &str,
        placement: &[String],
        wait: Duration,
    ) -> Result<SagaRecord, SagaError> {
        let fresh = self.fresh_record(saga_type, input, idempotency_key)?;
        if let Some(first) = fresh.steps.first().filter(|s| s.region != self.region) {
            return Err(SagaError::NotKeyOwner(first.region.clone()));
        }
        if placement_of(&fresh) != placement {
            return Err(SagaError::PlacementDiffers {
                caller: caller.to_string(),
                region: self.region.clone(),
                saga_type: fresh.saga_type,
            });
        }
        Ok(self.start_here(fresh, wait).await?.without_results())
    }

    /// Forwards the start of `fresh` to `owner`, the node of its first step's region.
    async fn start_at_owner(
        self: &Arc<Self>,
        owner: &str,
        fresh: SagaRecord,
        wait: Duration,
        on_behalf_of: &Principal,
    ) -> Result<SagaRecord, SagaError> {
        // A saga this node recorded under the key (started before keys had owners)
        // is still the key's saga.
        if let Some(existing) = record::by_key(&self.store, &fresh.idempotency_key)? {
            if !existing.is_request(&fresh.saga_type, &fresh.input) {
                return Err(SagaError::KeyInUse);
            }
            let existing = self.adopt(existing);
            return Ok(self
                .wait_settled(&existing.id, wait)
                .await?
                .unwrap_or(existing));
        }
        // The start carries the saga's input to the owner, as the first step's message
        // would: this node's policy decides it (`may-send-step`), audited before it goes.
        let first = &fresh.steps[0];
        let (decision, audit) = self
            .guard
            .decide_step_message(
                &fresh.saga_type,
                &first.name,
                &fields::to_wit(&fresh.input),
                owner,
            )
            .await;
        if let Some(audit) = audit {
            self.guard
                .record(audit)
                .await
                .map_err(|e| StorageError::Transaction(crate::redact_text::shown(&e)))?;
        }
        if let Err(refusal) = decision {
            return Err(SagaError::StartRefused {
                region: owner.to_string(),
                reason: crate::redact_text::shown(&refusal),
            });
        }
        let fields_json = serde_json::to_string(&fresh.input)
            .map_err(|e| StorageError::Transaction(format!("cannot encode saga input: {e}")))?;
        let reply = self
            .router
            .start_saga(
                owner,
                on_behalf_of,
                StartSagaRequest {
                    region: String::new(),
                    principal: None,
                    saga_type: fresh.saga_type.clone(),
                    fields_json,
                    idempotency_key: fresh.idempotency_key.clone(),
                    wait_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                    placement: placement_of(&fresh),
                },
                // The owner may run the first step before it starts to wait.
                wait.saturating_add(self.step_timeout),
            )
            .await
            .map_err(|error| match error {
                ForwardError::UnknownRegion(region) => SagaError::UnknownOwner(region),
                ForwardError::Unreachable { region, detail } => {
                    SagaError::OwnerUnreachable { region, detail }
                }
                ForwardError::Refused {
                    region,
                    kind,
                    message,
                } => SagaError::OwnerRefused {
                    region,
                    kind,
                    message,
                },
                ForwardError::Encode(region) => SagaError::OwnerRefused {
                    region,
                    kind: ErrorKind::Internal,
                    message: "cannot encode the request".into(),
                },
            })?;
        let saga: SagaRecord =
            serde_json::from_str(&reply.saga_json).map_err(|e| SagaError::OwnerRefused {
                region: owner.to_string(),
                kind: ErrorKind::Internal,
                message: format!(
                    "its answer is not a saga record: {}",
                    crate::redact_text::shown(&e)
                ),
            })?;
        // The owner answers for this request only; anything else is its fault, and
        // is not shown to the client.
        if !saga.is_request(&fresh.saga_type, &fresh.input)
            || saga.idempotency_key != fresh.idempotency_key
        {
            return Err(SagaError::OwnerRefused {
                region: owner.to_string(),
                kind: ErrorKind::Internal,
                message: "it answered with another saga".into(),
            });
        }
        Ok(saga)
    }

    /// Records `fresh` here (or finds its key's saga) and drives it, waiting up to
    /// `wait` for it to settle.
    ///
    /// A caller who waits needs no answer before the first step: when that step runs
    /// here, its commit records the saga too (as Temporal's eager workflow start hands
    /// the first task over with the start), one commit less on the way to the answer.
    async fn start_here(
        self: &Arc<Self>,
        fresh: SagaRecord,
        wait: Duration,
    ) -> Result<SagaRecord, SagaError> {
        if wait.is_zero() {
            return self.record_and_drive(fresh).await;
        }
        // Watched before it exists, so its end cannot be missed and needs no read of
        // the log. A start whose key started another saga waits for that one instead.
        let waiter = self.settled.watch(&fresh.id);
        let fresh_id = fresh.id.clone();
        let saga = if fresh
            .steps
            .first()
            .is_some_and(|step| step.region == self.region)
        {
            // A duplicate key runs the first step's body in vain: its commit is
            // called off (see `start_eagerly`). No read of the key first.
            self.start_eagerly(fresh).await?
        } else {
            self.record_and_drive(fresh).await?
        };
        if is_settled(saga.state) {
            return Ok(saga);
        }
        if saga.id != fresh_id {
            drop(waiter);
            return Ok(self.wait_settled(&saga.id, wait).await?.unwrap_or(saga));
        }
        Ok(self.settled_or_read(waiter, wait).await?.unwrap_or(saga))
    }

    /// A new saga of `saga_type`, its steps placed by the active plugin's declaration.
    fn fresh_record(
        &self,
        saga_type: &str,
        input: Fields,
        idempotency_key: &str,
    ) -> Result<SagaRecord, SagaError> {
        if idempotency_key.is_empty() || idempotency_key.len() > IDEMPOTENCY_KEY_MAX_BYTES {
            return Err(SagaError::BadKey);
        }
        let steps = self.place(saga_type, &input)?;
        let now = now_unix_ms();
        Ok(SagaRecord {
            id: new_saga_id(now),
            saga_type: saga_type.to_string(),
            idempotency_key: idempotency_key.to_string(),
            input,
            steps,
            state: SagaState::Pending,
            // The drive this start spawns owns epoch 1 (see `drive`).
            epoch: 1,
            created_unix_ms: now,
            updated_unix_ms: now,
            last_error: None,
        })
    }

    /// The steps of a `saga_type` saga with `input`, each in the region this node's
    /// saga-step plugin places it (the region its declared field of `input` names).
    fn place(&self, saga_type: &str, input: &Fields) -> Result<Vec<StepRecord>, SagaError> {
        let plugin = self
            .plugins
            .saga_steps(&self.jurisdiction)
            .ok_or_else(|| SagaError::NoPlugin(self.jurisdiction.clone()))?;
        let declared = plugin
            .plugin
            .saga_types()
            .iter()
            .find(|t| t.name == saga_type)
            .ok_or_else(|| SagaError::UnknownType(saga_type.to_string()))?;
        declared
            .steps
            .iter()
            .map(|step| {
                let region = fields::text(input, &step.region_field).ok_or_else(|| {
                    SagaError::MissingRegion {
                        step: step.name.clone(),
                        field: step.region_field.clone(),
                    }
                })?;
                Ok(StepRecord {
                    name: step.name.clone(),
                    region: region.to_string(),
                    state: StepState::Pending,
                    attempts: 0,
                    last_error: None,
                    result: Vec::new(),
                    released_epoch: None,
                })
            })
            .collect()
    }

    /// Writes `saga` unless its idempotency key started one already, and drives
    /// whichever it is (`KeyInUse` if that one is another request).
    async fn record_and_drive(self: &Arc<Self>, saga: SagaRecord) -> Result<SagaRecord, SagaError> {
        let (saga_type, input) = (saga.saga_type.clone(), saga.input.clone());
        let (saga, created) = self
            .store
            .write(move |ctx| record::insert_or_existing(ctx, saga))
            .await?;
        if !created {
            if !saga.is_request(&saga_type, &input) {
                return Err(SagaError::KeyInUse);
            }
            return Ok(self.adopt(saga));
        }
        // The start path (admin API, SQL) logs the request with its user at info.
        tracing::debug!(saga = %saga.id, saga_type = %saga.saga_type, "saga started");
        self.announce(&saga);
        self.spawn_drive(saga.id.clone(), Some((saga.clone(), None)));
        Ok(saga)
    }

    /// An existing saga asked for again: driven on if it is not finished and no task
    /// drives it (after a restart that had not resumed it yet, say).
    fn adopt(self: &Arc<Self>, saga: SagaRecord) -> SagaRecord {
        if saga.state.is_driven() {
            self.spawn_drive(saga.id.clone(), None);
        }
        saga
    }

    /// Runs the first step (here) of `fresh`, with the saga's record, its idempotency
    /// key and the next step's message decision in the step's commit, then drives the
    /// rest. Until that commit the saga exists nowhere, so no other drive can hold it;
    /// if the key was taken meanwhile, the commit is called off and the first saga is
    /// answered. A first step that is refused or fails is recorded as such, and the saga
    /// goes on as if started the usual way (compensated, or the step retried).
    async fn start_eagerly(self: &Arc<Self>, fresh: SagaRecord) -> Result<SagaRecord, SagaError> {
        let mut saga = fresh.clone();
        saga.set_state(SagaState::Running);
        saga.steps[0].attempts = 1;
        let (ahead, progress) = self.progress_of(&saga, 0, true).await;
        let request = step_request(&saga, 0, StepDirection::Execute);
        let gate = participant::gate(Arc::clone(&self.guard), &self.region, &request);
        let outcome = participant::run_once(
            &self.store,
            &self.plugins,
            &self.jurisdiction,
            &self.region,
            request,
            progress,
            true,
            Some(gate),
        )
        .await;
        match outcome {
            Ok(done) if done.recorded_now => {
                tracing::debug!(saga = %saga.id, saga_type = %saga.saga_type, "saga started with its first step");
                mark_done(&mut saga, 0, done.result);
                self.announce(&saga);
                self.spawn_drive(saga.id.clone(), Some((saga.clone(), ahead)));
                return Ok(saga);
            }
            Err(ParticipantError::Step(StepError::Withdrawn(_))) => {
                return self.record_and_drive(fresh).await;
            }
            Err(ParticipantError::Step(StepError::Rejected(reason))) => {
                saga.last_error = Some(refused(&saga.steps[0].name, &reason));
                saga.steps[0].last_error = Some(reason);
                saga.set_state(SagaState::Compensating);
            }
            // Not done: a transient failure (a fresh saga cannot be fenced or found
            // done earlier); the drive retries the step.
            Ok(_) => {}
            Err(error) => saga.steps[0].last_error = Some(crate::redact_text::shown(&error)),
        }
        saga.updated_unix_ms = now_unix_ms();
        self.record_and_drive(saga).await
    }

    pub fn get(&self, id: &str) -> Result<Option<SagaRecord>, SagaError> {
        Ok(record::load(&self.store, id)?)
    }

    pub fn list(&self) -> Result<Vec<SagaRecord>, SagaError> {
        Ok(record::all(&self.store)?)
    }

    /// Drives every saga the log says is not finished (after a restart).
    pub fn resume_all(self: &Arc<Self>) -> Result<usize, StorageError> {
        let pending: Vec<String> = record::all(&self.store)?
            .into_iter()
            .filter(|s| s.state.is_driven())
            .map(|s| s.id)
            .collect();
        for id in &pending {
            self.spawn_drive(id.clone(), None);
        }
        Ok(pending.len())
    }

    /// Support: drive a stuck saga again (its compensation, or its steps).
    pub async fn retry(self: &Arc<Self>, id: &str) -> Result<SagaRecord, SagaError> {
        self.support(id, "retry", |saga| {
            let failed_forward = saga
                .steps
                .iter()
                .all(|s| matches!(s.state, StepState::Pending | StepState::Done));
            saga.set_state(if failed_forward {
                SagaState::Running
            } else {
                SagaState::Compensating
            });
        })
        .await
    }

    /// Support: undo a stuck saga.
    pub async fn compensate(self: &Arc<Self>, id: &str) -> Result<SagaRecord, SagaError> {
        self.support(id, "compensate", |saga| {
            saga.set_state(SagaState::Compensating)
        })
        .await
    }

    async fn support(
        self: &Arc<Self>,
        id: &str,
        action: &'static str,
        change: impl FnOnce(&mut SagaRecord),
    ) -> Result<SagaRecord, SagaError> {
        let mut saga =
            record::load(&self.store, id)?.ok_or_else(|| SagaError::NotFound(id.to_string()))?;
        if saga.state != SagaState::Stuck {
            return Err(SagaError::WrongState {
                id: id.to_string(),
                state: saga.state.as_str(),
                action,
                needed: "stuck",
            });
        }
        change(&mut saga);
        for step in &mut saga.steps {
            step.attempts = 0;
        }
        self.persist(&mut saga).await?;
        self.spawn_drive(saga.id.clone(), None);
        Ok(saga)
    }

    fn spawn_drive(self: &Arc<Self>, id: String, claimed: Option<Claimed>) {
        if *self.stopping.borrow() {
            return;
        }
        let fresh = self
            .driving
            .lock()
            .map(|mut d| d.insert(id.clone()))
            .unwrap_or(false);
        if !fresh {
            return;
        }
        let engine = Arc::clone(self);
        let drive = async move {
            match engine.drive(&id, claimed).await {
                Ok(()) | Err(SagaError::Stopping(_)) => {}
                Err(error) => {
                    tracing::warn!(saga = %id, error = %error, "saga not driven to the end");
                }
            }
            if let Ok(mut driving) = engine.driving.lock() {
                driving.remove(&id);
            }
        };
        if let Ok(mut tasks) = self.tasks.lock() {
            // Finished drives are reaped as new ones start.
            while tasks.try_join_next().is_some() {}
            // In the span of what started the saga (the statement, or nothing when
            // recovery resumes it), so its steps, in every region, join that trace.
            tasks.spawn(tracing::Instrument::in_current_span(drive));
        }
    }

    async fn persist(&self, saga: &mut SagaRecord) -> Result<(), StorageError> {
        self.persist_with(saga, None).await
    }

    /// Writes the saga's state, and `audit` (a step message's residency decision) in
    /// the same commit.
    async fn persist_with(
        &self,
        saga: &mut SagaRecord,
        audit: Option<AuditEntry>,
    ) -> Result<(), StorageError> {
        saga.updated_unix_ms = now_unix_ms();
        let copy = saga.clone();
        self.store
            .write(move |ctx| {
                if let Some(audit) = audit {
                    ctx.append_audit(audit.to_bytes());
                }
                record::put(ctx, &copy)
            })
            .await?;
        self.announce(saga);
        Ok(())
    }

    /// Tells the callers waiting for `saga` (`wait_settled`), if this write settled it.
    fn announce(&self, saga: &SagaRecord) {
        if is_settled(saga.state) {
            self.settled.settled(saga);
        }
    }

    /// Drives saga `id` to its end. `claimed`: the record `start` just wrote with epoch 1
    /// for this drive, and the next message if it decided it ahead; otherwise the drive
    /// reads the log and raises the epoch (durably) first.
    ///
    /// A step's completion reaches the saga record with the next commit the saga makes,
    /// not on its own: a crash in between re-runs the step, which answers with its
    /// recorded result (exactly once). A step run here whose next step runs elsewhere
    /// writes that record itself, in its own commit, with the next message's residency
    /// decision (`decide_ahead`), so the message leaves without another commit.
    async fn drive(&self, id: &str, claimed: Option<Claimed>) -> Result<(), SagaError> {
        let (mut saga, mut ahead) = match claimed {
            Some(claimed) => claimed,
            None => {
                let mut saga = record::load(&self.store, id)?
                    .ok_or_else(|| SagaError::NotFound(id.to_string()))?;
                saga.epoch += 1;
                self.persist(&mut saga).await?;
                (saga, None)
            }
        };
        if saga.state == SagaState::Pending {
            saga.set_state(SagaState::Running);
        }
        if saga.state == SagaState::Running {
            for index in 0..saga.steps.len() {
                if saga.steps[index].state != StepState::Pending {
                    continue;
                }
                if let Some(reason) = self.execute(&mut saga, index, &mut ahead).await? {
                    saga.set_state(SagaState::Compensating);
                    saga.last_error = Some(reason);
                    self.persist(&mut saga).await?;
                    break;
                }
            }
            if saga.state == SagaState::Running {
                saga.set_state(SagaState::Committed);
                self.persist(&mut saga).await?;
                // The usual end: debug (per saga); compensations and stuck sagas are
                // logged at info and warn.
                tracing::debug!(saga = %saga.id, "saga committed");
                return Ok(());
            }
        }
        if saga.state == SagaState::Compensating {
            for index in (0..saga.steps.len()).rev() {
                if !matches!(
                    saga.steps[index].state,
                    StepState::Done | StepState::Uncertain
                ) {
                    continue;
                }
                if let Some(reason) = self.undo(&mut saga, index).await? {
                    saga.set_state(SagaState::Stuck);
                    saga.last_error = Some(reason);
                    self.persist(&mut saga).await?;
                    tracing::warn!(saga = %saga.id, "saga stuck: support needed");
                    return Ok(());
                }
            }
            saga.set_state(SagaState::Compensated);
            self.persist(&mut saga).await?;
            tracing::info!(saga = %saga.id, "saga compensated");
        }
        Ok(())
    }

    /// Runs step `index` until it is done (`None`) or cannot be (`Some(reason)`).
    async fn execute(
        &self,
        saga: &mut SagaRecord,
        index: usize,
        ahead: &mut Option<DecidedAhead>,
    ) -> Result<Option<String>, SagaError> {
        let deadline = StepDeadline::new(Instant::now(), self.step_timeout);
        let mut backoff = Backoff::new(SAGA_RETRY_BACKOFF_MIN, SAGA_RETRY_BACKOFF_MAX);
        loop {
            saga.steps[index].attempts += 1;
            match self
                .call(saga, index, StepDirection::Execute, ahead)
                .await?
            {
                StepCall::Done(result) => {
                    mark_done(saga, index, result);
                    return Ok(None);
                }
                StepCall::Refused(reason) => {
                    saga.steps[index].last_error = Some(reason.clone());
                    return Ok(Some(refused(&saga.steps[index].name, &reason)));
                }
                StepCall::Fenced => return Err(SagaError::Fenced(saga.id.clone())),
                StepCall::Transient(reason) => {
                    saga.steps[index].last_error = Some(reason.clone());
                    let Some(wait) = deadline.next_wait(Instant::now(), &mut backoff) else {
                        // Its answer may have been lost after it applied.
                        saga.steps[index].state = StepState::Uncertain;
                        return Ok(Some(format!(
                            "step {} did not complete within {} s: {reason}",
                            saga.steps[index].name,
                            self.step_timeout.as_secs()
                        )));
                    };
                    self.persist(saga).await?;
                    self.pause(&saga.id, wait).await?;
                }
            }
        }
    }

    /// Compensates step `index` until done (`None`) or given up (`Some(reason)`).
    async fn undo(&self, saga: &mut SagaRecord, index: usize) -> Result<Option<String>, SagaError> {
        let mut backoff = Backoff::new(SAGA_RETRY_BACKOFF_MIN, SAGA_RETRY_BACKOFF_MAX);
        saga.steps[index].attempts = 0;
        loop {
            saga.steps[index].attempts += 1;
            match self
                .call(saga, index, StepDirection::Compensate, &mut None)
                .await?
            {
                StepCall::Done(_) => {
                    saga.steps[index].state = StepState::Compensated;
                    saga.steps[index].last_error = None;
                    self.persist(saga).await?;
                    return Ok(None);
                }
                StepCall::Refused(reason) => {
                    saga.steps[index].last_error = Some(reason.clone());
                    return Ok(Some(format!(
                        "compensation of {} refused: {reason}",
                        saga.steps[index].name
                    )));
                }
                StepCall::Fenced => return Err(SagaError::Fenced(saga.id.clone())),
                StepCall::Transient(reason) => {
                    saga.steps[index].last_error = Some(reason.clone());
                    if saga.steps[index].attempts >= COMPENSATION_ATTEMPTS_MAX {
                        return Ok(Some(format!(
                            "compensation of {} failed {} times: {reason}",
                            saga.steps[index].name, COMPENSATION_ATTEMPTS_MAX
                        )));
                    }
                    self.persist(saga).await?;
                    self.pause(&saga.id, backoff.next_wait()).await?;
                }
            }
        }
    }

    /// What the commit of step `index`, run here, writes besides the step, and the
    /// message it decides ahead. If the step after it runs in another region, that
    /// message is decided now, and the commit writes its audit entry and the saga's
    /// progress (step `index` done, the next one's attempt counted, as `execute` will
    /// have it in memory then): the message may leave at once. For a saga not recorded
    /// yet (`new`, see `start_eagerly`), the commit records it with its idempotency key,
    /// unless the key was taken meanwhile (`StepError::Withdrawn`: nothing is written).
    async fn progress_of(
        &self,
        saga: &SagaRecord,
        index: usize,
        new: bool,
    ) -> (Option<DecidedAhead>, Option<participant::Progress>) {
        let next = saga
            .steps
            .get(index + 1)
            .filter(|next| next.region != self.region && next.state == StepState::Pending);
        let decided = match next {
            Some(next) => Some(
                self.guard
                    .decide_step_message(
                        &saga.saga_type,
                        &next.name,
                        &fields::to_wit(&saga.input),
                        &next.region,
                    )
                    .await,
            ),
            None => None,
        };
        let (ahead, audit) = match decided {
            Some((decision, audit)) => (
                Some(DecidedAhead {
                    index: index + 1,
                    refusal: decision.err().map(|refusal| refusal.to_string()),
                    epoch: saga.epoch,
                }),
                audit,
            ),
            None if new => (None, None),
            None => return (None, None),
        };
        let counts_next = ahead.is_some();
        let releases_next = ahead.as_ref().is_some_and(|a| a.refusal.is_none());
        let before = saga.clone();
        let progress: participant::Progress = Arc::new(move |ctx, result| {
            let mut saga = before.clone();
            mark_done(&mut saga, index, result.clone());
            if counts_next {
                saga.steps[index + 1].attempts += 1;
            }
            if releases_next {
                saga.steps[index + 1].released_epoch = Some(saga.epoch);
            }
            saga.updated_unix_ms = now_unix_ms();
            if new {
                if !record::insert_new(ctx, &saga)? {
                    return Err(StepError::Withdrawn(
                        "another start with the same idempotency key recorded its saga first"
                            .into(),
                    ));
                }
            } else {
                record::put(ctx, &saga)?;
            }
            if let Some(audit) = &audit {
                ctx.append_audit(audit.to_bytes());
            }
            Ok(())
        });
        (ahead, Some(progress))
    }

    /// One call of a step, here or on its region's node. `ahead`: a message decided
    /// and made durable by the local step before (taken if it is this call's), or
    /// where this call, a local step, leaves the next one's.
    async fn call(
        &self,
        saga: &mut SagaRecord,
        index: usize,
        direction: StepDirection,
        ahead: &mut Option<DecidedAhead>,
    ) -> Result<StepCall, StorageError> {
        // Its reasons become `last_error` (`system.sagas`, admin replies) and log lines.
        let shown = |reason: String| crate::redact_text::shown(&reason);
        let step = &saga.steps[index];
        let span = step_span(
            &saga.id,
            &saga.saga_type,
            &step.name,
            &step.region,
            direction,
        );
        span.record("saga.attempt", step.attempts);
        let called =
            tracing::Instrument::instrument(self.call_unshown(saga, index, direction, ahead), span);
        Ok(match called.await? {
            StepCall::Refused(reason) => StepCall::Refused(shown(reason)),
            StepCall::Transient(reason) => StepCall::Transient(shown(reason)),
            other => other,
        })
    }

    async fn call_unshown(
        &self,
        saga: &mut SagaRecord,
        index: usize,
        direction: StepDirection,
        ahead: &mut Option<DecidedAhead>,
    ) -> Result<StepCall, StorageError> {
        let step = &saga.steps[index];
        let request = step_request(saga, index, direction);
        if step.region == self.region {
            let (decided, progress) = match direction {
                StepDirection::Execute => self.progress_of(saga, index, false).await,
                StepDirection::Compensate => (None, None),
            };
            let gate = participant::gate(Arc::clone(&self.guard), &self.region, &request);
            return Ok(
                match participant::run_once(
                    &self.store,
                    &self.plugins,
                    &self.jurisdiction,
                    &self.region,
                    request,
                    progress,
                    false,
                    Some(gate),
                )
                .await
                {
                    Ok(done) => {
                        // Found done by an earlier run: nothing was written now, so the
                        // next message is decided (and made durable) when it goes.
                        *ahead = decided.filter(|_| done.recorded_now);
                        StepCall::Done(done.result)
                    }
                    Err(ParticipantError::Step(StepError::Rejected(reason))) => {
                        StepCall::Refused(reason)
                    }
                    Err(ParticipantError::Fenced { .. }) => StepCall::Fenced,
                    Err(other) => StepCall::Transient(other.to_string()),
                },
            );
        }
        let step = step.clone();
        // The decision is durable before the message leaves, with the saga's progress:
        // written by the local step before it, or now.
        let refusal = match ahead.take() {
            Some(decided) if decided.index == index && direction == StepDirection::Execute => {
                if decided.refusal.is_none() {
                    // Made durable by the local step's commit (`progress_of`).
                    saga.steps[index].released_epoch = Some(decided.epoch);
                }
                decided.refusal
            }
            _ => {
                let (decision, audit) = self
                    .guard
                    .decide_step_message(
                        &saga.saga_type,
                        &step.name,
                        &fields::to_wit(&saga.input),
                        &step.region,
                    )
                    .await;
                if decision.is_ok() && direction == StepDirection::Execute {
                    saga.steps[index].released_epoch = Some(saga.epoch);
                }
                self.persist_with(saga, audit).await?;
                decision.err().map(|refusal| refusal.to_string())
            }
        };
        if let Some(refusal) = refusal {
            return Ok(StepCall::Refused(refusal));
        }
        let fields_json = match serde_json::to_string(&saga.input) {
            Ok(json) => json,
            Err(error) => {
                return Ok(StepCall::Refused(format!("input not encodable: {error}")));
            }
        };
        let call = self.router.run_step(
            &step.region,
            RunStepRequest {
                region: String::new(),
                saga_id: saga.id.clone(),
                saga_type: saga.saga_type.clone(),
                step: step.name.clone(),
                direction: match direction {
                    StepDirection::Execute => "execute".into(),
                    StepDirection::Compensate => "compensate".into(),
                },
                epoch: saga.epoch,
                fields_json,
            },
        );
        Ok(match call.await {
            Ok(reply) => match serde_json::from_str(&reply.fields_json) {
                Ok(result) => StepCall::Done(result),
                Err(error) => StepCall::Transient(format!("unreadable step result: {error}")),
            },
            Err(ForwardError::Refused {
                kind: ErrorKind::Precondition,
                message,
                ..
            }) => StepCall::Refused(message),
            Err(ForwardError::Refused {
                kind: ErrorKind::Fenced,
                ..
            }) => StepCall::Fenced,
            Err(error @ ForwardError::UnknownRegion(_)) => StepCall::Refused(error.to_string()),
            Err(other) => StepCall::Transient(other.to_string()),
        })
    }

    /// A step that peer `caller` (its certificate's region) asks this node to run.
    ///
    /// Only a saga `caller` orchestrates: this node's own saga-step plugin places the
    /// saga's first step in `caller` (the orchestrator is the first step's region, see
    /// `start`) and the asked step here (`Misplaced` otherwise). Its records live under
    /// `caller`'s region (see `participant`), so no other region's request touches them.
    /// A step not recorded here yet runs only once `caller`'s saga log confirmed it
    /// (`GetSagaStep`) at this very epoch.
    pub async fn run_for_peer(
        &self,
        caller: &str,
        request: StepRequest,
    ) -> Result<Fields, ParticipantError> {
        let span = step_span(
            &request.saga_id,
            &request.saga_type,
            &request.step,
            &self.region,
            request.direction,
        );
        span.record("saga.orchestrator", caller);
        tracing::Instrument::instrument(self.run_step_for_peer(caller, request), span).await
    }

    async fn run_step_for_peer(
        &self,
        caller: &str,
        mut request: StepRequest,
    ) -> Result<Fields, ParticipantError> {
        if record::load(&self.store, &request.saga_id)?.is_some() {
            // This node's own saga: nobody else drives it.
            return Err(ParticipantError::Foreign {
                saga: request.saga_id,
                bound: self.region.clone(),
                caller: caller.to_string(),
            });
        }
        self.check_placement(caller, &request)?;
        request.orchestrator = Some(caller.to_string());
        if let Some(result) = participant::recorded_for_peer(&self.store, &request, &self.region)? {
            return Ok(result);
        }
        let confirmed = self.confirm(caller, &request).await?;
        if confirmed != request.epoch {
            return Err(ParticipantError::Fenced {
                saga: request.saga_id,
                seen: confirmed,
                given: request.epoch,
            });
        }
        let (saga_type, step) = (request.saga_type.clone(), request.step.clone());
        let gate = participant::gate(Arc::clone(&self.guard), &self.region, &request);
        let outcome = participant::run_once(
            &self.store,
            &self.plugins,
            &self.jurisdiction,
            &self.region,
            request,
            None,
            false,
            Some(gate),
        )
        .await;
        match outcome {
            Ok(done) => Ok(done.result),
            Err(ParticipantError::Step(StepError::Rejected(reason))) => {
                let reason = self.failure_text(caller, &saga_type, &step, reason).await;
                Err(StepError::Rejected(reason).into())
            }
            Err(ParticipantError::Step(StepError::Retryable(reason))) => {
                let reason = self.failure_text(caller, &saga_type, &step, reason).await;
                Err(StepError::Retryable(reason).into())
            }
            Err(ParticipantError::Step(StepError::Plugin(CallError::Trap(_)))) => {
                Err(StepError::Plugin(CallError::Trap("message withheld".into())).into())
            }
            Err(other) => Err(other),
        }
    }

    /// Refuses (`Misplaced`) a step of a saga that, as this node's plugin places the
    /// request's input, `caller` does not orchestrate or this node does not run.
    fn check_placement(&self, caller: &str, request: &StepRequest) -> Result<(), ParticipantError> {
        let steps =
            self.place(&request.saga_type, &request.fields)
                .map_err(|error| match error {
                    SagaError::NoPlugin(jurisdiction) => ParticipantError::NoPlugin(jurisdiction),
                    other => StepError::Rejected(other.to_string()).into(),
                })?;
        let first_is_callers = steps.first().is_some_and(|first| first.region == caller);
        let step_is_here = steps
            .iter()
            .any(|step| step.name == request.step && step.region == self.region);
        if first_is_callers && step_is_here {
            return Ok(());
        }
        Err(ParticipantError::Misplaced {
            saga: request.saga_id.clone(),
            saga_type: request.saga_type.clone(),
            caller: caller.to_string(),
            placement: steps
                .iter()
                .map(|step| format!("{}@{}", step.name, step.region))
                .collect::<Vec<_>>()
                .join(", "),
        })
    }

    /// The epoch `orchestrator`'s saga log holds, if it holds the step `request` asks
    /// for, run in this region, wanted in that direction, with that input.
    async fn confirm(
        &self,
        orchestrator: &str,
        request: &StepRequest,
    ) -> Result<u64, ParticipantError> {
        let asked = GetSagaStepRequest {
            region: String::new(),
            saga_id: request.saga_id.clone(),
            saga_type: request.saga_type.clone(),
            step: request.step.clone(),
            direction: participant::direction_name(request.direction).into(),
            epoch: request.epoch,
            fields_sha256: fields::digest(&request.fields),
        };
        match self.router.get_saga_step(orchestrator, asked).await {
            Ok(reply) => Ok(reply.epoch),
            Err(ForwardError::Refused {
                kind: ErrorKind::NotFound,
                ..
            }) => Err(ParticipantError::Unverified {
                saga: request.saga_id.clone(),
                step: request.step.clone(),
                caller: orchestrator.to_string(),
            }),
            Err(other) => Err(StepError::Retryable(format!(
                "cannot confirm the step with region {orchestrator}: {other}"
            ))
            .into()),
        }
    }

    /// A guest's failure text (it may be built from rows the step read) goes back to
    /// the orchestrator only if this node's policy lets it leave; audited either way.
    async fn failure_text(
        &self,
        caller: &str,
        saga_type: &str,
        step: &str,
        reason: String,
    ) -> String {
        let payload = [(
            "reason".to_string(),
            crate::plugins::wit_values::Value::Text(reason.clone()),
        )];
        let (outcome, audit) = self
            .guard
            .decide_step_message(saga_type, &format!("{step}/failure"), &payload, caller)
            .await;
        let audited = match audit {
            Some(mut audit) => {
                audit.principal = "saga-participant".into();
                self.guard.record(audit).await.is_ok()
            }
            None => true,
        };
        if outcome.is_ok() && audited {
            reason
        } else {
            format!(
                "step {step} failed in {} (reason withheld by its residency policy)",
                self.region
            )
        }
    }

    /// Answers a participant's `GetSagaStep` (`caller`: its certificate's region) from
    /// this node's saga log: the saga's epoch if the log holds `asked`'s step, run in
    /// `caller`'s region, wanted now in that direction, with that input, at an epoch
    /// not newer than the log's. Durable before any message leaves (see `call`).
    pub fn step_for_peer(
        &self,
        caller: &str,
        asked: &GetSagaStepRequest,
    ) -> Result<Option<u64>, StorageError> {
        Ok(record::load(&self.store, &asked.saga_id)?
            .and_then(|saga| confirmed_step(&saga, caller, asked)))
    }
}

/// `saga`'s epoch if its log holds `asked`'s step, run in `caller`'s region, wanted now
/// in that direction, with that input, at an epoch not newer than the log's, and its
/// input was already released to `caller` (see `StepRecord::released_epoch`: a
/// compensation follows an execute that was).
fn confirmed_step(saga: &SagaRecord, caller: &str, asked: &GetSagaStepRequest) -> Option<u64> {
    let step = saga.steps.iter().find(|s| s.name == asked.step)?;
    let wanted = match asked.direction.as_str() {
        "execute" => {
            matches!(saga.state, SagaState::Pending | SagaState::Running)
                && step.released_epoch.is_some()
                && matches!(
                    step.state,
                    StepState::Pending | StepState::Done | StepState::Uncertain
                )
        }
        "compensate" => {
            matches!(
                saga.state,
                SagaState::Compensating | SagaState::Stuck | SagaState::Compensated
            ) && matches!(
                step.state,
                StepState::Done | StepState::Uncertain | StepState::Compensated
            )
        }
        _ => false,
    };
    let known = wanted
        && step.region == caller
        && saga.saga_type == asked.saga_type
        && asked.epoch <= saga.epoch
        && fields::digest(&saga.input) == asked.fields_sha256;
    known.then_some(saga.epoch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::saga::fields::Field;

    fn two_region_saga(released: Option<u64>) -> SagaRecord {
        let step = |name: &str, region: &str, state| StepRecord {
            name: name.into(),
            region: region.into(),
            state,
            attempts: 1,
            last_error: None,
            result: Vec::new(),
            released_epoch: None,
        };
        let mut credit = step("credit", "eu-central", StepState::Pending);
        credit.released_epoch = released;
        SagaRecord {
            input: vec![("amount".into(), Field::Decimal("700".into(), 2))],
            steps: vec![step("debit", "us-east", StepState::Done), credit],
            epoch: 2,
            ..SagaRecord::sample("01900000-0000-7000-8000-000000000001", SagaState::Running)
        }
    }

    fn asked(saga: &SagaRecord, step: &str, direction: &str, guess: &Fields) -> GetSagaStepRequest {
        GetSagaStepRequest {
            region: String::new(),
            saga_id: saga.id.clone(),
            saga_type: saga.saga_type.clone(),
            step: step.into(),
            direction: direction.into(),
            epoch: saga.epoch,
            fields_sha256: fields::digest(guess),
        }
    }

    /// `GetSagaStep` answers the step's region about an input only once that input was
    /// released to it: before, a right guess and a wrong one get the same answer.
    #[test]
    fn a_step_is_confirmed_to_its_region_only_once_its_input_was_released_there() {
        let unreleased = two_region_saga(None);
        let right = unreleased.input.clone();
        let wrong = vec![("amount".into(), Field::Decimal("701".into(), 2))];
        for guess in [&right, &wrong] {
            let question = asked(&unreleased, "credit", "execute", guess);
            assert_eq!(confirmed_step(&unreleased, "eu-central", &question), None);
        }

        let released = two_region_saga(Some(2));
        let question = asked(&released, "credit", "execute", &right);
        assert_eq!(confirmed_step(&released, "eu-central", &question), Some(2));
        // Not to another region, not a wrong input, not a step run elsewhere, not a
        // newer epoch than the log's, not a direction the saga does not want now.
        assert_eq!(confirmed_step(&released, "ap-southeast", &question), None);
        let question = asked(&released, "credit", "execute", &wrong);
        assert_eq!(confirmed_step(&released, "eu-central", &question), None);
        let question = asked(&released, "debit", "execute", &right);
        assert_eq!(confirmed_step(&released, "us-east", &question), None);
        let mut newer = asked(&released, "credit", "execute", &right);
        newer.epoch = u64::MAX;
        assert_eq!(confirmed_step(&released, "eu-central", &newer), None);
        let question = asked(&released, "credit", "compensate", &right);
        assert_eq!(confirmed_step(&released, "eu-central", &question), None);
    }

    #[test]
    fn saga_ids_are_time_ordered_and_unique() {
        let earlier = new_saga_id(1_700_000_000_000);
        let later = new_saga_id(1_700_000_000_001);
        assert!(earlier < later, "{earlier} !< {later}");
        let parsed = uuid::Uuid::parse_str(&earlier).expect("a uuid");
        assert_eq!(parsed.get_version_num(), 7);
        let same_ms: HashSet<String> = (0..1000).map(|_| new_saga_id(1_700_000_000_000)).collect();
        assert_eq!(
            same_ms.len(),
            1000,
            "random bits differ within a millisecond"
        );
    }
}
