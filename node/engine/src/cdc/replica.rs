//! Replica tables: what other regions' change streams let through, applied here.
//!
//! A change of table `t` from region `r` lands in `global.t` (storage name
//! `global.t`, locality `Replica`, partition `r`): columns `source_region`, then the
//! message's key and columns as they arrive, then `source_seq`, `source_commit_time`
//! and `replicated_at`; primary key `(source_region, <key>)`. The table is created by
//! the first message and gains a column when a message brings a new one (a redactor
//! swapped at run time may add or drop columns; a dropped one reads NULL in later rows).
//!
//! Idempotence: each (source, table) has a watermark, the newest source sequence number
//! applied, kept in the same commit as the rows. A message at or below it is skipped,
//! so a redelivered stream (after a crash on either side) changes nothing. Per table a
//! source's sequence numbers only grow, in whatever transport order, because each
//! transport delivers one table of one source in commit order.

use std::sync::Arc;

use thiserror::Error;

use super::envelope::{Change, OutColumn};
use super::quarantine::{self, QuarantineRecord, Refusal};
use crate::catalog::REPLICA_PREFIX;
use crate::catalog::{ColumnDef, ColumnType, DataClass, Locality, TableDef};
use crate::limits::CDC_SEQ_JUMP_MAX;
use crate::storage::{CatalogRefusal, ChangeOp, StorageError, Store, Value, WriteContext};

pub const SOURCE_REGION: &str = "source_region";
pub const SOURCE_SEQ: &str = "source_seq";
pub const SOURCE_COMMIT_TIME: &str = "source_commit_time";
/// When this node applied the row's newest change (its staleness is `now - this`,
/// the replication lag of that change `replicated_at - source_commit_time`).
pub const REPLICATED_AT: &str = "replicated_at";

/// Why a batch could not be applied at all (a refused change is quarantined instead).
#[derive(Debug, Error)]
pub enum ReplicaError {
    #[error(transparent)]
    Storage(#[from] StorageError),
}

fn watermark_key(source: &str, table: &str) -> String {
    format!("cdc/replica/{source}/{table}")
}

fn offset_key(source: &str) -> String {
    format!("cdc/offset/{source}")
}

/// The newest source sequence number applied from `source`, over all its tables: what a
/// new message's sequence number may not jump far past.
fn source_head_key(source: &str) -> String {
    format!("cdc/replica_head/{source}")
}

fn decode_u64(bytes: &[u8]) -> u64 {
    bytes.try_into().map(u64::from_be_bytes).unwrap_or_default()
}

/// The newest stream sequence number of `source` applied here (0: none yet).
pub fn stream_offset(store: &Store, source: &str) -> Result<u64, StorageError> {
    let key = offset_key(source);
    Ok(store
        .state_with_prefix(&key)?
        .into_iter()
        .find(|(k, _)| *k == key)
        .map_or(0, |(_, v)| decode_u64(&v)))
}

/// What one batch did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    pub applied: u64,
    pub skipped: u64,
    /// Changes refused and recorded in the quarantine instead (see `quarantine`).
    pub quarantined: u64,
    /// Commit time at the source of the newest change applied (µs).
    pub newest_commit_time_us: Option<i64>,
}

