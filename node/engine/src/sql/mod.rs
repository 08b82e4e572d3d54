//! SQL through one long-lived DataFusion `SessionContext`: table providers over storage
//! with pushdown, DML through DataFusion's hooks, system tables, and the statement front
//! door that checks roles and refuses what could touch rows it does not name.

pub mod arrow_convert;
mod cooperative_joins;
mod dml;
mod engine;
mod error;
pub mod ingest;
pub mod leaf_exec;
mod need_to_know;
mod postgres_semantics;
mod pushdown;
mod query_work;
mod saga_function;
mod scan;
mod schemas;
mod statement_context;
mod statement_shape;
mod system_tables;
mod table_provider;
#[cfg(test)]
mod test_plans;
pub mod transactions;

use std::sync::Arc;

pub use dml::WriteError;
pub use engine::{
    PreparedStatement, SqlEngine, SqlEngineBuilder, StatementKind, TransactionControl,
    session_option,
};
pub use error::SqlError;
pub use query_work::WorkWatch;
pub use saga_function::{FUNCTION_NAME as START_SAGA, StartSagaFunction};
pub use statement_context::{StatementContext, copy_refused};
pub use system_tables::SystemTable;

/// Warnings a statement collected while it ran (e.g. a region a partial `mesh` query
/// could not reach); the Flight SQL service sends them after the last batch.
pub type Warnings = Arc<std::sync::Mutex<Vec<String>>>;

pub use schemas::{CATALOG_NAME, PUBLIC_SCHEMA};

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
                described_schema(def, schemas::CATALOG_NAME, schemas::PUBLIC_SCHEMA),
            )
        })
        .collect();
    let system = engine
        .system_tables()
        .iter()
        .filter_map(|table| {
            let name = table.name();
            let table = table.provider(&engine.identity().region).ok()?;
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

/// `def`'s Arrow schema with the column metadata Flight SQL defines for result and
/// table schemas (`ARROW:FLIGHT:SQL:*`: catalog, schema, table, type name, precision,
/// scale, auto-increment, case sensitivity, read-only, searchable; FlightSql.proto,
/// `CommandGetTables`), which ADBC's `get_objects` turns into XDBC column facts, and
/// `domicile.data_class` (public, sensitive, pii).
///
/// Precision is the column size JDBC reports for the type (digits for numbers,
/// characters for dates, timestamps and UUIDs); TEXT and BYTEA have none (unbounded).
pub fn described_schema(
    def: &crate::catalog::TableDef,
    catalog: &str,
    schema: &str,
) -> arrow::datatypes::Schema {
    use crate::catalog::{ColumnType, Locality};
    let base = arrow_convert::table_schema(def);
    let read_only = if def.locality == Locality::Replica {
        "1"
    } else {
        "0"
    };
    let fields: Vec<arrow::datatypes::Field> = base
        .fields()
        .iter()
        .zip(&def.columns)
        .map(|(field, column)| {
            let (type_name, precision, scale): (&str, Option<u32>, Option<i32>) =
                match column.column_type {
                    ColumnType::Boolean => ("BOOLEAN", Some(1), None),
                    ColumnType::Int => ("INT", Some(10), Some(0)),
                    ColumnType::BigInt => ("BIGINT", Some(19), Some(0)),
                    ColumnType::Double => ("DOUBLE", Some(15), None),
                    ColumnType::Decimal { precision, scale } => (
                        "DECIMAL",
                        Some(u32::from(precision)),
                        Some(i32::from(scale)),
                    ),
                    ColumnType::Text => ("TEXT", None, None),
                    ColumnType::Bytea => ("BYTEA", None, None),
                    ColumnType::Date => ("DATE", Some(10), None),
                    ColumnType::Timestamp => ("TIMESTAMP", Some(26), Some(6)),
                    ColumnType::Uuid => ("UUID", Some(36), None),
                };
            let case_sensitive = matches!(column.column_type, ColumnType::Text);
            let mut metadata = field.metadata().clone();
            for (key, value) in [
                ("ARROW:FLIGHT:SQL:CATALOG_NAME", catalog.to_string()),
                ("ARROW:FLIGHT:SQL:DB_SCHEMA_NAME", schema.to_string()),
                ("ARROW:FLIGHT:SQL:TABLE_NAME", def.name.clone()),
                ("ARROW:FLIGHT:SQL:TYPE_NAME", type_name.to_string()),
                ("ARROW:FLIGHT:SQL:IS_AUTO_INCREMENT", "0".to_string()),
                (
                    "ARROW:FLIGHT:SQL:IS_CASE_SENSITIVE",
                    if case_sensitive { "1" } else { "0" }.to_string(),
                ),
                ("ARROW:FLIGHT:SQL:IS_READ_ONLY", read_only.to_string()),
                ("ARROW:FLIGHT:SQL:IS_SEARCHABLE", "1".to_string()),
                ("domicile.data_class", column.class.as_str().to_string()),
            ] {
                metadata.insert(key.to_string(), value);
            }
            if let Some(precision) = precision {
                metadata.insert("ARROW:FLIGHT:SQL:PRECISION".into(), precision.to_string());
            }
            if let Some(scale) = scale {
                metadata.insert("ARROW:FLIGHT:SQL:SCALE".into(), scale.to_string());
            }
            field.as_ref().clone().with_metadata(metadata)
        })
        .collect();
    arrow::datatypes::Schema::new(fields)
}
