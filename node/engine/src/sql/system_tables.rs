//! `system.tables`, `system.columns`, `system.node`, `system.regions`, `system.cdc`,
//! `system.cdc_quarantine`, `system.plugins`, `system.audit`, `system.sagas`,
//! `system.cache`: the node's own state as SQL. Each is read fresh at planning time;
//! none reads user rows. The engine builds none of them: the composition root registers
//! each (`SystemTable`), handing it what it reads.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Int32Array, RecordBatch, StringArray, UInt32Array, UInt64Array,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::datasource::{MemTable, TableProvider};
use datafusion::error::{DataFusionError, Result};

use crate::catalog::Locality;
use crate::cdc::CdcStatus;
use crate::limits::SYSTEM_AUDIT_ROWS_MAX;
use crate::peers::PeerMonitor;
use crate::plugins::PluginRegistry;
use crate::residency::AuditEntry;
use crate::sql::NodeIdentity;
use crate::sql::need_to_know;
use crate::storage::Store;

/// Reads one system table's rows, fresh each time it is planned.
type ReadRows = Arc<dyn Fn() -> Result<RecordBatch> + Send + Sync>;

/// One table of schema `system`, as the composition root registers it with the engine
/// (`SqlEngineBuilder::system_table`): its name, how its rows are read, and whether a
/// reader sees them on a need-to-know basis (`system.audit`, `system.sagas`).
#[derive(Clone)]
pub struct SystemTable {
    name: &'static str,
    rule: Option<need_to_know::Rule>,
    rows: ReadRows,
}

impl std::fmt::Debug for SystemTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SystemTable")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl SystemTable {
    fn new(
        name: &'static str,
        rows: impl Fn() -> Result<RecordBatch> + Send + Sync + 'static,
    ) -> Self {
        Self {
            name,
            rule: None,
            rows: Arc::new(rows),
        }
    }

    fn need_to_know(
        name: &'static str,
        rule: need_to_know::Rule,
        rows: impl Fn() -> Result<RecordBatch> + Send + Sync + 'static,
    ) -> Self {
        Self {
            name,
            rule: Some(rule),
            rows: Arc::new(rows),
        }
    }

    /// Its name in schema `system`.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The table as DataFusion reads it, its rows read now; `region` is this node's
    /// (who counts as a local reader).
    pub(crate) fn provider(&self, region: &Arc<str>) -> Result<Arc<dyn TableProvider>> {
        let batch = (self.rows)()?;
        if let Some(rule) = self.rule {
            return Ok(Arc::new(need_to_know::NeedToKnowTable::new(
                rule,
                Arc::clone(region),
                batch,
            )));
        }
        Ok(Arc::new(MemTable::try_new(
            batch.schema(),
            vec![vec![batch]],
        )?))
    }

    /// `system.tables`, `system.columns`, `system.node`, `system.audit`,
    /// `system.cdc_quarantine` and `system.sagas`: what this node's storage holds.
    pub fn of_storage(store: &Store, identity: &Arc<NodeIdentity>) -> Vec<SystemTable> {
        let reads = |read: fn(&Store) -> Result<RecordBatch>| {
            let store = store.clone();
            move || read(&store)
        };
        let identity = Arc::clone(identity);
        let node_store = store.clone();
        vec![
            Self::new("tables", reads(tables)),
            Self::new("columns", reads(columns)),
            Self::new("node", move || node(&node_store, &identity)),
            Self::need_to_know("audit", need_to_know::Rule::Audit, reads(audit)),
            Self::new("cdc_quarantine", reads(cdc_quarantine)),
            Self::need_to_know("sagas", need_to_know::Rule::Sagas, reads(sagas)),
        ]
    }

    /// `system.plugins`: the loaded WASM plugins and their call counters.
    pub fn plugins(registry: Arc<PluginRegistry>) -> SystemTable {
        Self::new("plugins", move || plugins(&registry))
    }

    /// `system.regions`: one row per region of the mesh, this node's and each peer's:
    /// reachability, round-trip time, replica position and lag. (Named apart from
    /// `system.node`, which is this node's own process and storage.)
    pub fn regions(
        identity: Arc<NodeIdentity>,
        peers: Arc<PeerMonitor>,
        status: Arc<CdcStatus>,
    ) -> SystemTable {
        Self::new("regions", move || regions(&identity, &peers, &status))
    }

    /// `system.cdc`: the outbox and each replica stream's position.
    pub fn cdc(store: Store, status: Arc<CdcStatus>) -> SystemTable {
        Self::new("cdc", move || cdc(&store, &status))
    }

    /// `system.cache`: the node cache's counters (empty rows without a cache).
    pub fn cache(cache: Option<Arc<crate::cache::NodeCache>>) -> SystemTable {
        Self::new("cache", move || cache_rows(cache.as_deref()))
    }
}