/// Applies `changes` of `source` (in stream order) and records `offset` as the newest
/// stream position consumed, all in the caller's one commit. `position` says where the
/// changes came from, for the quarantine (`peer:<region>`, `kafka:<topic>`).
///
/// A change that may not be applied is quarantined, not applied, and the others go on:
/// one of another region than `source`; a sequence number outside `1..=i64::MAX` or more
/// than `CDC_SEQ_JUMP_MAX` past the newest applied from `source` (one forged message
/// would otherwise set a watermark that every later change falls below); a schema or
/// value the replica cannot hold (a decimal precision over 38, a name over the
/// identifier bound, a value past its decimal precision or the cell bound).
///
/// Errors: storage only.
pub fn apply(
    ctx: &mut WriteContext<'_>,
    source: &str,
    changes: &[Change],
    offset: u64,
    position: &str,
) -> Result<Applied, ReplicaError> {
    let mut outcome = Applied::default();
    let head_key = source_head_key(source);
    let mut head = ctx
        .get_state(&head_key)?
        .map_or(0, |bytes| decode_u64(&bytes));
    for change in changes {
        match apply_one(ctx, source, change, head) {
            Ok(true) => {
                outcome.applied += 1;
                outcome.newest_commit_time_us = Some(change.commit_time_us);
                head = head.max(change.seq);
            }
            Ok(false) => outcome.skipped += 1,
            Err(Refused::Storage(error)) => return Err(error.into()),
            Err(Refused::Quarantine(refusal)) => {
                outcome.quarantined += 1;
                quarantine::record(
                    ctx,
                    &QuarantineRecord {
                        at_us: crate::clock::now_unix_us(),
                        source: source.to_string(),
                        table: Some(change.table.clone()),
                        seq: Some(change.seq),
                        position: position.to_string(),
                        reason: refusal.to_string(),
                    },
                )?;
            }
        }
    }
    ctx.put_state(head_key, head.to_be_bytes().to_vec());
    let key = offset_key(source);
    let current = ctx.get_state(&key)?.map_or(0, |bytes| decode_u64(&bytes));
    ctx.put_state(key, current.max(offset).to_be_bytes().to_vec());
    Ok(outcome)
}

enum Refused {
    Storage(StorageError),
    Quarantine(Refusal),
}

impl From<StorageError> for Refused {
    fn from(error: StorageError) -> Self {
        Self::Storage(error)
    }
}

/// Checks a change's source and sequence number against what this node has applied.
pub fn check_sequence(
    source: &str,
    change: &Change,
    applied_through: u64,
    source_head: u64,
) -> Result<(), Refusal> {
    if change.region != source {
        return Err(Refusal::WrongStream {
            region: change.region.clone(),
            table: change.table.clone(),
            stream_region: source.to_string(),
            stream_table: change.table.clone(),
        });
    }
    if change.seq == 0 || i64::try_from(change.seq).is_err() {
        return Err(Refusal::SeqOutOfRange { seq: change.seq });
    }
    let reference = applied_through.max(source_head);
    if reference > 0 && change.seq - reference.min(change.seq) > CDC_SEQ_JUMP_MAX {
        return Err(Refusal::SeqJump {
            seq: change.seq,
            reference,
        });
    }
    Ok(())
}

/// Applies one change: `Ok(true)` applied, `Ok(false)` already applied (skipped).
fn apply_one(
    ctx: &mut WriteContext<'_>,
    source: &str,
    change: &Change,
    source_head: u64,
) -> Result<bool, Refused> {
    let watermark = watermark_key(source, &change.table);
    let applied_through = ctx
        .get_state(&watermark)?
        .map_or(0, |bytes| decode_u64(&bytes));
    check_sequence(source, change, applied_through, source_head).map_err(Refused::Quarantine)?;
    if change.seq <= applied_through {
        return Ok(false);
    }
    check_values(change).map_err(Refused::Quarantine)?;
    let def = replica_def(ctx, change)?;
    let mut key = vec![Value::Text(source.to_string())];
    key.extend(change.key.iter().map(|(_, value)| value.clone()));
    match change.op {
        ChangeOp::Create | ChangeOp::Update => {
            let row = replica_row(&def, source, change).map_err(Refused::Quarantine)?;
            ctx.put_row(&def, source, &row);
        }
        ChangeOp::Delete => ctx.delete_row(&def, source, &key),
    }
    ctx.put_state(watermark, change.seq.to_be_bytes().to_vec());
    Ok(true)
}

