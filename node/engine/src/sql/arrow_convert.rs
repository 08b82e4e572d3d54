//! Between storage values and Arrow arrays. Every `ColumnType` has exactly one Arrow
//! type; UUIDs travel as canonical lowercase text so SQL can compare them with literals.

use std::sync::Arc;

use arrow::array::AsArray;
use arrow::array::{
    Array, ArrayRef, BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder,
    Float64Builder, Int32Builder, Int64Builder, RecordBatch, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow::compute::{CastOptions, cast_with_options};
use arrow::datatypes::{
    DataType, Date32Type, Decimal128Type, Field, Float64Type, Int32Type, Int64Type, Schema,
    SchemaRef, TimeUnit, TimestampMicrosecondType,
};
use arrow::util::display::FormatOptions;
use datafusion::common::ScalarValue;

use crate::catalog::{ColumnType, DataClass, TableDef};
use crate::limits::CELL_SIZE_MAX_BYTES;
use crate::storage::Value;

pub fn arrow_type(column_type: ColumnType) -> DataType {
    match column_type {
        ColumnType::Boolean => DataType::Boolean,
        ColumnType::Int => DataType::Int32,
        ColumnType::BigInt => DataType::Int64,
        ColumnType::Double => DataType::Float64,
        ColumnType::Decimal { precision, scale } => DataType::Decimal128(precision, scale),
        ColumnType::Text | ColumnType::Uuid => DataType::Utf8,
        ColumnType::Bytea => DataType::Binary,
        ColumnType::Date => DataType::Date32,
        ColumnType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
    }
}

/// The Arrow schema of a table, as queries see it.
///
/// `pii` and `sensitive` columns are nullable here whatever their declaration: the
/// residency guard returns them as NULL to principals whose region may not see them.
/// NOT NULL is still enforced on every write (`batch_to_rows`).
///
/// A UUID column is a text column (canonical lower-case, hyphenated) whose field carries
/// [`UUID_METADATA`]: a literal compared with it is read as a UUID first (see
/// `sql::postgres_semantics::comparable_types`).
pub fn table_schema(def: &TableDef) -> SchemaRef {
    Arc::new(Schema::new(
        def.columns
            .iter()
            .map(|c| {
                let nullable = c.nullable || c.class != DataClass::Public;
                let field = Field::new(&c.name, arrow_type(c.column_type), nullable);
                if c.column_type == ColumnType::Uuid {
                    let (key, value) = UUID_METADATA;
                    field.with_metadata([(key.to_string(), value.to_string())].into())
                } else {
                    field
                }
            })
            .collect::<Vec<_>>(),
    ))
}

/// The field metadata entry that marks a UUID column.
pub const UUID_METADATA: (&str, &str) = ("domicile.type", "uuid");

/// Whether `field` is a UUID column's.
pub fn is_uuid_field(field: &Field) -> bool {
    let (key, value) = UUID_METADATA;
    field.metadata().get(key).is_some_and(|v| v == value)
}

/// Why a value cannot be stored. Never carries the value itself: it may be personal data.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConvertError {
    #[error("column {column}: NULL in a NOT NULL column")]
    NullInNotNull { column: String },
    #[error("column {column}: value does not fit {target}")]
    DoesNotFit { column: String, target: String },
    #[error("column {column}: not a valid UUID")]
    InvalidUuid { column: String },
    #[error(
        "column {column}: cell of {size_bytes} bytes exceeds cell_size_max_bytes = {CELL_SIZE_MAX_BYTES}"
    )]
    CellTooLarge { column: String, size_bytes: usize },
}

/// Builds a batch of `rows` (each holding the `projection` columns of `def`, in order).
pub fn rows_to_batch(
    def: &TableDef,
    projection: &[usize],
    schema: &SchemaRef,
    rows: &[Vec<Value>],
) -> Result<RecordBatch, arrow::error::ArrowError> {
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(projection.len());
    for (slot, &position) in projection.iter().enumerate() {
        let column_type = def.columns[position].column_type;
        columns.push(column_to_array(
            column_type,
            rows.iter().map(|row| &row[slot]),
        ));
    }
    let options = arrow::array::RecordBatchOptions::new().with_row_count(Some(rows.len()));
    RecordBatch::try_new_with_options(Arc::clone(schema), columns, &options)
}