fn batch(fields: Vec<Field>, columns: Vec<ArrayRef>) -> Result<RecordBatch> {
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?)
}

fn text(name: &str) -> Field {
    Field::new(name, DataType::Utf8, false)
}

/// An error text or reason as a table shows it: texts stored before they were withheld
/// at their source (saga records, audit entries) are withheld here.
fn shown(text: Option<String>) -> Option<String> {
    text.map(|text| crate::redact_text::shown(&text))
}

fn nullable_text(name: &str) -> Field {
    Field::new(name, DataType::Utf8, true)
}

fn tables(store: &Store) -> Result<RecordBatch> {
    let defs = store.tables();
    let locality = |l: &Locality| match l {
        Locality::RegionalByRow { .. } => "REGIONAL BY ROW",
        Locality::Regional { .. } => "REGIONAL",
        Locality::Global => "GLOBAL",
        Locality::Replica => "REPLICA",
    };
    batch(
        vec![
            text("table_name"),
            Field::new("table_id", DataType::UInt32, false),
            text("locality"),
            nullable_text("region_column"),
            nullable_text("home_region"),
            text("primary_key"),
            Field::new("column_count", DataType::UInt32, false),
            Field::new("cdc", DataType::Boolean, false),
        ],
        vec![
            Arc::new(StringArray::from_iter_values(
                defs.iter().map(|d| d.name.as_str()),
            )),
            Arc::new(UInt32Array::from_iter_values(defs.iter().map(|d| d.id))),
            Arc::new(StringArray::from_iter_values(
                defs.iter().map(|d| locality(&d.locality)),
            )),
            Arc::new(StringArray::from_iter(defs.iter().map(
                |d| match &d.locality {
                    Locality::RegionalByRow { region_column } => Some(region_column.as_str()),
                    _ => None,
                },
            ))),
            Arc::new(StringArray::from_iter(defs.iter().map(
                |d| match &d.locality {
                    Locality::Regional { region } => Some(region.as_str()),
                    _ => None,
                },
            ))),
            Arc::new(StringArray::from_iter_values(defs.iter().map(|d| {
                d.primary_key
                    .iter()
                    .map(|&i| d.columns[i].name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            }))),
            Arc::new(UInt32Array::from_iter_values(
                defs.iter().map(|d| d.columns.len() as u32),
            )),
            Arc::new(BooleanArray::from_iter(defs.iter().map(|d| Some(d.cdc)))),
        ],
    )
}

fn columns(store: &Store) -> Result<RecordBatch> {
    let defs = store.tables();
    let rows: Vec<_> = defs
        .iter()
        .flat_map(|d| d.columns.iter().enumerate().map(move |(i, c)| (d, i, c)))
        .collect();
    batch(
        vec![
            text("table_name"),
            text("column_name"),
            Field::new("ordinal", DataType::Int32, false),
            text("data_type"),
            Field::new("nullable", DataType::Boolean, false),
            text("class"),
            Field::new("primary_key", DataType::Boolean, false),
        ],
        vec![
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|(d, _, _)| d.name.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|(_, _, c)| c.name.as_str()),
            )),
            Arc::new(Int32Array::from_iter_values(
                rows.iter().map(|(_, i, _)| *i as i32 + 1),
            )),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|(_, _, c)| c.column_type.to_string()),
            )),
            Arc::new(BooleanArray::from(
                rows.iter().map(|(_, _, c)| c.nullable).collect::<Vec<_>>(),
            )),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|(_, _, c)| c.class.as_str()),
            )),
            Arc::new(BooleanArray::from(
                rows.iter()
                    .map(|(d, i, _)| d.is_primary_key_column(*i))
                    .collect::<Vec<_>>(),
            )),
        ],
    )
}

