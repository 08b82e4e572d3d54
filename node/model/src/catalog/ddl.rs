//! `CREATE TABLE` as Domicile understands it. Plain SQL works (the table is then REGIONAL
//! in the node's own region, every column `public`); the residency facts are table options:
//!
//! ```sql
//! CREATE TABLE accounts (
//!     id BIGINT PRIMARY KEY,
//!     home_region TEXT NOT NULL,
//!     name TEXT, email TEXT, iban TEXT,
//!     balance DECIMAL(18, 2) NOT NULL
//! ) WITH (
//!     locality = 'regional by row',  -- or 'regional' (with region = '...') or 'global'
//!     region_column = 'home_region', -- default 'region'
//!     pii = 'name, email, iban',     -- columns of class pii
//!     sensitive = 'balance',         -- columns of class sensitive; the rest are public
//!     cdc = 'on',                    -- capture changes for the other regions (default off)
//!     cache_ttl_ms = '5000'          -- other regions' answers cached this long (0: never)
//! );
//! ```

use sqlparser::ast::{
    self, ColumnOption, CreateTableOptions, DataType, ExactNumberInfo, Expr, Ident, SqlOption,
    TableConstraint,
};
use thiserror::Error;

use super::table_def::{ColumnDef, ColumnType, DataClass, Locality, TableDef, TableId};
use crate::limits::{COLUMNS_PER_TABLE_MAX, IDENTIFIER_LENGTH_MAX};

#[derive(Debug, Error, PartialEq, Eq)]
pub enum DdlError {
    #[error("unsupported in CREATE TABLE: {0}")]
    Unsupported(String),
    #[error("invalid table definition: {0}")]
    Invalid(String),
}

/// Normalises an identifier the way DataFusion does: unquoted names fold to lower case.
pub(crate) fn normalize_ident(ident: &Ident) -> String {
    match ident.quote_style {
        Some(_) => ident.value.clone(),
        None => ident.value.to_ascii_lowercase(),
    }
}

/// Builds a table definition from a parsed `CREATE TABLE`. `local_region` is the default
/// home of a REGIONAL table; `id` is allocated by storage.
pub fn table_def_from_create(
    create: &ast::CreateTable,
    id: TableId,
    local_region: &str,
) -> Result<TableDef, DdlError> {
    refuse_unsupported_clauses(create)?;
    let name = table_name(&create.name)?;
    if create.columns.len() > COLUMNS_PER_TABLE_MAX {
        return Err(DdlError::Invalid(format!(
            "{} columns exceed columns_per_table_max = {COLUMNS_PER_TABLE_MAX}",
            create.columns.len()
        )));
    }

    let mut columns = Vec::with_capacity(create.columns.len());
    let mut primary_key_names: Vec<String> = Vec::new();
    for (position, column) in create.columns.iter().enumerate() {
        let column_name = checked_identifier(&column.name)?;
        let column_type = column_type(&column.data_type, &column_name)?;
        let mut nullable = true;
        for option in &column.options {
            match &option.option {
                ColumnOption::Null => nullable = true,
                ColumnOption::NotNull => nullable = false,
                ColumnOption::PrimaryKey(_) => {
                    nullable = false;
                    primary_key_names.push(column_name.clone());
                }
                other => {
                    return Err(DdlError::Unsupported(format!(
                        "column option `{other}` on {column_name}"
                    )));
                }
            }
        }
        let id =
            u16::try_from(position).map_err(|_| DdlError::Invalid("too many columns".into()))?;
        columns.push(ColumnDef {
            id,
            name: column_name,
            column_type,
            nullable,
            class: DataClass::Public,
        });
    }

    for constraint in &create.constraints {
        match constraint {
            TableConstraint::PrimaryKey(pk) => {
                if !primary_key_names.is_empty() {
                    return Err(DdlError::Invalid("PRIMARY KEY is declared twice".into()));
                }
                for column in &pk.columns {
                    match &column.column.expr {
                        Expr::Identifier(ident) => primary_key_names.push(normalize_ident(ident)),
                        other => {
                            return Err(DdlError::Unsupported(format!(
                                "primary key expression `{other}`"
                            )));
                        }
                    }
                }
            }
            other => return Err(DdlError::Unsupported(format!("constraint `{other}`"))),
        }
    }
    if primary_key_names.is_empty() {
        return Err(DdlError::Invalid(format!(
            "table {name} needs a PRIMARY KEY (every Domicile table is keyed)"
        )));
    }
    let mut primary_key = Vec::with_capacity(primary_key_names.len());
    for key_name in &primary_key_names {
        let index = columns
            .iter()
            .position(|c| &c.name == key_name)
            .ok_or_else(|| {
                DdlError::Invalid(format!("primary key column {key_name} is not a column"))
            })?;
        if primary_key.contains(&index) {
            return Err(DdlError::Invalid(format!(
                "primary key names {key_name} twice"
            )));
        }
        columns[index].nullable = false;
        primary_key.push(index);
    }

    let options = TableOptions::parse(&create.table_options)?;
    for (class, list) in [
        (DataClass::Pii, &options.pii),
        (DataClass::Sensitive, &options.sensitive),
    ] {
        for column_name in list {
            let column = columns
                .iter_mut()
                .find(|c| &c.name == column_name)
                .ok_or_else(|| {
                    DdlError::Invalid(format!(
                        "{} names {column_name}, which is not a column",
                        class.as_str()
                    ))
                })?;
            if column.class != DataClass::Public {
                return Err(DdlError::Invalid(format!(
                    "{column_name} is given two data classes"
                )));
            }
            column.class = class;
        }
    }

    let locality = match options.locality.as_deref().map(normalize_words).as_deref() {
        None | Some("regional") => Locality::Regional {
            region: options
                .region
                .clone()
                .unwrap_or_else(|| local_region.to_string()),
        },
        Some("regional by row") => Locality::RegionalByRow {
            region_column: options
                .region_column
                .clone()
                .unwrap_or_else(|| "region".into()),
        },
        Some("global") => Locality::Global,
        Some(other) => {
            return Err(DdlError::Invalid(format!(
                "locality '{other}' is not one of 'regional', 'regional by row', 'global'"
            )));
        }
    };
    if options.region_column.is_some() && !matches!(locality, Locality::RegionalByRow { .. }) {
        return Err(DdlError::Invalid(
            "region_column needs locality = 'regional by row'".into(),
        ));
    }
    if options.region.is_some() && !matches!(locality, Locality::Regional { .. }) {
        return Err(DdlError::Invalid(
            "region needs locality = 'regional'".into(),
        ));
    }

    let next_column_id =
        u16::try_from(columns.len()).map_err(|_| DdlError::Invalid("too many columns".into()))?;
    let def = TableDef {
        id,
        name,
        columns,
        primary_key,
        locality,
        next_column_id,
        cdc: options.cdc,
        cache_ttl_ms: options.cache_ttl_ms,
    };
    def.validate_new().map_err(DdlError::Invalid)?;
    Ok(def)
}