/// The shape and values of a change before anything is stored: no column may take the
/// name of a replica's own columns (`source_region` would overwrite the region the
/// stream proved), a create or update carries its row, and values respect their types
/// beyond what `Value::fits` checks (a decimal's digits, a cell's size).
fn check_values(change: &Change) -> Result<(), Refusal> {
    let reserved = [SOURCE_REGION, SOURCE_SEQ, SOURCE_COMMIT_TIME, REPLICATED_AT];
    let names = change
        .key
        .iter()
        .map(|(column, _)| column)
        .chain(&change.columns);
    for column in names {
        if reserved.contains(&column.name.as_str()) {
            return Err(Refusal::Invalid(format!(
                "column {} is reserved in replica tables",
                column.name
            )));
        }
    }
    if matches!(change.op, ChangeOp::Create | ChangeOp::Update) && change.after.is_none() {
        return Err(Refusal::Invalid(
            "a create or update without a row after it".into(),
        ));
    }
    let rows = change.before.iter().chain(&change.after);
    let values = change
        .key
        .iter()
        .map(|(column, value)| (column, Some(value)))
        .chain(rows.flat_map(|row| change.columns.iter().zip(row.iter().map(Option::as_ref))));
    for (column, value) in values {
        if let Some(value) = value
            && let Err(detail) = value.check_bounds(column.column_type)
        {
            return Err(Refusal::Invalid(format!(
                "column {}: {detail}",
                column.name
            )));
        }
    }
    Ok(())
}

fn column_def(id: u16, name: &str, column_type: ColumnType, class: DataClass) -> ColumnDef {
    ColumnDef {
        id,
        name: name.to_string(),
        column_type,
        nullable: true,
        class,
    }
}

/// The replica table for `change`, created or widened as the message needs.
fn replica_def(ctx: &mut WriteContext<'_>, change: &Change) -> Result<Arc<TableDef>, Refused> {
    let name = format!("{REPLICA_PREFIX}{}", change.table);
    let refused = |refusal: CatalogRefusal| {
        Refused::Quarantine(Refusal::Invalid(match refusal {
            CatalogRefusal::Invalid(detail) => detail,
            other => format!("{other:?}"),
        }))
    };
    let wanted: Vec<&OutColumn> = change
        .key
        .iter()
        .map(|(column, _)| column)
        .chain(&change.columns)
        .collect();
    match ctx.table_def(&name)? {
        Some(def) => {
            let missing: Vec<&&OutColumn> = wanted
                .iter()
                .filter(|c| def.column_index(&c.name).is_none())
                .collect();
            if missing.is_empty() {
                return Ok(def);
            }
            let mut widened = (*def).clone();
            for column in missing {
                let id = widened.next_column_id;
                widened.columns.push(column_def(
                    id,
                    &column.name,
                    column.column_type,
                    column.class,
                ));
                widened.next_column_id += 1;
            }
            ctx.replace_table(widened).map_err(refused)
        }
        None => {
            let key_len = change.key.len();
            let build = |id| {
                let mut columns = vec![ColumnDef {
                    nullable: false,
                    ..column_def(0, SOURCE_REGION, ColumnType::Text, DataClass::Public)
                }];
                for column in &wanted {
                    if columns.iter().any(|c| c.name == column.name) {
                        continue;
                    }
                    let position = columns.len();
                    columns.push(ColumnDef {
                        nullable: position > key_len,
                        ..column_def(
                            position as u16,
                            &column.name,
                            column.column_type,
                            column.class,
                        )
                    });
                }
                for (name, column_type) in [
                    (SOURCE_SEQ, ColumnType::BigInt),
                    (SOURCE_COMMIT_TIME, ColumnType::Timestamp),
                    (REPLICATED_AT, ColumnType::Timestamp),
                ] {
                    let position = columns.len();
                    columns.push(column_def(
                        position as u16,
                        name,
                        column_type,
                        DataClass::Public,
                    ));
                }
                let next_column_id = columns.len() as u16;
                Ok(TableDef {
                    id,
                    name: name.clone(),
                    columns,
                    primary_key: (0..=key_len).collect(),
                    locality: Locality::Replica,
                    next_column_id,
                    cdc: false,
                    cache_ttl_ms: None,
                })
            };
            ctx.create_table(build)?.map_err(refused)
        }
    }
}

