//! Order-preserving key encoding. A row's key is
//!
//! ```text
//! table_id (u32 BE) | partition (escaped region name) | primary key values (escaped, in order)
//! ```
//!
//! so all rows of one table sort together, and inside a table all rows of one home
//! region (the partition) sort together: a filter on the region column becomes a range,
//! and a point lookup on the primary key is one `get` per partition. Byte order of the
//! encoding equals the SQL order of the values, so primary-key ranges are key ranges.

use super::value::Value;

/// A variable-length field ends with these two bytes; a 0x00 inside the field is written
/// as 0x00 0xFF. The terminator sorts before any continuation, so "a" < "a\0" < "ab".
const ESCAPE: u8 = 0x00;
const ESCAPED_ZERO: u8 = 0xFF;
const TERMINATOR: u8 = 0x01;

/// Tags keep values of different types from colliding and put NULL first.
const TAG_NULL: u8 = 0x00;
const TAG_PRESENT: u8 = 0x01;

pub fn table_prefix(table_id: u32) -> Vec<u8> {
    table_id.to_be_bytes().to_vec()
}

pub fn partition_prefix(table_id: u32, partition: &str) -> Vec<u8> {
    let mut key = table_prefix(table_id);
    put_escaped(&mut key, partition.as_bytes());
    key
}

/// The key of a row: table, partition (home region), primary key, each ordered as
/// its values compare. Debug builds check that the partition reads back out of it.
pub fn row_key(table_id: u32, partition: &str, primary_key: &[Value]) -> Vec<u8> {
    let mut key = partition_prefix(table_id, partition);
    for value in primary_key {
        put_value(&mut key, value);
    }
    debug_assert_eq!(
        partition_of(&key).as_deref(),
        Some(partition),
        "row key of table {table_id} does not read back its partition"
    );
    key
}

/// The smallest key strictly greater than every key starting with `prefix`.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last != 0xFF {
            end.push(last + 1);
            return end;
        }
    }
    // All 0xFF: no upper bound exists; an empty vec means "unbounded" to callers.
    end
}

/// Reads the partition (home region) out of a row key of `table_id`.
pub fn partition_of(key: &[u8]) -> Option<String> {
    let rest = key.get(4..)?;
    let (bytes, _) = take_escaped(rest)?;
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
pub(crate) fn encode_value_for_compare(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    put_value(&mut out, value);
    out
}

fn put_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => out.push(TAG_NULL),
        Value::Boolean(v) => out.extend([TAG_PRESENT, u8::from(*v)]),
        Value::Int(v) => {
            out.push(TAG_PRESENT);
            out.extend(((*v as u32) ^ (1 << 31)).to_be_bytes());
        }
        Value::BigInt(v) | Value::Timestamp(v) => {
            out.push(TAG_PRESENT);
            out.extend(((*v as u64) ^ (1 << 63)).to_be_bytes());
        }
        Value::Date(v) => {
            out.push(TAG_PRESENT);
            out.extend(((*v as u32) ^ (1 << 31)).to_be_bytes());
        }
        Value::Decimal(v) => {
            out.push(TAG_PRESENT);
            out.extend(((*v as u128) ^ (1 << 127)).to_be_bytes());
        }
        Value::Double(v) => {
            out.push(TAG_PRESENT);
            // IEEE total order: flip all bits of negatives, only the sign bit of positives.
            let bits = v.to_bits();
            let ordered = if bits >> 63 == 1 {
                !bits
            } else {
                bits ^ (1 << 63)
            };
            out.extend(ordered.to_be_bytes());
        }
        Value::Text(v) => {
            out.push(TAG_PRESENT);
            put_escaped(out, v.as_bytes());
        }
        Value::Bytea(v) => {
            out.push(TAG_PRESENT);
            put_escaped(out, v);
        }
        Value::Uuid(v) => {
            out.push(TAG_PRESENT);
            out.extend(v);
        }
    }
}

fn put_escaped(out: &mut Vec<u8>, bytes: &[u8]) {
    for &byte in bytes {
        if byte == ESCAPE {
            out.extend([ESCAPE, ESCAPED_ZERO]);
        } else {
            out.push(byte);
        }
    }
    out.extend([ESCAPE, TERMINATOR]);
}

fn take_escaped(input: &[u8]) -> Option<(Vec<u8>, &[u8])> {
    let mut out = Vec::new();
    let mut index = 0;
    while index < input.len() {
        let byte = input[index];
        if byte == ESCAPE {
            match *input.get(index + 1)? {
                TERMINATOR => return Some((out, &input[index + 2..])),
                ESCAPED_ZERO => out.push(0),
                _ => return None,
            }
            index += 2;
        } else {
            out.push(byte);
            index += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ordered(values: &[Value]) {
        for pair in values.windows(2) {
            let (a, b) = (
                encode_value_for_compare(&pair[0]),
                encode_value_for_compare(&pair[1]),
            );
            assert!(a < b, "{:?} should sort before {:?}", pair[0], pair[1]);
        }
    }

    #[test]
    fn integers_sort_numerically_across_zero() {
        ordered(&[
            Value::Null,
            Value::BigInt(i64::MIN),
            Value::BigInt(-1),
            Value::BigInt(0),
            Value::BigInt(1),
            Value::BigInt(i64::MAX),
        ]);
        ordered(&[
            Value::Int(i32::MIN),
            Value::Int(-5),
            Value::Int(0),
            Value::Int(7),
        ]);
        ordered(&[
            Value::Decimal(-100),
            Value::Decimal(0),
            Value::Decimal(1),
            Value::Decimal(i128::MAX),
        ]);
    }

    #[test]
    fn doubles_sort_in_total_order() {
        ordered(&[
            Value::Double(f64::NEG_INFINITY),
            Value::Double(-2.5),
            Value::Double(-0.0),
            Value::Double(0.0),
            Value::Double(1e-300),
            Value::Double(3.0),
            Value::Double(f64::INFINITY),
        ]);
    }

    #[test]
    fn strings_with_zero_bytes_sort_and_round_trip_as_partitions() {
        ordered(&[
            Value::Text("a".into()),
            Value::Text("a\0".into()),
            Value::Text("a\0b".into()),
            Value::Text("ab".into()),
            Value::Text("b".into()),
        ]);
        let key = row_key(9, "eu\0central", &[Value::BigInt(3)]);
        assert_eq!(partition_of(&key).as_deref(), Some("eu\0central"));
    }

    #[test]
    fn partitions_are_contiguous_ranges() {
        let eu = partition_prefix(1, "eu-central");
        let inside = row_key(1, "eu-central", &[Value::Text("zzz".into())]);
        let other = row_key(1, "eu-centralx", &[Value::Text("a".into())]);
        let end = prefix_end(&eu);
        assert!(inside.as_slice() >= eu.as_slice() && inside < end);
        assert!(
            !(other.as_slice() >= eu.as_slice() && other < end),
            "eu-centralx leaked into eu-central"
        );
        assert!(row_key(1, "zz", &[]) < table_prefix(2));
    }

    #[test]
    fn prefix_end_handles_carry() {
        assert_eq!(prefix_end(&[1, 0xFF]), vec![2]);
        assert!(prefix_end(&[0xFF, 0xFF]).is_empty());
    }
}
