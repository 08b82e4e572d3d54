//! CDC redactor plugins: the host side of the `cdc-redactor` world, including the
//! `keyed-hash` import (HMAC-SHA256 with a per-region secret that never leaves the node,
//! so tokens are stable across the mesh but cannot be reversed).

use std::sync::Arc;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use wasmtime::component::HasSelf;

use super::runtime::{CallError, CallStats, HostState, LoadError, PluginRuntime, blocking};

mod bindings {
    wasmtime::component::bindgen!({
        world: "cdc-redactor",
        path: "../../wit",
        with: { "domicile:plugin/types": crate::residency::bindings::domicile::plugin::types },
        exports: { default: async },
    });
}

/// The world's types, for callers that build event batches and read results.
pub mod redactor_types {
    pub use super::bindings::exports::domicile::plugin::redactor::{
        ChangeEvent, EventBatch, Operation, RedactedBatch,
    };
    pub use crate::wit_values::{Column, DataClass, Decimal, Table, Value};
}

use redactor_types::{EventBatch, RedactedBatch};

impl bindings::domicile::plugin::keyed_hash::Host for HostState {
    fn hmac(&mut self, data: Vec<u8>) -> Vec<u8> {
        // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.hmac_secret)
            .expect("HMAC takes keys of any length");
        mac.update(&data);
        mac.finalize().into_bytes().to_vec()
    }
}

/// One loaded version of a CDC redactor.
pub struct RedactorPlugin {
    runtime: Arc<PluginRuntime>,
    pre: bindings::CdcRedactorPre<HostState>,
    secret: Arc<[u8]>,
    stats: CallStats,
}

impl std::fmt::Debug for RedactorPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RedactorPlugin")
    }
}

impl RedactorPlugin {
    /// Loads a redactor whose `keyed-hash` import uses `secret`.
    pub fn load(
        runtime: &Arc<PluginRuntime>,
        bytes: &[u8],
        secret: &[u8],
    ) -> Result<Self, LoadError> {
        let world = "cdc-redactor";
        let instance_pre = runtime.link(bytes, world, |linker| {
            bindings::CdcRedactor::add_to_linker::<HostState, HasSelf<HostState>>(linker, |state| {
                state
            })
        })?;
        let pre =
            bindings::CdcRedactorPre::new(instance_pre).map_err(|e| LoadError::WrongWorld {
                world,
                detail: format!("{e:#}"),
            })?;
        let plugin = Self {
            runtime: Arc::clone(runtime),
            pre,
            secret: Arc::from(secret),
            stats: CallStats::default(),
        };
        let pre = &plugin.pre;
        plugin.runtime.instantiate_trial(|mut s| async move {
            pre.instantiate_async(&mut s).await.map(drop)
        })?;
        Ok(plugin)
    }

    pub fn stats(&self) -> &CallStats {
        &self.stats
    }

    /// Redacts a batch. The answer is checked: one entry per input event, and every
    /// remaining event's values match the returned columns.
    pub fn redact(&self, batch: &EventBatch) -> Result<RedactedBatch, CallError> {
        let answer = blocking(async {
            let mut store = self.runtime.store().await?;
            store.data_mut().hmac_secret = Arc::clone(&self.secret);
            let instance = self.pre.instantiate_async(&mut store).await;
            let instance = self
                .runtime
                .instantiated(&self.stats, &mut store, instance)?;
            let call = instance.domicile_plugin_redactor();
            let call = call.call_redact(&mut store, batch);
            self.runtime.run(&self.stats, "redact", call).await
        })?;
        let redacted = answer.map_err(|reason| {
            self.stats.record_rejected_answer();
            CallError::Trap(format!(
                "redactor refused the batch: {}",
                crate::redact_text::withhold_values(
                    &reason,
                    crate::redact_text::Origin::Plugin { seen: &[] }
                )
            ))
        })?;
        check_redacted(&redacted, batch).inspect_err(|_| self.stats.record_rejected_answer())?;
        Ok(redacted)
    }
}

fn check_redacted(redacted: &RedactedBatch, batch: &EventBatch) -> Result<(), CallError> {
    if redacted.events.len() != batch.events.len() {
        return Err(CallError::InvalidOutput(format!(
            "{} results for {} events",
            redacted.events.len(),
            batch.events.len()
        )));
    }
    let width = redacted.columns.len();
    for event in redacted.events.iter().flatten() {
        for row in [&event.before, &event.after].into_iter().flatten() {
            if row.len() != width {
                return Err(CallError::InvalidOutput(format!(
                    "a row of {} values for {width} columns",
                    row.len()
                )));
            }
        }
    }
    Ok(())
}
