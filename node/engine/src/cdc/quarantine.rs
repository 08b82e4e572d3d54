//! Change messages that arrived but may not be applied: kept as a record of where they
//! came from and why they were refused, never applied, never fatal to the consumer.
//!
//! A replica follows streams this node does not control: a Kafka topic anyone with
//! write access to the broker may write to, or a peer that may be buggy. One bad message
//! must neither stop replication (a poisoned watermark, a batch that fails for ever) nor
//! reach a replica table (a decimal no reader can decode). Records hold no payload (it
//! stays on the broker or the peer for forensics), only positions and the reason, whose
//! texts name fields and bounds, never values.
//!
//! Stored in node state under `cdc/quarantine/<20-digit counter>`, the newest
//! `CDC_QUARANTINE_RECORDS_MAX` kept; `cdc/quarantine_count` counts every record ever
//! written.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::limits::{CDC_MESSAGE_BYTES_MAX, CDC_QUARANTINE_RECORDS_MAX, CDC_SEQ_JUMP_MAX};
use crate::storage::{StorageError, Store, WriteContext};

const PREFIX: &str = "cdc/quarantine/";
const COUNT_KEY: &str = "cdc/quarantine_count";

/// Why a message was quarantined.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum Refusal {
    #[error("message is {bytes} bytes, more than cdc_message_bytes_max = {CDC_MESSAGE_BYTES_MAX}")]
    TooLarge { bytes: usize },
    #[error("topic {topic} is not domicile.cdc.<region>.<table> of a region in the mesh")]
    UnknownTopic { topic: String },
    #[error("unreadable envelope: {0}")]
    Unreadable(String),
    #[error(
        "the envelope names region {region} table {table}, the stream it came on carries \
         region {stream_region} table {stream_table}"
    )]
    WrongStream {
        region: String,
        table: String,
        stream_region: String,
        stream_table: String,
    },
    #[error("source sequence number {seq} is outside 1..=i64::MAX")]
    SeqOutOfRange { seq: u64 },
    #[error(
        "source sequence number {seq} is more than cdc_seq_jump_max = {CDC_SEQ_JUMP_MAX} past \
         {reference}, the newest applied from this source"
    )]
    SeqJump { seq: u64, reference: u64 },
    #[error("does not fit a replica: {0}")]
    Invalid(String),
}

/// One quarantined message, as `system.cdc_quarantine` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantineRecord {
    /// When it was quarantined, µs since the Unix epoch.
    pub at_us: i64,
    /// The source region the stream belongs to (the topic's, or the peer's).
    pub source: String,
    /// The table the message named, when it could be read.
    pub table: Option<String>,
    /// The source sequence number, when it could be read.
    pub seq: Option<u64>,
    /// Where it is: `kafka:<topic>/<partition>@<offset>` or `peer:<region>`.
    pub position: String,
    pub reason: String,
}

/// Records `record` in the caller's commit, dropping the oldest past the bound.
pub fn record(ctx: &mut WriteContext<'_>, record: &QuarantineRecord) -> Result<(), StorageError> {
    let count = ctx
        .get_state(COUNT_KEY)?
        .and_then(|bytes| bytes.try_into().ok().map(u64::from_be_bytes))
        .unwrap_or(0);
    let bytes = serde_json::to_vec(record)
        .map_err(|e| StorageError::Transaction(format!("quarantine record: {e}")))?;
    ctx.put_state(key(count), bytes);
    if let Some(expired) = count.checked_sub(CDC_QUARANTINE_RECORDS_MAX) {
        ctx.delete_state(key(expired));
    }
    ctx.put_state(COUNT_KEY.into(), (count + 1).to_be_bytes().to_vec());
    tracing::warn!(
        source = %record.source,
        position = %record.position,
        reason = %record.reason,
        "CDC message quarantined"
    );
    Ok(())
}

fn key(counter: u64) -> String {
    format!("{PREFIX}{counter:020}")
}

/// Every kept record, oldest first, and how many were ever written.
pub fn records(store: &Store) -> Result<(Vec<QuarantineRecord>, u64), StorageError> {
    let mut records = Vec::new();
    let mut count = 0;
    for (key, bytes) in store.state_with_prefix("cdc/quarantine")? {
        if key == COUNT_KEY {
            count = bytes.try_into().map(u64::from_be_bytes).unwrap_or(0);
        } else if key.starts_with(PREFIX)
            && let Ok(record) = serde_json::from_slice(&bytes)
        {
            records.push(record);
        }
    }
    Ok((records, count))
}
