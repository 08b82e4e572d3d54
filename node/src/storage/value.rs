use serde::{Deserialize, Serialize};

use crate::catalog::ColumnType;

/// One cell as storage holds it. Types are those of [`ColumnType`]; a decimal carries
/// its unscaled integer (precision and scale live in the column definition).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Value {
    Null,
    Boolean(bool),
    Int(i32),
    BigInt(i64),
    Double(f64),
    Decimal(i128),
    Text(String),
    Bytea(Vec<u8>),
    /// Days since 1970-01-01.
    Date(i32),
    /// Microseconds since 1970-01-01T00:00:00 (no time zone).
    Timestamp(i64),
    Uuid([u8; 16]),
}

impl Value {
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// Whether this value may be stored in a column of `column_type`.
    pub fn fits(&self, column_type: ColumnType) -> bool {
        matches!(
            (self, column_type),
            (Value::Null, _)
                | (Value::Boolean(_), ColumnType::Boolean)
                | (Value::Int(_), ColumnType::Int)
                | (Value::BigInt(_), ColumnType::BigInt)
                | (Value::Double(_), ColumnType::Double)
                | (Value::Decimal(_), ColumnType::Decimal { .. })
                | (Value::Text(_), ColumnType::Text)
                | (Value::Bytea(_), ColumnType::Bytea)
                | (Value::Date(_), ColumnType::Date)
                | (Value::Timestamp(_), ColumnType::Timestamp)
                | (Value::Uuid(_), ColumnType::Uuid)
        )
    }
}
