//! Change data capture in the database file: the outbox and the change stream.
//!
//! **Outbox** (`outbox`, change sequence number → JSON [`ChangeEvent`]): every write to a
//! table with `cdc = on` adds one event per changed row *in the commit that makes the
//! change*, with the row before and after. Sequence numbers come from a counter in
//! `meta` that never goes back, so they are the commit order of this node: no event of
//! an uncommitted statement exists, and every committed change has one.
//!
//! **Change stream** (`change_stream`, same sequence number → one encoded message):
//! what the CDC relay made of outbox events once the redactor and the residency guard
//! let them leave. The relay appends messages and removes the outbox events they came
//! from in one commit, so a crash neither loses nor duplicates an event between the
//! two. Transports (peers over gRPC, Kafka) read the stream by sequence number; it may
//! have gaps where the policy withheld an event.

use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, Table, TableDefinition};
use serde::{Deserialize, Serialize};

use super::error::StorageError;
use super::value::Value;

pub(super) const OUTBOX: TableDefinition<u64, &[u8]> = TableDefinition::new("outbox");
pub(super) const CHANGE_STREAM: TableDefinition<u64, &[u8]> = TableDefinition::new("change_stream");
/// Next change sequence number (starts at 1).
pub(super) const META_NEXT_CHANGE_SEQ: &str = "next_change_seq";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeOp {
    Create,
    Update,
    Delete,
}

/// One committed change of one row.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChangeEvent {
    /// This node's commit-order sequence number (the outbox key; not in the body).
    #[serde(skip)]
    pub seq: u64,
    pub table: String,
    pub op: ChangeOp,
    /// Primary key values, in key order.
    pub key: Vec<Value>,
    /// Every column, table order; `None` for a create.
    pub before: Option<Vec<Value>>,
    /// Every column, table order; `None` for a delete.
    pub after: Option<Vec<Value>>,
    /// When the change was staged for commit, microseconds since the Unix epoch.
    pub commit_time_us: i64,
    /// The W3C `traceparent` of the statement that made the change, if it was traced:
    /// its CDC messages carry it on. Random identifiers, never a value of the row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_parent: Option<String>,
}

pub(super) use crate::clock::now_unix_us;

/// Appends `events` to the outbox under the next sequence numbers; returns the last one.
pub(super) fn append_outbox(
    outbox: &mut Table<'_, u64, &'static [u8]>,
    meta: &mut Table<'_, &'static str, u64>,
    events: Vec<ChangeEvent>,
) -> Result<Option<u64>, StorageError> {
    if events.is_empty() {
        return Ok(None);
    }
    let mut next = meta
        .get(META_NEXT_CHANGE_SEQ)?
        .map_or(1, |guard| guard.value());
    for event in events {
        let body =
            serde_json::to_vec(&event).map_err(|e| StorageError::Transaction(e.to_string()))?;
        outbox.insert(next, body.as_slice())?;
        next += 1;
    }
    meta.insert(META_NEXT_CHANGE_SEQ, next)?;
    Ok(Some(next - 1))
}

fn decode_event(seq: u64, bytes: &[u8]) -> Result<ChangeEvent, StorageError> {
    let mut event: ChangeEvent = serde_json::from_slice(bytes)
        .map_err(|e| StorageError::Transaction(format!("corrupt outbox event {seq}: {e}")))?;
    event.seq = seq;
    Ok(event)
}

/// The oldest `limit` outbox events (those not yet relayed), in commit order.
pub(super) fn outbox_oldest(
    db: &redb::Database,
    limit: usize,
) -> Result<Vec<ChangeEvent>, StorageError> {
    let txn = db.begin_read()?;
    let outbox = txn.open_table(OUTBOX)?;
    let mut events = Vec::new();
    for entry in outbox.iter()?.take(limit) {
        let (seq, bytes) = entry?;
        events.push(decode_event(seq.value(), bytes.value())?);
    }
    Ok(events)
}

/// What the outbox holds: how many events, and the commit time of the oldest.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OutboxBacklog {
    pub events: u64,
    pub oldest_seq: Option<u64>,
    pub oldest_commit_time_us: Option<i64>,
}

pub(super) fn outbox_backlog(db: &redb::Database) -> Result<OutboxBacklog, StorageError> {
    let txn = db.begin_read()?;
    let outbox = txn.open_table(OUTBOX)?;
    let events = outbox.len()?;
    let oldest = match outbox.first()? {
        Some((seq, bytes)) => Some(decode_event(seq.value(), bytes.value())?),
        None => None,
    };
    Ok(OutboxBacklog {
        events,
        oldest_seq: oldest.as_ref().map(|e| e.seq),
        oldest_commit_time_us: oldest.map(|e| e.commit_time_us),
    })
}

/// Stream messages with sequence number above `after`, oldest first, at most `limit`.
pub(super) fn stream_after(
    db: &redb::Database,
    after: u64,
    limit: usize,
) -> Result<Vec<(u64, Vec<u8>)>, StorageError> {
    let txn = db.begin_read()?;
    let stream = txn.open_table(CHANGE_STREAM)?;
    let mut out = Vec::new();
    for entry in stream.range(after.saturating_add(1)..)?.take(limit) {
        let (seq, bytes) = entry?;
        out.push((seq.value(), bytes.value().to_vec()));
    }
    Ok(out)
}

/// The oldest and newest sequence numbers the stream still holds.
pub(super) fn stream_bounds(db: &redb::Database) -> Result<Option<(u64, u64)>, StorageError> {
    let txn = db.begin_read()?;
    let stream = txn.open_table(CHANGE_STREAM)?;
    let first = stream.first()?.map(|(k, _)| k.value());
    let last = stream.last()?.map(|(k, _)| k.value());
    Ok(first.zip(last))
}

/// The newest change sequence number handed out (0 before the first change).
pub(super) fn change_head(db: &redb::Database) -> Result<u64, StorageError> {
    let txn = db.begin_read()?;
    let meta = txn.open_table(super::store::META)?;
    Ok(meta
        .get(META_NEXT_CHANGE_SEQ)?
        .map_or(0, |guard| guard.value().saturating_sub(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_exactly() {
        let event = ChangeEvent {
            seq: 0,
            table: "accounts".into(),
            op: ChangeOp::Update,
            key: vec![Value::BigInt(7)],
            before: Some(vec![
                Value::BigInt(7),
                Value::Decimal(-170_141_183_460_469_231_731_687_303_715_884_105_728),
                Value::Uuid([9; 16]),
                Value::Null,
            ]),
            after: Some(vec![
                Value::BigInt(7),
                Value::Decimal(12_345),
                Value::Text("Ana".into()),
                Value::Double(0.1),
            ]),
            commit_time_us: 1,
            trace_parent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
        };
        let bytes = serde_json::to_vec(&event).expect("encodes");
        let back = decode_event(3, &bytes).expect("decodes");
        assert_eq!(back.seq, 3);
        assert_eq!(ChangeEvent { seq: 3, ..event }, back);
    }

    #[test]
    fn events_written_before_traces_existed_still_decode() {
        let old =
            br#"{"table":"t","op":"create","key":[],"before":null,"after":[],"commit_time_us":5}"#;
        let event = decode_event(1, old).expect("an outbox written by an earlier version");
        assert_eq!(event.trace_parent, None);
        assert_eq!(event.commit_time_us, 5);
        let untraced = serde_json::to_string(&ChangeEvent {
            trace_parent: None,
            ..event
        })
        .expect("encodes");
        assert!(!untraced.contains("trace_parent"), "{untraced}");
    }
}
