//! Bulk ingest: Arrow batches loaded into a table, what Flight SQL's
//! `CommandStatementIngest` carries (ADBC `adbc_ingest`, pandas `DataFrame.to_sql`,
//! polars `write_database`).
//!
//! Every row goes through the same path as an INSERT's (`dml::insert_local`): the
//! residency guard decides per row, the decision is audited, change capture and the
//! outbox commit with the rows. An ingest is one atomic statement: all its rows commit
//! in one storage commit (or join the client's transaction), or none do.
//!
//! The modes, as the Flight SQL spec names them (`TableDefinitionOptions`):
//!
//! - table missing, `CREATE`: the table is created from the data's Arrow schema (types
//!   mapped by [`sql_type`]); its primary key is the option `domicile.primary_key`
//!   (comma-separated), else a column named `id`, else the ingest is refused (every
//!   table here is keyed). Other `domicile.*` options are the `CREATE TABLE ... WITH`
//!   options (`domicile.pii`, `domicile.locality`, ...). Creating needs the admin role,
//!   as `CREATE TABLE` does. If loading then fails, the table is dropped again.
//! - table exists, `APPEND`: rows are added; columns match by name, a column the data
//!   lacks is NULL, a column the table lacks is refused.
//! - table exists, `REPLACE`: the spec says drop and recreate. Here the table keeps its
//!   definition (its data classes and locality are residency declarations a DataFrame
//!   cannot carry) and its rows homed here are replaced, the delete and the load in one
//!   commit. To change the definition, `DROP TABLE` first.
//! - `FAIL` either way: refused, nothing done.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, FixedSizeBinaryArray, RecordBatch, StringArray, new_null_array,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use super::arrow_convert::{arrow_type, is_uuid_field};
use super::dml::WriteTarget;
use super::{SqlEngine, SqlError};
use crate::auth::{Principal, Role, SessionOptions};
use crate::catalog::{ColumnType, TableDef};
use crate::limits::{INGEST_CELLS_MAX, INGEST_ROWS_MAX};
use crate::storage::Transaction;

/// What to do when the target table does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfMissing {
    Create,
    Fail,
}

/// What to do when the target table exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfExists {
    Fail,
    Append,
    Replace,
}

/// Where an ingest loads its rows, and how.
#[derive(Debug, Clone)]
pub struct IngestTarget {
    /// The table's name, exactly (not case-folded: ADBC quotes it).
    pub table: String,
    pub if_missing: IfMissing,
    pub if_exists: IfExists,
    /// The request's options; `domicile.*` ones are read, others ignored.
    pub options: HashMap<String, String>,
}

/// The option naming a created table's primary key columns (comma-separated).
pub const PRIMARY_KEY_OPTION: &str = "domicile.primary_key";
/// The option naming a REGIONAL BY ROW table's region column (made NOT NULL).
pub const REGION_COLUMN_OPTION: &str = "domicile.region_column";
/// Prefix of the options that become `CREATE TABLE ... WITH (...)` options.
pub const TABLE_OPTION_PREFIX: &str = "domicile.";

impl IngestTarget {
    /// Whether the ingest will run DDL (create the table): a transaction it runs in
    /// is committed first, as for any DDL (`sql::transactions`).
    pub fn creates_table(&self, engine: &SqlEngine) -> bool {
        self.if_missing == IfMissing::Create && engine.store().table(&self.table).is_none()
    }
}

