//! The WIT `types` interface as Rust types (one set for all three worlds), and the
//! conversions between them and what storage and the catalog hold.
//!
//! Conversions into storage are strict: a value must fit its column exactly (a decimal
//! that would lose digits or exceed the column's precision is refused, not rounded),
//! because what a plugin writes becomes a durable row.

use crate::catalog::{self, ColumnDef, ColumnType, TableDef};
use crate::storage;

pub use super::residency::bindings::domicile::plugin::types::{
    Column, DataClass, Decimal, Purpose, Table, Value,
};

pub fn data_class(class: catalog::DataClass) -> DataClass {
    match class {
        catalog::DataClass::Public => DataClass::Public,
        catalog::DataClass::Sensitive => DataClass::Sensitive,
        catalog::DataClass::Pii => DataClass::Pii,
    }
}

pub fn column(def: &ColumnDef) -> Column {
    Column {
        name: def.name.clone(),
        class: data_class(def.class),
    }
}

/// A table as plugins see it: names and data classes, in column order.
pub fn table(def: &TableDef) -> Table {
    Table {
        name: def.name.clone(),
        columns: def.columns.iter().map(column).collect(),
    }
}

/// A stored value as plugins see it; `column_type` supplies a decimal's scale.
pub fn to_wit(value: &storage::Value, column_type: ColumnType) -> Value {
    match value {
        storage::Value::Null => Value::Null,
        storage::Value::Boolean(b) => Value::Boolean(*b),
        storage::Value::Int(i) => Value::Int(*i),
        storage::Value::BigInt(i) => Value::Bigint(*i),
        storage::Value::Double(d) => Value::Double(*d),
        storage::Value::Decimal(unscaled) => Value::Decimal(Decimal {
            unscaled: unscaled.to_string(),
            scale: match column_type {
                ColumnType::Decimal { scale, .. } => scale,
                _ => 0,
            },
        }),
        storage::Value::Text(t) => Value::Text(t.clone()),
        storage::Value::Bytea(b) => Value::Bytes(b.clone()),
        storage::Value::Date(d) => Value::Date(*d),
        storage::Value::Timestamp(t) => Value::Timestamp(*t),
        storage::Value::Uuid(u) => Value::Uuid(uuid::Uuid::from_bytes(*u).to_string()),
    }
}

/// A row in table column order, as plugins see it.
pub fn row_to_wit(def: &TableDef, row: &[storage::Value]) -> Vec<Value> {
    row.iter()
        .zip(&def.columns)
        .map(|(value, column)| to_wit(value, column.column_type))
        .collect()
}

/// The name of a value's type, for error texts (never the value: it may be personal).
fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Boolean(_) => "boolean",
        Value::Int(_) => "int",
        Value::Bigint(_) => "bigint",
        Value::Double(_) => "double",
        Value::Decimal(_) => "decimal",
        Value::Text(_) => "text",
        Value::Bytes(_) => "bytes",
        Value::Date(_) => "date",
        Value::Timestamp(_) => "timestamp",
        Value::Uuid(_) => "uuid",
    }
}

/// A plugin's value for `column`, or why it does not fit. Error texts name the column
/// and types only.
pub fn from_wit(value: &Value, column: &ColumnDef) -> Result<storage::Value, String> {
    let mismatch = || {
        format!(
            "a {} value does not fit column {} of type {}",
            type_name(value),
            column.name,
            column.column_type
        )
    };
    let converted = match (value, column.column_type) {
        (Value::Null, _) if !column.nullable => {
            return Err(format!("column {} may not be NULL", column.name));
        }
        (Value::Null, _) => storage::Value::Null,
        (Value::Boolean(b), ColumnType::Boolean) => storage::Value::Boolean(*b),
        (Value::Int(i), ColumnType::Int) => storage::Value::Int(*i),
        (Value::Int(i), ColumnType::BigInt) => storage::Value::BigInt(i64::from(*i)),
        (Value::Bigint(i), ColumnType::BigInt) => storage::Value::BigInt(*i),
        (Value::Bigint(i), ColumnType::Int) => {
            storage::Value::Int(i32::try_from(*i).map_err(|_| mismatch())?)
        }
        (Value::Double(d), ColumnType::Double) => storage::Value::Double(*d),
        (Value::Decimal(d), ColumnType::Decimal { precision, scale }) => {
            storage::Value::Decimal(rescale(d, precision, scale).map_err(|why| {
                format!(
                    "decimal for column {} ({}): {why}",
                    column.name, column.column_type
                )
            })?)
        }
        (Value::Text(t), ColumnType::Text) => storage::Value::Text(t.clone()),
        (Value::Bytes(b), ColumnType::Bytea) => storage::Value::Bytea(b.clone()),
        (Value::Date(d), ColumnType::Date) => storage::Value::Date(*d),
        (Value::Timestamp(t), ColumnType::Timestamp) => storage::Value::Timestamp(*t),
        (Value::Uuid(u), ColumnType::Uuid) => storage::Value::Uuid(
            *uuid::Uuid::parse_str(u)
                .map_err(|_| format!("column {}: not a UUID", column.name))?
                .as_bytes(),
        ),
        _ => return Err(mismatch()),
    };
    Ok(converted)
}