fn node(store: &Store, identity: &NodeIdentity) -> Result<RecordBatch> {
    batch(
        vec![
            text("region"),
            text("jurisdiction"),
            text("version"),
            Field::new("started_at_unix_ms", DataType::UInt64, false),
            Field::new("tables", DataType::UInt64, false),
            Field::new("rows_read", DataType::UInt64, false),
            Field::new("commits", DataType::UInt64, false),
            Field::new("statements_committed", DataType::UInt64, false),
            Field::new("writer_busy_us", DataType::UInt64, false),
            Field::new("commit_us", DataType::UInt64, false),
            Field::new("commit_waits", DataType::UInt64, false),
        ],
        vec![
            Arc::new(StringArray::from(vec![identity.region.to_string()])),
            Arc::new(StringArray::from(vec![identity.jurisdiction.clone()])),
            Arc::new(StringArray::from(vec![env!("CARGO_PKG_VERSION")])),
            Arc::new(UInt64Array::from(vec![identity.started_at_unix_ms])),
            Arc::new(UInt64Array::from(vec![store.tables().len() as u64])),
            Arc::new(UInt64Array::from(vec![store.rows_read()])),
            Arc::new(UInt64Array::from(vec![store.commits()])),
            Arc::new(UInt64Array::from(vec![store.statements_committed()])),
            Arc::new(UInt64Array::from(vec![store.writer_busy_us()])),
            Arc::new(UInt64Array::from(vec![store.commit_us()])),
            Arc::new(UInt64Array::from(vec![store.commit_waits()])),
        ],
    )
}

