//! The residency guard: the one place that asks a jurisdiction's residency policy
//! whether data may be stored here or leave, applies the answer, and writes the
//! decision to the hash-chained audit log.
//!
//! Paths that go through it: every row a statement stores (`sql::dml`), every row a
//! query returns to a principal homed in another region (`sql::scan`), every row
//! forwarded to its home region (`sql::dml`, mesh), and every redacted change event
//! published to the other regions (`cdc::relay`).

mod audit_entry;
mod guard;
pub mod leak_scan;

pub use audit_entry::{AuditEntry, AuditPath, PluginRef};
pub(crate) use guard::mask_text;
pub use guard::{GuardError, GuardMode, ReplicationVerdict, ResidencyGuard};
