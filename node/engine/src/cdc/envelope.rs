//! The message a change becomes once it may leave its region: a Debezium-compatible
//! JSON envelope (Kafka Connect `JsonConverter` layout with schemas), a JSON key, and
//! headers. The same bytes go to Kafka and over the embedded gRPC transport.
//!
//! Value: `{"schema": {...}, "payload": {"before", "after", "op", "source", "ts_ms"}}`
//! with `op` `c` / `u` / `d` and `source` `{version, connector, name, region, table,
//! seq, ts_ms}` (`seq` is the source node's commit-order change number, `ts_ms` the
//! commit time). Key: `{"schema": {...}, "payload": {<primary key columns>}}`.
//! Headers: `domicile.event_id` (`<region>:<seq>`, unique across the mesh) and
//! `domicile.redactor` (`<jurisdiction>/v<version>/<sha256 prefix>`).
//!
//! Types follow Debezium's conventions: DATE `int32` named `io.debezium.time.Date`,
//! TIMESTAMP `int64` named `io.debezium.time.MicroTimestamp`, UUID `string` named
//! `io.debezium.data.Uuid`, DECIMAL as exact text (`decimal.handling.mode=string`)
//! named `domicile.Decimal` with `precision` / `scale` parameters, BYTEA base64. Every
//! field carries its data class as parameter `domicile.class`. Columns the residency
//! policy removed are absent from the schema and the payload.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value as Json, json};
use thiserror::Error;

use crate::catalog::{ColumnType, DataClass};
use crate::peers::proto::{ChangeMessage, MessageHeader};
use crate::storage::{ChangeOp, Value};

pub const CONNECTOR: &str = "domicile";
pub const HEADER_EVENT_ID: &str = "domicile.event_id";
pub const HEADER_REDACTOR: &str = "domicile.redactor";
/// The regions the source's guard decided the message for (`may-leave` for
/// replication, strictest wins), comma-separated; `*` from a node without peers.
/// A message goes only to a region named here: a region that joined later was not
/// asked about, so the message's history is not its to read.
pub const HEADER_RELEASED_TO: &str = "domicile.released_to";

/// The value of [`HEADER_RELEASED_TO`] for `destinations`.
pub fn released_to_header(destinations: &[String]) -> MessageHeader {
    MessageHeader {
        name: HEADER_RELEASED_TO.into(),
        value: destinations.join(",").into_bytes(),
    }
}

/// Whether `region` is among the regions `released_to` (a [`HEADER_RELEASED_TO`]
/// value) names; `None` (a message without the header) releases to no one.
pub fn is_released_to(released_to: Option<&str>, region: &str) -> bool {
    released_to.is_some_and(|regions| regions.split(',').any(|r| r == region || r == "*"))
}

/// The topic of a source region's table: `domicile.cdc.<region>.<table>`, with any
/// character Kafka does not allow in topic names (outside `[A-Za-z0-9._-]`) as `_`.
pub fn topic(region: &str, table: &str) -> String {
    let clean = |text: &str| -> String {
        text.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    format!("domicile.cdc.{}.{}", clean(region), clean(table))
}

/// A column as it leaves: name, data class and type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutColumn {
    pub name: String,
    pub class: DataClass,
    pub column_type: ColumnType,
}

/// One row as it leaves: a value per column of the message, `None` where the policy
/// removed the column for this row.
pub type OutRow = Vec<Option<Value>>;

/// Everything one message says.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    pub region: String,
    pub table: String,
    pub seq: u64,
    pub op: ChangeOp,
    pub commit_time_us: i64,
    /// Primary key columns and values, in key order.
    pub key: Vec<(OutColumn, Value)>,
    pub columns: Vec<OutColumn>,
    pub before: Option<OutRow>,
    pub after: Option<OutRow>,
    /// Which redactor version made it (`<jurisdiction>/v<version>/<sha256 prefix>`).
    pub redactor: String,
}

impl Change {
    pub fn event_id(&self) -> String {
        format!("{}:{}", self.region, self.seq)
    }