fn normalize_words(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_ascii_lowercase()
}

fn refuse_unsupported_clauses(create: &ast::CreateTable) -> Result<(), DdlError> {
    let unsupported = [
        (create.or_replace, "OR REPLACE"),
        (create.temporary, "TEMPORARY"),
        (create.external, "EXTERNAL"),
        (create.query.is_some(), "AS SELECT"),
        (create.like.is_some(), "LIKE"),
        (create.clone.is_some(), "CLONE"),
        (
            create.partition_by.is_some(),
            "PARTITION BY (use locality options)",
        ),
    ];
    for (present, what) in unsupported {
        if present {
            return Err(DdlError::Unsupported(what.into()));
        }
    }
    Ok(())
}

/// The table's name: a bare identifier, optionally qualified by the `public` schema.
pub fn table_name(name: &ast::ObjectName) -> Result<String, DdlError> {
    let parts: Vec<&Ident> = name.0.iter().filter_map(|part| part.as_ident()).collect();
    if parts.len() != name.0.len() {
        return Err(DdlError::Unsupported(format!("table name {name}")));
    }
    match parts.as_slice() {
        [table] => checked_identifier(table),
        [schema, table] if normalize_ident(schema) == "public" => checked_identifier(table),
        _ => Err(DdlError::Invalid(format!(
            "tables are created in schema public; `{name}` names another place"
        ))),
    }
}

fn checked_identifier(ident: &Ident) -> Result<String, DdlError> {
    let name = normalize_ident(ident);
    if name.is_empty() || name.len() > IDENTIFIER_LENGTH_MAX {
        return Err(DdlError::Invalid(format!(
            "identifier length must be 1..={IDENTIFIER_LENGTH_MAX} bytes"
        )));
    }
    Ok(name)
}

