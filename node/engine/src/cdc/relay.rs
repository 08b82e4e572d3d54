//! The outbox relay: turns committed change events into messages that may leave.
//!
//! In commit order, a batch of outbox events at a time: each run of events of one table
//! goes through this jurisdiction's CDC redactor, then the residency guard decides what
//! of the redacted rows may go to the other regions (`may-leave` for replication, for
//! every peer region: the strictest answer wins). The messages are appended to the
//! change stream and the events removed from the outbox in one commit, with the audit
//! entries of the decisions. Nothing is published unredacted: with no active redactor,
//! or a redactor or policy that fails, the batch is *held* (the relay retries every
//! second; `system.cdc`, a metric and a log line say why) and nothing later overtakes
//! it, so per-key commit order holds.

use std::sync::Arc;
use std::time::Duration;

use prost::Message as _;
use thiserror::Error;
use tokio::sync::watch;

use super::envelope::{Change, OutColumn, OutRow};
use super::status::CdcStatus;
use super::stream_source::PRUNED_BELOW_KEY;
use crate::catalog::{ColumnDef, ColumnType, DataClass, TableDef};
use crate::limits::{CHANGE_STREAM_RETAINED_MAX, RELAY_BATCH_EVENTS_MAX};
use crate::plugins::redactor_types::{self, EventBatch, Operation};
use crate::plugins::residency_types::ColumnAction;
use crate::plugins::{Active, CallError, PluginRegistry, RedactorPlugin, wit_values};
use crate::residency::{AuditEntry, GuardError, ResidencyGuard, mask_text};
use crate::storage::{ChangeEvent, ChangeOp, StorageError, Store, Value};

/// How long a held relay waits before it asks again.
const HOLD_RETRY: Duration = Duration::from_secs(1);

/// Why events are held. Texts name tables, columns and jurisdictions, never values.
#[derive(Debug, Error)]
pub enum Hold {
    #[error(
        "no CDC redactor is active for jurisdiction {0}: change events are held until one \
         is uploaded (`domicile plugin upload --kind cdc-redactor`)"
    )]
    NoRedactor(String),
    #[error("the CDC redactor of {jurisdiction} failed: {error}; change events are held")]
    RedactorFailed {
        jurisdiction: String,
        error: CallError,
    },
    #[error("{0}; change events are held")]
    Policy(#[from] GuardError),
    #[error("table {table}: {detail}; change events are held")]
    Table { table: String, detail: String },
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
}

pub struct Relay {
    pub store: Store,
    pub plugins: Arc<PluginRegistry>,
    pub guard: Arc<ResidencyGuard>,
    pub region: String,
    pub jurisdiction: String,
    /// Regions the stream is published to (every peer); `*` for a node without peers.
    pub destinations: Vec<String>,
    pub status: Arc<CdcStatus>,
    /// The node-state key where an external transport (Kafka) keeps the newest stream
    /// position its broker acknowledged: the stream is never pruned past it, however
    /// long the broker is away (the stream grows instead; `system.cdc` says why).
    pub acknowledged_by: Option<&'static str>,
}

/// What one batch became.
struct Prepared {
    messages: Vec<(u64, Vec<u8>)>,
    audits: Vec<AuditEntry>,
    withheld: u64,
}