/// The full replica row of a create or update. A column whose type differs from the
/// replica's (the source changed it) is stored as NULL rather than misread.
fn replica_row(def: &TableDef, source: &str, change: &Change) -> Result<Vec<Value>, Refusal> {
    let after = change
        .after
        .as_ref()
        .ok_or_else(|| Refusal::Invalid("a create or update without a row after it".into()))?;
    let mut row = vec![Value::Null; def.columns.len()];
    row[0] = Value::Text(source.to_string());
    let values = change
        .key
        .iter()
        .map(|(column, value)| (column, Some(value)))
        .chain(change.columns.iter().zip(after.iter().map(Option::as_ref)));
    for (column, value) in values {
        let (Some(index), Some(value)) = (def.column_index(&column.name), value) else {
            continue;
        };
        if def.columns[index].column_type == column.column_type && value.fits(column.column_type) {
            row[index] = value.clone();
        } else {
            tracing::warn!(
                table = %def.name,
                column = %column.name,
                "replicated value of a different type stored as NULL"
            );
        }
    }
    if let Some(index) = def.column_index(SOURCE_SEQ) {
        row[index] = Value::BigInt(i64::try_from(change.seq).unwrap_or(i64::MAX));
    }
    if let Some(index) = def.column_index(SOURCE_COMMIT_TIME) {
        row[index] = Value::Timestamp(change.commit_time_us);
    }
    if let Some(index) = def.column_index(REPLICATED_AT) {
        row[index] = Value::Timestamp(crate::clock::now_unix_us());
    }
    for &index in &def.primary_key {
        if row[index].is_null() {
            return Err(Refusal::Invalid(format!(
                "key column {} has no value",
                def.columns[index].name
            )));
        }
    }
    Ok(row)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cdc::quarantine;

    fn column(name: &str, column_type: ColumnType) -> OutColumn {
        OutColumn {
            name: name.into(),
            class: DataClass::Public,
            column_type,
        }
    }

    fn change(region: &str, seq: u64, amount_type: ColumnType, amount: Value) -> Change {
        let id = column("id", ColumnType::BigInt);
        Change {
            region: region.into(),
            table: "fees".into(),
            seq,
            op: ChangeOp::Create,
            commit_time_us: 1_700_000_000_000_000,
            key: vec![(
                id.clone(),
                Value::BigInt(i64::try_from(seq % 1000).unwrap_or(0)),
            )],
            columns: vec![id, column("amount", amount_type)],
            before: None,
            after: Some(vec![
                Some(Value::BigInt(i64::try_from(seq % 1000).unwrap_or(0))),
                Some(amount),
            ]),
            redactor: "test".into(),
        }
    }

    const DECIMAL: ColumnType = ColumnType::Decimal {
        precision: 10,
        scale: 2,
    };

    fn good(seq: u64) -> Change {
        change("us-east", seq, DECIMAL, Value::Decimal(1_250))
    }

    async fn apply_all(store: &Store, changes: Vec<Change>) -> Applied {
        store
            .write(move |ctx| apply(ctx, "us-east", &changes, 0, "test"))
            .await
            .expect("a refused change is not an error")
    }

    fn watermark(store: &Store) -> u64 {
        let key = watermark_key("us-east", "fees");
        store
            .state_with_prefix(&key)
            .expect("state")
            .into_iter()
            .find(|(k, _)| *k == key)
            .map_or(0, |(_, v)| decode_u64(&v))
    }

    fn open() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("node.redb")).expect("store");
        (dir, store)
    }

    /// Issue 21: one message with `seq = u64::MAX` used to move the watermark past every
    /// later change, stopping replication of the table for good.
    #[tokio::test]
    async fn forged_sequence_numbers_are_quarantined_and_replication_goes_on() {
        let (_dir, store) = open();
        let first = apply_all(&store, vec![good(5)]).await;
        assert_eq!(first.applied, 1);
        let attack = apply_all(
            &store,
            vec![
                good(u64::MAX),
                good(5 + CDC_SEQ_JUMP_MAX + 1),
                good(0),
                good(6),
            ],
        )
        .await;
        assert_eq!((attack.applied, attack.quarantined), (1, 3), "{attack:?}");
        assert_eq!(
            watermark(&store),
            6,
            "the watermark follows real changes only"
        );
        // The largest allowed jump is not refused (withheld events leave gaps).
        let far = apply_all(&store, vec![good(6 + CDC_SEQ_JUMP_MAX)]).await;
        assert_eq!(far.applied, 1);
        let (records, count) = quarantine::records(&store).expect("records");
        assert_eq!(count, 3);
        let reasons: Vec<&str> = records.iter().map(|r| r.reason.as_str()).collect();
        assert!(reasons[0].contains("outside 1..=i64::MAX"), "{reasons:?}");
        assert!(reasons[1].contains("cdc_seq_jump_max"), "{reasons:?}");
        assert!(reasons[2].contains("outside 1..=i64::MAX"), "{reasons:?}");
        assert!(records.iter().all(|r| r.table.as_deref() == Some("fees")));
    }

    /// Issue 21: a decimal whose precision no reader can decode made every read of the
    /// replica panic. Neither a bad type nor a value past its precision is stored.
    #[tokio::test]
    async fn values_and_types_no_reader_could_decode_are_quarantined() {
        let (_dir, store) = open();
        let bad_type = ColumnType::Decimal {
            precision: 200,
            scale: 2,
        };
        let outcome = apply_all(
            &store,
            vec![
                change("us-east", 1, bad_type, Value::Decimal(1)),
                change("us-east", 2, DECIMAL, Value::Decimal(10_i128.pow(10))),
                change(
                    "us-east",
                    3,
                    ColumnType::Text,
                    Value::Text("x".repeat(crate::limits::CELL_SIZE_MAX_BYTES + 1)),
                ),
            ],
        )
        .await;
        assert_eq!(
            (outcome.applied, outcome.quarantined),
            (0, 3),
            "{outcome:?}"
        );
        assert!(
            store.tables().iter().all(|t| t.name != "global.fees"),
            "no replica table was created from a refused change"
        );
        let (records, _) = quarantine::records(&store).expect("records");
        assert!(records[0].reason.contains("DECIMAL"), "{records:?}");
        assert!(
            records[1].reason.contains("more than 10 digits"),
            "{records:?}"
        );
        assert!(
            records[2].reason.contains("cell_size_max_bytes"),
            "{records:?}"
        );
        assert!(
            records.iter().all(|r| !r.reason.contains("xxxx")),
            "no value is quoted"
        );
        // The table still replicates once good changes arrive.
        assert_eq!(apply_all(&store, vec![good(4)]).await.applied, 1);
    }

    /// A column named like a replica's own columns would overwrite the region the
    /// stream proved (`source_region`) or the replication metadata.
    #[tokio::test]
    async fn a_column_that_would_spoof_the_source_region_is_quarantined() {
        let (_dir, store) = open();
        let mut spoof = good(1);
        spoof.columns.push(column(SOURCE_REGION, ColumnType::Text));
        if let Some(after) = &mut spoof.after {
            after.push(Some(Value::Text("eu-central".into())));
        }
        let outcome = apply_all(&store, vec![spoof, good(2)]).await;
        assert_eq!((outcome.applied, outcome.quarantined), (1, 1));
        let (records, _) = quarantine::records(&store).expect("records");
        assert!(records[0].reason.contains("reserved"), "{records:?}");
    }

    #[tokio::test]
    async fn a_change_of_another_region_on_this_stream_is_quarantined() {
        let (_dir, store) = open();
        let outcome = apply_all(
            &store,
            vec![change("eu-central", 1, DECIMAL, Value::Decimal(1)), good(2)],
        )
        .await;
        assert_eq!((outcome.applied, outcome.quarantined), (1, 1));
        let (records, _) = quarantine::records(&store).expect("records");
        assert!(records[0].reason.contains("eu-central"), "{records:?}");
    }

    #[tokio::test]
    async fn the_quarantine_keeps_only_the_newest_records() {
        let (_dir, store) = open();
        let total = crate::limits::CDC_QUARANTINE_RECORDS_MAX + 5;
        store
            .write(move |ctx| {
                for seq in 0..total {
                    quarantine::record(
                        ctx,
                        &quarantine::QuarantineRecord {
                            at_us: 0,
                            source: "us-east".into(),
                            table: None,
                            seq: Some(seq),
                            position: "test".into(),
                            reason: "test".into(),
                        },
                    )?;
                }
                Ok::<_, StorageError>(())
            })
            .await
            .expect("write");
        let (records, count) = quarantine::records(&store).expect("records");
        assert_eq!(count, total);
        assert_eq!(
            records.len() as u64,
            crate::limits::CDC_QUARANTINE_RECORDS_MAX
        );
        assert_eq!(
            records.first().and_then(|r| r.seq),
            Some(5),
            "oldest dropped"
        );
    }
}