fn column_to_array<'a>(
    column_type: ColumnType,
    values: impl Iterator<Item = &'a Value>,
) -> ArrayRef {
    macro_rules! build {
        ($builder:expr, $variant:ident, |$v:ident| $convert:expr) => {{
            let mut builder = $builder;
            for value in values {
                match value {
                    Value::$variant($v) => builder.append_value($convert),
                    _ => builder.append_null(),
                }
            }
            Arc::new(builder.finish()) as ArrayRef
        }};
    }
    match column_type {
        ColumnType::Boolean => build!(BooleanBuilder::new(), Boolean, |v| *v),
        ColumnType::Int => build!(Int32Builder::new(), Int, |v| *v),
        ColumnType::BigInt => build!(Int64Builder::new(), BigInt, |v| *v),
        ColumnType::Double => build!(Float64Builder::new(), Double, |v| *v),
        ColumnType::Decimal { precision, scale } => {
            let mut builder = Decimal128Builder::new();
            for value in values {
                match value {
                    Value::Decimal(v) => builder.append_value(*v),
                    _ => builder.append_null(),
                }
            }
            let array = builder
                .finish()
                .with_precision_and_scale(precision, scale)
                .expect("column precision and scale were validated at CREATE");
            Arc::new(array)
        }
        ColumnType::Text => build!(StringBuilder::new(), Text, |v| v.as_str()),
        ColumnType::Uuid => {
            build!(StringBuilder::new(), Uuid, |v| uuid::Uuid::from_bytes(*v)
                .hyphenated()
                .to_string())
        }
        ColumnType::Bytea => build!(BinaryBuilder::new(), Bytea, |v| v.as_slice()),
        ColumnType::Date => build!(Date32Builder::new(), Date, |v| *v),
        ColumnType::Timestamp => build!(TimestampMicrosecondBuilder::new(), Timestamp, |v| *v),
    }
}

/// `array` cast to `target` as PostgreSQL assigns a value to a column: a decimal or
/// float stored into an integer column is rounded (decimals half away from zero, floats
/// half to even, as `sql::postgres_semantics` does in plans), not truncated; a value out of
/// range is an error.
fn assignment_cast(
    array: &ArrayRef,
    target: &DataType,
    options: &CastOptions,
) -> Result<ArrayRef, arrow::error::ArrowError> {
    if !target.is_integer() {
        return cast_with_options(array, target, options);
    }
    let whole = match array.data_type() {
        DataType::Decimal128(precision, scale) if *scale > 0 => {
            let digits = precision.saturating_sub(*scale as u8).saturating_add(1);
            cast_with_options(
                array,
                &DataType::Decimal128(digits.clamp(1, 38), 0),
                options,
            )?
        }
        DataType::Float16 | DataType::Float32 | DataType::Float64 => {
            let floats = cast_with_options(array, &DataType::Float64, options)?;
            let rounded: arrow::array::Float64Array = floats
                .as_primitive::<Float64Type>()
                .unary(f64::round_ties_even);
            Arc::new(rounded)
        }
        _ => Arc::clone(array),
    };
    cast_with_options(&whole, target, options)
}

/// Reads column `position` of `def` from `array` (any type castable to the column's),
/// appending one value per row to `out[row]`.
pub fn append_column_values(
    def: &TableDef,
    position: usize,
    array: &ArrayRef,
    out: &mut [Vec<Value>],
) -> Result<(), ConvertError> {
    let column = &def.columns[position];
    let target = arrow_type(column.column_type);
    let does_not_fit = || ConvertError::DoesNotFit {
        column: column.name.clone(),
        target: column.column_type.to_string(),
    };
    let options = CastOptions {
        safe: false,
        format_options: FormatOptions::default(),
    };
    let array = if array.data_type() == &target {
        Arc::clone(array)
    } else {
        assignment_cast(array, &target, &options).map_err(|_| does_not_fit())?
    };
    for (row, slot) in out.iter_mut().enumerate() {
        let value = if array.is_null(row) {
            if !column.nullable {
                return Err(ConvertError::NullInNotNull {
                    column: column.name.clone(),
                });
            }
            Value::Null
        } else {
            match column.column_type {
                ColumnType::Boolean => Value::Boolean(array.as_boolean().value(row)),
                ColumnType::Int => Value::Int(array.as_primitive::<Int32Type>().value(row)),
                ColumnType::BigInt => Value::BigInt(array.as_primitive::<Int64Type>().value(row)),
                ColumnType::Double => Value::Double(array.as_primitive::<Float64Type>().value(row)),
                ColumnType::Decimal { precision, .. } => {
                    let v = array.as_primitive::<Decimal128Type>().value(row);
                    if v.unsigned_abs() >= 10u128.pow(u32::from(precision)) {
                        return Err(does_not_fit());
                    }
                    Value::Decimal(v)
                }
                ColumnType::Text => {
                    let text = array.as_string::<i32>().value(row);
                    check_cell_size(&column.name, text.len())?;
                    Value::Text(text.to_string())
                }
                ColumnType::Uuid => {
                    let text = array.as_string::<i32>().value(row);
                    let parsed =
                        uuid::Uuid::try_parse(text).map_err(|_| ConvertError::InvalidUuid {
                            column: column.name.clone(),
                        })?;
                    Value::Uuid(parsed.into_bytes())
                }
                ColumnType::Bytea => {
                    let bytes = array.as_binary::<i32>().value(row);
                    check_cell_size(&column.name, bytes.len())?;
                    Value::Bytea(bytes.to_vec())
                }
                ColumnType::Date => Value::Date(array.as_primitive::<Date32Type>().value(row)),
                ColumnType::Timestamp => {
                    Value::Timestamp(array.as_primitive::<TimestampMicrosecondType>().value(row))
                }
            }
        };
        slot.push(value);
    }
    Ok(())
}

