//! W3C Trace Context (<https://www.w3.org/TR/trace-context/>) across the node's edges:
//! one trace follows a statement from the client's Flight SQL call through the peer
//! calls, mesh legs and saga steps it causes in other regions, and into the change
//! events it commits (a `traceparent` header on each CDC message, mesh or Kafka).
//!
//! Spans are `tracing` spans; `tracing-opentelemetry` turns them into OpenTelemetry
//! spans when `[telemetry] otlp_endpoint` is set (the binary installs that layer).
//! Without it, every function here is a no-op: nothing is extracted, nothing injected.
//!
//! Spans carry names, kinds and identifiers (table, region, saga id, rpc method), never
//! a value of a row: SQL text is not recorded (its literals may be `pii`), only the
//! statement's kind.
//!
//! Trust: a caller's `traceparent` decides only which trace this node's spans join (and,
//! parent-based, whether they are sampled); it grants nothing. A value over
//! [`TRACE_CONTEXT_BYTES_MAX`] or malformed is ignored before it is parsed.

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tonic::codegen::http;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::limits::{TRACE_CONTEXT_BYTES_MAX, TRACE_LINKS_MAX};

/// The header (HTTP/2, Kafka, CDC message) that carries the trace id and parent span id.
pub const TRACEPARENT: &str = "traceparent";
/// The header that carries vendors' trace state, passed on as received.
pub const TRACESTATE: &str = "tracestate";

/// Reads trace context through `get`, ignoring values longer than
/// [`TRACE_CONTEXT_BYTES_MAX`].
struct Bounded<'a, F>(F, std::marker::PhantomData<&'a str>);

impl<'a, F: Fn(&str) -> Option<&'a str>> Bounded<'a, F> {
    /// The context the values name, or an empty one; never the current context.
    fn extract(get: F) -> opentelemetry::Context {
        TraceContextPropagator::new().extract_with_context(
            &opentelemetry::Context::new(),
            &Bounded(get, std::marker::PhantomData),
        )
    }
}

impl<'a, F: Fn(&str) -> Option<&'a str>> Extractor for Bounded<'a, F> {
    fn get(&self, key: &str) -> Option<&str> {
        (self.0)(key).filter(|value| value.len() <= TRACE_CONTEXT_BYTES_MAX)
    }

    fn keys(&self) -> Vec<&str> {
        vec![TRACEPARENT, TRACESTATE]
    }
}

/// Makes `span` a child of the remote span `get` names (`traceparent`, `tracestate`), if
/// it names a valid one; otherwise `span` keeps its own parent.
pub fn continue_trace<'a>(span: &Span, get: impl Fn(&str) -> Option<&'a str>) {
    let context = Bounded::extract(get);
    if opentelemetry::trace::TraceContextExt::span(&context)
        .span_context()
        .is_valid()
    {
        // Fails only when no OpenTelemetry layer is installed: then there is nothing to
        // continue.
        let _ = span.set_parent(context);
    }
}

/// Links `span` to the span `traceparent` names (OpenTelemetry span links: a batch that
/// serves several traces), if it names a valid one.
pub fn link_to(span: &Span, traceparent: &str) {
    let context = Bounded::extract(|key: &str| (key == TRACEPARENT).then_some(traceparent));
    let linked = opentelemetry::trace::TraceContextExt::span(&context)
        .span_context()
        .clone();
    if linked.is_valid() {
        span.add_link(linked);
    }
}

/// One `cdc apply` span per distinct trace among `parents` (at most
/// [`TRACE_LINKS_MAX`]), each a child of the statement whose change it applies: they
/// are open until dropped, so drop them once the batch's commit returned.
pub fn apply_spans<'a>(source: &str, parents: impl IntoIterator<Item = &'a str>) -> Vec<Span> {
    let mut seen = std::collections::HashSet::new();
    parents
        .into_iter()
        .filter(|parent| seen.insert(*parent))
        .take(TRACE_LINKS_MAX)
        .map(|parent| {
            let span = tracing::info_span!("cdc apply", cdc.source_region = %source);
            continue_trace(&span, |key| (key == TRACEPARENT).then_some(parent));
            span
        })
        .collect()
}