/// `decimal` as the unscaled integer of a DECIMAL(precision, scale) column, exactly.
fn rescale(decimal: &Decimal, precision: u8, scale: i8) -> Result<i128, &'static str> {
    let unscaled: i128 = decimal
        .unscaled
        .parse()
        .map_err(|_| "unscaled part is not an integer")?;
    let diff = i32::from(scale) - i32::from(decimal.scale);
    let factor = |d: i32| 10i128.checked_pow(d.unsigned_abs());
    let value = if diff >= 0 {
        factor(diff)
            .and_then(|f| unscaled.checked_mul(f))
            .ok_or("out of range")?
    } else {
        let f = factor(diff).ok_or("out of range")?;
        if unscaled % f != 0 {
            return Err("has more fractional digits than the column");
        }
        unscaled / f
    };
    let limit = 10i128
        .checked_pow(u32::from(precision))
        .unwrap_or(i128::MAX);
    if value.unsigned_abs() >= limit.unsigned_abs() {
        return Err("exceeds the column's precision");
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(column_type: ColumnType, nullable: bool) -> ColumnDef {
        ColumnDef {
            id: 0,
            name: "c".into(),
            column_type,
            nullable,
            class: catalog::DataClass::Public,
        }
    }

    fn decimal(unscaled: &str, scale: i8) -> Value {
        Value::Decimal(Decimal {
            unscaled: unscaled.into(),
            scale,
        })
    }

    #[test]
    fn decimals_rescale_exactly_or_are_refused() {
        let money = column(
            ColumnType::Decimal {
                precision: 6,
                scale: 2,
            },
            false,
        );
        assert_eq!(
            from_wit(&decimal("15", 0), &money),
            Ok(storage::Value::Decimal(1500))
        );
        assert_eq!(
            from_wit(&decimal("1230", 3), &money),
            Ok(storage::Value::Decimal(123))
        );
        assert!(
            from_wit(&decimal("1234", 3), &money).is_err(),
            "would round"
        );
        assert!(from_wit(&decimal("10000", 0), &money).is_err(), "precision");
        assert!(from_wit(&decimal("x", 0), &money).is_err());
        assert!(from_wit(&Value::Null, &money).is_err(), "not null");
        let back = to_wit(&storage::Value::Decimal(-1050), money.column_type);
        assert_eq!(back, decimal("-1050", 2));
    }

    #[test]
    fn errors_name_types_never_values() {
        let error = from_wit(
            &Value::Text("jane@example.eu".into()),
            &column(ColumnType::Int, true),
        )
        .expect_err("text into int");
        assert!(!error.contains("jane"), "{error}");
        assert!(error.contains("text") && error.contains("INT"), "{error}");
        let error = from_wit(&Value::Uuid("jane".into()), &column(ColumnType::Uuid, true))
            .expect_err("bad uuid");
        assert!(!error.contains("jane"), "{error}");
    }

    #[test]
    fn every_type_round_trips() {
        let cases = [
            (storage::Value::Boolean(true), ColumnType::Boolean),
            (storage::Value::Int(-3), ColumnType::Int),
            (storage::Value::BigInt(1 << 40), ColumnType::BigInt),
            (storage::Value::Double(2.5), ColumnType::Double),
            (storage::Value::Text("t".into()), ColumnType::Text),
            (storage::Value::Bytea(vec![0, 255]), ColumnType::Bytea),
            (storage::Value::Date(19_000), ColumnType::Date),
            (storage::Value::Timestamp(-5), ColumnType::Timestamp),
            (storage::Value::Uuid([7; 16]), ColumnType::Uuid),
            (storage::Value::Null, ColumnType::Text),
        ];
        for (value, column_type) in cases {
            let wit = to_wit(&value, column_type);
            assert_eq!(from_wit(&wit, &column(column_type, true)), Ok(value));
        }
    }
}