impl SqlEngine {
    /// Loads `batches` (all of `schema`) into `target.table` as `principal`, inside
    /// `transaction` if one is given; returns the rows stored here or forwarded to
    /// their home region.
    ///
    /// Errors: `NotFound` / `AlreadyExists` by mode; `PermissionDenied` (writer, and
    /// admin to create); `TooLarge` past `INGEST_ROWS_MAX` rows or `INGEST_CELLS_MAX`
    /// cells; what an INSERT of the rows would get (residency refusals, NOT NULL,
    /// duplicate keys, values that do not fit). Texts never quote a value.
    pub async fn ingest(
        &self,
        principal: &Principal,
        options: SessionOptions,
        target: &IngestTarget,
        schema: SchemaRef,
        batches: Vec<RecordBatch>,
        transaction: Option<Transaction>,
    ) -> Result<u64, SqlError> {
        if !principal.may(Role::Writer) {
            return Err(SqlError::PermissionDenied {
                user: principal.user.clone(),
                needed: Role::Writer,
            });
        }
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        if rows > INGEST_ROWS_MAX {
            return Err(SqlError::TooLarge(format!(
                "ingest of {rows} rows exceeds ingest_rows_max = {INGEST_ROWS_MAX}; send it in \
                 parts (mode append)"
            )));
        }
        let name = &target.table;
        let existing = self.store().table(name);
        let created = match (&existing, target.if_missing, target.if_exists) {
            (Some(_), _, IfExists::Fail) => {
                return Err(SqlError::AlreadyExists(format!(
                    "table {name} already exists (ingest mode create)"
                )));
            }
            (None, IfMissing::Fail, _) => {
                return Err(SqlError::NotFound(format!(
                    "table {name} does not exist (ingest mode append)"
                )));
            }
            (None, IfMissing::Create, _) => {
                let sql = create_table_sql(target, &schema)?;
                let create = self.prepare_with(principal, options.clone(), &sql).await?;
                self.execute(&create, None).await?;
                true
            }
            (Some(_), _, _) => false,
        };
        let def = self
            .store()
            .table(name)
            .ok_or_else(|| SqlError::NotFound(format!("table {name} was dropped meanwhile")))?;
        let replace = !created && target.if_exists == IfExists::Replace;
        let loaded = match align(&def, &schema, &batches) {
            Ok(aligned) => {
                drop(batches);
                self.load(principal, options, &def, aligned, transaction, replace)
                    .await
            }
            Err(error) => Err(error),
        };
        if loaded.is_err() && created {
            // Leave nothing of a failed ingest: the table it created goes too.
            if let Ok(drop) = self
                .prepare(
                    principal,
                    &format!("DROP TABLE IF EXISTS {}", quote_ident(name)),
                )
                .await
            {
                let _ = self.execute(&drop, None).await;
            }
        }
        loaded
    }

    async fn load(
        &self,
        principal: &Principal,
        options: SessionOptions,
        def: &Arc<TableDef>,
        aligned: Vec<RecordBatch>,
        transaction: Option<Transaction>,
        replace: bool,
    ) -> Result<u64, SqlError> {
        let write_target = WriteTarget {
            def: Arc::clone(def),
            store: self.store().clone(),
            local_region: Arc::clone(&self.identity().region),
        };
        if !replace {
            let session = self.write_context(principal, options, transaction);
            return super::dml::insert_local(&write_target, &session, aligned, INGEST_ROWS_MAX)
                .await
                .map_err(SqlError::from_datafusion);
        }
        // Replace: delete the rows homed here and load the new ones in one commit (the
        // client's transaction, or one of its own).
        let own = transaction.is_none();
        let transaction = match transaction {
            Some(transaction) => transaction,
            None => self.store().begin().map_err(SqlError::Storage)?,
        };
        let outcome = async {
            let delete = self
                .prepare_with(
                    principal,
                    options.clone(),
                    &format!("DELETE FROM {}", quote_ident(&def.name)),
                )
                .await?;
            let stream = self
                .execute_in(&delete, None, Some(transaction.clone()))
                .await?;
            datafusion::physical_plan::common::collect(stream)
                .await
                .map_err(SqlError::from_datafusion)?;
            let session = self.write_context(principal, options, Some(transaction.clone()));
            super::dml::insert_local(&write_target, &session, aligned, INGEST_ROWS_MAX)
                .await
                .map_err(SqlError::from_datafusion)
        }
        .await;
        if !own {
            return outcome;
        }
        match outcome {
            Ok(count) => {
                self.store()
                    .commit(&transaction)
                    .await
                    .map_err(SqlError::Storage)?;
                Ok(count)
            }
            Err(error) => {
                transaction.rollback();
                Err(error)
            }
        }
    }
}

