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
    /// Whether the value respects the bounds of `column_type` beyond its variant: a
    /// decimal's digits within its precision (1..=38), a TEXT or BYTEA cell within
    /// `CELL_SIZE_MAX_BYTES`. For values from outside (replicated changes); the SQL path
    /// enforces the same when it casts.
    ///
    /// Errors: which bound, never the value.
    pub fn check_bounds(&self, column_type: ColumnType) -> Result<(), String> {
        use crate::limits::CELL_SIZE_MAX_BYTES;
        match (self, column_type) {
            (Value::Decimal(unscaled), ColumnType::Decimal { precision, scale }) => {
                if !(1..=38).contains(&precision) || scale < 0 || scale.unsigned_abs() > precision {
                    return Err(format!("DECIMAL({precision},{scale}) is not a valid type"));
                }
                if unscaled.unsigned_abs() >= 10u128.pow(u32::from(precision)) {
                    return Err(format!("value has more than {precision} digits"));
                }
                Ok(())
            }
            (Value::Text(text), _) if text.len() > CELL_SIZE_MAX_BYTES => Err(format!(
                "value is longer than cell_size_max_bytes = {CELL_SIZE_MAX_BYTES}"
            )),
            (Value::Bytea(bytes), _) if bytes.len() > CELL_SIZE_MAX_BYTES => Err(format!(
                "value is longer than cell_size_max_bytes = {CELL_SIZE_MAX_BYTES}"
            )),
            _ => Ok(()),
        }
    }

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
