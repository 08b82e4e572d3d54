//! Saga inputs and step results as they are stored in the saga log and carried between
//! nodes: the WIT values, in a serde form (externally tagged JSON, exact decimals).

use serde::{Deserialize, Serialize};

use crate::plugins::wit_values::{Decimal, Value};

/// One named value of a saga's input or a step's result.
pub type Fields = Vec<(String, Field)>;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    Null,
    Boolean(bool),
    Int(i32),
    Bigint(i64),
    Double(f64),
    /// Unscaled integer (decimal text) and scale.
    Decimal(String, i8),
    Text(String),
    Bytes(Vec<u8>),
    Date(i32),
    Timestamp(i64),
    Uuid(String),
}

/// SHA-256 of `fields` as `RunStepRequest.fields_json` carries them: how a participant
/// and the orchestrator compare a step's input without sending it again.
pub fn digest(fields: &Fields) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    Sha256::digest(serde_json::to_vec(fields).unwrap_or_default()).to_vec()
}

impl From<&Value> for Field {
    fn from(value: &Value) -> Self {
        match value {
            Value::Null => Field::Null,
            Value::Boolean(b) => Field::Boolean(*b),
            Value::Int(i) => Field::Int(*i),
            Value::Bigint(i) => Field::Bigint(*i),
            Value::Double(d) => Field::Double(*d),
            Value::Decimal(d) => Field::Decimal(d.unscaled.clone(), d.scale),
            Value::Text(t) => Field::Text(t.clone()),
            Value::Bytes(b) => Field::Bytes(b.clone()),
            Value::Date(d) => Field::Date(*d),
            Value::Timestamp(t) => Field::Timestamp(*t),
            Value::Uuid(u) => Field::Uuid(u.clone()),
        }
    }
}

impl From<&Field> for Value {
    fn from(field: &Field) -> Self {
        match field {
            Field::Null => Value::Null,
            Field::Boolean(b) => Value::Boolean(*b),
            Field::Int(i) => Value::Int(*i),
            Field::Bigint(i) => Value::Bigint(*i),
            Field::Double(d) => Value::Double(*d),
            Field::Decimal(unscaled, scale) => Value::Decimal(Decimal {
                unscaled: unscaled.clone(),
                scale: *scale,
            }),
            Field::Text(t) => Value::Text(t.clone()),
            Field::Bytes(b) => Value::Bytes(b.clone()),
            Field::Date(d) => Value::Date(*d),
            Field::Timestamp(t) => Value::Timestamp(*t),
            Field::Uuid(u) => Value::Uuid(u.clone()),
        }
    }
}

pub fn to_wit(fields: &Fields) -> Vec<(String, Value)> {
    fields
        .iter()
        .map(|(name, field)| (name.clone(), Value::from(field)))
        .collect()
}

pub fn from_wit(values: &[(String, Value)]) -> Fields {
    values
        .iter()
        .map(|(name, value)| (name.clone(), Field::from(value)))
        .collect()
}

/// The text of field `name`, if it is text.
pub fn text<'a>(fields: &'a Fields, name: &str) -> Option<&'a str> {
    fields.iter().find_map(|(n, f)| match f {
        Field::Text(t) if n == name => Some(t.as_str()),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip_through_json_exactly() {
        let fields: Fields = vec![
            ("amount".into(), Field::Decimal("1000".into(), 2)),
            ("from_account".into(), Field::Bigint(1001)),
            ("to_region".into(), Field::Text("eu-central".into())),
            ("note".into(), Field::Null),
        ];
        let json = serde_json::to_string(&fields).expect("encodes");
        let back: Fields = serde_json::from_str(&json).expect("decodes");
        assert_eq!(back, fields);
        assert_eq!(from_wit(&to_wit(&fields)), fields);
        assert_eq!(text(&fields, "to_region"), Some("eu-central"));
        assert_eq!(text(&fields, "from_account"), None);
    }
}
