//! Prometheus metrics: one registry per node, served as text on `/metrics`.

mod exposition;
mod observed;
mod process;
mod scrape;
mod server;

use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, text};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Metric, Registry, Unit};

pub use exposition::Format;
pub use observed::Observed;
pub use scrape::{Check, MetricsState};
pub use server::serve_metrics;

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
struct RpcLabels {
    method: &'static str,
    code: String,
}

/// The metrics counted as events happen (statements, Flight SQL calls). Everything
/// else `/metrics` shows is read from where it is kept at scrape time ([`Observed`]).
pub struct Metrics {
    registry: Registry,
    statements: Family<StatementLabels, Counter>,
    statement_seconds: Family<KindLabels, Histogram>,
    rpcs: Family<RpcLabels, Counter>,
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
        registry.register_with_unit(
            "statement",
            "Time to plan and start executing a statement (streams continue after)",
            Unit::Seconds,
            statement_seconds.clone(),
        );
        let rpcs: Family<RpcLabels, Counter> = registered(
            &mut registry,
            "flight_rpcs",
            "Flight SQL calls by method and gRPC code",
        );
        Self {
            registry,
            statements,
            statement_seconds,
            rpcs,
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

    /// The exposition of these metrics, `observed` (the node's, `domicile_`-prefixed)
    /// and `process` (`process_*`, unprefixed), in `format`.
    pub fn encode(&self, observed: Observed, process: Observed, format: Format) -> String {
        let mut node = Registry::with_prefix("domicile");
        node.register_collector(Box::new(observed));
        let mut unprefixed = Registry::default();
        unprefixed.register_collector(Box::new(process));
        let mut out = String::new();
        // Writing into a String cannot fail.
        for registry in [&self.registry, &node, &unprefixed] {
            let _ = text::encode_registry(&mut out, registry);
        }
        let _ = text::encode_eof(&mut out);
        match format {
            Format::OpenMetrics => out,
            Format::Prometheus => exposition::prometheus_text(&out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counted_events_and_observed_counts_encode_in_both_formats() {
        let metrics = Metrics::new();
        metrics.record_statement("select", true, Duration::from_millis(2));
        let mut observed = Observed::default();
        observed
            .counter_seconds("storage_commit", "commit time")
            .sample(&[], observed::seconds_from_us(1_500_000));
        observed
            .gauge("peer_up", "reachable")
            .sample(&[("region", "us-east")], 1u64);
        let open = metrics.encode(observed, Observed::default(), Format::OpenMetrics);
        for line in [
            "domicile_statements_total{kind=\"select\",outcome=\"ok\"} 1",
            "# TYPE domicile_statement_seconds histogram",
            "# TYPE domicile_storage_commit_seconds counter",
            "domicile_storage_commit_seconds_total 1.5",
            "domicile_peer_up{region=\"us-east\"} 1",
        ] {
            assert!(open.contains(line), "{line} missing from:\n{open}");
        }
        assert!(open.ends_with("# EOF\n"));
        let mut observed = Observed::default();
        observed
            .counter_seconds("storage_commit", "commit time")
            .sample(&[], observed::seconds_from_us(1_500_000));
        let classic = metrics.encode(observed, Observed::default(), Format::Prometheus);
        assert!(classic.contains("# TYPE domicile_storage_commit_seconds_total counter"));
        assert!(classic.contains("# TYPE domicile_statements_total counter"));
        assert!(!classic.contains("# EOF") && !classic.contains("# UNIT"));
    }
}
