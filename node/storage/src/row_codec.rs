//! Row value encoding: a version byte, then only the non-NULL cells, each as
//! `column id (u16 LE) | type tag (u8) | payload`. Rows name columns by stable id, never by
//! position, so `ALTER TABLE ADD COLUMN` needs no rewrite (an absent id reads as NULL) and a
//! dropped column's cells are skipped. The tag lets a reader verify that the stored type is
//! the declared one instead of misreading bytes.

use thiserror::Error;

use super::value::Value;
use crate::catalog::TableDef;

const FORMAT_VERSION: u8 = 1;

const TAG_BOOLEAN: u8 = 1;
const TAG_INT: u8 = 2;
const TAG_BIGINT: u8 = 3;
const TAG_DOUBLE: u8 = 4;
const TAG_DECIMAL: u8 = 5;
const TAG_TEXT: u8 = 6;
const TAG_BYTEA: u8 = 7;
const TAG_DATE: u8 = 8;
const TAG_TIMESTAMP: u8 = 9;
const TAG_UUID: u8 = 10;

#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[error("corrupt row in table {table}: {detail}")]
pub struct CorruptRow {
    pub table: String,
    pub detail: String,
}

/// Encodes `values` (one per column of `def`, in column order).
///
/// Debug builds check the round trip on every row written: the bytes decode, and the
/// decoded row encodes to the same bytes (compared as bytes, so a NaN counts as itself).
pub fn encode_row(def: &TableDef, values: &[Value]) -> Vec<u8> {
    let out = encode_row_once(def, values);
    #[cfg(debug_assertions)]
    {
        let all: Vec<usize> = (0..def.columns.len()).collect();
        let decoded = RowDecoder::new(def, &all).decode(&out);
        debug_assert!(
            decoded
                .as_ref()
                .is_ok_and(|row| encode_row_once(def, row) == out),
            "row codec round trip broken for table {}: {decoded:?}",
            def.name
        );
    }
    out
}

fn encode_row_once(def: &TableDef, values: &[Value]) -> Vec<u8> {
    assert_eq!(
        values.len(),
        def.columns.len(),
        "row arity must match table {}",
        def.name
    );
    let mut out = Vec::with_capacity(16 + values.len() * 10);
    out.push(FORMAT_VERSION);
    for (column, value) in def.columns.iter().zip(values) {
        if value.is_null() {
            continue;
        }
        assert!(
            value.fits(column.column_type),
            "value type must match column {}",
            column.name
        );
        out.extend(column.id.to_le_bytes());
        match value {
            Value::Null => unreachable!("NULL cells are skipped above"),
            Value::Boolean(v) => out.extend([TAG_BOOLEAN, u8::from(*v)]),
            Value::Int(v) => {
                out.push(TAG_INT);
                out.extend(v.to_le_bytes());
            }
            Value::BigInt(v) => {
                out.push(TAG_BIGINT);
                out.extend(v.to_le_bytes());
            }
            Value::Double(v) => {
                out.push(TAG_DOUBLE);
                out.extend(v.to_le_bytes());
            }
            Value::Decimal(v) => {
                out.push(TAG_DECIMAL);
                out.extend(v.to_le_bytes());
            }
            Value::Text(v) => put_bytes(&mut out, TAG_TEXT, v.as_bytes()),
            Value::Bytea(v) => put_bytes(&mut out, TAG_BYTEA, v),
            Value::Date(v) => {
                out.push(TAG_DATE);
                out.extend(v.to_le_bytes());
            }
            Value::Timestamp(v) => {
                out.push(TAG_TIMESTAMP);
                out.extend(v.to_le_bytes());
            }
            Value::Uuid(v) => {
                out.push(TAG_UUID);
                out.extend(v);
            }
        }
    }
    out
}

fn put_bytes(out: &mut Vec<u8>, tag: u8, bytes: &[u8]) {
    out.push(tag);
    let length = u32::try_from(bytes.len()).expect("cell size is bounded by cell_size_max");
    out.extend(length.to_le_bytes());
    out.extend(bytes);
}

/// Decodes rows of one table into a chosen subset of its columns.
pub struct RowDecoder {
    table: String,
    /// Indexed by column id: the output slot of that column, if projected.
    slot_by_column_id: Vec<Option<usize>>,
    /// Expected tag per column id, to verify stored types.
    tag_by_column_id: Vec<u8>,
    width: usize,
}