    /// The message: topic, key, value and headers.
    pub fn to_message(&self) -> ChangeMessage {
        let key_fields: Vec<Json> = self
            .key
            .iter()
            .map(|(column, _)| field_schema(column, false))
            .collect();
        let mut key_payload = Map::new();
        for (column, value) in &self.key {
            key_payload.insert(column.name.clone(), to_json(value, column.column_type));
        }
        let key = json!({
            "schema": {"type": "struct", "optional": false, "fields": key_fields,
                       "name": format!("{}.Key", topic(&self.region, &self.table))},
            "payload": key_payload,
        });
        let ts_ms = self.commit_time_us.div_euclid(1000);
        let value = json!({
            "schema": self.envelope_schema(),
            "payload": {
                "before": self.before.as_ref().map(|row| self.row_json(row)),
                "after": self.after.as_ref().map(|row| self.row_json(row)),
                "op": match self.op {
                    ChangeOp::Create => "c",
                    ChangeOp::Update => "u",
                    ChangeOp::Delete => "d",
                },
                "source": {
                    "version": env!("CARGO_PKG_VERSION"),
                    "connector": CONNECTOR,
                    "name": CONNECTOR,
                    "region": self.region,
                    "table": self.table,
                    "seq": self.seq,
                    "ts_ms": ts_ms,
                    "ts_us": self.commit_time_us,
                },
                "ts_ms": ts_ms,
            },
        });
        ChangeMessage {
            seq: self.seq,
            topic: topic(&self.region, &self.table),
            key: key.to_string().into_bytes(),
            value: value.to_string().into_bytes(),
            headers: vec![
                MessageHeader {
                    name: HEADER_EVENT_ID.into(),
                    value: self.event_id().into_bytes(),
                },
                MessageHeader {
                    name: HEADER_REDACTOR.into(),
                    value: self.redactor.clone().into_bytes(),
                },
            ],
            commit_time_us: self.commit_time_us,
        }
    }

    /// The columns present in at least one row of this message.
    fn present(&self) -> Vec<usize> {
        (0..self.columns.len())
            .filter(|&i| {
                [&self.before, &self.after]
                    .into_iter()
                    .flatten()
                    .any(|row| row.get(i).is_some_and(Option::is_some))
            })
            .collect()
    }

    fn row_json(&self, row: &OutRow) -> Json {
        let mut object = Map::new();
        for i in self.present() {
            let column = &self.columns[i];
            let value = row
                .get(i)
                .and_then(Option::as_ref)
                .map_or(Json::Null, |v| to_json(v, column.column_type));
            object.insert(column.name.clone(), value);
        }
        Json::Object(object)
    }

    fn envelope_schema(&self) -> Json {
        let name = topic(&self.region, &self.table);
        let fields: Vec<Json> = self
            .present()
            .into_iter()
            .map(|i| field_schema(&self.columns[i], true))
            .collect();
        let row = |field: &str| {
            json!({"type": "struct", "optional": true, "name": format!("{name}.Value"),
                   "field": field, "fields": fields})
        };
        json!({
            "type": "struct",
            "optional": false,
            "name": format!("{name}.Envelope"),
            "fields": [
                row("before"),
                row("after"),
                {"type": "string", "optional": false, "field": "op"},
                {"type": "struct", "optional": false, "field": "source",
                 "name": "domicile.Source", "fields": [
                    {"type": "string", "optional": false, "field": "version"},
                    {"type": "string", "optional": false, "field": "connector"},
                    {"type": "string", "optional": false, "field": "name"},
                    {"type": "string", "optional": false, "field": "region"},
                    {"type": "string", "optional": false, "field": "table"},
                    {"type": "int64", "optional": false, "field": "seq"},
                    {"type": "int64", "optional": false, "field": "ts_ms"},
                    {"type": "int64", "optional": false, "field": "ts_us"},
                 ]},
                {"type": "int64", "optional": true, "field": "ts_ms"},
            ],
        })
    }
}