impl Relay {
    /// Relays until `shutdown` turns true.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut changes = self.store.watch_changes();
        let mut held: Option<String> = None;
        loop {
            if *shutdown.borrow() {
                return;
            }
            let outcome = self.relay_batch().await;
            let wait = match outcome {
                Ok(relayed) => {
                    if let Some(reason) = held.take() {
                        tracing::info!(previously = %reason, "CDC relay resumed");
                    }
                    self.status.update_relay(|s| s.held = None);
                    if relayed > 0 {
                        continue;
                    }
                    None
                }
                Err(hold) => {
                    let reason = crate::redact_text::shown(&hold);
                    if held.as_deref() != Some(reason.as_str()) {
                        tracing::warn!(reason = %reason, "CDC relay holding change events");
                    }
                    self.status.update_relay(|s| s.held = Some(reason.clone()));
                    held = Some(reason);
                    Some(HOLD_RETRY)
                }
            };
            tokio::select! {
                _ = shutdown.changed() => {}
                _ = changes.changed(), if wait.is_none() => {}
                () = tokio::time::sleep(wait.unwrap_or(HOLD_RETRY)) => {}
            }
        }
    }

    /// Relays the oldest outbox events; returns how many left the outbox.
    pub async fn relay_batch(&self) -> Result<usize, Hold> {
        let store = self.store.clone();
        let events =
            tokio::task::spawn_blocking(move || store.outbox_oldest(RELAY_BATCH_EVENTS_MAX))
                .await
                .map_err(|e| StorageError::Transaction(format!("outbox read failed: {e}")))??;
        let Some(last) = events.last().map(|e| e.seq) else {
            self.status.update_relay(|s| s.backlog = 0);
            return Ok(0);
        };
        // One span per batch, linked to the traces of the statements whose changes it
        // carries (each message continues its own statement's trace).
        let span = tracing::info_span!(
            "cdc relay",
            cdc.events = events.len(),
            cdc.through_seq = last,
            cdc.region = %self.region,
        );
        let mut linked = std::collections::HashSet::new();
        for parent in events.iter().filter_map(|e| e.trace_parent.as_deref()) {
            if linked.len() < crate::limits::TRACE_LINKS_MAX && linked.insert(parent) {
                crate::trace_context::link_to(&span, parent);
            }
        }
        tracing::Instrument::instrument(self.relay_events(events, last), span).await
    }

    async fn relay_events(&self, events: Vec<ChangeEvent>, last: u64) -> Result<usize, Hold> {
        let redactor = self
            .plugins
            .redactor(&self.jurisdiction)
            .ok_or_else(|| Hold::NoRedactor(self.jurisdiction.clone()))?;
        let mut prepared = Prepared {
            messages: Vec::with_capacity(events.len()),
            audits: Vec::new(),
            withheld: 0,
        };
        for run in events.chunk_by(|a, b| a.table == b.table) {
            self.prepare_run(run, &redactor, &mut prepared)?;
        }
        let count = events.len();
        let Prepared {
            messages,
            audits,
            withheld,
        } = prepared;
        let relayed = messages.len() as u64;
        let acknowledged_by = self.acknowledged_by;
        self.store
            .write(move |ctx| {
                ctx.relay_changes(messages, last);
                for audit in audits {
                    ctx.append_audit(audit.to_bytes());
                }
                let acknowledged = match acknowledged_by {
                    Some(key) => Some(
                        ctx.get_state(key)?
                            .and_then(|bytes| bytes.try_into().ok().map(u64::from_be_bytes))
                            .unwrap_or(0),
                    ),
                    None => None,
                };
                if let Some(below) = prune_floor(last, acknowledged) {
                    ctx.prune_stream_below(below);
                    ctx.put_state(PRUNED_BELOW_KEY.into(), below.to_be_bytes().to_vec());
                }
                Ok::<_, StorageError>(())
            })
            .await?;
        self.status.update_relay(|s| {
            s.relayed += relayed;
            s.withheld += withheld;
        });
        tracing::debug!(
            events = count,
            relayed,
            withheld,
            through = last,
            "CDC relayed"
        );
        Ok(count)
    }

    /// Redacts, decides and encodes one run of events of one table.
    fn prepare_run(
        &self,
        events: &[ChangeEvent],
        redactor: &Active<RedactorPlugin>,
        prepared: &mut Prepared,
    ) -> Result<(), Hold> {
        let table = events[0].table.clone();
        let Some(def) = self.store.table(&table) else {
            // The table was dropped after these changes committed: without its
            // definition nothing can be redacted, so nothing of them may leave.
            tracing::warn!(
                table = %table,
                events = events.len(),
                "CDC events of a dropped table discarded"
            );
            prepared.withheld += events.len() as u64;
            return Ok(());
        };
        let width = def.columns.len();
        if events.iter().any(|e| {
            [&e.before, &e.after]
                .into_iter()
                .flatten()
                .any(|r| r.len() != width)
        }) {
            return Err(Hold::Table {
                table,
                detail: "a change event does not match the table's current columns".into(),
            });
        }
        let batch = EventBatch {
            table: wit_values::table(&def),
            source_region: self.region.clone(),
            events: events.iter().map(|e| wit_event(&def, e)).collect(),
        };
        let redacted = redactor
            .plugin
            .redact(&batch)
            .map_err(|error| Hold::RedactorFailed {
                jurisdiction: self.jurisdiction.clone(),
                error,
            })?;
        let columns = out_columns(&def, &redacted);
        let failed = |detail: String| Hold::RedactorFailed {
            jurisdiction: self.jurisdiction.clone(),
            error: CallError::InvalidOutput(detail),
        };

        // Every row that would leave, for the guard: (event index, before?, row).
        let mut rows = Vec::new();
        let mut places = Vec::new();
        for (index, event) in redacted.events.iter().enumerate() {
            let Some(event) = event else { continue };
            if let Some(before) = &event.before {
                rows.push(before.clone());
                places.push((index, true));
            }
            if let Some(after) = &event.after {
                rows.push(after.clone());
                places.push((index, false));
            }
        }
        let governed = def.is_governed();
        let verdict = self.guard.check_replication(
            &def.name,
            governed,
            &redacted.columns,
            &rows,
            &self.destinations,
        )?;
        prepared.audits.extend(verdict.audit);

        let mut decided: Vec<(Option<OutRow>, Option<OutRow>, bool)> =
            vec![(None, None, false); events.len()];
        for ((index, is_before), (row, actions)) in
            places.into_iter().zip(rows.iter().zip(verdict.rows))
        {
            let slot = &mut decided[index];
            let Some(actions) = actions else {
                slot.2 = true;
                continue;
            };
            let out = released_row(&columns, row, &actions).map_err(failed)?;
            if is_before {
                slot.0 = Some(out);
            } else {
                slot.1 = Some(out);
            }
        }
        let redactor_id = format!(
            "{}/v{}/{}",
            redactor.record.jurisdiction,
            redactor.record.version,
            redactor
                .record
                .sha256
                .get(..12)
                .unwrap_or(&redactor.record.sha256)
        );
        for ((event, redacted_event), (before, after, withheld)) in
            events.iter().zip(&redacted.events).zip(decided)
        {
            if redacted_event.is_none() || withheld {
                prepared.withheld += 1;
                continue;
            }
            let change = Change {
                region: self.region.clone(),
                table: def.name.clone(),
                seq: event.seq,
                op: event.op,
                commit_time_us: event.commit_time_us,
                key: def
                    .primary_key
                    .iter()
                    .zip(&event.key)
                    .map(|(&i, value)| (out_column_of(&def.columns[i]), value.clone()))
                    .collect(),
                columns: columns.clone(),
                before,
                after,
                redactor: redactor_id.clone(),
            };
            let mut message = change.to_message();
            message
                .headers
                .push(crate::cdc::envelope::released_to_header(&self.destinations));
            // The committing statement's trace goes on with the message (W3C Trace
            // Context, as the Kafka header of the same name): a consumer's apply joins it.
            if let Some(trace_parent) = &event.trace_parent {
                message.headers.push(crate::peers::proto::MessageHeader {
                    name: crate::trace_context::TRACEPARENT.into(),
                    value: trace_parent.clone().into_bytes(),
                });
            }
            prepared.messages.push((event.seq, message.encode_to_vec()));
        }
        Ok(())
    }
}