impl RowDecoder {
    /// `projection` lists column positions of `def` to produce, in output order.
    pub fn new(def: &TableDef, projection: &[usize]) -> Self {
        let id_count = usize::from(def.next_column_id);
        let mut slot_by_column_id = vec![None; id_count];
        let mut tag_by_column_id = vec![0; id_count];
        for column in &def.columns {
            tag_by_column_id[usize::from(column.id)] = tag_of(column.column_type);
        }
        for (slot, &position) in projection.iter().enumerate() {
            let id = usize::from(def.columns[position].id);
            slot_by_column_id[id] = Some(slot);
        }
        Self {
            table: def.name.clone(),
            slot_by_column_id,
            tag_by_column_id,
            width: projection.len(),
        }
    }

    pub fn decode(&self, bytes: &[u8]) -> Result<Vec<Value>, CorruptRow> {
        let mut row = vec![Value::Null; self.width];
        let mut reader = Reader { bytes, offset: 0 };
        let version = reader.u8().ok_or_else(|| self.corrupt("empty row"))?;
        if version != FORMAT_VERSION {
            return Err(self.corrupt(&format!("unknown row format version {version}")));
        }
        while !reader.at_end() {
            let id = reader
                .u16()
                .ok_or_else(|| self.corrupt("truncated column id"))?;
            let tag = reader.u8().ok_or_else(|| self.corrupt("truncated tag"))?;
            let value = self.read_value(&mut reader, tag)?;
            let id = usize::from(id);
            match self.tag_by_column_id.get(id) {
                // A column dropped since the row was written: skip its cell.
                Some(0) => continue,
                Some(expected) if *expected != tag => {
                    return Err(self.corrupt(&format!(
                        "column id {id} has tag {tag}, expected {expected}"
                    )));
                }
                Some(_) => {}
                None => return Err(self.corrupt(&format!("column id {id} was never allocated"))),
            }
            if let Some(Some(slot)) = self.slot_by_column_id.get(id) {
                row[*slot] = value;
            }
        }
        Ok(row)
    }

    fn read_value(&self, reader: &mut Reader<'_>, tag: u8) -> Result<Value, CorruptRow> {
        let truncated = || self.corrupt("truncated cell");
        Ok(match tag {
            TAG_BOOLEAN => Value::Boolean(reader.u8().ok_or_else(truncated)? != 0),
            TAG_INT => Value::Int(i32::from_le_bytes(reader.array().ok_or_else(truncated)?)),
            TAG_BIGINT => Value::BigInt(i64::from_le_bytes(reader.array().ok_or_else(truncated)?)),
            TAG_DOUBLE => Value::Double(f64::from_le_bytes(reader.array().ok_or_else(truncated)?)),
            TAG_DECIMAL => {
                Value::Decimal(i128::from_le_bytes(reader.array().ok_or_else(truncated)?))
            }
            TAG_DATE => Value::Date(i32::from_le_bytes(reader.array().ok_or_else(truncated)?)),
            TAG_TIMESTAMP => {
                Value::Timestamp(i64::from_le_bytes(reader.array().ok_or_else(truncated)?))
            }
            TAG_UUID => Value::Uuid(reader.array().ok_or_else(truncated)?),
            TAG_TEXT => {
                let bytes = reader.length_prefixed().ok_or_else(truncated)?;
                Value::Text(
                    String::from_utf8(bytes.to_vec())
                        .map_err(|_| self.corrupt("text is not UTF-8"))?,
                )
            }
            TAG_BYTEA => Value::Bytea(reader.length_prefixed().ok_or_else(truncated)?.to_vec()),
            other => return Err(self.corrupt(&format!("unknown tag {other}"))),
        })
    }

    fn corrupt(&self, detail: &str) -> CorruptRow {
        CorruptRow {
            table: self.table.clone(),
            detail: detail.to_string(),
        }
    }
}