/// `CREATE TABLE` for the data's schema and the request's `domicile.*` options.
fn create_table_sql(target: &IngestTarget, schema: &Schema) -> Result<String, SqlError> {
    let key: Vec<String> = match target.options.get(PRIMARY_KEY_OPTION) {
        Some(list) => list
            .split(',')
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .map(str::to_string)
            .collect(),
        None if schema.fields().iter().any(|f| f.name() == "id") => vec!["id".to_string()],
        None => {
            return Err(SqlError::Plan(format!(
                "ingest would create table {}, which needs a primary key: name it with the \
                 option {PRIMARY_KEY_OPTION} (comma-separated columns) or send a column `id`",
                target.table
            )));
        }
    };
    let region_column = target
        .options
        .get(REGION_COLUMN_OPTION)
        .map(|name| name.trim().to_string());
    let mut columns = Vec::with_capacity(schema.fields().len() + 1);
    for field in schema.fields() {
        // NOT NULL where the data says so, and for the key and the region column
        // (which must be NOT NULL): pandas marks every column nullable.
        let not_null = !field.is_nullable()
            || key.iter().any(|k| k == field.name())
            || region_column.as_deref() == Some(field.name().as_str());
        columns.push(format!(
            "{} {}{}",
            quote_ident(field.name()),
            sql_type(field)?,
            if not_null { " NOT NULL" } else { "" }
        ));
    }
    let key = key
        .iter()
        .map(|name| quote_ident(name))
        .collect::<Vec<_>>()
        .join(", ");
    columns.push(format!("PRIMARY KEY ({key})"));
    let mut options: Vec<(&String, &String)> = target
        .options
        .iter()
        .filter(|(name, _)| {
            name.starts_with(TABLE_OPTION_PREFIX) && name.as_str() != PRIMARY_KEY_OPTION
        })
        .collect();
    options.sort();
    let mut sql = format!(
        "CREATE TABLE {} ({})",
        quote_ident(&target.table),
        columns.join(", ")
    );
    if !options.is_empty() {
        let mut with = Vec::with_capacity(options.len());
        for (name, value) in options {
            let option = &name[TABLE_OPTION_PREFIX.len()..];
            if option.is_empty()
                || !option
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                return Err(SqlError::Plan(format!(
                    "ingest option {name} is not a table option"
                )));
            }
            with.push(format!("{option} = {}", quote_literal(value)));
        }
        sql.push_str(&format!(" WITH ({})", with.join(", ")));
    }
    Ok(sql)
}

/// The Domicile column type an Arrow field is stored as.
///
/// Errors: `Unsupported` for types no column type holds (lists, structs, maps, ...).
pub fn sql_type(field: &Field) -> Result<String, SqlError> {
    let name = match field.data_type() {
        DataType::Boolean => "BOOLEAN",
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::UInt8 | DataType::UInt16 => {
            "INT"
        }
        DataType::Int64 | DataType::UInt32 | DataType::UInt64 => "BIGINT",
        DataType::Float16 | DataType::Float32 | DataType::Float64 => "DOUBLE",
        DataType::Decimal128(precision, scale) | DataType::Decimal256(precision, scale)
            if *precision <= 38 && *scale >= 0 && i16::from(*scale) <= i16::from(*precision) =>
        {
            return Ok(format!("DECIMAL({precision},{scale})"));
        }
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View if is_uuid_field(field) => "UUID",
        DataType::FixedSizeBinary(16) if is_arrow_uuid(field) => "UUID",
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null => "TEXT",
        DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::FixedSizeBinary(_) => "BYTEA",
        DataType::Date32 | DataType::Date64 => "DATE",
        DataType::Timestamp(_, _) => "TIMESTAMP",
        other => {
            return Err(SqlError::Unsupported(format!(
                "column {}: Arrow type {other} has no column type here (BOOLEAN, INT, BIGINT, \
                 DOUBLE, DECIMAL, TEXT, BYTEA, DATE, TIMESTAMP, UUID)",
                field.name()
            )));
        }
    };
    Ok(name.to_string())
}

/// The canonical Arrow UUID extension type (`arrow.uuid` on FixedSizeBinary(16)).
fn is_arrow_uuid(field: &Field) -> bool {
    field
        .metadata()
        .get("ARROW:extension:name")
        .is_some_and(|name| name == "arrow.uuid")
}

/// `name` as a quoted SQL identifier (kept exactly, `"` doubled).
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `value` as a SQL string literal (`'` doubled).
fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// The batches rearranged into the table's columns, in order: matched by name (exactly,
/// else ignoring ASCII case), a column the data lacks is all NULL (refused later if it
/// is NOT NULL), a column the table lacks is refused. Values are cast when they are
/// converted (`append_column_values`), so types need not match exactly.
fn align(
    def: &TableDef,
    schema: &SchemaRef,
    batches: &[RecordBatch],
) -> Result<Vec<RecordBatch>, SqlError> {
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let cells = rows.saturating_mul(def.columns.len());
    if cells > INGEST_CELLS_MAX {
        return Err(SqlError::TooLarge(format!(
            "ingest of {rows} rows x {} columns exceeds ingest_cells_max = {INGEST_CELLS_MAX}",
            def.columns.len()
        )));
    }
    let mut sources: Vec<Option<usize>> = vec![None; def.columns.len()];
    for (position, field) in schema.fields().iter().enumerate() {
        let column = def.column_index(field.name()).or_else(|| {
            def.columns
                .iter()
                .position(|c| c.name.eq_ignore_ascii_case(field.name()))
        });
        match column {
            Some(column) if sources[column].is_none() => sources[column] = Some(position),
            Some(_) => {
                return Err(SqlError::Plan(format!(
                    "the data has column {} twice",
                    field.name()
                )));
            }
            None => {
                return Err(SqlError::Plan(format!(
                    "table {} has no column {} (ingest matches columns by name)",
                    def.name,
                    field.name()
                )));
            }
        }
    }
    batches
        .iter()
        .map(|batch| {
            let columns = def
                .columns
                .iter()
                .zip(&sources)
                .map(|(column, source)| match source {
                    Some(position) => uuid_as_text(column.column_type, batch.column(*position)),
                    None => Ok(new_null_array(
                        &arrow_type(column.column_type),
                        batch.num_rows(),
                    )),
                })
                .collect::<Result<Vec<ArrayRef>, SqlError>>()?;
            // The data's own types, in the table's order: values are cast to the
            // column types as they are converted.
            let schema = Schema::new(
                def.columns
                    .iter()
                    .zip(&columns)
                    .map(|(c, array)| Field::new(&c.name, array.data_type().clone(), true))
                    .collect::<Vec<_>>(),
            );
            RecordBatch::try_new(Arc::new(schema), columns)
                .map_err(|error| SqlError::Plan(format!("cannot arrange the data: {error}")))
        })
        .collect()
}

