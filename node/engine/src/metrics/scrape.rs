//! What one scrape reads, and from where; and what readiness means.

use std::collections::BTreeMap;
use std::sync::Arc;

use prometheus_client::registry::Unit;

use super::observed::{Observed, seconds_from_ms, seconds_from_us};
use crate::auth::Authenticator;
use crate::cache::NodeCache;
use crate::cdc::CdcStatus;
use crate::connection_gate::ConnectionGate;
use crate::peers::PeerMonitor;
use crate::plugins::PluginRegistry;
use crate::residency::ResidencyGuard;
use crate::saga::SagaEngine;
use crate::storage::{OutboxBacklog, Store};

/// Where a scrape reads the node's state, and the registry of counted events.
#[derive(Clone)]
pub struct MetricsState {
    pub metrics: Arc<super::Metrics>,
    /// The node's region (`domicile_build_info`).
    pub region: Arc<str>,
    pub store: Store,
    pub plugins: Arc<PluginRegistry>,
    pub guard: Arc<ResidencyGuard>,
    pub sagas: Arc<SagaEngine>,
    pub peers: Arc<PeerMonitor>,
    pub cdc: Arc<CdcStatus>,
    pub cache: Arc<NodeCache>,
    pub auth: Arc<Authenticator>,
    /// Every listener's connection gate.
    pub connections: Vec<Arc<ConnectionGate>>,
}

/// What the storage reads of a scrape found (off the async threads).
struct Stored {
    backlog: Option<OutboxBacklog>,
    sagas: Option<BTreeMap<&'static str, u64>>,
}

/// One of the cache's counts, read from its report.
type CacheCount = fn(&crate::cache::CacheReport) -> u64;

