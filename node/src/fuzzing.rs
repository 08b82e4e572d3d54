//! Entry points of the fuzz targets in `node/fuzz` (cargo fuzz, libFuzzer) and of the
//! replay of their committed corpus in `cargo test`.
//!
//! Each entry takes bytes as an outside party could present them (a client, a peer, a
//! broker, a file), runs one decoder over them, and checks what the decoder promises
//! about what it accepts. A panic is a finding: either the decoder crashed on hostile
//! input (the node must answer with an error and keep serving) or it accepted something
//! that breaks a property below. The targets are plain functions so that every input
//! that ever found a bug replays in the ordinary test run, without a nightly compiler.
//!
//! | target | decoder | input | property beyond "no panic" |
//! |---|---|---|---|
//! | `row_codec` | stored row (`storage::row_codec`) | byte 0 picks a projection, rest a row | canonical re-encoding, projection agrees, Arrow round trip |
//! | `row_key` | row key (`storage::key_codec`) | a key; or byte 0 = type, then two values | partition prefix, `prefix_end` bound, byte order = SQL order |
//! | `cdc_envelope` | Debezium-style CDC message (`cdc::envelope::parse`) | key JSON, `\n`, value JSON | re-encoding parses to the same change |
//! | `flight_parameters` | DoPut parameter batches (`flight::params`) | byte 0 = parameter count, then framed FlightData | rows and widths within the bounds |
//! | `peer_ipc` | a peer's Arrow IPC stream (`peers::decode_ipc`) | the stream | every array passes full validation |
//! | `node_config` | node config TOML (`config`) | UTF-8 text | validation never panics |
//! | `saga_fields` | saga fields JSON (`saga::fields`, `fields_json` from peers and admin) | JSON | JSON and WIT round trips are exact |

use arrow_flight::FlightData;
use prost::bytes::Bytes;
use tonic::Status;

use crate::catalog::{ColumnDef, ColumnType, DataClass, Locality, TableDef};
use crate::limits::STATEMENT_ROWS_MAX;
use crate::storage::{RowDecoder, Value, encode_row, key_codec};

/// Call once before fuzzing (the targets' `init`): a panic the node catches (see
/// `peers::ipc_input::guarded`) is its answer to bad input, not a finding; every other
/// panic still aborts the run.
pub fn init() {
    crate::peers::install_panic_hook();
}

/// Every target by name, as `node/fuzz/fuzz_targets/<name>.rs` and
/// `node/fuzz/corpus/<name>/` call it.
/// A fuzz target: arbitrary bytes in, a panic on a finding.
pub type Target = fn(&[u8]);

pub const TARGETS: &[(&str, Target)] = &[
    ("row_codec", row_codec),
    ("row_key", row_key),
    ("cdc_envelope", cdc_envelope),
    ("flight_parameters", flight_parameters),
    ("peer_ipc", peer_ipc),
    ("node_config", node_config),
    ("saga_fields", saga_fields),
];

/// A table with a column of every type and a dropped column id (10) between live ones,
/// as `ALTER TABLE ... DROP COLUMN` leaves it.
fn every_type_table() -> TableDef {
    let types = [
        ColumnType::BigInt,
        ColumnType::Boolean,
        ColumnType::Int,
        ColumnType::Double,
        ColumnType::Decimal {
            precision: 18,
            scale: 2,
        },
        ColumnType::Text,
        ColumnType::Bytea,
        ColumnType::Date,
        ColumnType::Timestamp,
        ColumnType::Uuid,
        ColumnType::Text,
    ];
    let ids = [0u16, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11];
    TableDef {
        id: 7,
        name: "every_type".into(),
        columns: ids
            .iter()
            .zip(types)
            .map(|(&id, column_type)| ColumnDef {
                id,
                name: format!("c{id}"),
                column_type,
                nullable: id != 0,
                class: if id == 5 {
                    DataClass::Pii
                } else {
                    DataClass::Public
                },
            })
            .collect(),
        primary_key: vec![0],
        locality: Locality::Global,
        next_column_id: 12,
        cdc: true,
        cache_ttl_ms: None,
    }
}

/// Values compared by their debug form, so that a NaN equals itself.
fn same(a: &[Value], b: &[Value]) -> bool {
    format!("{a:?}") == format!("{b:?}")
}

