//! Running one saga step on the node that owns its data, exactly once.
//!
//! A step's effect and the record that it happened (`saga/step/<orchestrator>/<saga>/
//! <step>/<execute | compensate>`, holding the step's result) commit together
//! (`SagaStepPlugin::run_step`'s `also`). A repeated request (an orchestrator retrying
//! after a lost answer) finds the record and gets the stored result without running
//! the step again; two requests racing both run the guest, but the second commit finds
//! the first's record and writes nothing. The newest orchestrator epoch seen per saga
//! is kept in the same commits (`saga/fence/<orchestrator>/<saga>`); a request of an
//! older epoch is refused (fencing).
//!
//! Every record lives under its orchestrator's region (proven by a peer's certificate;
//! this node's own region for its own sagas): a saga is its orchestrator's id space,
//! so a region that learns another region's saga id and reaches a participant first
//! drives a saga of its own under that id, never the other one (no squatting), and
//! can neither fence nor answer for it. Records from before this layout are moved in
//! by `legacy_records` at start.

use std::sync::Arc;

use futures::FutureExt;
use thiserror::Error;

use super::fields::{self, Fields};
use crate::auth::Principal;
use crate::plugins::saga_types::StepInput;
use crate::plugins::{PluginRegistry, StagedStep, StepDirection, StepError, StepGate};
use crate::residency::{AuditEntry, ResidencyGuard};
use crate::storage::{StorageError, Store, WriteContext};

/// One step, as an orchestrator asks for it.
#[derive(Clone, Debug, PartialEq)]
pub struct StepRequest {
    pub saga_id: String,
    pub saga_type: String,
    pub step: String,
    pub direction: StepDirection,
    pub epoch: u64,
    pub fields: Fields,
    /// The region of the saga's orchestrator when a peer asks (its certificate's);
    /// `None` for the steps a node runs for its own sagas.
    pub orchestrator: Option<String>,
}

#[derive(Debug, Error)]
pub enum ParticipantError {
    #[error("no saga-step plugin is active for jurisdiction {0}")]
    NoPlugin(String),
    #[error(
        "saga {saga} is driven by a newer orchestrator (epoch {seen} > {given}); request refused"
    )]
    Fenced { saga: String, seen: u64, given: u64 },
    #[error("saga {saga} is driven from region {bound}, not {caller}; request refused")]
    Foreign {
        saga: String,
        bound: String,
        caller: String,
    },
    #[error(
        "region {caller} does not drive saga {saga}: its {saga_type} steps for this input run in {placement}"
    )]
    Misplaced {
        saga: String,
        saga_type: String,
        caller: String,
        placement: String,
    },
    #[error(
        "saga {saga} was recorded here before sagas were kept per orchestrator, with no \
         orchestrator named: no peer may drive it (support: resolve it by hand)"
    )]
    Legacy { saga: String },
    #[error("region {caller}'s saga log has no such step {step} of saga {saga} for this region")]
    Unverified {
        saga: String,
        step: String,
        caller: String,
    },
    #[error(transparent)]
    Step(#[from] StepError),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl crate::error_kind::Classify for ParticipantError {
    /// What the orchestrator does with the answer: precondition → compensate, fenced →
    /// stop, refused → not the caller's to drive, anything else → retry.
    fn kind(&self) -> crate::error_kind::ErrorKind {
        use crate::error_kind::ErrorKind;
        match self {
            ParticipantError::Legacy { .. } => ErrorKind::Precondition,
            ParticipantError::Fenced { .. } => ErrorKind::Fenced,
            ParticipantError::Foreign { .. }
            | ParticipantError::Misplaced { .. }
            | ParticipantError::Unverified { .. } => ErrorKind::Refused,
            // The plugin may be uploaded yet: retry.
            ParticipantError::NoPlugin(_) => ErrorKind::Unavailable,
            ParticipantError::Step(error) => error.kind(),
            ParticipantError::Storage(error) => error.kind(),
        }
    }
}

pub(crate) fn direction_name(direction: StepDirection) -> &'static str {
    match direction {
        StepDirection::Execute => "execute",
        StepDirection::Compensate => "compensate",
    }
}

