//! SQL through one long-lived DataFusion `SessionContext`: table providers over storage
//! with pushdown, DML through DataFusion's hooks, system tables, and the statement front
//! door that checks roles and refuses what could touch rows it does not name.

pub mod arrow_convert;
mod dml;
mod engine;
mod error;
pub mod leaf_exec;
mod need_to_know;
mod postgres_semantics;
mod pushdown;
mod saga_function;
mod scan;
mod schemas;
mod statement_context;
mod statement_shape;
mod system_tables;
mod table_provider;
pub mod transactions;

use std::sync::Arc;

pub use dml::WriteError;
pub use engine::{
    MeshHandles, PreparedStatement, SqlEngine, StatementKind, TransactionControl, session_option,
};
pub use error::SqlError;
pub use statement_context::{StatementContext, copy_refused};

/// Warnings a statement collected while it ran (e.g. a region a partial `mesh` query
/// could not reach); the Flight SQL service sends them after the last batch.
pub type Warnings = Arc<std::sync::Mutex<Vec<String>>>;

/// Which cell this node is.
#[derive(Debug)]
pub struct NodeIdentity {
    pub region: Arc<str>,
    pub jurisdiction: String,
    pub started_at_unix_ms: u64,
}

/// Every table a metadata request can list: catalog → schema → (table, type, schema).
pub type MetadataListing = Vec<(
    String,
    Vec<(
        String,
        Vec<(String, &'static str, arrow::datatypes::Schema)>,
    )>,
)>;

/// Tables for Flight SQL's GetCatalogs / GetDbSchemas / GetTables.
pub fn schemas_for_metadata(engine: &SqlEngine) -> MetadataListing {
    let public = engine
        .store()
        .tables()
        .iter()
        .map(|def| {
            (
                def.name.clone(),
                "TABLE",
                arrow_convert::table_schema(def).as_ref().clone(),
            )
        })
        .collect();
    let system = system_tables::SYSTEM_TABLE_NAMES
        .iter()
        .filter_map(|name| {
            let table = system_tables::system_table(name, engine.system_state()).ok()??;
            Some((
                name.to_string(),
                "SYSTEM TABLE",
                table.schema().as_ref().clone(),
            ))
        })
        .collect();
    vec![(
        schemas::CATALOG_NAME.to_string(),
        vec![
            (schemas::PUBLIC_SCHEMA.to_string(), public),
            (schemas::SYSTEM_SCHEMA.to_string(), system),
        ],
    )]
}
