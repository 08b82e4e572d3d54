//! How the binary logs: to stderr for a node (`[logging]`), to a file for the demo; and
//! how a node exports its spans (`[telemetry]`, OTLP/gRPC).

use std::time::Duration;

use anyhow::Context;
use opentelemetry::trace::TracerProvider;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider,
};
use tracing_subscriber::filter::{FilterExt, FilterFn, LevelFilter, Targets, filter_fn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{LogFormat, NodeConfig, TelemetryConfig};

/// How long finished spans wait to be exported together (the SDK's default is 5 s; a
/// second keeps an operator's trace view close to live at a few requests per second).
const SPAN_EXPORT_DELAY: Duration = Duration::from_secs(1);
/// How long one export may take before the batch is given up (the collector is down):
/// spans are telemetry, never worth holding the node for.
const SPAN_EXPORT_TIMEOUT: Duration = Duration::from_secs(5);
/// The crates whose spans are exported (at `info`): the node's own, never a library's.
const TRACED_CRATES: [&str; 4] = [
    "domicile",
    "domicile_engine",
    "domicile_storage",
    "domicile_plugin_host",
];

/// The demo's log level; a node's comes from `logging.level`.
const DEFAULT_LOG_LEVEL: &str = "info";

/// Libraries whose INFO lines are about their own internals (foyer reports every
/// engine it opens and recovers; wasmtime and cranelift their compilations): at `info`
/// they would outnumber the node's own lines, so they start at `warn`. A level that
/// names them (`foyer=info`) or `RUST_LOG` overrides this.
const QUIET_LIBRARIES: [&str; 6] = [
    "foyer",
    "foyer_memory",
    "foyer_storage",
    "wasmtime",
    "cranelift_codegen",
    "h2",
];

/// `RUST_LOG` if set, else `level` with the noisy libraries at `warn` unless `level`
/// names them itself.
fn log_filter(level: &str) -> anyhow::Result<EnvFilter> {
    if let Ok(filter) = EnvFilter::try_from_default_env() {
        return Ok(filter);
    }
    let mut directives = level.to_string();
    for library in QUIET_LIBRARIES {
        if !level.contains(library) {
            directives.push_str(&format!(",{library}=warn"));
        }
    }
    Ok(EnvFilter::try_new(directives)?)
}

/// A node's logging, as `[logging]` configures it, and its span export, as
/// `[telemetry]` does. Log lines carry no span context (they stay as they were); spans go
/// only to the exporter. Keep the returned [`Telemetry`] and shut it down at exit.
pub fn init_node_logging(config: &NodeConfig) -> anyhow::Result<Telemetry> {
    use std::io::IsTerminal;
    let fmt = tracing_subscriber::fmt::layer()
        // Colour codes only for a person watching a terminal, never in a redirected log.
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let fmt = match config.logging.format {
        LogFormat::Human => fmt.boxed(),
        LogFormat::Json => fmt.json().boxed(),
    };
    let events_only = only_events();
    let fmt = fmt.with_filter(log_filter(&config.logging.level)?.and(events_only));
    let (spans, provider) = match &config.telemetry.otlp_endpoint {
        Some(endpoint) => {
            let provider = tracer_provider(&config.telemetry, endpoint, &config.region)?;
            let traced = TRACED_CRATES
                .iter()
                .fold(Targets::new(), |targets, target| {
                    targets.with_target(*target, tracing::Level::INFO)
                });
            let layer = tracing_opentelemetry::layer()
                .with_tracer(provider.tracer("domicile"))
                .with_filter(traced.and(only_spans()));
            // Change events continue the trace of the statement that committed them.
            crate::storage::set_caller_trace(crate::trace_context::current_traceparent);
            (Some(layer), Some(provider))
        }
        None => (None, None),
    };
    tracing_subscriber::registry()
        .with(fmt)
        .with(spans)
        .try_init()
        .map_err(|e| anyhow::anyhow!("cannot start logging: {e}"))?;
    if let Some(endpoint) = &config.telemetry.otlp_endpoint {
        tracing::info!(endpoint = %endpoint, sample_ratio = config.telemetry.sample_ratio, "spans exported by OTLP");
    }
    Ok(Telemetry { provider })
}

/// The OTLP/gRPC exporter behind a batching processor, sampling parent-based.
fn tracer_provider(
    telemetry: &TelemetryConfig,
    endpoint: &str,
    region: &str,
) -> anyhow::Result<SdkTracerProvider> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .with_timeout(SPAN_EXPORT_TIMEOUT)
        .build()
        .context("telemetry.otlp_endpoint: cannot make the OTLP exporter")?;
    let processor = BatchSpanProcessor::builder(exporter)
        .with_batch_config(
            BatchConfigBuilder::default()
                .with_scheduled_delay(SPAN_EXPORT_DELAY)
                .build(),
        )
        .build();
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(telemetry.service_name.clone())
        .with_attributes([
            opentelemetry::KeyValue::new("domicile.region", region.to_string()),
            opentelemetry::KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
        ])
        .build();
    Ok(SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_resource(resource)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            telemetry.sample_ratio,
        ))))
        .build())
}

/// The span exporter of a running node, if `[telemetry]` set one.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Exports the spans still waiting and stops the exporter (at most
    /// `SPAN_EXPORT_TIMEOUT` for a collector that does not answer).
    pub async fn shutdown(self) {
        let Some(provider) = self.provider else {
            return;
        };
        let flushed = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        if let Ok(Err(error)) = flushed {
            tracing::warn!(error = %error, "spans not all exported at shutdown");
        }
    }
}

/// Events of any level, no spans. Its level hint (any) leaves the level filter it is
/// combined with in charge of the maximum level: a filter without a hint lifts the
/// maximum to TRACE, and every `trace!` of every library (and every `log` record of
/// cranelift's compiler) then reaches the filters, which made plugin loading about
/// twice as slow.
fn only_events() -> FilterFn<impl Fn(&tracing::Metadata<'_>) -> bool> {
    filter_fn(|metadata: &tracing::Metadata<'_>| metadata.is_event())
        .with_max_level_hint(LevelFilter::TRACE)
}

/// Spans of any level, no events (see [`only_events`] for the hint).
fn only_spans() -> FilterFn<impl Fn(&tracing::Metadata<'_>) -> bool> {
    filter_fn(|metadata: &tracing::Metadata<'_>| metadata.is_span())
        .with_max_level_hint(LevelFilter::TRACE)
}

/// The demo's logging: every node's lines into `log`, without colour codes (and, as a
/// node's, without span context).
pub fn init_demo_logging(log: std::fs::File) -> anyhow::Result<()> {
    let events_only = only_events();
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .with_writer(std::sync::Mutex::new(log))
        .with_filter(log_filter(DEFAULT_LOG_LEVEL)?.and(events_only));
    tracing_subscriber::registry()
        .with(fmt)
        .try_init()
        .map_err(|e| anyhow::anyhow!("cannot start logging: {e}"))
}