fn field_schema(column: &OutColumn, optional: bool) -> Json {
    let mut parameters = Map::new();
    parameters.insert("domicile.class".into(), column.class.as_str().into());
    let (kind, name) = match column.column_type {
        ColumnType::Boolean => ("boolean", None),
        ColumnType::Int => ("int32", None),
        ColumnType::BigInt => ("int64", None),
        ColumnType::Double => ("double", None),
        ColumnType::Decimal { precision, scale } => {
            parameters.insert("precision".into(), precision.to_string().into());
            parameters.insert("scale".into(), scale.to_string().into());
            ("string", Some("domicile.Decimal"))
        }
        ColumnType::Text => ("string", None),
        ColumnType::Bytea => ("bytes", None),
        ColumnType::Date => ("int32", Some("io.debezium.time.Date")),
        ColumnType::Timestamp => ("int64", Some("io.debezium.time.MicroTimestamp")),
        ColumnType::Uuid => ("string", Some("io.debezium.data.Uuid")),
    };
    let mut field = json!({
        "type": kind,
        "optional": optional,
        "field": column.name,
        "parameters": parameters,
    });
    if let Some(name) = name {
        field["name"] = name.into();
    }
    field
}

/// `12345` at scale 2 → `"123.45"`, exactly.
pub fn decimal_text(unscaled: i128, scale: i8) -> String {
    if scale <= 0 {
        let factor = 10i128.checked_pow(u32::from(scale.unsigned_abs()));
        return match factor.and_then(|f| unscaled.checked_mul(f)) {
            Some(v) => v.to_string(),
            None => format!("{unscaled}e{}", -i32::from(scale)),
        };
    }
    let digits = unscaled.unsigned_abs().to_string();
    let scale = usize::from(scale.unsigned_abs());
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (int, frac) = padded.split_at(padded.len() - scale);
    let sign = if unscaled < 0 { "-" } else { "" };
    format!("{sign}{int}.{frac}")
}

/// `"123.45"` at scale 2 → `12345`; refuses more fractional digits than `scale`.
pub fn parse_decimal(text: &str, scale: i8) -> Option<i128> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let scale = usize::try_from(scale).ok()?;
    if frac.len() > scale
        || int.is_empty()
        || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let text = format!("{int}{frac:0<scale$}");
    let magnitude: i128 = text.parse().ok()?;
    Some(if negative { -magnitude } else { magnitude })
}

fn to_json(value: &Value, column_type: ColumnType) -> Json {
    match value {
        Value::Null => Json::Null,
        Value::Boolean(b) => (*b).into(),
        Value::Int(i) => (*i).into(),
        Value::BigInt(i) => (*i).into(),
        Value::Double(d) => serde_json::Number::from_f64(*d).map_or(Json::Null, Json::Number),
        Value::Decimal(unscaled) => {
            let scale = match column_type {
                ColumnType::Decimal { scale, .. } => scale,
                _ => 0,
            };
            decimal_text(*unscaled, scale).into()
        }
        Value::Text(t) => t.clone().into(),
        Value::Bytea(b) => BASE64.encode(b).into(),
        Value::Date(d) => (*d).into(),
        Value::Timestamp(t) => (*t).into(),
        Value::Uuid(u) => uuid::Uuid::from_bytes(*u).to_string().into(),
    }
}

/// Why a message could not be read. Texts name fields, never values.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum EnvelopeError {
    #[error("message is not JSON: {0}")]
    NotJson(String),
    #[error("message lacks {0}")]
    Missing(&'static str),
    #[error("field {field}: {detail}")]
    Field { field: String, detail: String },
}

/// A name twice in one schema lets one JSON value fill two columns, or a column be read
/// as two types (found by the `cdc_envelope` fuzz target); no producer writes one.
fn refuse_repeated_names<'a>(names: impl Iterator<Item = &'a str>) -> Result<(), EnvelopeError> {
    let mut seen = std::collections::HashSet::new();
    for name in names {
        if !seen.insert(name) {
            return Err(EnvelopeError::Field {
                field: name.to_string(),
                detail: "appears twice in the schema".into(),
            });
        }
    }
    Ok(())
}

