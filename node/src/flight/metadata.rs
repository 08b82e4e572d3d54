//! What the server says about itself: SqlInfo and XDBC type info, built once.

use std::sync::LazyLock;

use arrow_flight::sql::metadata::{
    SqlInfoData, SqlInfoDataBuilder, XdbcTypeInfo, XdbcTypeInfoData, XdbcTypeInfoDataBuilder,
};
use arrow_flight::sql::{
    Nullable, Searchable, SqlInfo, SqlNullOrdering, SqlSupportedCaseSensitivity,
    SqlSupportedTransaction, SqlTransactionIsolationLevel, XdbcDataType,
};

use crate::limits::TRANSACTION_IDLE_MAX;

pub(crate) static SQL_INFO: LazyLock<SqlInfoData> = LazyLock::new(|| {
    let mut builder = SqlInfoDataBuilder::new();
    builder.append(SqlInfo::FlightSqlServerName, "Domicile");
    builder.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
    builder.append(SqlInfo::FlightSqlServerArrowVersion, "1.3");
    builder.append(SqlInfo::FlightSqlServerReadOnly, false);
    builder.append(SqlInfo::FlightSqlServerSql, true);
    builder.append(SqlInfo::FlightSqlServerSubstrait, false);
    // BeginTransaction / EndTransaction and SQL BEGIN / COMMIT / ROLLBACK, serializable
    // (`storage::transaction`); no savepoints. ADBC offers `autocommit=False` on this.
    builder.append(
        SqlInfo::FlightSqlServerTransaction,
        SqlSupportedTransaction::Transaction as i32,
    );
    builder.append(SqlInfo::FlightSqlServerCancel, true);
    builder.append(SqlInfo::FlightSqlServerBulkIngestion, true);
    builder.append(SqlInfo::FlightSqlServerIngestTransactionsSupported, true);
    builder.append(SqlInfo::FlightSqlServerStatementTimeout, 0i32);
    // An idle transaction is rolled back after this many milliseconds.
    builder.append(
        SqlInfo::FlightSqlServerTransactionTimeout,
        i32::try_from(TRANSACTION_IDLE_MAX.as_millis()).unwrap_or(i32::MAX),
    );
    builder.append(SqlInfo::SqlDdlCatalog, false);
    builder.append(SqlInfo::SqlDdlSchema, false);
    builder.append(SqlInfo::SqlDdlTable, true);
    builder.append(
        SqlInfo::SqlIdentifierCase,
        SqlSupportedCaseSensitivity::SqlCaseSensitivityLowercase as i32,
    );
    builder.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
    builder.append(
        SqlInfo::SqlQuotedIdentifierCase,
        SqlSupportedCaseSensitivity::SqlCaseSensitivityCaseInsensitive as i32,
    );
    builder.append(SqlInfo::SqlAllTablesAreSelectable, true);
    builder.append(
        SqlInfo::SqlNullOrdering,
        SqlNullOrdering::SqlNullsSortedHigh as i32,
    );
    builder.append(SqlInfo::SqlTransactionsSupported, true);
    let serializable = SqlTransactionIsolationLevel::SqlTransactionSerializable as i32;
    builder.append(SqlInfo::SqlDefaultTransactionIsolation, serializable);
    builder.append(
        SqlInfo::SqlSupportedTransactionsIsolationLevels,
        1i32 << serializable,
    );
    // DDL inside a transaction commits it first (`sql::transactions`), as in MySQL.
    builder.append(SqlInfo::SqlDataDefinitionCausesTransactionCommit, true);
    builder.append(SqlInfo::SqlDataDefinitionsInTransactionsIgnored, false);
    builder.build().expect("static SqlInfo is well-formed")
});

pub(crate) static XDBC_TYPES: LazyLock<XdbcTypeInfoData> = LazyLock::new(|| {
    let mut builder = XdbcTypeInfoDataBuilder::new();
    let types = [
        ("BOOLEAN", XdbcDataType::XdbcBit, Some(1), None),
        ("INT", XdbcDataType::XdbcInteger, Some(32), None),
        ("BIGINT", XdbcDataType::XdbcBigint, Some(64), None),
        ("DOUBLE", XdbcDataType::XdbcDouble, Some(53), None),
        (
            "DECIMAL",
            XdbcDataType::XdbcDecimal,
            Some(38),
            Some("precision,scale"),
        ),
        ("TEXT", XdbcDataType::XdbcVarchar, None, None),
        ("BYTEA", XdbcDataType::XdbcVarbinary, None, None),
        ("DATE", XdbcDataType::XdbcDate, None, None),
        ("TIMESTAMP", XdbcDataType::XdbcTimestamp, None, None),
        ("UUID", XdbcDataType::XdbcVarchar, Some(36), None),
    ];
    for (name, data_type, column_size, create_params) in types {
        let quoted = matches!(name, "TEXT" | "UUID" | "DATE" | "TIMESTAMP");
        builder.append(XdbcTypeInfo {
            type_name: name.into(),
            data_type,
            column_size,
            literal_prefix: quoted.then(|| "'".into()),
            literal_suffix: quoted.then(|| "'".into()),
            create_params: create_params.map(|p: &str| p.split(',').map(String::from).collect()),
            nullable: Nullable::NullabilityNullable,
            case_sensitive: name == "TEXT",
            searchable: Searchable::Full,
            unsigned_attribute: matches!(name, "INT" | "BIGINT" | "DOUBLE" | "DECIMAL")
                .then_some(false),
            fixed_prec_scale: name == "DECIMAL",
            auto_increment: Some(false),
            local_type_name: Some(name.into()),
            minimum_scale: (name == "DECIMAL").then_some(0),
            maximum_scale: (name == "DECIMAL").then_some(38),
            sql_data_type: data_type,
            datetime_subcode: None,
            num_prec_radix: matches!(name, "INT" | "BIGINT" | "DECIMAL").then_some(10),
            interval_precision: None,
        });
    }
    builder
        .build()
        .expect("static XDBC type info is well-formed")
});