fn plugins(registry: &PluginRegistry) -> Result<RecordBatch> {
    let listed = registry
        .list()
        .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
    let stats = registry.active_stats();
    let stat = |record: &crate::plugins::PluginRecord| {
        stats
            .iter()
            .find(|(r, _)| r == record)
            .map(|(_, s)| *s)
            .unwrap_or_default()
    };
    batch(
        vec![
            text("jurisdiction"),
            text("kind"),
            Field::new("version", DataType::UInt64, false),
            Field::new("active", DataType::Boolean, false),
            text("sha256"),
            text("signer"),
            Field::new("size_bytes", DataType::UInt64, false),
            Field::new("uploaded_at_unix_ms", DataType::UInt64, false),
            Field::new("calls", DataType::UInt64, false),
            Field::new("errors", DataType::UInt64, false),
            Field::new("timeouts", DataType::UInt64, false),
            Field::new("call_us_total", DataType::UInt64, false),
            nullable_text("refused_reason"),
        ],
        vec![
            Arc::new(StringArray::from_iter_values(
                listed.iter().map(|(r, _)| r.jurisdiction.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(
                listed.iter().map(|(r, _)| r.kind.as_str()),
            )),
            Arc::new(UInt64Array::from_iter_values(
                listed.iter().map(|(r, _)| r.version),
            )),
            Arc::new(BooleanArray::from(
                listed.iter().map(|(_, active)| *active).collect::<Vec<_>>(),
            )),
            Arc::new(StringArray::from_iter_values(
                listed.iter().map(|(r, _)| r.sha256.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(
                listed.iter().map(|(r, _)| r.signer.as_str()),
            )),
            Arc::new(UInt64Array::from_iter_values(
                listed.iter().map(|(r, _)| r.size_bytes),
            )),
            Arc::new(UInt64Array::from_iter_values(
                listed.iter().map(|(r, _)| r.uploaded_at_unix_ms),
            )),
            Arc::new(UInt64Array::from_iter_values(
                listed.iter().map(|(r, _)| stat(r).calls),
            )),
            Arc::new(UInt64Array::from_iter_values(
                listed.iter().map(|(r, _)| stat(r).errors),
            )),
            Arc::new(UInt64Array::from_iter_values(
                listed.iter().map(|(r, _)| stat(r).timeouts),
            )),
            Arc::new(UInt64Array::from_iter_values(
                listed.iter().map(|(r, _)| stat(r).call_us_total),
            )),
            Arc::new(StringArray::from_iter(
                listed
                    .iter()
                    .map(|(r, _)| registry.refusal(r).map(|e| e.to_string())),
            )),
        ],
    )
}

/// The newest audit entries, decoded. An entry whose body does not decode is shown
/// with decision `undecodable` rather than hidden.
fn audit(store: &Store) -> Result<RecordBatch> {
    let records = store
        .audit_newest(SYSTEM_AUDIT_ROWS_MAX)
        .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
    let entries: Vec<Option<AuditEntry>> = records
        .iter()
        .map(|r| AuditEntry::from_bytes(&r.body))
        .collect();
    let field = |f: fn(&AuditEntry) -> String| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(
            entries
                .iter()
                .map(|e| e.as_ref().map(f).unwrap_or_default()),
        ))
    };
    let decision: ArrayRef = Arc::new(StringArray::from_iter_values(entries.iter().map(|e| {
        e.as_ref()
            .map_or("undecodable".to_string(), |e| e.decision.clone())
    })));
    batch(
        vec![
            Field::new("seq", DataType::UInt64, false),
            Field::new("time_unix_ms", DataType::UInt64, false),
            text("principal"),
            text("path"),
            text("table_name"),
            text("columns"),
            text("source_region"),
            text("destination_region"),
            text("decision"),
            nullable_text("reason"),
            Field::new("rows", DataType::UInt64, false),
            nullable_text("plugin_jurisdiction"),
            Field::new("plugin_version", DataType::UInt64, true),
            nullable_text("plugin_sha256"),
            text("hash"),
        ],
        vec![
            Arc::new(UInt64Array::from_iter_values(records.iter().map(|r| r.seq))),
            Arc::new(UInt64Array::from_iter_values(
                entries
                    .iter()
                    .map(|e| e.as_ref().map_or(0, |e| e.time_unix_ms)),
            )),
            field(|e| e.principal.clone()),
            field(|e| e.path.as_str().to_string()),
            field(|e| e.table.clone()),
            field(|e| e.columns.join(",")),
            field(|e| e.source_region.clone()),
            field(|e| e.destination_region.clone()),
            decision,
            Arc::new(StringArray::from(
                entries
                    .iter()
                    .map(|e| shown(e.as_ref().and_then(|e| e.reason.clone())))
                    .collect::<Vec<_>>(),
            )),
            Arc::new(UInt64Array::from_iter_values(
                entries.iter().map(|e| e.as_ref().map_or(0, |e| e.rows)),
            )),
            Arc::new(StringArray::from(plugin_field(&entries, |p| {
                p.jurisdiction.clone()
            }))),
            Arc::new(UInt64Array::from(plugin_field(&entries, |p| p.version))),
            Arc::new(StringArray::from(plugin_field(&entries, |p| {
                p.sha256.clone()
            }))),
            Arc::new(StringArray::from_iter_values(
                records.iter().map(|r| hex::encode(r.hash)),
            )),
        ],
    )
}

/// This node and every configured peer, as the peer monitor last saw them.
fn regions(identity: &NodeIdentity, peers: &PeerMonitor, cdc: &CdcStatus) -> Result<RecordBatch> {
    let peers = peers.statuses();
    let now = std::time::Instant::now();
    let replicas = cdc.replicas();
    let replica = |region: &str| replicas.get(region);
    let mut applied: Vec<Option<u64>> = vec![None];
    let mut lag: Vec<Option<u64>> = vec![None];
    let mut replica_errors: Vec<Option<String>> = vec![None];
    let mut regions = vec![identity.region.to_string()];
    let mut addresses = vec![None];
    let mut is_self = vec![true];
    let mut reachable = vec![true];
    let mut rtt_ms: Vec<Option<f64>> = vec![Some(0.0)];
    let mut errors = vec![None];
    let mut seen: Vec<Option<u64>> = vec![None];
    for peer in &peers {
        regions.push(peer.region.clone());
        addresses.push(Some(peer.address.clone()));
        is_self.push(false);
        reachable.push(peer.reachable);
        rtt_ms.push(peer.rtt_us.map(|m| m as f64 / 1000.0));
        errors.push(shown(peer.last_error.clone()));
        seen.push(peer.last_seen_unix_ms);
        let state = replica(&peer.region);
        applied.push(state.map(|s| s.applied_seq));
        lag.push(state.map(|s| s.lag_ms(now)).filter(|&l| l != u64::MAX));
        replica_errors.push(shown(state.and_then(|s| s.last_error.clone())));
    }
    batch(
        vec![
            text("region"),
            nullable_text("address"),
            Field::new("is_self", DataType::Boolean, false),
            Field::new("reachable", DataType::Boolean, false),
            Field::new("rtt_ms", DataType::Float64, true),
            nullable_text("last_error"),
            Field::new("last_seen_unix_ms", DataType::UInt64, true),
            Field::new("replica_applied_seq", DataType::UInt64, true),
            Field::new("replica_lag_ms", DataType::UInt64, true),
            nullable_text("replica_error"),
        ],
        vec![
            Arc::new(StringArray::from(regions)),
            Arc::new(StringArray::from(addresses)),
            Arc::new(BooleanArray::from(is_self)),
            Arc::new(BooleanArray::from(reachable)),
            Arc::new(arrow::array::Float64Array::from(rtt_ms)),
            Arc::new(StringArray::from(errors)),
            Arc::new(UInt64Array::from(seen)),
            Arc::new(UInt64Array::from(applied)),
            Arc::new(UInt64Array::from(lag)),
            Arc::new(StringArray::from(replica_errors)),
        ],
    )
}

/// The hybrid cache: per kind of entry, what it served and kept.
fn cache_rows(cache: Option<&crate::cache::NodeCache>) -> Result<RecordBatch> {
    let reports = cache.map(|c| c.report()).unwrap_or_default();
    let count = |name: &str| Field::new(name, DataType::UInt64, false);
    let column = |f: fn(&crate::cache::CacheReport) -> u64| -> ArrayRef {
        Arc::new(UInt64Array::from_iter_values(reports.iter().map(f)))
    };
    batch(
        vec![
            text("kind"),
            count("hits"),
            count("misses"),
            count("inserts"),
            count("refused"),
            count("expired"),
            count("evictions"),
            count("memory_used_bytes"),
            count("memory_capacity_bytes"),
            count("disk_capacity_bytes"),
        ],
        vec![
            Arc::new(StringArray::from_iter_values(
                reports.iter().map(|r| r.kind.as_str()),
            )),
            column(|r| r.hits),
            column(|r| r.misses),
            column(|r| r.inserts),
            column(|r| r.refused),
            column(|r| r.expired),
            column(|r| r.evictions),
            column(|r| r.memory_used_bytes),
            column(|r| r.memory_capacity_bytes),
            column(|r| r.disk_capacity_bytes),
        ],
    )
}

/// Columns of `system.sagas` (and of what `start_saga` answers).
fn sagas(store: &Store) -> Result<RecordBatch> {
    saga_batch(&crate::saga::record::all(store).map_err(|e| DataFusionError::External(e.into()))?)
}

pub(crate) fn saga_schema() -> SchemaRef {
    Arc::new(Schema::new(saga_columns()))
}

fn saga_columns() -> Vec<Field> {
    vec![
        text("id"),
        text("saga_type"),
        text("state"),
        nullable_text("current_step"),
        nullable_text("current_region"),
        Field::new("attempts", DataType::UInt32, false),
        nullable_text("last_error"),
        Field::new("age_ms", DataType::UInt64, false),
        Field::new("epoch", DataType::UInt64, false),
        text("idempotency_key"),
    ]
}

/// Sagas of this node: where each stands, for support.
pub(crate) fn saga_batch(sagas: &[crate::saga::SagaRecord]) -> Result<RecordBatch> {
    let now = crate::clock::now_unix_ms();
    let current = |s: &crate::saga::SagaRecord| s.current_step().cloned();
    batch(
        saga_columns(),
        vec![
            Arc::new(StringArray::from_iter_values(
                sagas.iter().map(|s| s.id.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(
                sagas.iter().map(|s| s.saga_type.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(
                sagas.iter().map(|s| s.state.as_str()),
            )),
            Arc::new(StringArray::from_iter(
                sagas.iter().map(|s| current(s).map(|c| c.name)),
            )),
            Arc::new(StringArray::from_iter(
                sagas.iter().map(|s| current(s).map(|c| c.region)),
            )),
            Arc::new(UInt32Array::from_iter_values(
                sagas.iter().map(|s| s.attempts()),
            )),
            Arc::new(StringArray::from_iter(sagas.iter().map(|s| {
                shown(
                    s.last_error
                        .clone()
                        .or_else(|| current(s).and_then(|c| c.last_error)),
                )
            }))),
            Arc::new(UInt64Array::from_iter_values(
                sagas.iter().map(|s| now.saturating_sub(s.created_unix_ms)),
            )),
            Arc::new(UInt64Array::from_iter_values(sagas.iter().map(|s| s.epoch))),
            Arc::new(StringArray::from_iter_values(
                sagas.iter().map(|s| s.idempotency_key.as_str()),
            )),
        ],
    )
}

/// The CDC relay of this node: what waits in the outbox, what was published or
/// withheld, and why events are held, if they are.
fn cdc(store: &Store, status: &CdcStatus) -> Result<RecordBatch> {
    let backlog = store
        .outbox_backlog()
        .map_err(|e| DataFusionError::External(e.into()))?;
    let stream = store
        .stream_bounds()
        .map_err(|e| DataFusionError::External(e.into()))?;
    let relay = status.relay();
    let (quarantine, quarantined) =
        crate::cdc::quarantine::records(store).map_err(|e| DataFusionError::External(e.into()))?;
    batch(
        vec![
            Field::new("outbox_events", DataType::UInt64, false),
            Field::new("oldest_unrelayed_age_ms", DataType::UInt64, true),
            Field::new("relayed_events", DataType::UInt64, false),
            Field::new("withheld_events", DataType::UInt64, false),
            Field::new("stream_first_seq", DataType::UInt64, true),
            Field::new("stream_last_seq", DataType::UInt64, true),
            nullable_text("held_reason"),
            Field::new("kafka_published", DataType::UInt64, false),
            nullable_text("transport_error"),
            Field::new("quarantined_messages", DataType::UInt64, false),
            nullable_text("last_quarantine_reason"),
        ],
        vec![
            Arc::new(UInt64Array::from(vec![backlog.events])),
            Arc::new(UInt64Array::from(vec![
                backlog
                    .oldest_commit_time_us
                    .map(crate::clock::ms_since_unix_us),
            ])),
            Arc::new(UInt64Array::from(vec![relay.relayed])),
            Arc::new(UInt64Array::from(vec![relay.withheld])),
            Arc::new(UInt64Array::from(vec![stream.map(|(first, _)| first)])),
            Arc::new(UInt64Array::from(vec![stream.map(|(_, last)| last)])),
            Arc::new(StringArray::from(vec![shown(relay.held)])),
            Arc::new(UInt64Array::from(vec![relay.published])),
            Arc::new(StringArray::from(vec![shown(relay.transport_error)])),
            Arc::new(UInt64Array::from(vec![quarantined])),
            Arc::new(StringArray::from(vec![shown(
                quarantine.last().map(|r| r.reason.clone()),
            )])),
        ],
    )
}

/// The change messages refused by this node's replica consumers, oldest first (the
/// newest `CDC_QUARANTINE_RECORDS_MAX`). Reasons name fields and bounds, not values.
fn cdc_quarantine(store: &Store) -> Result<RecordBatch> {
    let (records, _) =
        crate::cdc::quarantine::records(store).map_err(|e| DataFusionError::External(e.into()))?;
    batch(
        vec![
            Field::new(
                "quarantined_at",
                DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, None),
                false,
            ),
            text("source_region"),
            nullable_text("table_name"),
            Field::new("source_seq", DataType::UInt64, true),
            text("position"),
            text("reason"),
        ],
        vec![
            Arc::new(arrow::array::TimestampMicrosecondArray::from_iter_values(
                records.iter().map(|r| r.at_us),
            )),
            Arc::new(StringArray::from_iter_values(
                records.iter().map(|r| r.source.as_str()),
            )),
            Arc::new(StringArray::from_iter(
                records.iter().map(|r| r.table.as_deref()),
            )),
            Arc::new(UInt64Array::from_iter(records.iter().map(|r| r.seq))),
            Arc::new(StringArray::from_iter_values(
                records.iter().map(|r| r.position.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(
                records
                    .iter()
                    .map(|r| shown(Some(r.reason.clone())).unwrap_or_default()),
            )),
        ],
    )
}

/// A field of each entry's deciding policy; NULL where none decided.
fn plugin_field<T>(
    entries: &[Option<AuditEntry>],
    field: impl Fn(&crate::residency::PluginRef) -> T,
) -> Vec<Option<T>> {
    entries
        .iter()
        .map(|e| e.as_ref().and_then(|e| e.plugin.as_ref()).map(&field))
        .collect()
}