fn schema_column(field: &Json) -> Result<OutColumn, EnvelopeError> {
    let name = field["field"]
        .as_str()
        .ok_or(EnvelopeError::Missing("schema field name"))?
        .to_string();
    let bad = |detail: &str| EnvelopeError::Field {
        field: name.clone(),
        detail: detail.into(),
    };
    let parameter = |key: &str| field["parameters"][key].as_str();
    let class = parameter("domicile.class")
        .and_then(DataClass::parse)
        .unwrap_or(DataClass::Public);
    let kind = field["type"].as_str().ok_or_else(|| bad("no type"))?;
    let column_type = match (kind, field["name"].as_str()) {
        ("boolean", _) => ColumnType::Boolean,
        ("int32", Some("io.debezium.time.Date")) => ColumnType::Date,
        ("int32", _) => ColumnType::Int,
        ("int64", Some("io.debezium.time.MicroTimestamp")) => ColumnType::Timestamp,
        ("int64", _) => ColumnType::BigInt,
        ("double" | "float64", _) => ColumnType::Double,
        ("string", Some("domicile.Decimal")) => {
            let number = |key| parameter(key).and_then(|v| v.parse::<i64>().ok());
            match (number("precision"), number("scale")) {
                (Some(precision), Some(scale)) => ColumnType::Decimal {
                    precision: u8::try_from(precision).map_err(|_| bad("bad precision"))?,
                    scale: i8::try_from(scale).map_err(|_| bad("bad scale"))?,
                },
                _ => return Err(bad("decimal without precision and scale")),
            }
        }
        ("string", Some("io.debezium.data.Uuid")) => ColumnType::Uuid,
        ("string", _) => ColumnType::Text,
        ("bytes", _) => ColumnType::Bytea,
        _ => return Err(bad("unsupported type")),
    };
    Ok(OutColumn {
        name,
        class,
        column_type,
    })
}

fn from_json(json: &Json, column: &OutColumn) -> Result<Value, EnvelopeError> {
    let bad = || EnvelopeError::Field {
        field: column.name.clone(),
        detail: format!("value does not fit {}", column.column_type),
    };
    if json.is_null() {
        return Ok(Value::Null);
    }
    let int = || json.as_i64().ok_or_else(bad);
    Ok(match column.column_type {
        ColumnType::Boolean => Value::Boolean(json.as_bool().ok_or_else(bad)?),
        ColumnType::Int => Value::Int(i32::try_from(int()?).map_err(|_| bad())?),
        ColumnType::BigInt => Value::BigInt(int()?),
        ColumnType::Double => Value::Double(json.as_f64().ok_or_else(bad)?),
        ColumnType::Decimal { scale, .. } => {
            Value::Decimal(parse_decimal(json.as_str().ok_or_else(bad)?, scale).ok_or_else(bad)?)
        }
        ColumnType::Text => Value::Text(json.as_str().ok_or_else(bad)?.to_string()),
        ColumnType::Bytea => Value::Bytea(
            BASE64
                .decode(json.as_str().ok_or_else(bad)?)
                .map_err(|_| bad())?,
        ),
        ColumnType::Date => Value::Date(i32::try_from(int()?).map_err(|_| bad())?),
        ColumnType::Timestamp => Value::Timestamp(int()?),
        ColumnType::Uuid => Value::Uuid(
            *uuid::Uuid::parse_str(json.as_str().ok_or_else(bad)?)
                .map_err(|_| bad())?
                .as_bytes(),
        ),
    })
}

fn struct_fields<'a>(schema: &'a Json, field: &str) -> Option<&'a Vec<Json>> {
    schema["fields"]
        .as_array()?
        .iter()
        .find(|f| f["field"] == field)?["fields"]
        .as_array()
}