fn column_type(data_type: &DataType, column: &str) -> Result<ColumnType, DdlError> {
    Ok(match data_type {
        DataType::Boolean | DataType::Bool => ColumnType::Boolean,
        DataType::Int(_) | DataType::Integer(_) | DataType::Int4(_) | DataType::Int32 => {
            ColumnType::Int
        }
        DataType::BigInt(_) | DataType::Int8(_) | DataType::Int64 => ColumnType::BigInt,
        // FLOAT without a precision (or of 25 to 53 bits) is double precision, as in
        // PostgreSQL and ISO SQL; FLOAT(p <= 24) and REAL are single precision, which no
        // column type here is, so they are refused below.
        DataType::Double(ExactNumberInfo::None)
        | DataType::DoublePrecision
        | DataType::Float8
        | DataType::Float64
        | DataType::Float(ExactNumberInfo::None) => ColumnType::Double,
        DataType::Float(ExactNumberInfo::Precision(bits)) if (25..=53).contains(bits) => {
            ColumnType::Double
        }
        DataType::Decimal(info) | DataType::Numeric(info) => {
            let (precision, scale) = match info {
                ExactNumberInfo::None => (38, 10),
                ExactNumberInfo::Precision(p) => (*p, 0),
                ExactNumberInfo::PrecisionAndScale(p, s) => (*p, *s),
            };
            let precision = u8::try_from(precision)
                .ok()
                .filter(|p| (1..=38).contains(p));
            let scale = i8::try_from(scale).ok().filter(|s| *s >= 0);
            match (precision, scale) {
                (Some(precision), Some(scale)) if i16::from(scale) <= i16::from(precision) => {
                    ColumnType::Decimal { precision, scale }
                }
                _ => {
                    return Err(DdlError::Invalid(format!(
                        "{column}: DECIMAL needs 1 <= precision <= 38 and 0 <= scale <= precision"
                    )));
                }
            }
        }
        DataType::Text | DataType::Varchar(_) | DataType::String(_) | DataType::Char(_) => {
            ColumnType::Text
        }
        // What SQLAlchemy's generic compiler emits for LargeBinary (BLOB) and what other
        // dialects call a variable-length byte string.
        DataType::Bytea | DataType::Blob(None) | DataType::Varbinary(None) => ColumnType::Bytea,
        DataType::Date => ColumnType::Date,
        // DATETIME (MySQL's, and what SQLAlchemy's generic compiler emits for DateTime)
        // is a timestamp without time zone.
        DataType::Timestamp(_, ast::TimezoneInfo::None | ast::TimezoneInfo::WithoutTimeZone)
        | DataType::Datetime(_) => ColumnType::Timestamp,
        DataType::Uuid => ColumnType::Uuid,
        other => {
            return Err(DdlError::Unsupported(format!(
                "type {other} of column {column} (supported: BOOLEAN, INT, BIGINT, DOUBLE, \
                 DECIMAL(p,s), TEXT, BYTEA, DATE, TIMESTAMP, UUID)"
            )));
        }
    })
}

#[derive(Default)]
struct TableOptions {
    locality: Option<String>,
    region_column: Option<String>,
    region: Option<String>,
    pii: Vec<String>,
    sensitive: Vec<String>,
    cdc: bool,
    cache_ttl_ms: Option<u64>,
}

impl TableOptions {
    fn parse(options: &CreateTableOptions) -> Result<Self, DdlError> {
        let list = match options {
            CreateTableOptions::None => return Ok(Self::default()),
            CreateTableOptions::With(list) => list,
            other => return Err(DdlError::Unsupported(format!("table options {other}"))),
        };
        let mut parsed = Self::default();
        for option in list {
            let SqlOption::KeyValue { key, value } = option else {
                return Err(DdlError::Unsupported(format!("table option {option}")));
            };
            let text = option_text(value)?;
            match normalize_ident(key).as_str() {
                "locality" => parsed.locality = Some(text),
                "region_column" => parsed.region_column = Some(text.trim().to_ascii_lowercase()),
                "region" => parsed.region = Some(text.trim().to_string()),
                "pii" => parsed.pii = column_list(&text),
                "sensitive" => parsed.sensitive = column_list(&text),
                "cdc" => {
                    parsed.cdc = match text.trim().to_ascii_lowercase().as_str() {
                        "on" | "true" => true,
                        "off" | "false" => false,
                        other => {
                            return Err(DdlError::Invalid(format!(
                                "cdc = '{other}': expected 'on' or 'off'"
                            )));
                        }
                    }
                }
                "cache_ttl_ms" => {
                    parsed.cache_ttl_ms = Some(text.trim().parse().map_err(|_| {
                        DdlError::Invalid(format!(
                            "cache_ttl_ms = '{text}': expected milliseconds (0: never cached)"
                        ))
                    })?);
                }
                other => {
                    return Err(DdlError::Unsupported(format!(
                        "table option {other} (known: locality, region_column, region, pii, \
                         sensitive, cdc, cache_ttl_ms)"
                    )));
                }
            }
        }
        Ok(parsed)
    }
}

fn option_text(value: &Expr) -> Result<String, DdlError> {
    match value {
        Expr::Value(v) => match &v.value {
            ast::Value::SingleQuotedString(s) | ast::Value::DoubleQuotedString(s) => Ok(s.clone()),
            other => Ok(other.to_string()),
        },
        Expr::Identifier(ident) => Ok(ident.value.clone()),
        other => Err(DdlError::Unsupported(format!("table option value {other}"))),
    }
}