/// Prefix of the step records (`saga/step/<orchestrator>/<saga>/<step>/<direction>`).
pub(crate) const STEP_PREFIX: &str = "saga/step/";
/// Prefix of the fences (`saga/fence/<orchestrator>/<saga>`).
pub(crate) const FENCE_PREFIX: &str = "saga/fence/";
/// The namespace of records written before sagas were kept per orchestrator whose
/// orchestrator is unknown: not a region name (regions are DNS labels), so no peer
/// drives them (`Legacy`).
pub(crate) const UNBOUND: &str = "~unbound";

/// The region whose saga `request` is: the peer's (its certificate's) or, for this
/// node's own sagas, `region`.
fn orchestrator_of<'a>(request: &'a StepRequest, region: &'a str) -> &'a str {
    request.orchestrator.as_deref().unwrap_or(region)
}

fn done_key(request: &StepRequest, region: &str) -> String {
    step_key(
        orchestrator_of(request, region),
        &request.saga_id,
        &request.step,
        direction_name(request.direction),
    )
}

pub(crate) fn step_key(orchestrator: &str, saga_id: &str, step: &str, direction: &str) -> String {
    format!("{STEP_PREFIX}{orchestrator}/{saga_id}/{step}/{direction}")
}

pub(crate) fn fence_key(orchestrator: &str, saga_id: &str) -> String {
    format!("{FENCE_PREFIX}{orchestrator}/{saga_id}")
}

fn request_fence_key(request: &StepRequest, region: &str) -> String {
    fence_key(orchestrator_of(request, region), &request.saga_id)
}

/// A fence: the newest epoch seen (8 bytes, big-endian); bytes after them (a binding
/// of the earlier layout) are ignored.
pub(crate) fn read_fence(bytes: Option<Vec<u8>>) -> u64 {
    bytes
        .as_deref()
        .and_then(|bytes| bytes.first_chunk::<8>())
        .map_or(0, |epoch| u64::from_be_bytes(*epoch))
}

fn fence_value(epoch: u64) -> Vec<u8> {
    epoch.to_be_bytes().to_vec()
}

