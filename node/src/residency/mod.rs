//! The residency guard: the one place that asks a jurisdiction's residency policy
//! whether data may be stored here or leave, applies the answer, and writes the
//! decision to the hash-chained audit log.
//!
//! Paths that go through it today: every row a statement stores (`sql::dml`) and every
//! row a query returns to a principal homed in another region (`sql::scan`). The mesh,
//! CDC and cache paths call the same `ResidencyGuard` as they arrive.

mod audit_entry;
mod guard;
pub mod leak_scan;

pub use audit_entry::{AuditEntry, AuditPath, PluginRef};
pub use guard::{GuardError, GuardMode, GuardSession, ResidencyGuard};