/// A stored row as read back from the database file.
pub fn row_codec(data: &[u8]) {
    let Some((&selector, row)) = data.split_first() else {
        return;
    };
    let def = every_type_table();
    let all: Vec<usize> = (0..def.columns.len()).collect();
    let Ok(values) = RowDecoder::new(&def, &all).decode(row) else {
        return;
    };
    assert_eq!(values.len(), def.columns.len(), "one value per column");
    for (value, column) in values.iter().zip(&def.columns) {
        assert!(
            value.fits(column.column_type),
            "decoded {value:?} into {column:?}"
        );
    }
    // What was accepted has one canonical encoding, and it decodes to the same row.
    let canonical = encode_row(&def, &values);
    let again = RowDecoder::new(&def, &all)
        .decode(&canonical)
        .expect("a canonical row decodes");
    assert!(same(&values, &again), "{values:?} became {again:?}");
    assert_eq!(encode_row(&def, &again), canonical);
    // A projection reads the same cells as the full row, in its own order.
    let projection: Vec<usize> = all
        .iter()
        .copied()
        .filter(|position| selector & (1 << (position % 8)) != 0)
        .rev()
        .collect();
    let projected = RowDecoder::new(&def, &projection)
        .decode(row)
        .expect("a row decoded whole decodes projected");
    let expected: Vec<Value> = projection.iter().map(|&p| values[p].clone()).collect();
    assert!(same(&projected, &expected), "{projected:?} vs {expected:?}");
    // What storage holds converts to Arrow and back unchanged (the read path). A row
    // that breaks its table's rules (NULL in a NOT NULL column, a decimal past its
    // precision) may be refused with an error, never mangled: the target's first find
    // was a row of no cells, whose NULL key the reader refuses.
    let breaks_a_rule = values.iter().zip(&def.columns).any(|(value, column)| {
        (value.is_null() && !column.nullable) || value.check_bounds(column.column_type).is_err()
    });
    let schema = crate::sql::arrow_convert::table_schema(&def);
    let converted = crate::sql::arrow_convert::rows_to_batch(
        &def,
        &all,
        &schema,
        std::slice::from_ref(&values),
    )
    .map_err(|e| e.to_string())
    .and_then(|batch| {
        crate::sql::arrow_convert::batch_to_rows(&def, &batch).map_err(|e| e.to_string())
    });
    match converted {
        Ok(rows) => assert!(same(&rows[0], &values), "{:?} vs {values:?}", rows[0]),
        Err(error) => assert!(
            breaks_a_rule,
            "a valid row failed the Arrow round trip: {error}"
        ),
    }
}

/// A row key (file), or two values whose key order must be their SQL order.
pub fn row_key(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode < 128 {
        if let Some(partition) = key_codec::partition_of(rest) {
            let table = u32::from_be_bytes(rest[..4].try_into().expect("four bytes"));
            let prefix = key_codec::partition_prefix(table, &partition);
            assert!(
                rest.starts_with(&prefix),
                "{rest:?} does not start with {prefix:?}"
            );
        }
        let cut = usize::from(mode).min(rest.len());
        let end = key_codec::prefix_end(&rest[..cut]);
        assert!(
            end.is_empty() || rest < &end[..],
            "{rest:?} is not below {end:?}"
        );
        return;
    }
    let half = rest.len() / 2;
    let (a, b) = (value_of(mode, &rest[..half]), value_of(mode, &rest[half..]));
    let (Some((a, sql_a)), Some((b, sql_b))) = (a, b) else {
        return;
    };
    let (key_a, key_b) = (
        key_codec::row_key(1, "eu-central", std::slice::from_ref(&a)),
        key_codec::row_key(1, "eu-central", std::slice::from_ref(&b)),
    );
    assert_eq!(
        Some(key_a.cmp(&key_b)),
        sql_a.partial_cmp(&sql_b),
        "key order of {a:?} and {b:?} is not their SQL order"
    );
    assert_eq!(
        key_codec::partition_of(&key_a).as_deref(),
        Some("eu-central")
    );
}

/// A value as SQL compares it: integers and decimals by value, doubles numerically,
/// text in PostgreSQL's "C" collation (bytes), bytea by bytes.
#[derive(Debug, PartialEq, PartialOrd)]
enum SqlOrder {
    Integer(i128),
    Double(f64),
    Bytes(Vec<u8>),
}