/// Below which stream position messages may be removed once the stream holds `last`:
/// the newest `CHANGE_STREAM_RETAINED_MAX` stay, and none the transport has not
/// `acknowledged` (its newest acknowledged position) goes. `None`: remove nothing.
fn prune_floor(last: u64, acknowledged: Option<u64>) -> Option<u64> {
    let below = last.checked_sub(CHANGE_STREAM_RETAINED_MAX)?;
    let below = match acknowledged {
        Some(acknowledged) => below.min(acknowledged.saturating_add(1)),
        None => below,
    };
    (below > 1).then_some(below)
}

fn wit_event(def: &TableDef, event: &ChangeEvent) -> redactor_types::ChangeEvent {
    redactor_types::ChangeEvent {
        op: match event.op {
            ChangeOp::Create => Operation::Create,
            ChangeOp::Update => Operation::Update,
            ChangeOp::Delete => Operation::Delete,
        },
        key: def
            .primary_key
            .iter()
            .zip(&event.key)
            .map(|(&i, v)| wit_values::to_wit(v, def.columns[i].column_type))
            .collect(),
        before: event
            .before
            .as_ref()
            .map(|r| wit_values::row_to_wit(def, r)),
        after: event.after.as_ref().map(|r| wit_values::row_to_wit(def, r)),
    }
}

