//! Saga-step plugins: the host side of the `saga-step` world. A plugin declares saga
//! types and their steps (`describe`, read once at load); the node runs one step's
//! `execute` or `compensate` as one local transaction (see `saga_host`).

use std::sync::Arc;

use futures::future::BoxFuture;
use thiserror::Error;
use wasmtime::component::HasSelf;

use super::runtime::{CallError, CallStats, HostState, LoadError, PluginRuntime, blocking};
use super::saga_host::{StepCommitError, StepTransaction};
use crate::catalog::TableDef;
use crate::redact_text::{Origin, withhold_values};
use crate::storage::{StorageError, Store, WriteContext};

pub(super) mod bindings {
    wasmtime::component::bindgen!({
        world: "saga-step",
        path: "../../wit",
        with: { "domicile:plugin/types": crate::residency::bindings::domicile::plugin::types },
        exports: { default: async },
    });
}

/// The world's types, for callers that start steps and read their results.
pub mod saga_types {
    pub use super::bindings::exports::domicile::plugin::saga::{
        SagaType, StepDescriptor, StepFailure, StepInput,
    };
    pub use crate::wit_values::Value;
}

use saga_types::{SagaType, StepFailure, StepInput, Value};

/// How many times a step is re-run after losing an optimistic-commit race before the
/// caller is told to retry later.
const STEP_CONFLICT_ATTEMPTS: usize = 16;

/// Which half of a step to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepDirection {
    Execute,
    Compensate,
}

/// Why a step did not commit. Nothing it staged was written.
#[derive(Debug, Error)]
pub enum StepError {
    #[error("saga type {saga_type} has no step {step}")]
    UnknownStep { saga_type: String, step: String },
    #[error("step {step} uses table {table}, which does not exist on this node")]
    UnknownTable { step: String, table: String },
    /// A business rule refused the step: compensate, do not retry.
    #[error("step refused: {0}")]
    Rejected(String),
    /// Transient: the orchestrator may retry.
    #[error("step failed, retry later: {0}")]
    Retryable(String),
    /// Rows the step read kept changing under it; retry later.
    #[error("step lost {STEP_CONFLICT_ATTEMPTS} commit races in a row; retry later")]
    Conflict,
    /// What the caller writes with the step (`run_step`'s `also`) found the step no
    /// longer wanted, and called the commit off: nothing was written.
    #[error("step called off by its caller: {0}")]
    Withdrawn(String),
    #[error(transparent)]
    Plugin(#[from] CallError),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl crate::error_kind::Classify for StepError {
    /// Refused by a business rule: compensate (precondition). Lost races: retry
    /// (conflict). A step this node cannot run yet, or a call called off: retry later.
    fn kind(&self) -> crate::error_kind::ErrorKind {
        use crate::error_kind::ErrorKind;
        match self {
            StepError::Rejected(_) => ErrorKind::Precondition,
            StepError::Conflict => ErrorKind::Conflict,
            StepError::UnknownStep { .. }
            | StepError::UnknownTable { .. }
            | StepError::Retryable(_)
            | StepError::Withdrawn(_) => ErrorKind::Unavailable,
            StepError::Plugin(error) => error.kind(),
            StepError::Storage(error) => error.kind(),
        }
    }
}

impl From<StepCommitError> for StepError {
    fn from(error: StepCommitError) -> Self {
        match error {
            StepCommitError::Conflict => StepError::Conflict,
            StepCommitError::Storage(e) => StepError::Storage(e),
        }
    }
}

/// What one attempt of a step staged and answered, for the decisions taken before it
/// commits: the rows it would store, by table, and its result.
pub struct StagedStep {
    pub puts: Vec<(Arc<TableDef>, Vec<Vec<crate::storage::Value>>)>,
    pub result: Vec<(String, Value)>,
}

/// Decides on a step attempt before its commit (residency: `may-store`, and the reply's
/// `may-send-step`); returns audit entry bodies that commit with the step. An error
/// calls the commit off: nothing is written.
pub type StepGate =
    Arc<dyn Fn(StagedStep) -> BoxFuture<'static, Result<Vec<Vec<u8>>, StepError>> + Send + Sync>;

/// One loaded version of a saga-step plugin.
pub struct SagaStepPlugin {
    runtime: Arc<PluginRuntime>,
    pre: bindings::SagaStepPre<HostState>,
    saga_types: Vec<SagaType>,
    stats: CallStats,
}

impl std::fmt::Debug for SagaStepPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SagaStepPlugin")
            .field("saga_types", &self.saga_types.len())
            .finish()
    }
}