/// A value of the type `mode` selects, made from `bytes`, with how SQL orders it.
/// Doubles that are NaN or zero are skipped: SQL equates -0 and 0 and NaN payloads,
/// which keys keep apart.
fn value_of(mode: u8, bytes: &[u8]) -> Option<(Value, SqlOrder)> {
    fn array<const N: usize>(bytes: &[u8]) -> Option<[u8; N]> {
        bytes.get(..N)?.try_into().ok()
    }
    Some(match mode % 6 {
        0 => {
            let v = i64::from_le_bytes(array(bytes)?);
            (Value::BigInt(v), SqlOrder::Integer(v.into()))
        }
        1 => {
            let v = i32::from_le_bytes(array(bytes)?);
            (Value::Int(v), SqlOrder::Integer(v.into()))
        }
        2 => {
            let v = i128::from_le_bytes(array(bytes)?);
            (Value::Decimal(v), SqlOrder::Integer(v))
        }
        3 => {
            let v = f64::from_le_bytes(array(bytes)?);
            if v.is_nan() || v == 0.0 {
                return None;
            }
            (Value::Double(v), SqlOrder::Double(v))
        }
        4 => {
            let text = std::str::from_utf8(bytes).ok()?;
            (Value::Text(text.into()), SqlOrder::Bytes(bytes.to_vec()))
        }
        _ => (
            Value::Bytea(bytes.to_vec()),
            SqlOrder::Bytes(bytes.to_vec()),
        ),
    })
}

/// A CDC message from the broker or a peer: key JSON, a newline, value JSON.
pub fn cdc_envelope(data: &[u8]) {
    use crate::cdc::envelope::parse;
    let split = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
    let (key, value) = (&data[..split], data.get(split + 1..).unwrap_or_default());
    let Ok(change) = parse(key, value, "EU/v1/0") else {
        return;
    };
    let _ = crate::cdc::envelope::topic(&change.region, &change.table);
    let message = change.to_message();
    let again = parse(&message.key, &message.value, "EU/v1/0")
        .unwrap_or_else(|e| panic!("re-encoded {change:?} does not parse: {e}"));
    let message_again = again.to_message();
    assert_eq!(
        (message.key, message.value),
        (message_again.key, message_again.value),
        "the encoding of {change:?} is not stable"
    );
}

/// FlightData messages framed as `u16 LE header length | u32 LE body length | header |
/// body`, lengths clamped to what is left.
pub fn frames(data: &[u8]) -> Vec<FlightData> {
    let mut messages = Vec::new();
    let mut rest = data;
    while rest.len() >= 6 && messages.len() < 64 {
        let header = usize::from(u16::from_le_bytes([rest[0], rest[1]]));
        let body = u32::from_le_bytes([rest[2], rest[3], rest[4], rest[5]]) as usize;
        rest = &rest[6..];
        let header = header.min(rest.len());
        let (h, tail) = rest.split_at(header);
        let body = body.min(tail.len());
        let (b, tail) = tail.split_at(body);
        messages.push(FlightData {
            flight_descriptor: None,
            data_header: Bytes::copy_from_slice(h),
            app_metadata: Bytes::new(),
            data_body: Bytes::copy_from_slice(b),
        });
        rest = tail;
    }
    messages
}

/// The inverse of [`frames`], for seeds.
pub fn frame(messages: &[FlightData]) -> Vec<u8> {
    let mut out = Vec::new();
    for message in messages {
        let header = u16::try_from(message.data_header.len()).expect("a seed header fits");
        out.extend(header.to_le_bytes());
        out.extend((message.data_body.len() as u32).to_le_bytes());
        out.extend_from_slice(&message.data_header);
        out.extend_from_slice(&message.data_body);
    }
    out
}

/// The parameter batches of a DoPut for a statement of `data[0] % 8` parameters.
pub fn flight_parameters(data: &[u8]) {
    let Some((&count, rest)) = data.split_first() else {
        return;
    };
    let parameters = usize::from(count % 8);
    let messages = frames(rest).into_iter().map(Ok::<_, Status>);
    let read = crate::flight::read_parameter_messages(futures::stream::iter(messages), parameters);
    if let Ok(rows) = futures::executor::block_on(read) {
        assert!(rows.len() <= STATEMENT_ROWS_MAX);
        assert!(rows.iter().all(|row| row.len() == parameters));
    }
}

