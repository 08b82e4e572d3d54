//! Domicile's engine: everything between the stored rows and the listeners. SQL over
//! DataFusion with the residency guard on every statement (`sql`, `residency`), the row
//! cache (`cache`), logins and sessions (`auth`), the transport to other regions'
//! nodes (`peers`), change data capture and replicas (`cdc`), cross-region sagas
//! (`saga`), the node's config (`config`), its metrics (`metrics`) and the admission of
//! connections (`connection_gate`).
//!
//! Architecture invariant: no gRPC service of its own is served from here but the peer
//! protocol's generated types; the Flight SQL, admin and peer servers, the federation
//! of `mesh.<table>` and the composition root live in `domicile` above it, so a change
//! there never rebuilds this crate.

// The lower crates under the module names the engine code uses (`crate::storage`, ...).
pub use domicile_model::{bounded_file, catalog, client_address, clock, error_kind, limits};
pub use domicile_plugin_host as plugins;
pub use domicile_redact_text as redact_text;
pub use domicile_storage as storage;

pub mod auth;
pub mod cache;
pub mod cdc;
pub mod config;
pub mod connection_gate;
pub mod grpc_status;
pub mod metrics;
pub mod peers;
pub mod residency;
pub mod saga;
pub mod sql;
pub mod trace_context;