/// [`continue_trace`] from HTTP/2 request headers.
pub fn continue_from_headers(span: &Span, headers: &http::HeaderMap) {
    continue_trace(span, |key| {
        headers.get(key).and_then(|value| value.to_str().ok())
    });
}

/// `span`'s context as headers (`traceparent`, and `tracestate` if any), for a call or
/// message that continues its trace elsewhere. Empty when `span` is not exported.
pub fn headers_of(span: &Span) -> Vec<(&'static str, String)> {
    struct Collect(Vec<(&'static str, String)>);
    impl Injector for Collect {
        fn set(&mut self, key: &str, value: String) {
            let key = match key {
                TRACEPARENT => TRACEPARENT,
                TRACESTATE => TRACESTATE,
                _ => return,
            };
            if !value.is_empty() {
                self.0.push((key, value));
            }
        }
    }
    let context = span.context();
    if !opentelemetry::trace::TraceContextExt::span(&context)
        .span_context()
        .is_valid()
    {
        return Vec::new();
    }
    let mut collect = Collect(Vec::new());
    TraceContextPropagator::new().inject_context(&context, &mut collect);
    collect.0
}

/// The current span's `traceparent`, if it is exported: what a change event records so
/// its CDC messages continue the trace of the statement that committed it.
pub fn current_traceparent() -> Option<String> {
    headers_of(&Span::current())
        .into_iter()
        .find_map(|(key, value)| (key == TRACEPARENT).then_some(value))
}

/// Background calls between nodes, never part of a request's work: the peer monitor's
/// pings (every second per peer) and the long-lived change streams (each change carries
/// its own statement's trace in its message header instead).
const UNTRACED: [(&str, &str); 2] = [
    ("domicile.mesh.v1.Peer", "Ping"),
    ("domicile.mesh.v1.Peer", "StreamChanges"),
];

/// The span of one inbound gRPC call (OpenTelemetry's RPC conventions: `rpc.system`,
/// `rpc.service`, `rpc.method`), continuing the caller's trace if its headers carry
/// one. Used by every listener (`tonic::transport::Server::trace_fn`).
/// Health probes (`grpc.health.v1`) are not traced: they are frequent and tell nothing
/// a trace would.
pub fn server_span(request: &http::Request<()>) -> Span {
    let (service, method) = rpc_names(request.uri().path());
    if UNTRACED.contains(&(service, method)) || service == "grpc.health.v1.Health" {
        return Span::none();
    }
    let span = rpc_span("server", service, method);
    continue_from_headers(&span, request.headers());
    span
}

/// A span of one gRPC call, named `<service>/<method>` (OpenTelemetry's RPC
/// conventions), of `kind` `server` or `client`; a client span records `peer.region`.
fn rpc_span(kind: &'static str, service: &str, method: &str) -> Span {
    tracing::info_span!(
        "rpc",
        otel.name = %format_args!("{service}/{method}"),
        otel.kind = kind,
        rpc.system = "grpc",
        rpc.service = %service,
        rpc.method = %method,
        peer.region = tracing::field::Empty,
    )
}

/// `/package.Service/Method` as (service, method); a path of another shape (a client's
/// mistake) is kept whole as the service, cut to a bounded length.
fn rpc_names(path: &str) -> (&str, &str) {
    /// Longer paths name no service of this node; the span keeps their start.
    const PATH_KEPT_BYTES: usize = 128;
    let path = path.strip_prefix('/').unwrap_or(path);
    match path.split_once('/') {
        Some((service, method)) if service.len() + method.len() < PATH_KEPT_BYTES => {
            (service, method)
        }
        _ => {
            let mut end = path.len().min(PATH_KEPT_BYTES);
            while !path.is_char_boundary(end) {
                end -= 1;
            }
            (&path[..end], "")
        }
    }
}

/// `stream`, polled inside the current span: a streamed answer's work (reading rows,
/// deciding what may leave, the calls it makes) belongs to the call that asked for it,
/// although the server polls it after the handler returned.
pub fn stream_in_current_span<S>(stream: S) -> impl futures::Stream<Item = S::Item> + Send
where
    S: futures::Stream + Send + 'static,
{
    let span = Span::current();
    let mut stream = Box::pin(stream);
    futures::stream::poll_fn(move |cx| {
        let _entered = span.enter();
        stream.as_mut().poll_next(cx)
    })
}

/// A channel to a peer that traces each call made inside a traced operation: a client
/// span (`rpc.*`, `peer.region`) whose context goes out as `traceparent`, so the peer's
/// server span continues the caller's trace. Calls made outside any span (the peer
/// monitor's pings) pass through untraced.
#[derive(Clone, Debug)]
pub struct TracedChannel {
    inner: tonic::transport::Channel,
    region: std::sync::Arc<str>,
}

impl TracedChannel {
    pub fn new(inner: tonic::transport::Channel, region: &str) -> Self {
        Self {
            inner,
            region: region.into(),
        }
    }
}

impl tower::Service<http::Request<tonic::body::Body>> for TracedChannel {
    type Response = http::Response<tonic::body::Body>;
    type Error = tonic::transport::Error;
    type Future = tracing::instrument::Instrumented<tonic::transport::channel::ResponseFuture>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<tonic::body::Body>) -> Self::Future {
        use tracing::Instrument;
        if Span::current().is_none() {
            return self.inner.call(request).instrument(Span::none());
        }
        let (service, method) = rpc_names(request.uri().path());
        let span = rpc_span("client", service, method);
        span.record("peer.region", &*self.region);
        for (key, value) in headers_of(&span) {
            if let Ok(value) = http::HeaderValue::from_str(&value) {
                request
                    .headers_mut()
                    .insert(http::HeaderName::from_static(key), value);
            }
        }
        self.inner.call(request).instrument(span)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpc_paths_split_into_service_and_method() {
        assert_eq!(
            rpc_names("/arrow.flight.protocol.FlightService/DoGet"),
            ("arrow.flight.protocol.FlightService", "DoGet")
        );
        assert_eq!(rpc_names("/nothing"), ("nothing", ""));
        let long = format!("/{}é/x", "a".repeat(127));
        let (service, method) = rpc_names(&long);
        assert!(service.len() <= 128 && method.is_empty(), "{service}");
    }

    const CALLER: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    #[test]
    fn without_an_exporter_nothing_is_injected_and_a_header_changes_nothing() {
        let span = tracing::info_span!("test");
        continue_trace(&span, |key| (key == TRACEPARENT).then_some(CALLER));
        assert!(headers_of(&span).is_empty());
        assert_eq!(current_traceparent(), None);
    }

    /// Runs `f` under a subscriber that gives spans OpenTelemetry contexts (no exporter:
    /// only the ids matter here).
    fn traced<T>(f: impl FnOnce() -> T) -> T {
        use opentelemetry::trace::TracerProvider;
        use tracing_subscriber::layer::SubscriberExt;
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, f)
    }

    fn trace_id(traceparent: &str) -> &str {
        traceparent.split('-').nth(1).unwrap_or_default()
    }

    #[test]
    fn a_callers_traceparent_is_continued_with_a_new_span_id() {
        traced(|| {
            let span = tracing::info_span!("server");
            continue_trace(&span, |key| (key == TRACEPARENT).then_some(CALLER));
            let headers = headers_of(&span);
            let (_, ours) = headers
                .iter()
                .find(|(key, _)| *key == TRACEPARENT)
                .expect("a traceparent");
            assert_eq!(trace_id(ours), trace_id(CALLER));
            assert_ne!(ours.as_str(), CALLER, "the node's span has its own id");
            // A child span carries the same trace on.
            let child = span.in_scope(|| current_traceparent().expect("in a span"));
            assert_eq!(trace_id(&child), trace_id(CALLER));
        });
    }

    #[test]
    fn malformed_or_oversize_context_starts_a_trace_of_its_own() {
        traced(|| {
            let padded = format!("{CALLER}{}", " ".repeat(TRACE_CONTEXT_BYTES_MAX));
            for hostile in [
                "",
                "garbage",
                "00-00000000000000000000000000000000-b7ad6b7169203331-01",
                "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
                "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                padded.as_str(),
            ] {
                let span = tracing::info_span!("server");
                continue_trace(&span, |key| (key == TRACEPARENT).then_some(hostile));
                let ours = span
                    .in_scope(current_traceparent)
                    .expect("a trace of its own");
                assert_ne!(trace_id(&ours), trace_id(CALLER), "{hostile:?}");
                assert_ne!(trace_id(&ours), "00000000000000000000000000000000");
            }
        });
    }
}
