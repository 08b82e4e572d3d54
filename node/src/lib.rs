//! Domicile node: one region's cell of a data mesh that keeps personal data at home.
//!
//! Rows live in `storage` (redb), described by `catalog`, queried through `sql`
//! (DataFusion) and served by `flight` (Arrow Flight SQL). See ARCHITECTURE.md.

// The lower crates under the module names the rest of the node uses.
pub use domicile_engine::{
    auth, cache, cdc, config, connection_gate, grpc_status, metrics, peers, residency, saga, sql,
    trace_context,
};
pub use domicile_model::{bounded_file, catalog, client_address, clock, error_kind, limits};
pub use domicile_plugin_host as plugins;
pub use domicile_redact_text as redact_text;
pub use domicile_storage as storage;

pub mod admin;
pub mod cli;
pub mod federation;
pub mod flight;
#[doc(hidden)]
pub mod fuzzing;
pub mod peer_api;
pub mod server;
