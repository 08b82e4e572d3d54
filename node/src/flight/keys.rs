//! Key metadata for tools that reflect a schema (SQLAlchemy, BI tools): Flight SQL's
//! GetPrimaryKeys, and GetImportedKeys / GetExportedKeys / GetCrossReference, which are
//! empty because Domicile has no foreign keys. Schemas are the ones the Flight SQL
//! specification gives for these commands (`FlightSql.proto`).

use std::sync::Arc;

use arrow::array::{Int32Builder, RecordBatch, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::error::ArrowError;

use crate::catalog::TableDef;

/// `catalog_name`, `db_schema_name`, `table_name`, `column_name`, `key_name`,
/// `key_sequence` (1-based position in the key).
pub(crate) fn primary_keys_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("catalog_name", DataType::Utf8, true),
        Field::new("db_schema_name", DataType::Utf8, true),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("column_name", DataType::Utf8, false),
        Field::new("key_name", DataType::Utf8, true),
        Field::new("key_sequence", DataType::Int32, false),
    ]))
}

/// The foreign-key listing's schema (imported, exported keys and cross references).
pub(crate) fn foreign_keys_schema() -> SchemaRef {
    let text = |name: &str, nullable: bool| Field::new(name, DataType::Utf8, nullable);
    Arc::new(Schema::new(vec![
        text("pk_catalog_name", true),
        text("pk_db_schema_name", true),
        text("pk_table_name", false),
        text("pk_column_name", false),
        text("fk_catalog_name", true),
        text("fk_db_schema_name", true),
        text("fk_table_name", false),
        text("fk_column_name", false),
        Field::new("key_sequence", DataType::Int32, false),
        text("fk_key_name", true),
        text("pk_key_name", true),
        Field::new("update_rule", DataType::UInt8, false),
        Field::new("delete_rule", DataType::UInt8, false),
    ]))
}

/// The primary-key columns of `table` in `catalog`.`schema` (a filter that is `None`
/// matches any), one row per column in key order; the key is named `<table>_pkey`, as
/// PostgreSQL names it.
pub(crate) fn primary_keys(
    tables: &[Arc<TableDef>],
    (catalog, schema): (&str, &str),
    wanted: (Option<&str>, Option<&str>, &str),
) -> Result<RecordBatch, ArrowError> {
    let (wanted_catalog, wanted_schema, wanted_table) = wanted;
    let mut catalogs = StringBuilder::new();
    let mut schemas = StringBuilder::new();
    let mut names = StringBuilder::new();
    let mut columns = StringBuilder::new();
    let mut keys = StringBuilder::new();
    let mut sequence = Int32Builder::new();
    let matches =
        wanted_catalog.is_none_or(|c| c == catalog) && wanted_schema.is_none_or(|s| s == schema);
    for def in tables
        .iter()
        .filter(|def| matches && def.name == wanted_table)
    {
        for (position, &index) in def.primary_key.iter().enumerate() {
            catalogs.append_value(catalog);
            schemas.append_value(schema);
            names.append_value(&def.name);
            columns.append_value(&def.columns[index].name);
            keys.append_value(format!("{}_pkey", def.name));
            sequence.append_value(i32::try_from(position + 1).unwrap_or(i32::MAX));
        }
    }
    RecordBatch::try_new(
        primary_keys_schema(),
        vec![
            Arc::new(catalogs.finish()),
            Arc::new(schemas.finish()),
            Arc::new(names.finish()),
            Arc::new(columns.finish()),
            Arc::new(keys.finish()),
            Arc::new(sequence.finish()),
        ],
    )
}