fn check_cell_size(column: &str, size_bytes: usize) -> Result<(), ConvertError> {
    if size_bytes > CELL_SIZE_MAX_BYTES {
        return Err(ConvertError::CellTooLarge {
            column: column.to_string(),
            size_bytes,
        });
    }
    Ok(())
}

/// Converts a batch holding every column of `def` (in order) into rows.
pub fn batch_to_rows(def: &TableDef, batch: &RecordBatch) -> Result<Vec<Vec<Value>>, ConvertError> {
    let mut rows: Vec<Vec<Value>> = (0..batch.num_rows())
        .map(|_| Vec::with_capacity(def.columns.len()))
        .collect();
    for position in 0..def.columns.len() {
        append_column_values(def, position, batch.column(position), &mut rows)?;
    }
    Ok(rows)
}

/// A literal from a filter, converted to the storage value of a column, if it is exactly
/// representable (otherwise the filter cannot select by key and is left to DataFusion).
pub fn scalar_to_value(def: &TableDef, position: usize, scalar: &ScalarValue) -> Option<Value> {
    if scalar.is_null() {
        return None;
    }
    let array = scalar.to_array().ok()?;
    let mut out = vec![Vec::new()];
    append_column_values(def, position, &array, &mut out).ok()?;
    out.pop()?.pop()
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Decimal128Array, Float64Array, Int64Array};

    fn options() -> CastOptions<'static> {
        CastOptions {
            safe: false,
            format_options: FormatOptions::default(),
        }
    }

    fn ints(array: ArrayRef) -> Vec<i32> {
        assignment_cast(&array, &DataType::Int32, &options())
            .expect("fits")
            .as_primitive::<Int32Type>()
            .values()
            .to_vec()
    }

    #[test]
    fn assignment_to_integers_rounds_as_postgresql_does() {
        // PostgreSQL 15: INSERT of 7.9::float8 into an INT column stores 8; float8
        // rounds ties to even, numeric away from zero.
        let floats: ArrayRef = Arc::new(Float64Array::from(vec![7.9, 2.5, 3.5, -2.5, -7.9]));
        assert_eq!(ints(floats), [8, 2, 4, -2, -8]);
        let decimals: ArrayRef = Arc::new(
            Decimal128Array::from(vec![79, 25, -25, 24, 95])
                .with_precision_and_scale(4, 1)
                .expect("decimal"),
        );
        assert_eq!(ints(decimals), [8, 3, -3, 2, 10]);
        let exact: ArrayRef = Arc::new(Int64Array::from(vec![7, -7]));
        assert_eq!(ints(exact), [7, -7]);
    }

    #[test]
    fn assignment_out_of_range_is_an_error() {
        for array in [
            Arc::new(Int64Array::from(vec![3_000_000_000])) as ArrayRef,
            Arc::new(Float64Array::from(vec![f64::NAN])),
            Arc::new(Float64Array::from(vec![2_147_483_647.5])),
        ] {
            assert!(assignment_cast(&array, &DataType::Int32, &options()).is_err());
        }
    }
}