/// A UUID column sent as 16-byte binary (the `arrow.uuid` type) as the text form a
/// UUID column is converted from; any other column as it is.
fn uuid_as_text(column_type: ColumnType, array: &ArrayRef) -> Result<ArrayRef, SqlError> {
    if column_type != ColumnType::Uuid || array.data_type() != &DataType::FixedSizeBinary(16) {
        return Ok(Arc::clone(array));
    }
    let Some(binary) = array.as_any().downcast_ref::<FixedSizeBinaryArray>() else {
        return Ok(Arc::clone(array));
    };
    let text: StringArray = binary
        .iter()
        .map(|value| {
            value.map(|bytes| {
                let bytes: [u8; 16] = bytes.try_into().unwrap_or([0; 16]);
                uuid::Uuid::from_bytes(bytes).hyphenated().to_string()
            })
        })
        .collect();
    Ok(Arc::new(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(options: &[(&str, &str)]) -> IngestTarget {
        IngestTarget {
            table: "Merchants \"EU\"".into(),
            if_missing: IfMissing::Create,
            if_exists: IfExists::Fail,
            options: options
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn a_created_table_quotes_names_and_values_and_keys_by_option_or_id() {
        let schema = Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("Name", DataType::LargeUtf8, true),
            Field::new("fee", DataType::Decimal128(18, 2), true),
            Field::new(
                "at",
                DataType::Timestamp(arrow::datatypes::TimeUnit::Nanosecond, Some("UTC".into())),
                true,
            ),
        ]);
        let sql = create_table_sql(
            &target(&[("domicile.pii", "Name'); DROP"), ("other", "x")]),
            &schema,
        )
        .expect("sql");
        assert_eq!(
            sql,
            "CREATE TABLE \"Merchants \"\"EU\"\"\" (\"id\" BIGINT NOT NULL, \"Name\" TEXT, \"fee\" \
             DECIMAL(18,2), \"at\" TIMESTAMP, PRIMARY KEY (\"id\")) WITH (pii = 'Name''); DROP')"
        );
        let keyed = create_table_sql(&target(&[("domicile.primary_key", "Name, fee")]), &schema)
            .expect("sql");
        assert!(keyed.contains("PRIMARY KEY (\"Name\", \"fee\")"), "{keyed}");
        let no_id = Schema::new(vec![Field::new("k", DataType::Int64, false)]);
        let refused = create_table_sql(&target(&[]), &no_id).expect_err("no key");
        assert!(
            refused.to_string().contains("domicile.primary_key"),
            "{refused}"
        );
        let injected = create_table_sql(&target(&[("domicile.pii = 'x') --", "y")]), &schema)
            .expect_err("not an option name");
        assert!(
            injected.to_string().contains("not a table option"),
            "{injected}"
        );
    }

    #[test]
    fn types_without_a_column_type_are_refused_by_name() {
        let list = Field::new(
            "tags",
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
            true,
        );
        let refused = sql_type(&list).expect_err("list");
        assert!(refused.to_string().contains("column tags"), "{refused}");
        let wide = Field::new("d", DataType::Decimal256(76, 2), true);
        assert!(sql_type(&wide).is_err());
        let uuid = Field::new("u", DataType::FixedSizeBinary(16), true)
            .with_metadata([("ARROW:extension:name".to_string(), "arrow.uuid".to_string())].into());
        assert_eq!(sql_type(&uuid).expect("uuid"), "UUID");
    }
}
