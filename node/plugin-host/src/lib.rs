//! The only user of wasmtime: loads jurisdiction plugins (WASM components) and calls
//! them inside a sandbox.
//!
//! One `Engine` per node with the pooling allocator and epoch interruption; one
//! `InstancePre` per loaded plugin version; a fresh `Store` and instance per call, so no
//! state survives between calls and a misbehaving call cannot poison the next.
//!
//! What a guest gets: the exports of its world, and the WASI interfaces that Rust's
//! `wasm32-wasip2` standard library links against, made inert — no preopened
//! directories, no environment or arguments, no network, stdio discarded, both clocks
//! frozen at zero, random numbers from a fixed seed. What is limited: wall time per call
//! (epoch deadline), linear memory per instance, instances per store, the size of what a
//! call returns. What is NOT limited: CPU time below the deadline, the number of
//! concurrent calls (bounded by the pool's instance slots).

// The lower crates under the names the plugin code uses (`crate::storage`, ...).
use domicile_model::{catalog, clock, error_kind};
use domicile_redact_text as redact_text;
use domicile_storage as storage;

pub mod keyed_hash_secret;
mod limits;
mod redactor;
mod registry;
mod residency;
mod runtime;
mod saga;
mod saga_host;
pub mod signing;
pub mod wit_values;

pub use limits::PluginLimits;
pub use redactor::{RedactorPlugin, redactor_types};
pub use registry::{Active, PluginRecord, PluginRegistry, PluginUpload, Trust, UploadError};
pub use residency::{ResidencyPolicyPlugin, residency_types};
pub use runtime::{CallError, CallStats, CallStatsSnapshot, LoadError, PluginKind, PluginRuntime};
pub use saga::{SagaStepPlugin, StagedStep, StepDirection, StepError, StepGate, saga_types};
pub use saga_host::{StepCommitError, StepTransaction};