/// One Arrow IPC stream as a peer sends it (`ScanRows`, `RunMeshLeg`).
pub fn peer_ipc(data: &[u8]) {
    let Ok(batches) = crate::peers::decode_ipc(data) else {
        return;
    };
    for batch in &batches {
        for column in batch.columns() {
            column
                .to_data()
                .validate_full()
                .expect("the IPC reader validates what it returns");
        }
    }
}

/// A node's config file.
pub fn node_config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(config) = crate::config::NodeConfig::parse(text) {
        let _ = config.validate();
        let _ = config.listen.client_listeners();
    }
}

/// Saga fields as a peer (`RunStep.fields_json`) or an admin client sends them.
pub fn saga_fields(data: &[u8]) {
    use crate::saga::fields::{Fields, digest, from_wit, to_wit};
    let Ok(fields) = serde_json::from_slice::<Fields>(data) else {
        return;
    };
    let json = serde_json::to_vec(&fields).expect("decoded fields encode");
    let again: Fields = serde_json::from_slice(&json).expect("encoded fields decode");
    assert_eq!(format!("{fields:?}"), format!("{again:?}"));
    assert_eq!(digest(&fields), digest(&again));
    let through_wit = from_wit(&to_wit(&fields));
    assert_eq!(format!("{fields:?}"), format!("{through_wit:?}"));
}

/// Inputs a fuzz run starts from, by target: real encodings of each format. Written to
/// `node/fuzz/corpus/` by `seed_corpus_is_committed` (see `node/fuzz/README.md`).
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let mut seeds = Vec::new();
    let def = every_type_table();
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
        Value::Null,
    ];
    let mut stored = vec![0b1010_0101];
    stored.extend(encode_row(&def, &row));
    seeds.push(("row_codec", stored));
    let mut key = vec![6];
    key.extend(key_codec::row_key(
        7,
        "ap-southeast",
        &[Value::Text("a\0b".into())],
    ));
    seeds.push(("row_key", key));
    let mut pair = vec![128];
    pair.extend(1_000i64.to_le_bytes());
    pair.extend((-5i64).to_le_bytes());
    seeds.push(("row_key", pair));

    let change = crate::cdc::envelope::Change {
        region: "eu-central".into(),
        table: "customers".into(),
        seq: 42,
        op: crate::storage::ChangeOp::Update,
        commit_time_us: 1_700_000_000_123_456,
        key: vec![(out_column(&def, 0), Value::BigInt(-4))],
        columns: def.columns.iter().map(|c| out_column(&def, c.id)).collect(),
        before: None,
        after: Some(row.iter().cloned().map(Some).collect()),
        redactor: "EU/v1/0".into(),
    };
    let message = change.to_message();
    let mut envelope = message.key.clone();
    envelope.push(b'\n');
    envelope.extend_from_slice(&message.value);
    seeds.push(("cdc_envelope", envelope));

    let schema = crate::sql::arrow_convert::table_schema(&def);
    let all: Vec<usize> = (0..def.columns.len()).collect();
    let batch =
        crate::sql::arrow_convert::rows_to_batch(&def, &all, &schema, std::slice::from_ref(&row))
            .expect("the seed row converts");
    let parameters = batch
        .project(&[0, 2, 5])
        .expect("three columns of the seed row");
    let encoded = futures::executor::block_on(async {
        use futures::TryStreamExt;
        arrow_flight::encode::FlightDataEncoderBuilder::new()
            .build(futures::stream::iter([Ok(parameters)]))
            .try_collect::<Vec<_>>()
            .await
    })
    .expect("the seed batch encodes");
    let mut put = vec![3];
    put.extend(frame(&encoded));
    seeds.push(("flight_parameters", put));
    let ipc = crate::peers::encode_all(&schema, std::slice::from_ref(&batch))
        .expect("the seed batch encodes");
    seeds.push(("peer_ipc", ipc));

    let config = include_str!("../../examples/single-node/node.toml");
    seeds.push(("node_config", config.as_bytes().to_vec()));
    let fields = r#"[["amount",{"decimal":["1000",2]}],["from_account",{"bigint":1001}],
        ["to_region",{"text":"eu-central"}],["note","null"],["rate",{"double":0.5}],
        ["id",{"uuid":"0f0e0d0c-0b0a-0908-0706-050403020100"}],["raw",{"bytes":[0,255]}]]"#;
    seeds.push(("saga_fields", fields.as_bytes().to_vec()));
    seeds
}