fn tag_of(column_type: crate::catalog::ColumnType) -> u8 {
    use crate::catalog::ColumnType;
    match column_type {
        ColumnType::Boolean => TAG_BOOLEAN,
        ColumnType::Int => TAG_INT,
        ColumnType::BigInt => TAG_BIGINT,
        ColumnType::Double => TAG_DOUBLE,
        ColumnType::Decimal { .. } => TAG_DECIMAL,
        ColumnType::Text => TAG_TEXT,
        ColumnType::Bytea => TAG_BYTEA,
        ColumnType::Date => TAG_DATE,
        ColumnType::Timestamp => TAG_TIMESTAMP,
        ColumnType::Uuid => TAG_UUID,
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Reader<'a> {
    fn at_end(&self) -> bool {
        self.offset >= self.bytes.len()
    }

    fn take(&mut self, count: usize) -> Option<&'a [u8]> {
        let end = self.offset.checked_add(count)?;
        let slice = self.bytes.get(self.offset..end)?;
        self.offset = end;
        Some(slice)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u16(&mut self) -> Option<u16> {
        self.array().map(u16::from_le_bytes)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    fn length_prefixed(&mut self) -> Option<&'a [u8]> {
        let length = u32::from_le_bytes(self.array()?);
        self.take(usize::try_from(length).ok()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{ColumnDef, ColumnType, DataClass, Locality};

    fn table(columns: &[(u16, &str, ColumnType)]) -> TableDef {
        TableDef {
            id: 1,
            name: "t".into(),
            columns: columns
                .iter()
                .map(|(id, name, column_type)| ColumnDef {
                    id: *id,
                    name: (*name).into(),
                    column_type: *column_type,
                    nullable: *id != 0,
                    class: DataClass::Public,
                })
                .collect(),
            primary_key: vec![0],
            locality: Locality::Global,
            next_column_id: columns.iter().map(|c| c.0 + 1).max().unwrap_or(0),
            cdc: false,
            cache_ttl_ms: None,
        }
    }

    #[test]
    fn every_type_round_trips() {
        let def = table(&[
            (0, "a", ColumnType::BigInt),
            (1, "b", ColumnType::Boolean),
            (2, "c", ColumnType::Int),
            (3, "d", ColumnType::Double),
            (
                4,
                "e",
                ColumnType::Decimal {
                    precision: 18,
                    scale: 2,
                },
            ),
            (5, "f", ColumnType::Text),
            (6, "g", ColumnType::Bytea),
            (7, "h", ColumnType::Date),
            (8, "i", ColumnType::Timestamp),
            (9, "j", ColumnType::Uuid),
        ]);
        let row = vec![
            Value::BigInt(-4),
            Value::Boolean(true),
            Value::Int(17),
            Value::Double(2.5),
            Value::Decimal(-12345),
            Value::Text("Grüße\0x".into()),
            Value::Bytea(vec![0, 1, 255]),
            Value::Date(19000),
            Value::Timestamp(1_700_000_000_000_000),
            Value::Uuid([7; 16]),
        ];
        let bytes = encode_row(&def, &row);
        let all: Vec<usize> = (0..row.len()).collect();
        assert_eq!(RowDecoder::new(&def, &all).decode(&bytes), Ok(row.clone()));
        let projected = RowDecoder::new(&def, &[5, 0])
            .decode(&bytes)
            .expect("decodes");
        assert_eq!(projected, vec![row[5].clone(), row[0].clone()]);
    }

    #[test]
    fn added_column_reads_null_and_dropped_column_is_skipped() {
        let old = table(&[(0, "id", ColumnType::BigInt), (1, "gone", ColumnType::Text)]);
        let bytes = encode_row(&old, &[Value::BigInt(1), Value::Text("x".into())]);
        // Column 1 dropped, column 2 added: the old row still decodes.
        let mut new = table(&[(0, "id", ColumnType::BigInt), (2, "added", ColumnType::Int)]);
        new.next_column_id = 3;
        let decoded = RowDecoder::new(&new, &[0, 1])
            .decode(&bytes)
            .expect("decodes");
        assert_eq!(decoded, vec![Value::BigInt(1), Value::Null]);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let def = table(&[(0, "id", ColumnType::BigInt), (1, "t", ColumnType::Text)]);
        let decoder = RowDecoder::new(&def, &[0, 1]);
        let good = encode_row(&def, &[Value::BigInt(1), Value::Text("hello".into())]);
        for cut in 0..good.len() {
            let _ = decoder.decode(&good[..cut]);
        }
        let mut wrong_tag = good.clone();
        wrong_tag[3] = TAG_TEXT;
        assert!(decoder.decode(&wrong_tag).is_err());
        assert!(decoder.decode(&[9]).is_err());
        // A length prefix pointing past the end must not panic.
        let mut long = good;
        let text_length_offset = 1 + 2 + 1 + 8 + 2 + 1;
        long[text_length_offset..text_length_offset + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decoder.decode(&long).is_err());
    }
}