impl SagaStepPlugin {
    /// Loads the component, calls `describe` once (under the call deadline) and checks
    /// the declaration: named saga types, each with at least one step.
    pub fn load(runtime: &Arc<PluginRuntime>, bytes: &[u8]) -> Result<Self, LoadError> {
        let world = "saga-step";
        let instance_pre = runtime.link(bytes, world, |linker| {
            bindings::SagaStep::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)
        })?;
        let pre = bindings::SagaStepPre::new(instance_pre).map_err(|e| LoadError::WrongWorld {
            world,
            detail: format!("{e:#}"),
        })?;
        let stats = CallStats::default();
        let saga_types = blocking(async {
            let mut store = runtime.store().await?;
            let instance = pre.instantiate_async(&mut store).await;
            let instance = runtime.instantiated(&stats, &mut store, instance)?;
            let call = instance.domicile_plugin_saga();
            let call = call.call_describe(&mut store);
            runtime.run(&stats, "describe", call).await
        })
        .map_err(|e| LoadError::Instantiation(format!("describe failed: {e}")))?;
        for saga_type in &saga_types {
            if saga_type.name.is_empty() || saga_type.steps.is_empty() {
                return Err(LoadError::Instantiation(
                    "describe declared a saga type without a name or without steps".into(),
                ));
            }
        }
        Ok(Self {
            runtime: Arc::clone(runtime),
            pre,
            saga_types,
            stats: CallStats::default(),
        })
    }

    pub fn stats(&self) -> &CallStats {
        &self.stats
    }

    /// The saga types this plugin declares, as `describe` returned them at load.
    pub fn saga_types(&self) -> &[SagaType] {
        &self.saga_types
    }

    /// Runs one step as one local transaction on `store` (this node, region `region`)
    /// and returns the step's result fields once its writes are durable.
    ///
    /// `also` runs inside the same commit, after the step's writes are staged, with the
    /// step's result: the orchestrator records the step's idempotency key there, so a
    /// step's effect and the record that it happened are durable together or not at
    /// all. A failed step (refused, trapped, timed out) writes nothing, `also` included;
    /// an error from `also` undoes the step's writes too.
    pub async fn run_step<F>(
        &self,
        store: &Store,
        region: &str,
        input: &StepInput,
        saga_type: &str,
        direction: StepDirection,
        also: F,
    ) -> Result<Vec<(String, Value)>, StepError>
    where
        F: Fn(&mut WriteContext<'_>, &[(String, Value)]) -> Result<(), StepError>
            + Clone
            + Send
            + 'static,
    {
        self.run_step_gated(store, region, input, saga_type, direction, None, also)
            .await
    }

    /// [`Self::run_step`], with `gate` deciding on each attempt's staged rows and result
    /// before its commit (its audit entries commit with the step).
    #[expect(
        clippy::too_many_arguments,
        reason = "run_step's arguments and the gate"
    )]
    pub async fn run_step_gated<F>(
        &self,
        store: &Store,
        region: &str,
        input: &StepInput,
        saga_type: &str,
        direction: StepDirection,
        gate: Option<StepGate>,
        also: F,
    ) -> Result<Vec<(String, Value)>, StepError>
    where
        F: Fn(&mut WriteContext<'_>, &[(String, Value)]) -> Result<(), StepError>
            + Clone
            + Send
            + 'static,
    {
        let descriptor = self
            .saga_types
            .iter()
            .find(|t| t.name == saga_type)
            .and_then(|t| t.steps.iter().find(|s| s.name == input.step))
            .ok_or_else(|| StepError::UnknownStep {
                saga_type: saga_type.into(),
                step: input.step.clone(),
            })?;
        let region: Arc<str> = Arc::from(region);
        for _ in 0..STEP_CONFLICT_ATTEMPTS {
            let tables = descriptor
                .tables
                .iter()
                .map(|name| {
                    store.table(name).ok_or_else(|| StepError::UnknownTable {
                        step: descriptor.name.clone(),
                        table: name.clone(),
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let transaction = StepTransaction::new(store.snapshot()?, Arc::clone(&region), tables);
            let (result, transaction) = self.call_step(input, direction, transaction).await?;
            let audits = match &gate {
                Some(gate) => {
                    let staged = StagedStep {
                        puts: transaction.staged_puts(),
                        result: result.clone(),
                    };
                    gate(staged).await?
                }
                None => Vec::new(),
            };
            let also = also.clone();
            let staged_result = result.clone();
            let committed = store
                .write(move |ctx| {
                    transaction.apply(ctx)?;
                    for body in audits {
                        ctx.append_audit(body);
                    }
                    also(ctx, &staged_result)
                })
                .await;
            match committed {
                Ok(()) => return Ok(result),
                Err(StepError::Conflict) => continue,
                Err(other) => return Err(other),
            }
        }
        Err(StepError::Conflict)
    }

    /// Runs the guest with `transaction` open; returns its result and what it staged.
    /// The guest runs on this task's worker thread (see `PluginRuntime::run`).
    async fn call_step(
        &self,
        input: &StepInput,
        direction: StepDirection,
        transaction: StepTransaction,
    ) -> Result<(Vec<(String, Value)>, StepTransaction), StepError> {
        let mut store = self.runtime.store().await?;
        store.data_mut().step = Some(transaction);
        let instance = self.pre.instantiate_async(&mut store).await;
        let instance = self
            .runtime
            .instantiated(&self.stats, &mut store, instance)?;
        let saga = instance.domicile_plugin_saga();
        let answer = match direction {
            StepDirection::Execute => {
                let call = saga.call_execute(&mut store, input);
                self.runtime.run(&self.stats, "execute", call).await?
            }
            StepDirection::Compensate => {
                let call = saga.call_compensate(&mut store, input);
                let answer = self.runtime.run(&self.stats, "compensate", call).await?;
                answer.map(|()| Vec::new())
            }
        };
        let transaction = store
            .data_mut()
            .step
            .take()
            .ok_or_else(|| StepError::Retryable("step transaction lost".into()))?;
        match answer {
            Ok(result) => Ok((result, transaction)),
            Err(StepFailure::Rejected(reason)) => {
                Err(StepError::Rejected(guest_text(&reason, &transaction)))
            }
            Err(StepFailure::Retryable(reason)) => {
                Err(StepError::Retryable(guest_text(&reason, &transaction)))
            }
        }
    }
}

/// A guest's failure text without the values its step read or staged: it goes to the
/// orchestrator, `system.sagas.last_error` and logs, possibly in another region.
fn guest_text(reason: &str, transaction: &StepTransaction) -> String {
    let seen = transaction.shown_values();
    withhold_values(reason, Origin::Plugin { seen: &seen })
}