fn out_column(def: &TableDef, id: u16) -> crate::cdc::envelope::OutColumn {
    let column = def
        .columns
        .iter()
        .find(|c| c.id == id)
        .expect("a live column");
    crate::cdc::envelope::OutColumn {
        name: column.name.clone(),
        class: column.class,
        column_type: column.column_type,
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;

    fn corpus_dir(target: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/corpus")
            .join(target)
    }

    /// Every committed input (seeds, and every input that once found a bug) replays
    /// without a panic.
    #[test]
    fn the_committed_corpus_replays() {
        let mut replayed = 0;
        for (target, run) in TARGETS {
            let dir = corpus_dir(target);
            let entries = std::fs::read_dir(&dir)
                .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                .collect::<Result<Vec<_>, _>>()
                .expect("corpus entries");
            assert!(!entries.is_empty(), "{} is empty", dir.display());
            for entry in entries {
                let input = std::fs::read(entry.path()).expect("a corpus file");
                eprintln!("replaying {}", entry.path().display());
                run(&input);
                replayed += 1;
            }
        }
        assert!(replayed >= TARGETS.len());
    }

    /// The seeds are real encodings that each decoder accepts, and they are committed:
    /// with `DOMICILE_WRITE_SEEDS=1` this test writes them instead.
    #[test]
    fn seed_corpus_is_committed() {
        let write = std::env::var_os("DOMICILE_WRITE_SEEDS").is_some();
        let mut counts = std::collections::HashMap::new();
        for (target, input) in seeds() {
            let n = counts.entry(target).or_insert(0);
            *n += 1;
            let path = corpus_dir(target).join(format!("seed-{n}"));
            if write {
                std::fs::create_dir_all(corpus_dir(target)).expect("corpus dir");
                std::fs::write(&path, &input).expect("write seed");
            }
            let committed = std::fs::read(&path).unwrap_or_else(|e| {
                panic!("{}: {e} (DOMICILE_WRITE_SEEDS=1 writes it)", path.display())
            });
            assert!(
                committed == input,
                "{} is stale (DOMICILE_WRITE_SEEDS=1 rewrites it)",
                path.display()
            );
        }
    }

    #[test]
    fn the_seeds_are_accepted_by_their_decoders() {
        let def = every_type_table();
        let all: Vec<usize> = (0..def.columns.len()).collect();
        for (target, input) in seeds() {
            let accepted = match target {
                "row_codec" => RowDecoder::new(&def, &all).decode(&input[1..]).is_ok(),
                "row_key" => input[0] >= 128 || key_codec::partition_of(&input[1..]).is_some(),
                "cdc_envelope" => {
                    let split = input.iter().position(|&b| b == b'\n').expect("newline");
                    crate::cdc::envelope::parse(&input[..split], &input[split + 1..], "x").is_ok()
                }
                "flight_parameters" => {
                    futures::executor::block_on(crate::flight::read_parameter_messages(
                        futures::stream::iter(frames(&input[1..]).into_iter().map(Ok)),
                        3,
                    ))
                    .is_ok_and(|rows| rows.len() == 1)
                }
                "peer_ipc" => crate::peers::decode_ipc(&input).is_ok_and(|b| b.len() == 1),
                "node_config" => {
                    crate::config::NodeConfig::parse(std::str::from_utf8(&input).expect("UTF-8"))
                        .is_ok()
                }
                "saga_fields" => serde_json::from_slice::<crate::saga::fields::Fields>(&input)
                    .is_ok_and(|f| f.len() == 7),
                other => panic!("no check for {other}"),
            };
            assert!(accepted, "the {target} seed is refused by its decoder");
            let run = TARGETS
                .iter()
                .find(|(name, _)| *name == target)
                .expect("a target")
                .1;
            run(&input);
        }
    }
}
