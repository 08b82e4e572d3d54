//! Running one saga step on the node that owns its data, exactly once.
//!
//! A step's effect and the record that it happened (`saga/done/<saga>/<step>/<execute |
//! compensate>`, holding the step's result) commit together (`SagaStepPlugin::run_step`'s
//! `also`). A repeated request (an orchestrator retrying after a lost answer) finds the
//! record and gets the stored result without running the step again; two requests
//! racing both run the guest, but the second commit finds the first's record and
//! writes nothing. The newest orchestrator epoch seen per saga is kept in the same
//! commits (`saga/epoch/<saga>`); a request of an older epoch is refused (fencing).

use std::sync::Arc;

use thiserror::Error;

use super::fields::{self, Fields};
use crate::plugins::saga_types::StepInput;
use crate::plugins::{PluginRegistry, StepDirection, StepError};
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
}

#[derive(Debug, Error)]
pub enum ParticipantError {
    #[error("no saga-step plugin is active for jurisdiction {0}")]
    NoPlugin(String),
    #[error(
        "saga {saga} is driven by a newer orchestrator (epoch {seen} > {given}); request refused"
    )]
    Fenced { saga: String, seen: u64, given: u64 },
    #[error(transparent)]
    Step(#[from] StepError),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

fn direction_name(direction: StepDirection) -> &'static str {
    match direction {
        StepDirection::Execute => "execute",
        StepDirection::Compensate => "compensate",
    }
}

fn done_key(request: &StepRequest) -> String {
    format!(
        "saga/done/{}/{}/{}",
        request.saga_id,
        request.step,
        direction_name(request.direction)
    )
}

fn epoch_key(saga_id: &str) -> String {
    format!("saga/epoch/{saga_id}")
}

fn read_u64(bytes: Option<Vec<u8>>) -> u64 {
    bytes
        .and_then(|b| b.try_into().ok().map(u64::from_be_bytes))
        .unwrap_or(0)
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
///
/// A compensation of a step that never executed here writes only its record: nothing
/// to undo, and the record bars a late execute of that step (refused).
pub async fn run_once(
    store: &Store,
    plugins: &Arc<PluginRegistry>,
    jurisdiction: &str,
    region: &str,
    request: StepRequest,
    progress: Option<Progress>,
    saga_is_new: bool,
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
        let (recorded, opposite_done) = check(store, &request, &done_key(&opposite))?;
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
                return mark_compensated_unrun(store, &request, done_key(&opposite))
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
    let done = done_key(&request);
    let barred_by = (request.direction == StepDirection::Execute).then(|| done_key(&opposite));
    let epoch = epoch_key(&request.saga_id);
    let given = request.epoch;
    let record = move |ctx: &mut WriteContext<'_>,
                       result: &[(String, crate::plugins::wit_values::Value)]|
          -> Result<(), StepError> {
        let seen = read_u64(ctx.get_state(&epoch)?);
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
        ctx.put_state(epoch.clone(), given.max(seen).to_be_bytes().to_vec());
        if let Some(progress) = &progress {
            progress(ctx, &result)?;
        }
        Ok(())
    };
    let outcome = plugin
        .plugin
        .run_step(
            store,
            region,
            &input,
            &request.saga_type,
            request.direction,
            record,
        )
        .await;
    match outcome {
        Ok(result) => Ok(StepDone {
            result: fields::from_wit(&result),
            recorded_now: true,
        }),
        Err(StepError::Retryable(reason)) if reason == ALREADY_DONE => {
            let (recorded, _) = check(store, &request, &done_key(&opposite))?;
            Ok(StepDone::earlier(recorded.ok_or_else(|| {
                StepError::Retryable("step record vanished after a concurrent run".into())
            })?))
        }
        Err(StepError::Rejected(reason)) if reason.starts_with("fenced:") => {
            let [epoch] = store.state_values([epoch_key(&request.saga_id).as_str()])?;
            let seen = read_u64(epoch);
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
    execute_key: String,
) -> Result<Fields, ParticipantError> {
    let done = done_key(request);
    let epoch = epoch_key(&request.saga_id);
    let given = request.epoch;
    store
        .write(move |ctx| {
            if ctx.get_state(&execute_key)?.is_some() {
                return Err(StepError::Retryable(
                    "the step executed meanwhile; compensate again".into(),
                ));
            }
            let seen = read_u64(ctx.get_state(&epoch)?);
            ctx.put_state(done, b"[]".to_vec());
            ctx.put_state(epoch, given.max(seen).to_be_bytes().to_vec());
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
    opposite_key: &str,
) -> Result<(Option<Fields>, bool), ParticipantError> {
    let [epoch, done, opposite] = store.state_values([
        epoch_key(&request.saga_id).as_str(),
        done_key(request).as_str(),
        opposite_key,
    ])?;
    let seen = read_u64(epoch);
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