fn column_list(text: &str) -> Vec<String> {
    text.split(',')
        .map(|name| name.trim().to_ascii_lowercase())
        .filter(|name| !name.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use sqlparser::dialect::GenericDialect;
    use sqlparser::parser::Parser;

    use super::*;

    fn parse(sql: &str) -> Result<TableDef, DdlError> {
        let statements = Parser::parse_sql(&GenericDialect {}, sql).expect("test SQL parses");
        let [ast::Statement::CreateTable(create)] = statements.as_slice() else {
            panic!("not a CREATE TABLE: {sql}");
        };
        table_def_from_create(create, 7, "eu-central")
    }

    #[test]
    fn plain_sql_is_regional_in_the_local_region_and_public() {
        let def = parse("CREATE TABLE T (Id BIGINT PRIMARY KEY, v TEXT)").expect("valid");
        assert_eq!(def.name, "t");
        assert_eq!(
            def.locality,
            Locality::Regional {
                region: "eu-central".into()
            }
        );
        assert_eq!(def.primary_key, vec![0]);
        assert!(!def.columns[0].nullable);
        assert!(def.columns.iter().all(|c| c.class == DataClass::Public));
    }

    #[test]
    fn regional_by_row_with_classes() {
        let def = parse(
            "CREATE TABLE accounts (id BIGINT, home TEXT NOT NULL, name TEXT, iban TEXT, \
             balance DECIMAL(18,2), PRIMARY KEY (id)) WITH (locality = 'Regional  By Row', \
             region_column = 'home', pii = 'name, iban', sensitive = 'balance')",
        )
        .expect("valid");
        assert_eq!(
            def.locality,
            Locality::RegionalByRow {
                region_column: "home".into()
            }
        );
        assert_eq!(def.region_column_index(), Some(1));
        let classes: Vec<_> = def.columns.iter().map(|c| c.class).collect();
        assert_eq!(
            classes,
            vec![
                DataClass::Public,
                DataClass::Public,
                DataClass::Pii,
                DataClass::Pii,
                DataClass::Sensitive
            ]
        );
        assert_eq!(
            def.columns[4].column_type,
            ColumnType::Decimal {
                precision: 18,
                scale: 2
            }
        );
    }

    /// What ORMs' generic DDL compilers emit (SQLAlchemy: DATETIME, FLOAT, BLOB) maps
    /// to the column type of the same meaning.
    #[test]
    fn generic_type_names_map_to_the_same_meaning() {
        let def = parse(
            "CREATE TABLE t (id BIGINT PRIMARY KEY, at DATETIME, f FLOAT, g FLOAT(53), \
             b BLOB, v VARBINARY)",
        )
        .expect("valid");
        let types: Vec<_> = def.columns.iter().map(|c| c.column_type).collect();
        assert_eq!(
            types,
            vec![
                ColumnType::BigInt,
                ColumnType::Timestamp,
                ColumnType::Double,
                ColumnType::Double,
                ColumnType::Bytea,
                ColumnType::Bytea
            ]
        );
    }

    #[test]
    fn refusals_name_the_problem() {
        let cases = [
            ("CREATE TABLE t (v TEXT)", "PRIMARY KEY"),
            (
                "CREATE TABLE t (id INT PRIMARY KEY) WITH (pii = 'nope')",
                "nope",
            ),
            (
                "CREATE TABLE t (id INT PRIMARY KEY, r TEXT) WITH (locality='regional by row', region_column='r')",
                "NOT NULL",
            ),
            (
                "CREATE TABLE t (id INT PRIMARY KEY) WITH (locality = 'everywhere')",
                "everywhere",
            ),
            (
                "CREATE TABLE t (id INT PRIMARY KEY, x INTERVAL)",
                "INTERVAL",
            ),
            (
                "CREATE TABLE t (id INT PRIMARY KEY) WITH (colour = 'red')",
                "colour",
            ),
            (
                "CREATE TABLE t (id INT PRIMARY KEY, d DECIMAL(50, 2))",
                "precision",
            ),
            ("CREATE TABLE other.t (id INT PRIMARY KEY)", "schema public"),
            // Single precision has no column type here: never silently widened.
            ("CREATE TABLE t (id INT PRIMARY KEY, f REAL)", "REAL"),
            (
                "CREATE TABLE t (id INT PRIMARY KEY, f FLOAT(10))",
                "FLOAT(10)",
            ),
        ];
        for (sql, needle) in cases {
            let error = parse(sql).expect_err(sql).to_string();
            assert!(error.contains(needle), "{sql}: {error} lacks {needle}");
        }
    }
}
