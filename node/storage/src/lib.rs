//! The only user of redb. One database file per node holds the catalog, every table's
//! rows (keyed so that each home region is its own contiguous partition, see
//! `key_codec`), and node metadata. All writes go through one writer thread that folds
//! concurrent statements into a single fsync'd commit (`writer`). Changes to CDC tables
//! are captured in the same commit (`change_log`).
//!
//! Architecture invariant: this crate knows the catalog (`domicile-model`) and redb,
//! and nothing of SQL, plugins or the network; it builds and tests without DataFusion,
//! wasmtime, rdkafka or tonic.

// The model's modules under the names the storage code uses (`crate::catalog`, ...).
use domicile_model::{catalog, clock, limits};

mod audit_log;
mod change_log;
mod error;
/// Public for the fuzz targets (`domicile::fuzzing`), which attack it directly.
pub mod key_codec;
mod partitions;
mod row_cache;
mod row_codec;
mod snapshot;
mod store;
mod transaction;
mod value;
mod write_context;
mod writer;

pub use audit_log::{AuditBreak, AuditRecord, AuditVerified};
pub use change_log::{ChangeEvent, ChangeOp, OutboxBacklog};
pub use error::StorageError;
pub use row_cache::RowCache;
pub use row_codec::CorruptRow;
/// Public for the fuzz targets, as `key_codec`.
pub use row_codec::{RowDecoder, encode_row};
pub use snapshot::{RowScan, Snapshot};
pub use store::{CloseWatch, Store};
pub use transaction::{Transaction, TransactionStatement};
pub use value::Value;
pub use write_context::{CatalogRefusal, RowWrites, WriteContext};
pub use writer::set_caller_trace;
