//! Prometheus metrics: one registry per node, served as text on `/metrics`.

mod server;

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Metric, Registry};

pub use server::{MetricsState, serve_metrics};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatementLabels {
    kind: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabels {
    listener: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerReasonLabels {
    listener: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginLabels {
    jurisdiction: String,
    kind: String,
    version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcLabels {
    method: &'static str,
    code: String,
}

pub struct Metrics {
    registry: Registry,
    statements: Family<StatementLabels, Counter>,
    statement_seconds: Family<KindLabels, Histogram>,
    rpcs: Family<RpcLabels, Counter>,
    storage_commits: Gauge,
    storage_statements_committed: Gauge,
    storage_rows_read: Gauge,
    storage_writer_busy_us: Gauge,
    storage_commit_us: Gauge,
    storage_commit_waits: Gauge,
    plugin_calls: Family<PluginLabels, Gauge>,
    plugin_errors: Family<PluginLabels, Gauge>,
    plugin_timeouts: Family<PluginLabels, Gauge>,
    plugin_call_micros: Family<PluginLabels, Gauge>,
    login_refusals: Family<ReasonLabels, Gauge>,
    connections_open: Family<ListenerLabels, Gauge>,
    connections_closed: Family<ListenerReasonLabels, Gauge>,
    cdc: CdcGauges,
    cache: CacheGauges,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CacheLabels {
    kind: &'static str,
}

/// The hybrid cache's counters, copied in at scrape time.
#[derive(Default)]
struct CacheGauges {
    hits: Family<CacheLabels, Gauge>,
    misses: Family<CacheLabels, Gauge>,
    inserts: Family<CacheLabels, Gauge>,
    refused: Family<CacheLabels, Gauge>,
    expired: Family<CacheLabels, Gauge>,
    evictions: Gauge,
    memory_used_bytes: Gauge,
}

impl CacheGauges {
    fn register(&self, registry: &mut Registry) {
        let families: [(&str, &str, &Family<CacheLabels, Gauge>); 5] = [
            (
                "cache_hits",
                "cache lookups answered, by kind of entry",
                &self.hits,
            ),
            (
                "cache_misses",
                "cache lookups not answered, by kind of entry",
                &self.misses,
            ),
            ("cache_inserts", "entries cached, by kind", &self.inserts),
            (
                "cache_refused",
                "answers the residency policy did not let this node cache",
                &self.refused,
            ),
            (
                "cache_expired",
                "entries found past their TTL (or from an earlier process), by kind",
                &self.expired,
            ),
        ];
        for (name, help, family) in families {
            registry.register(name, help, family.clone());
        }
        registry.register(
            "cache_evictions",
            "entries evicted from the memory tier",
            self.evictions.clone(),
        );
        registry.register(
            "cache_memory_used_bytes",
            "bytes held by the memory tier",
            self.memory_used_bytes.clone(),
        );
    }
}

/// CDC state, copied in at scrape time.
#[derive(Default)]
struct CdcGauges {
    outbox_events: Gauge,
    oldest_unrelayed_age_ms: Gauge,
    held: Gauge,
    relayed: Gauge,
    withheld: Gauge,
    kafka_published: Gauge,
    replica_lag_ms: Family<SourceLabels, Gauge>,
    replica_applied: Family<SourceLabels, Gauge>,
    replica_apply_latency_ms: Family<SourceLabels, Gauge>,
}

impl CdcGauges {
    fn register(&self, registry: &mut Registry) {
        let entries: [(&str, &str, &Gauge); 6] = [
            (
                "cdc_outbox_events",
                "change events waiting in the outbox (not yet relayed)",
                &self.outbox_events,
            ),
            (
                "cdc_oldest_unrelayed_age_ms",
                "age of the oldest change event not yet relayed",
                &self.oldest_unrelayed_age_ms,
            ),
            (
                "cdc_relay_held",
                "1 while the relay holds events (no redactor, redactor or policy failing)",
                &self.held,
            ),
            (
                "cdc_relayed_events",
                "change events published to the change stream since start",
                &self.relayed,
            ),
            (
                "cdc_withheld_events",
                "change events the residency policy withheld since start (audited)",
                &self.withheld,
            ),
            (
                "cdc_kafka_published",
                "messages the Kafka broker acknowledged since start",
                &self.kafka_published,
            ),
        ];
        for (name, help, gauge) in entries {
            registry.register(name, help, gauge.clone());
        }
        registry.register(
            "replica_lag_ms",
            "how far each source region's replica may be behind, milliseconds",
            self.replica_lag_ms.clone(),
        );
        registry.register(
            "replica_applied_events",
            "changes applied to replicas since start, by source region",
            self.replica_applied.clone(),
        );
        registry.register(
            "replica_apply_latency_ms",
            "commit-to-apply time of the newest change applied, by source region",
            self.replica_apply_latency_ms.clone(),
        );
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Registers a new metric and returns the handle the node updates.
fn registered<M: Metric + Clone + Default>(registry: &mut Registry, name: &str, help: &str) -> M {
    let metric = M::default();
    registry.register(name, help, metric.clone());
    metric
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("domicile");
        let statements: Family<StatementLabels, Counter> = registered(
            &mut registry,
            "statements",
            "SQL statements executed, by kind and outcome",
        );
        let statement_seconds = Family::<KindLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.000_05, 2.0, 20))
        });
        registry.register(
            "statement_seconds",
            "Time to plan and start executing a statement (streams continue after)",
            statement_seconds.clone(),
        );
        let rpcs: Family<RpcLabels, Counter> = registered(
            &mut registry,
            "flight_rpcs",
            "Flight SQL calls by method and gRPC code",
        );
        let storage_commits: Gauge = registered(
            &mut registry,
            "storage_commits",
            "fsync'd storage commits since start",
        );
        let storage_statements_committed: Gauge = registered(
            &mut registry,
            "storage_statements_committed",
            "statements made durable since start (commits < statements under group commit)",
        );
        let storage_rows_read: Gauge = registered(
            &mut registry,
            "storage_rows_read",
            "rows decoded from storage since start",
        );
        let storage_writer_busy_us = Gauge::default();
        registry.register(
            "storage_writer_busy_microseconds",
            "time the single storage writer spent on batches since start (its rate near \
             1 s/s: writes are bound by the writer)",
            storage_writer_busy_us.clone(),
        );
        let storage_commit_us: Gauge = registered(
            &mut registry,
            "storage_commit_microseconds",
            "of the writer's busy time, the part spent committing (page writes, fsync)",
        );
        let storage_commit_waits: Gauge = registered(
            &mut registry,
            "storage_commit_waits",
            "group commits that waited for more statements (storage.commit_window_us)",
        );
        let plugin_calls: Family<PluginLabels, Gauge> = registered(
            &mut registry,
            "plugin_calls",
            "calls of each active plugin version since it loaded",
        );
        let plugin_errors: Family<PluginLabels, Gauge> = registered(
            &mut registry,
            "plugin_errors",
            "failed calls (fail closed), timeouts included",
        );
        let plugin_timeouts: Family<PluginLabels, Gauge> = registered(
            &mut registry,
            "plugin_timeouts",
            "calls stopped at their deadline",
        );
        let plugin_call_micros: Family<PluginLabels, Gauge> = registered(
            &mut registry,
            "plugin_call_micros",
            "total time spent in calls, microseconds",
        );
        let login_refusals: Family<ReasonLabels, Gauge> = registered(
            &mut registry,
            "auth_login_refusals",
            "logins refused since start, by reason: failed (wrong name or password), \
             blocked (back-off after failures, argon2 not run), busy (no argon2 slot)",
        );
        let connections_open: Family<ListenerLabels, Gauge> = registered(
            &mut registry,
            "connections_open",
            "TCP connections open now, by listener",
        );
        let connections_closed: Family<ListenerReasonLabels, Gauge> = registered(
            &mut registry,
            "connections_closed",
            "connections the node closed or could not accept since start, by listener and \
             reason: listener_full, address_full (connection bounds), greeting_timeout (no \
             protocol greeting within 10 s), accept_error",
        );
        let cdc = CdcGauges::default();
        cdc.register(&mut registry);
        let cache = CacheGauges::default();
        cache.register(&mut registry);
        Self {
            cdc,
            cache,
            plugin_calls,
            plugin_errors,
            plugin_timeouts,
            plugin_call_micros,
            login_refusals,
            connections_open,
            connections_closed,
            registry,
            statements,
            statement_seconds,
            rpcs,
            storage_commits,
            storage_statements_committed,
            storage_rows_read,
            storage_writer_busy_us,
            storage_commit_us,
            storage_commit_waits,
        }
    }

    pub fn record_statement(&self, kind: &'static str, ok: bool, elapsed: Duration) {
        let outcome = if ok { "ok" } else { "error" };
        self.statements
            .get_or_create(&StatementLabels { kind, outcome })
            .inc();
        self.statement_seconds
            .get_or_create(&KindLabels { kind })
            .observe(elapsed.as_secs_f64());
    }

    /// Counts one call of `method`, by its gRPC code (`Ok` when it succeeded).
    pub fn record_rpc(&self, method: &'static str, outcome: Result<(), &tonic::Status>) {
        let code = match outcome {
            Ok(()) => "Ok".to_string(),
            Err(status) => format!("{:?}", status.code()),
        };
        self.rpcs.get_or_create(&RpcLabels { method, code }).inc();
    }

    /// Copies storage counters into gauges just before a scrape.
    pub fn observe_storage(&self, store: &crate::storage::Store) {
        let gauges = [
            (&self.storage_commits, store.commits()),
            (
                &self.storage_statements_committed,
                store.statements_committed(),
            ),
            (&self.storage_rows_read, store.rows_read()),
            (&self.storage_writer_busy_us, store.writer_busy_us()),
            (&self.storage_commit_us, store.commit_us()),
            (&self.storage_commit_waits, store.commit_waits()),
        ];
        for (gauge, value) in gauges {
            gauge.set(i64::try_from(value).unwrap_or(i64::MAX));
        }
    }

    /// Copies the login refusal counts into gauges just before a scrape.
    pub fn observe_auth(&self, refusals: &crate::auth::LoginRefusals) {
        use std::sync::atomic::Ordering::Relaxed;
        for (reason, count) in [
            ("failed", &refusals.failed),
            ("blocked", &refusals.blocked),
            ("busy", &refusals.busy),
        ] {
            self.login_refusals
                .get_or_create(&ReasonLabels { reason })
                .set(i64::try_from(count.load(Relaxed)).unwrap_or(i64::MAX));
        }
    }

    /// Copies each listener's connection gate counters into gauges just before a scrape.
    pub fn observe_connections(
        &self,
        gates: &[std::sync::Arc<crate::connection_gate::ConnectionGate>],
    ) {
        use std::sync::atomic::Ordering::Relaxed;
        let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        for gate in gates {
            let counters = &gate.counters;
            self.connections_open
                .get_or_create(&ListenerLabels {
                    listener: gate.listener,
                })
                .set(clamp(counters.open.load(Relaxed)));
            for (reason, count) in [
                ("listener_full", &counters.refused_listener_full),
                ("address_full", &counters.refused_address_full),
                ("over_share", &counters.refused_over_share),
                ("greeting_timeout", &counters.greeting_timeouts),
                ("accept_error", &counters.accept_errors),
            ] {
                self.connections_closed
                    .get_or_create(&ListenerReasonLabels {
                        listener: gate.listener,
                        reason,
                    })
                    .set(clamp(count.load(Relaxed)));
            }
        }
    }

    /// Copies the active plugins' call statistics into gauges just before a scrape.
    pub fn observe_plugins(&self, registry: &crate::plugins::PluginRegistry) {
        let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        for (record, stats) in registry.active_stats() {
            let labels = PluginLabels {
                jurisdiction: record.jurisdiction,
                kind: record.kind,
                version: record.version.to_string(),
            };
            self.plugin_calls
                .get_or_create(&labels)
                .set(clamp(stats.calls));
            self.plugin_errors
                .get_or_create(&labels)
                .set(clamp(stats.errors));
            self.plugin_timeouts
                .get_or_create(&labels)
                .set(clamp(stats.timeouts));
            self.plugin_call_micros
                .get_or_create(&labels)
                .set(clamp(stats.call_us_total));
        }
    }

    /// Copies the CDC relay's and the replicas' state into gauges just before a scrape.
    pub fn observe_cdc(
        &self,
        status: &crate::cdc::CdcStatus,
        backlog: &crate::storage::OutboxBacklog,
    ) {
        let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        let relay = status.relay();
        let gauges = &self.cdc;
        gauges.outbox_events.set(clamp(backlog.events));
        let age_ms = backlog
            .oldest_commit_time_us
            .map_or(0, crate::clock::ms_since_unix_us);
        gauges.oldest_unrelayed_age_ms.set(clamp(age_ms));
        gauges.held.set(i64::from(relay.held.is_some()));
        gauges.relayed.set(clamp(relay.relayed));
        gauges.withheld.set(clamp(relay.withheld));
        gauges.kafka_published.set(clamp(relay.published));
        let now = std::time::Instant::now();
        for (source, replica) in status.replicas() {
            let labels = SourceLabels { source };
            gauges
                .replica_lag_ms
                .get_or_create(&labels)
                .set(clamp(replica.lag_ms(now)));
            gauges
                .replica_applied
                .get_or_create(&labels)
                .set(clamp(replica.applied_events));
            gauges
                .replica_apply_latency_ms
                .get_or_create(&labels)
                .set(clamp(replica.last_apply_latency_ms));
        }
    }

    /// Copies the cache's counters into gauges just before a scrape.
    pub fn observe_cache(&self, reports: &[crate::cache::CacheReport]) {
        let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        let gauges = &self.cache;
        for report in reports {
            let labels = CacheLabels {
                kind: report.kind.as_str(),
            };
            gauges.hits.get_or_create(&labels).set(clamp(report.hits));
            gauges
                .misses
                .get_or_create(&labels)
                .set(clamp(report.misses));
            gauges
                .inserts
                .get_or_create(&labels)
                .set(clamp(report.inserts));
            gauges
                .refused
                .get_or_create(&labels)
                .set(clamp(report.refused));
            gauges
                .expired
                .get_or_create(&labels)
                .set(clamp(report.expired));
            gauges.evictions.set(clamp(report.evictions));
            gauges
                .memory_used_bytes
                .set(clamp(report.memory_used_bytes));
        }
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cdc::CdcStatus;
    use crate::storage::OutboxBacklog;

    #[test]
    fn cdc_state_reaches_the_scrape() {
        let metrics = Metrics::new();
        let status = CdcStatus::default();
        status.update_relay(|s| {
            s.held = Some("no redactor".into());
            s.withheld = 2;
        });
        let now = std::time::Instant::now();
        status.update_replica("us-east", |s| {
            s.applied_seq = 5;
            s.source_head_seq = 5;
            s.heard_at = Some(now);
            s.current_at = Some(now);
            s.applied_events = 5;
        });
        let backlog = OutboxBacklog {
            events: 3,
            oldest_seq: Some(9),
            oldest_commit_time_us: None,
        };
        metrics.observe_cdc(&status, &backlog);
        let text = metrics.encode();
        for line in [
            "domicile_cdc_outbox_events 3",
            "domicile_cdc_relay_held 1",
            "domicile_cdc_withheld_events 2",
            "domicile_replica_lag_ms{source=\"us-east\"} 0",
            "domicile_replica_applied_events{source=\"us-east\"} 5",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
    }
}