/// One readiness check: its name, and why it fails (`None`: it passes).
pub type Check = (&'static str, Option<String>);

impl MetricsState {
    async fn stored(&self) -> Stored {
        let store = self.store.clone();
        let sagas = Arc::clone(&self.sagas);
        tokio::task::spawn_blocking(move || Stored {
            backlog: store.outbox_backlog().ok(),
            // Counted over the saga log at each scrape; its cost grows with the log.
            sagas: sagas.list().ok().map(|all| {
                let mut by_state: BTreeMap<&'static str, u64> = crate::saga::SagaState::ALL
                    .iter()
                    .map(|s| (s.as_str(), 0))
                    .collect();
                for saga in all {
                    *by_state.entry(saga.state.as_str()).or_default() += 1;
                }
                by_state
            }),
        })
        .await
        .unwrap_or(Stored {
            backlog: None,
            sagas: None,
        })
    }

    /// The exposition of a scrape in `format`.
    pub async fn scrape(&self, format: super::Format) -> String {
        let stored = self.stored().await;
        let mut observed = Observed::default();
        super::process::build_info(&mut observed, &self.region);
        self.observe_storage(&mut observed);
        self.observe_plugins(&mut observed);
        self.observe_residency(&mut observed);
        self.observe_auth(&mut observed);
        self.observe_connections(&mut observed);
        self.observe_cdc(&mut observed, stored.backlog.as_ref());
        self.observe_peers(&mut observed);
        if let Some(sagas) = &stored.sagas {
            observed.gauge("sagas", "sagas in the saga log, by state");
            for (state, count) in sagas {
                observed.sample(&[("state", state)], *count);
            }
        }
        self.observe_cache(&mut observed);
        self.metrics
            .encode(observed, super::process::process(), format)
    }

    /// Whether the node can do its work: storage answers, the residency policy of its
    /// jurisdiction is loaded (without it every governed write is refused), and every
    /// configured peer has been tried at least once (reachable or not, its state is
    /// known, so routing decides on facts).
    pub async fn readiness(&self) -> Vec<Check> {
        let store = self.store.clone();
        let storage = tokio::task::spawn_blocking(move || store.outbox_backlog().map(|_| ()))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| crate::redact_text::shown(&e)));
        let unknown: Vec<String> = self
            .peers
            .statuses()
            .into_iter()
            .filter(|p| p.last_seen_unix_ms.is_none() && p.last_error.is_none())
            .map(|p| p.region)
            .collect();
        vec![
            ("storage", storage.err()),
            (
                "residency-policy",
                (!self.guard.policy_loaded())
                    .then(|| "no residency policy is active for this jurisdiction".into()),
            ),
            (
                "peers",
                (!unknown.is_empty()).then(|| format!("not tried yet: {}", unknown.join(", "))),
            ),
        ]
    }

    fn observe_storage(&self, observed: &mut Observed) {
        let store = &self.store;
        observed
            .counter("storage_commits", "fsync'd storage commits")
            .sample(&[], store.commits());
        observed
            .counter(
                "storage_statements_committed",
                "statements made durable (fewer commits than statements under group commit)",
            )
            .sample(&[], store.statements_committed());
        observed
            .counter("storage_rows_read", "rows decoded from storage")
            .sample(&[], store.rows_read());
        observed
            .counter_seconds(
                "storage_writer_busy",
                "time the single storage writer spent on batches (a rate near 1 means writes \
                 are bound by the writer)",
            )
            .sample(&[], seconds_from_us(store.writer_busy_us()));
        observed
            .counter_seconds(
                "storage_commit",
                "of the writer's busy time, the part spent committing (page writes, fsync)",
            )
            .sample(&[], seconds_from_us(store.commit_us()));
        observed
            .counter(
                "storage_commit_waits",
                "group commits that waited for more statements (storage.commit_window_us)",
            )
            .sample(&[], store.commit_waits());
    }

    fn observe_plugins(&self, observed: &mut Observed) {
        let stats = self.plugins.active_stats();
        let labelled = |observed: &mut Observed, value: fn(&_) -> super::observed::Value| {
            for (record, stats) in &stats {
                let version = record.version.to_string();
                observed.sample(
                    &[
                        ("jurisdiction", &record.jurisdiction),
                        ("kind", &record.kind),
                        ("version", &version),
                    ],
                    value(stats),
                );
            }
        };
        observed.counter(
            "plugin_calls",
            "calls of each active plugin version since it loaded",
        );
        labelled(observed, |s| s.calls.into());
        observed.counter(
            "plugin_errors",
            "failed calls (fail closed), timeouts included",
        );
        labelled(observed, |s| s.errors.into());
        observed.counter("plugin_timeouts", "calls stopped at their deadline");
        labelled(observed, |s| s.timeouts.into());
        observed.counter_seconds("plugin_call", "time spent in calls");
        labelled(observed, |s| seconds_from_us(s.call_us_total));
    }

    fn observe_residency(&self, observed: &mut Observed) {
        observed.counter(
            "residency_decisions",
            "residency decisions made, by path (store, forward, query-result, replication, \
             saga-step, cache) and outcome (allow, allow-with, deny, unavailable)",
        );
        for (path, decision, count) in self.guard.decisions() {
            observed.sample(&[("path", path), ("decision", &decision)], count);
        }
    }

    fn observe_auth(&self, observed: &mut Observed) {
        use std::sync::atomic::Ordering::Relaxed;
        let refusals = self.auth.login_refusals();
        observed.counter(
            "auth_login_refusals",
            "logins refused, by reason: failed (wrong name or password), blocked (back-off \
             after failures, argon2 not run), busy (no argon2 slot)",
        );
        for (reason, count) in [
            ("failed", &refusals.failed),
            ("blocked", &refusals.blocked),
            ("busy", &refusals.busy),
        ] {
            observed.sample(&[("reason", reason)], count.load(Relaxed));
        }
    }

    fn observe_connections(&self, observed: &mut Observed) {
        use std::sync::atomic::Ordering::Relaxed;
        observed.gauge("connections_open", "TCP connections open now, by listener");
        for gate in &self.connections {
            observed.sample(
                &[("listener", gate.listener)],
                gate.counters.open.load(Relaxed),
            );
        }
        observed.counter(
            "connections_closed",
            "connections the node closed or could not accept, by listener and reason: \
             listener_full, address_full, over_share (connection bounds), greeting_timeout \
             (no protocol greeting in time), accept_error",
        );
        for gate in &self.connections {
            let counters = &gate.counters;
            for (reason, count) in [
                ("listener_full", &counters.refused_listener_full),
                ("address_full", &counters.refused_address_full),
                ("over_share", &counters.refused_over_share),
                ("greeting_timeout", &counters.greeting_timeouts),
                ("accept_error", &counters.accept_errors),
            ] {
                observed.sample(
                    &[("listener", gate.listener), ("reason", reason)],
                    count.load(Relaxed),
                );
            }
        }
    }

    fn observe_cdc(&self, observed: &mut Observed, backlog: Option<&OutboxBacklog>) {
        let relay = self.cdc.relay();
        if let Some(backlog) = backlog {
            observed
                .gauge(
                    "cdc_outbox_events",
                    "change events waiting in the outbox (not yet relayed)",
                )
                .sample(&[], backlog.events);
            let age_ms = backlog
                .oldest_commit_time_us
                .map_or(0, crate::clock::ms_since_unix_us);
            observed
                .gauge_in(
                    "cdc_oldest_unrelayed_age",
                    Unit::Seconds,
                    "age of the oldest change event not yet relayed (0 when none waits)",
                )
                .sample(&[], seconds_from_ms(age_ms));
        }
        observed
            .gauge(
                "cdc_relay_held",
                "1 while the relay holds events (no redactor, redactor or policy failing)",
            )
            .sample(&[], u64::from(relay.held.is_some()));
        observed
            .counter(
                "cdc_relayed_events",
                "change events published to the change stream",
            )
            .sample(&[], relay.relayed);
        observed
            .counter(
                "cdc_withheld_events",
                "change events the residency policy withheld (audited)",
            )
            .sample(&[], relay.withheld);
        observed
            .counter(
                "cdc_kafka_published_messages",
                "messages the Kafka broker acknowledged",
            )
            .sample(&[], relay.published);
        let replicas = self.cdc.replicas();
        let now = std::time::Instant::now();
        observed.gauge_in(
            "replica_lag",
            Unit::Seconds,
            "how far each source region's replica may be behind (+Inf: never current yet)",
        );
        for (source, replica) in &replicas {
            observed.sample(&[("source", source)], seconds_from_ms(replica.lag_ms(now)));
        }
        observed.counter(
            "replica_applied_events",
            "changes applied to replicas, by source region",
        );
        for (source, replica) in &replicas {
            observed.sample(&[("source", source)], replica.applied_events);
        }
        observed.gauge_in(
            "replica_apply_latency",
            Unit::Seconds,
            "commit-to-apply time of the newest change applied, by source region",
        );
        for (source, replica) in &replicas {
            observed.sample(
                &[("source", source)],
                seconds_from_ms(replica.last_apply_latency_ms),
            );
        }
    }

    fn observe_peers(&self, observed: &mut Observed) {
        let peers = self.peers.statuses();
        observed.gauge(
            "peer_up",
            "1 when the peer region's node answered its last ping",
        );
        for peer in &peers {
            observed.sample(&[("region", &peer.region)], u64::from(peer.reachable));
        }
        observed.gauge_in(
            "peer_rtt",
            Unit::Seconds,
            "round trip of the last successful ping, by peer region",
        );
        for peer in &peers {
            if let Some(rtt_us) = peer.rtt_us {
                observed.sample(&[("region", &peer.region)], seconds_from_us(rtt_us));
            }
        }
    }

    fn observe_cache(&self, observed: &mut Observed) {
        let reports = self.cache.report();
        let families: [(&str, &str, CacheCount); 5] = [
            (
                "cache_hits",
                "cache lookups answered, by kind of entry",
                |r| r.hits,
            ),
            (
                "cache_misses",
                "cache lookups not answered, by kind of entry",
                |r| r.misses,
            ),
            ("cache_inserts", "entries cached, by kind", |r| r.inserts),
            (
                "cache_refused",
                "answers the residency policy did not let this node cache",
                |r| r.refused,
            ),
            (
                "cache_expired",
                "entries found past their TTL (or from an earlier process), by kind",
                |r| r.expired,
            ),
        ];
        for (name, help, value) in families {
            observed.counter(name, help);
            for report in &reports {
                observed.sample(&[("kind", report.kind.as_str())], value(report));
            }
        }
        // The memory tier is shared by every kind: one figure.
        if let Some(report) = reports.first() {
            observed
                .counter("cache_evictions", "entries evicted from the memory tier")
                .sample(&[], report.evictions);
            observed
                .gauge_in(
                    "cache_memory_used",
                    Unit::Bytes,
                    "bytes held by the memory tier",
                )
                .sample(&[], report.memory_used_bytes);
        }
    }
}