fn out_column_of(column: &ColumnDef) -> OutColumn {
    OutColumn {
        name: column.name.clone(),
        class: column.class,
        column_type: column.column_type,
    }
}

/// The columns of the redacted batch with their types: a column the table has keeps its
/// type; one the redactor made up takes the type of its first value.
fn out_columns(def: &TableDef, redacted: &redactor_types::RedactedBatch) -> Vec<OutColumn> {
    redacted
        .columns
        .iter()
        .enumerate()
        .map(|(index, column)| {
            let class = match column.class {
                wit_values::DataClass::Public => DataClass::Public,
                wit_values::DataClass::Sensitive => DataClass::Sensitive,
                wit_values::DataClass::Pii => DataClass::Pii,
            };
            let column_type = def
                .column_index(&column.name)
                .map(|i| def.columns[i].column_type)
                .unwrap_or_else(|| inferred_type(redacted, index));
            OutColumn {
                name: column.name.clone(),
                class,
                column_type,
            }
        })
        .collect()
}

fn inferred_type(redacted: &redactor_types::RedactedBatch, index: usize) -> ColumnType {
    use wit_values::Value as W;
    let first = redacted
        .events
        .iter()
        .flatten()
        .flat_map(|e| [&e.before, &e.after])
        .flatten()
        .filter_map(|row| row.get(index))
        .find(|v| !matches!(v, W::Null));
    match first {
        Some(W::Boolean(_)) => ColumnType::Boolean,
        Some(W::Int(_)) => ColumnType::Int,
        Some(W::Bigint(_)) => ColumnType::BigInt,
        Some(W::Double(_)) => ColumnType::Double,
        Some(W::Decimal(d)) => ColumnType::Decimal {
            precision: 38,
            scale: d.scale.max(0),
        },
        Some(W::Bytes(_)) => ColumnType::Bytea,
        Some(W::Date(_)) => ColumnType::Date,
        Some(W::Timestamp(_)) => ColumnType::Timestamp,
        Some(W::Uuid(_)) => ColumnType::Uuid,
        Some(W::Text(_)) | Some(W::Null) | None => ColumnType::Text,
    }
}

/// A redacted row as it leaves: each value converted to its column's type, then the
/// policy's action applied (removed columns are absent, masked text keeps its last four
/// characters, other masked values become NULL).
fn released_row(
    columns: &[OutColumn],
    row: &[wit_values::Value],
    actions: &[ColumnAction],
) -> Result<OutRow, String> {
    if row.len() != columns.len() {
        return Err(format!(
            "a redacted row of {} values for {} columns",
            row.len(),
            columns.len()
        ));
    }
    columns
        .iter()
        .zip(row)
        .zip(actions)
        .map(|((column, value), action)| {
            let def = ColumnDef {
                id: 0,
                name: column.name.clone(),
                column_type: column.column_type,
                nullable: true,
                class: column.class,
            };
            let value = wit_values::from_wit(value, &def)?;
            Ok(match action {
                ColumnAction::Keep => Some(value),
                ColumnAction::Remove => None,
                ColumnAction::Mask => Some(match value {
                    Value::Text(text) => Value::Text(mask_text(&text)),
                    _ => Value::Null,
                }),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const RETAINED: u64 = CHANGE_STREAM_RETAINED_MAX;

    #[test]
    fn the_stream_keeps_the_newest_messages() {
        assert_eq!(prune_floor(RETAINED, None), None);
        assert_eq!(prune_floor(RETAINED + 10, None), Some(10));
    }

    /// Issue 21: with Kafka away long enough, the relay pruned messages the publisher
    /// had never sent. Pruning now stops at what the broker acknowledged.
    #[test]
    fn nothing_the_transport_has_not_acknowledged_is_pruned() {
        let last = RETAINED * 3;
        assert_eq!(prune_floor(last, Some(0)), None, "broker never reached");
        assert_eq!(prune_floor(last, Some(500)), Some(501));
        assert_eq!(
            prune_floor(last, Some(last)),
            Some(last - RETAINED),
            "a current broker prunes like the embedded transport"
        );
    }
}