/// More to write in the commit that records a step, given its result: the
/// orchestrator's saga record when the step runs on its own node (one commit where two
/// were). An error calls the whole commit off, the step's writes included
/// (`StepError::Withdrawn` when the saga itself is no longer wanted).
pub type Progress =
    Arc<dyn Fn(&mut WriteContext<'_>, &Fields) -> Result<(), StepError> + Send + Sync>;

/// A step's result, and whether this call's commit recorded it (and wrote its
/// `Progress`) or an earlier run had (nothing written now).
#[derive(Debug)]
pub struct StepDone {
    pub result: Fields,
    pub recorded_now: bool,
}

impl StepDone {
    fn earlier(result: Fields) -> Self {
        Self {
            result,
            recorded_now: false,
        }
    }
}

/// Raised inside the step's commit when another run of the same step committed first.
const ALREADY_DONE: &str = "already done by an earlier request";

/// Runs `request` on this node (region `region`) with the active saga-step plugin of
/// `jurisdiction`; returns the step's result, from storage if it ran before.
/// `progress` is written in the commit that records the step, if this call's does.
/// `saga_is_new`: the caller minted the saga id just now (see `start_eagerly`).
/// `gate` decides on the step's staged rows and answer before its commit (see `gate`).
///
/// A compensation of a step that never executed here writes only its record: nothing
/// to undo, and the record bars a late execute of that step (refused).
#[expect(clippy::too_many_arguments, reason = "one step's whole context")]
pub async fn run_once(
    store: &Store,
    plugins: &Arc<PluginRegistry>,
    jurisdiction: &str,
    region: &str,
    request: StepRequest,
    progress: Option<Progress>,
    saga_is_new: bool,
    gate: Option<StepGate>,
) -> Result<StepDone, ParticipantError> {
    let opposite = StepRequest {
        direction: match request.direction {
            StepDirection::Execute => StepDirection::Compensate,
            StepDirection::Compensate => StepDirection::Execute,
        },
        ..request.clone()
    };
    // The first execute of a saga minted by this very call (an eager start) has
    // nothing to look up: no node has seen the saga yet. The commit checks anyway.
    if !(saga_is_new && request.direction == StepDirection::Execute) {
        let (recorded, opposite_done) =
            check(store, &request, region, &done_key(&opposite, region))?;
        if let Some(result) = recorded {
            return Ok(StepDone::earlier(result));
        }
        match request.direction {
            StepDirection::Execute if opposite_done => {
                return Err(StepError::Rejected(format!(
                    "step {} of saga {} was compensated before it ran",
                    request.step, request.saga_id
                ))
                .into());
            }
            StepDirection::Compensate if !opposite_done => {
                return mark_compensated_unrun(
                    store,
                    &request,
                    region,
                    done_key(&opposite, region),
                )
                .await
                .map(StepDone::earlier);
            }
            _ => {}
        }
    }
    let plugin = plugins
        .saga_steps(jurisdiction)
        .ok_or_else(|| ParticipantError::NoPlugin(jurisdiction.to_string()))?;
    let input = StepInput {
        saga_id: request.saga_id.clone(),
        step: request.step.clone(),
        fields: fields::to_wit(&request.fields),
    };
    let done = done_key(&request, region);
    let barred_by =
        (request.direction == StepDirection::Execute).then(|| done_key(&opposite, region));
    let fence = request_fence_key(&request, region);
    let given = request.epoch;
    let record = move |ctx: &mut WriteContext<'_>,
                       result: &[(String, crate::plugins::wit_values::Value)]|
          -> Result<(), StepError> {
        let seen = read_fence(ctx.get_state(&fence)?);
        if seen > given {
            return Err(StepError::Rejected(format!(
                "fenced: epoch {given} is older than {seen}"
            )));
        }
        if ctx.get_state(&done)?.is_some() {
            return Err(StepError::Retryable(ALREADY_DONE.into()));
        }
        if let Some(compensated) = &barred_by
            && ctx.get_state(compensated)?.is_some()
        {
            return Err(StepError::Rejected(
                "the step was compensated before it ran".into(),
            ));
        }
        let result = fields::from_wit(result);
        let bytes = serde_json::to_vec(&result)
            .map_err(|e| StepError::Storage(StorageError::Transaction(e.to_string())))?;
        ctx.put_state(done.clone(), bytes);
        ctx.put_state(fence.clone(), fence_value(given.max(seen)));
        if let Some(progress) = &progress {
            progress(ctx, &result)?;
        }
        Ok(())
    };
    let outcome = plugin
        .plugin
        .run_step_gated(
            store,
            region,
            &input,
            &request.saga_type,
            request.direction,
            gate,
            record,
        )
        .await;
    match outcome {
        Ok(result) => Ok(StepDone {
            result: fields::from_wit(&result),
            recorded_now: true,
        }),
        Err(StepError::Retryable(reason)) if reason == ALREADY_DONE => {
            let (recorded, _) = check(store, &request, region, &done_key(&opposite, region))?;
            Ok(StepDone::earlier(recorded.ok_or_else(|| {
                StepError::Retryable("step record vanished after a concurrent run".into())
            })?))
        }
        Err(StepError::Rejected(reason)) if reason.starts_with("fenced:") => {
            let [fence] = store.state_values([request_fence_key(&request, region).as_str()])?;
            let seen = read_fence(fence);
            Err(ParticipantError::Fenced {
                saga: request.saga_id,
                seen,
                given,
            })
        }
        Err(error) => Err(error.into()),
    }
}

/// Records a compensation of a step that never executed (and checks, in the same
/// commit, that the execute did not slip in meanwhile).
async fn mark_compensated_unrun(
    store: &Store,
    request: &StepRequest,
    region: &str,
    execute_key: String,
) -> Result<Fields, ParticipantError> {
    let done = done_key(request, region);
    let fence = request_fence_key(request, region);
    let given = request.epoch;
    store
        .write(move |ctx| {
            if ctx.get_state(&execute_key)?.is_some() {
                return Err(StepError::Retryable(
                    "the step executed meanwhile; compensate again".into(),
                ));
            }
            let seen = read_fence(ctx.get_state(&fence)?);
            ctx.put_state(done, b"[]".to_vec());
            ctx.put_state(fence, fence_value(given.max(seen)));
            Ok::<_, StepError>(())
        })
        .await?;
    Ok(Vec::new())
}

/// The stored result if the step ran before, and whether the opposite direction
/// (`opposite_key`) was recorded, in one snapshot; refuses a request of an older epoch.
fn check(
    store: &Store,
    request: &StepRequest,
    region: &str,
    opposite_key: &str,
) -> Result<(Option<Fields>, bool), ParticipantError> {
    let [fence, done, opposite] = store.state_values([
        request_fence_key(request, region).as_str(),
        done_key(request, region).as_str(),
        opposite_key,
    ])?;
    let seen = read_fence(fence);
    if seen > request.epoch {
        return Err(ParticipantError::Fenced {
            saga: request.saga_id.clone(),
            seen,
            given: request.epoch,
        });
    }
    let done = match done {
        Some(bytes) => Some(
            serde_json::from_slice(&bytes)
                .map_err(|e| StorageError::Transaction(format!("corrupt step record: {e}")))?,
        ),
        None => None,
    };
    Ok((done, opposite.is_some()))
}

/// Before a peer's request (`request.orchestrator`: its certificate's region) is
/// verified: refused if the request's epoch is older than one seen, or if the saga id
/// has records from before sagas were kept per orchestrator that name none (`Legacy`);
/// the recorded result if the step ran before (a repeat needs no verification, and
/// raises nothing).
pub fn recorded_for_peer(
    store: &Store,
    request: &StepRequest,
    region: &str,
) -> Result<Option<Fields>, ParticipantError> {
    let [legacy] = store.state_values([fence_key(UNBOUND, &request.saga_id).as_str()])?;
    if legacy.is_some() {
        return Err(ParticipantError::Legacy {
            saga: request.saga_id.clone(),
        });
    }
    let (done, _) = check(store, request, region, &done_key(request, region))?;
    Ok(done)
}

/// Decides, before a step commits, on the rows it stores (this node's `may-store`) and,
/// for a peer's step, on its answer (`may-send-step` to the orchestrator's region); the
/// audit entries commit with the step. A refusal is audited on its own and calls the
/// step off (`Rejected`: the orchestrator compensates).
pub fn gate(guard: Arc<ResidencyGuard>, region: &str, request: &StepRequest) -> StepGate {
    let principal = Principal::system("saga-participant", region);
    let saga_type = request.saga_type.clone();
    let step = format!("{}/reply", request.step);
    let reply_to = request.orchestrator.clone();
    Arc::new(move |staged: StagedStep| {
        let (guard, principal) = (Arc::clone(&guard), principal.clone());
        let (saga_type, step, reply_to) = (saga_type.clone(), step.clone(), reply_to.clone());
        async move {
            let mut audits = Vec::new();
            for (def, rows) in &staged.puts {
                let verdict = guard.check_store(&principal, def, rows);
                if let Err(refusal) = verdict.outcome {
                    return refuse(&guard, verdict.audit, refusal.to_string()).await;
                }
                audits.extend(verdict.audit.map(|audit| audit.to_bytes()));
            }
            if let Some(destination) = &reply_to {
                let (outcome, audit) = guard
                    .decide_step_message(&saga_type, &step, &staged.result, destination)
                    .await;
                let audit = audit.map(|mut audit| {
                    audit.principal = principal.user.clone();
                    audit
                });
                if let Err(refusal) = outcome {
                    return refuse(&guard, audit, refusal.to_string()).await;
                }
                audits.extend(audit.map(|audit| audit.to_bytes()));
            }
            Ok(audits)
        }
        .boxed()
    })
}

async fn refuse(
    guard: &ResidencyGuard,
    audit: Option<AuditEntry>,
    reason: String,
) -> Result<Vec<Vec<u8>>, StepError> {
    if let Some(audit) = audit {
        guard
            .record(audit)
            .await
            .map_err(|e| StepError::Retryable(e.to_string()))?;
    }
    Err(StepError::Rejected(reason))
}
