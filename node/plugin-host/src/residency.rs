//! Residency policy plugins: the host side of the `residency-policy` world.

use std::sync::Arc;

use super::limits::DENIAL_REASON_MAX_BYTES;
use super::runtime::{CallError, CallStats, HostState, LoadError, PluginRuntime, blocking};

/// Generates the shared `types` interface too; the other worlds' bindings reuse it
/// (`with`), so a value or column is one Rust type whichever plugin it goes to.
pub(super) mod bindings {
    wasmtime::component::bindgen!({
        world: "residency-policy",
        path: "../../wit",
        additional_derives: [PartialEq],
        exports: { default: async },
    });
}

impl bindings::domicile::plugin::types::Host for HostState {}

/// The world's types, for callers that build batches and read decisions.
pub mod residency_types {
    pub use super::bindings::exports::domicile::plugin::residency::{
        BatchDecision, ColumnAction, Decision, Denial, RowBatch, StepPayload,
    };
    pub use crate::wit_values::{Column, DataClass, Decimal, Purpose, Table, Value};
}

use residency_types::{BatchDecision, Decision, Purpose, RowBatch, StepPayload};

/// One loaded version of a residency policy, ready to be called from any thread.
pub struct ResidencyPolicyPlugin {
    stats: CallStats,
    runtime: Arc<PluginRuntime>,
    pre: bindings::ResidencyPolicyPre<HostState>,
}

impl std::fmt::Debug for ResidencyPolicyPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResidencyPolicyPlugin")
    }
}

impl ResidencyPolicyPlugin {
    /// Compiles and links `bytes`, checks it implements the residency-policy world, and
    /// instantiates it once as a trial.
    pub fn load(runtime: &Arc<PluginRuntime>, bytes: &[u8]) -> Result<Self, LoadError> {
        let world = "residency-policy";
        let instance_pre = runtime.link(bytes, world, |_| Ok(()))?;
        let pre =
            bindings::ResidencyPolicyPre::new(instance_pre).map_err(|e| LoadError::WrongWorld {
                world,
                detail: format!("{e:#}"),
            })?;
        let plugin = Self {
            stats: CallStats::default(),
            runtime: Arc::clone(runtime),
            pre,
        };
        let pre = &plugin.pre;
        plugin.runtime.instantiate_trial(|mut s| async move {
            pre.instantiate_async(&mut s).await.map(drop)
        })?;
        Ok(plugin)
    }

    /// A fresh instance in a fresh store, deadline armed for the call.
    async fn instance(
        &self,
    ) -> Result<(bindings::ResidencyPolicy, wasmtime::Store<HostState>), CallError> {
        let mut store = self.runtime.store().await?;
        let instance = self.pre.instantiate_async(&mut store).await;
        let instance = self
            .runtime
            .instantiated(&self.stats, &mut store, instance)?;
        Ok((instance, store))
    }

    /// Calls, errors, timeouts and time spent since this version was loaded.
    pub fn stats(&self) -> &CallStats {
        &self.stats
    }

    /// (a) May these rows be stored in `regions[target]`?
    pub fn may_store(&self, batch: &RowBatch, target: u16) -> Result<BatchDecision, CallError> {
        let decision = blocking(async {
            let (i, mut s) = self.instance().await?;
            let call = i.domicile_plugin_residency();
            let call = call.call_may_store(&mut s, batch, target);
            self.runtime.run(&self.stats, "may_store", call).await
        })?;
        check_batch_decision(&decision, batch)
            .inspect_err(|_| self.stats.record_rejected_answer())?;
        Ok(decision)
    }

    /// (b) May these rows leave their home region for `regions[destination]`?
    pub fn may_leave(
        &self,
        batch: &RowBatch,
        destination: u16,
        why: Purpose,
    ) -> Result<BatchDecision, CallError> {
        let decision = blocking(async {
            let (i, mut s) = self.instance().await?;
            let call = i.domicile_plugin_residency();
            let call = call.call_may_leave(&mut s, batch, destination, why);
            self.runtime.run(&self.stats, "may_leave", call).await
        })?;
        check_batch_decision(&decision, batch)
            .inspect_err(|_| self.stats.record_rejected_answer())?;
        Ok(decision)
    }

    /// (c) May a saga step payload go from `source` to `destination`? Awaited on the
    /// caller's worker thread (the orchestrator asks before every step message).
    pub async fn may_send_step(
        &self,
        payload: &StepPayload,
        source: &str,
        destination: &str,
    ) -> Result<Decision, CallError> {
        let (i, mut s) = self.instance().await?;
        let call = i.domicile_plugin_residency();
        let call = call.call_may_send_step(&mut s, payload, source, destination);
        let decision = self.runtime.run(&self.stats, "may_send_step", call).await?;
        check_decision(&decision, None).inspect_err(|_| self.stats.record_rejected_answer())?;
        Ok(decision)
    }
}

/// Verifies a policy's answer before anyone acts on it.
fn check_batch_decision(decision: &BatchDecision, batch: &RowBatch) -> Result<(), CallError> {
    let columns = batch.table.columns.len();
    check_decision(&decision.default, Some(columns))?;
    for (row, exception) in &decision.exceptions {
        if *row as usize >= batch.rows.len() {
            return Err(CallError::InvalidOutput(format!(
                "exception for row {row} of a {}-row batch",
                batch.rows.len()
            )));
        }
        check_decision(exception, Some(columns))?;
    }
    Ok(())
}

fn check_decision(decision: &Decision, columns: Option<usize>) -> Result<(), CallError> {
    match decision {
        Decision::Allow => Ok(()),
        Decision::Deny(denial) if denial.reason.len() > DENIAL_REASON_MAX_BYTES => {
            Err(CallError::InvalidOutput(format!(
                "denial reason of {} bytes exceeds denial_reason_max_bytes = {DENIAL_REASON_MAX_BYTES}",
                denial.reason.len()
            )))
        }
        Decision::Deny(_) => Ok(()),
        Decision::AllowWith(actions) => match columns {
            Some(expected) if actions.len() != expected => Err(CallError::InvalidOutput(format!(
                "{} column actions for a {expected}-column table",
                actions.len()
            ))),
            None => Err(CallError::InvalidOutput(
                "column actions on a saga message".into(),
            )),
            Some(_) => Ok(()),
        },
    }
}
