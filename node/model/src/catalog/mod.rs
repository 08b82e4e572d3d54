//! What tables exist and what their columns mean to the law: schemas, primary keys,
//! localities and per-column data classes. Pure data; persisted by `storage`.

mod ddl;
mod table_def;

pub use ddl::{DdlError, table_def_from_create, table_name as ddl_table_name};
pub use table_def::{ColumnDef, ColumnType, DataClass, Locality, TableDef, TableId};

/// Storage name prefix of replica tables (other regions' changes, applied by `cdc`):
/// `global.accounts` is `accounts` in SQL's `global` schema. User tables cannot take
/// such a name (DDL creates only in `public`).
pub const REPLICA_PREFIX: &str = "global.";
