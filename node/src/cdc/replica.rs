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
use crate::catalog::REPLICA_PREFIX;
use crate::catalog::{ColumnDef, ColumnType, DataClass, Locality, TableDef};
use crate::storage::{CatalogRefusal, ChangeOp, StorageError, Store, Value, WriteContext};

pub const SOURCE_REGION: &str = "source_region";
pub const SOURCE_SEQ: &str = "source_seq";
pub const SOURCE_COMMIT_TIME: &str = "source_commit_time";
/// When this node applied the row's newest change (its staleness is `now - this`,
/// the replication lag of that change `replicated_at - source_commit_time`).
pub const REPLICATED_AT: &str = "replicated_at";

#[derive(Debug, Error)]
pub enum ReplicaError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("replica {table}: {detail}")]
    Invalid { table: String, detail: String },
}

fn watermark_key(source: &str, table: &str) -> String {
    format!("cdc/replica/{source}/{table}")
}

fn offset_key(source: &str) -> String {
    format!("cdc/offset/{source}")
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
    /// Commit time at the source of the newest change applied (µs).
    pub newest_commit_time_us: Option<i64>,
}

/// Applies `changes` of `source` (in stream order) and records `offset` as the newest
/// stream position consumed, all in the caller's one commit.
pub fn apply(
    ctx: &mut WriteContext<'_>,
    source: &str,
    changes: &[Change],
    offset: u64,
) -> Result<Applied, ReplicaError> {
    let mut outcome = Applied::default();
    for change in changes {
        if change.region != source {
            return Err(ReplicaError::Invalid {
                table: change.table.clone(),
                detail: format!(
                    "a change of region {} arrived from {source}'s stream",
                    change.region
                ),
            });
        }
        let watermark = watermark_key(source, &change.table);
        let applied_through = ctx
            .get_state(&watermark)?
            .map_or(0, |bytes| decode_u64(&bytes));
        if change.seq <= applied_through {
            outcome.skipped += 1;
            continue;
        }
        let def = replica_def(ctx, change)?;
        let mut key = vec![Value::Text(source.to_string())];
        key.extend(change.key.iter().map(|(_, value)| value.clone()));
        match change.op {
            ChangeOp::Create | ChangeOp::Update => {
                let row = replica_row(&def, source, change)?;
                ctx.put_row(&def, source, &row);
            }
            ChangeOp::Delete => ctx.delete_row(&def, source, &key),
        }
        ctx.put_state(watermark, change.seq.to_be_bytes().to_vec());
        outcome.applied += 1;
        outcome.newest_commit_time_us = Some(change.commit_time_us);
    }
    let key = offset_key(source);
    let current = ctx.get_state(&key)?.map_or(0, |bytes| decode_u64(&bytes));
    ctx.put_state(key, current.max(offset).to_be_bytes().to_vec());
    Ok(outcome)
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
fn replica_def(ctx: &mut WriteContext<'_>, change: &Change) -> Result<Arc<TableDef>, ReplicaError> {
    let name = format!("{REPLICA_PREFIX}{}", change.table);
    let refused = |refusal: CatalogRefusal| ReplicaError::Invalid {
        table: name.clone(),
        detail: format!("{refusal:?}"),
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
fn replica_row(def: &TableDef, source: &str, change: &Change) -> Result<Vec<Value>, ReplicaError> {
    let after = change.after.as_ref().ok_or_else(|| ReplicaError::Invalid {
        table: def.name.clone(),
        detail: format!("change {} has no row after it", change.seq),
    })?;
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
            return Err(ReplicaError::Invalid {
                table: def.name.clone(),
                detail: format!("key column {} has no value", def.columns[index].name),
            });
        }
    }
    Ok(row)
}