/// Reads a message back (the consumer side).
pub fn parse(key: &[u8], value: &[u8], redactor: &str) -> Result<Change, EnvelopeError> {
    let key: Json =
        serde_json::from_slice(key).map_err(|e| EnvelopeError::NotJson(e.to_string()))?;
    let value: Json =
        serde_json::from_slice(value).map_err(|e| EnvelopeError::NotJson(e.to_string()))?;
    let payload = &value["payload"];
    let source = &payload["source"];
    let text = |json: &Json, what: &'static str| {
        json.as_str()
            .map(str::to_string)
            .ok_or(EnvelopeError::Missing(what))
    };
    let op = match payload["op"].as_str() {
        Some("c" | "r") => ChangeOp::Create,
        Some("u") => ChangeOp::Update,
        Some("d") => ChangeOp::Delete,
        _ => return Err(EnvelopeError::Missing("payload.op")),
    };
    let mut key_out = Vec::new();
    for field in key["schema"]["fields"]
        .as_array()
        .ok_or(EnvelopeError::Missing("key schema"))?
    {
        let column = schema_column(field)?;
        let value = from_json(&key["payload"][&column.name], &column)?;
        if value.is_null() {
            return Err(EnvelopeError::Field {
                field: column.name,
                detail: "key value is null".into(),
            });
        }
        key_out.push((column, value));
    }
    let columns = struct_fields(&value["schema"], "after")
        .or_else(|| struct_fields(&value["schema"], "before"))
        .ok_or(EnvelopeError::Missing("schema of before/after"))?
        .iter()
        .map(schema_column)
        .collect::<Result<Vec<_>, _>>()?;
    refuse_repeated_names(key_out.iter().map(|(column, _)| column.name.as_str()))?;
    refuse_repeated_names(columns.iter().map(|column| column.name.as_str()))?;
    let row = |json: &Json| -> Result<Option<OutRow>, EnvelopeError> {
        if json.is_null() {
            return Ok(None);
        }
        columns
            .iter()
            .map(|c| match json.get(&c.name) {
                Some(v) => from_json(v, c).map(Some),
                None => Ok(None),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    };
    Ok(Change {
        region: text(&source["region"], "source.region")?,
        table: text(&source["table"], "source.table")?,
        seq: source["seq"]
            .as_u64()
            .ok_or(EnvelopeError::Missing("source.seq"))?,
        op,
        commit_time_us: source["ts_us"]
            .as_i64()
            .or_else(|| source["ts_ms"].as_i64().map(|ms| ms * 1000))
            .ok_or(EnvelopeError::Missing("source.ts_ms"))?,
        key: key_out,
        before: row(&payload["before"])?,
        after: row(&payload["after"])?,
        columns,
        redactor: redactor.to_string(),
    })
}

/// The value of header `name`, as text.
pub fn header<'a>(message: &'a ChangeMessage, name: &str) -> Option<&'a str> {
    message
        .headers
        .iter()
        .find(|h| h.name == name)
        .and_then(|h| std::str::from_utf8(&h.value).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_is_released_only_to_the_regions_it_was_decided_for() {
        let header = released_to_header(&["us-east".into(), "ap-southeast".into()]);
        let value = std::str::from_utf8(&header.value).ok();
        assert!(is_released_to(value, "us-east"));
        assert!(is_released_to(value, "ap-southeast"));
        assert!(!is_released_to(value, "eu-central"));
        assert!(!is_released_to(value, "us-eas"), "whole names only");
        assert!(
            !is_released_to(None, "us-east"),
            "no header: released to no one"
        );
        assert!(
            is_released_to(Some("*"), "eu-central"),
            "a node without peers"
        );
    }

    fn column(name: &str, class: DataClass, column_type: ColumnType) -> OutColumn {
        OutColumn {
            name: name.into(),
            class,
            column_type,
        }
    }

    fn sample() -> Change {
        let id = column("id", DataClass::Public, ColumnType::BigInt);
        Change {
            region: "us-east".into(),
            table: "accounts".into(),
            seq: 42,
            op: ChangeOp::Update,
            commit_time_us: 1_700_000_000_123_456,
            key: vec![(id.clone(), Value::BigInt(1001))],
            columns: vec![
                id,
                column("email", DataClass::Pii, ColumnType::Text),
                column(
                    "limit",
                    DataClass::Public,
                    ColumnType::Decimal {
                        precision: 18,
                        scale: 2,
                    },
                ),
                column("opened", DataClass::Public, ColumnType::Date),
                column("at", DataClass::Public, ColumnType::Timestamp),
                column("ref", DataClass::Public, ColumnType::Uuid),
                column("blob", DataClass::Public, ColumnType::Bytea),
                column("gone", DataClass::Sensitive, ColumnType::Int),
            ],
            before: Some(vec![
                Some(Value::BigInt(1001)),
                Some(Value::Text("a***@example.com".into())),
                Some(Value::Decimal(-5)),
                Some(Value::Date(19_000)),
                Some(Value::Timestamp(-1)),
                Some(Value::Uuid([7; 16])),
                Some(Value::Bytea(vec![0, 255])),
                None,
            ]),
            after: Some(vec![
                Some(Value::BigInt(1001)),
                Some(Value::Null),
                Some(Value::Decimal(123_456_789)),
                Some(Value::Date(-3)),
                Some(Value::Timestamp(1_700_000_000_000_000)),
                Some(Value::Uuid([8; 16])),
                Some(Value::Bytea(vec![])),
                None,
            ]),
            redactor: "US/v1/abcd".into(),
        }
    }

    #[test]
    fn a_message_reads_back_as_written_without_removed_columns() {
        let change = sample();
        let message = change.to_message();
        assert_eq!(message.topic, "domicile.cdc.us-east.accounts");
        assert_eq!(header(&message, HEADER_EVENT_ID), Some("us-east:42"));
        let text = String::from_utf8(message.value.clone()).expect("utf-8");
        assert!(!text.contains("\"gone\""), "a removed column left: {text}");
        assert!(
            text.contains("\"1234567.89\""),
            "decimal as exact text: {text}"
        );
        let back = parse(&message.key, &message.value, "US/v1/abcd").expect("parses");
        // The removed column is not part of the message at all.
        let mut expected = change;
        expected.columns.pop();
        for row in [&mut expected.before, &mut expected.after]
            .into_iter()
            .flatten()
        {
            row.pop();
        }
        assert_eq!(back, expected);
    }

    #[test]
    fn a_column_named_twice_is_refused() {
        // The `cdc_envelope` fuzz target's find: `c2` as INT and again as DOUBLE.
        let input = include_bytes!("../../../fuzz/corpus/cdc_envelope/crash-a-column-named-twice");
        let split = input
            .iter()
            .position(|&b| b == b'\n')
            .expect("key, newline, value");
        let refused = parse(&input[..split], &input[split + 1..], "x").expect_err("refused");
        assert_eq!(refused.to_string(), "field c2: appears twice in the schema");
        let mut change = sample();
        change.key.push(change.key[0].clone());
        let message = change.to_message();
        assert!(
            parse(&message.key, &message.value, "x").is_err(),
            "twice in the key"
        );
    }

    #[test]
    fn debezium_fields_are_where_consumers_look() {
        let message = sample().to_message();
        let value: Json = serde_json::from_slice(&message.value).expect("json");
        let payload = &value["payload"];
        assert_eq!(payload["op"], "u");
        assert_eq!(payload["source"]["connector"], "domicile");
        assert_eq!(payload["source"]["region"], "us-east");
        assert_eq!(payload["source"]["seq"], 42);
        assert_eq!(payload["ts_ms"], 1_700_000_000_123i64);
        assert_eq!(payload["after"]["opened"], -3);
        let key: Json = serde_json::from_slice(&message.key).expect("json");
        assert_eq!(key["payload"]["id"], 1001);
    }

    #[test]
    fn decimals_are_exact_both_ways() {
        for (unscaled, scale, text) in [
            (12_345, 2, "123.45"),
            (-5, 2, "-0.05"),
            (0, 3, "0.000"),
            (7, 0, "7"),
            (i128::MAX, 10, "17014118346046923173168730371.5884105727"),
        ] {
            assert_eq!(decimal_text(unscaled, scale), text);
            assert_eq!(parse_decimal(text, scale), Some(unscaled));
        }
        assert_eq!(parse_decimal("1.234", 2), None);
        assert_eq!(parse_decimal("1.2", 2), Some(120));
        assert_eq!(parse_decimal("x", 2), None);
        assert_eq!(parse_decimal(".5", 2), None);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(matches!(
            parse(b"{", b"{}", ""),
            Err(EnvelopeError::NotJson(_))
        ));
        let message = sample().to_message();
        assert!(parse(&message.key, b"{\"payload\":{}}", "").is_err());
    }
}
