//! An OTLP/gRPC trace receiver in the test process: the collector's `TraceService`
//! (OpenTelemetry's own protocol definitions) on a loopback port of the OS's choosing,
//! keeping every span the nodes export, with the `domicile.region` of the node that
//! exported it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};

/// One exported span, ids in lower-case hex as W3C `traceparent` writes them.
#[derive(Clone, Debug)]
pub struct ExportedSpan {
    /// The `domicile.region` resource attribute of the node that exported it.
    pub region: String,
    pub name: String,
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    /// OTLP's `SpanKind`: 2 server, 3 client.
    pub kind: i32,
    pub attributes: Vec<(String, String)>,
    /// The trace ids of its links.
    pub linked_traces: Vec<String>,
}

impl ExportedSpan {
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<ExportedSpan>>>);

#[tonic::async_trait]
impl TraceService for Received {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = Vec::new();
        for resource_spans in request.into_inner().resource_spans {
            let region = resource_spans
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|kv| kv.key == "domicile.region")
                .map(|kv| text(kv.value.as_ref()))
                .unwrap_or_default();
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    spans.push(ExportedSpan {
                        region: region.clone(),
                        name: span.name,
                        trace_id: hex::encode(&span.trace_id),
                        span_id: hex::encode(&span.span_id),
                        parent_span_id: hex::encode(&span.parent_span_id),
                        kind: span.kind,
                        attributes: span.attributes.iter().map(pair).collect(),
                        linked_traces: span
                            .links
                            .iter()
                            .map(|link| hex::encode(&link.trace_id))
                            .collect(),
                    });
                }
            }
        }
        if let Ok(mut received) = self.0.lock() {
            received.extend(spans);
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

fn pair(kv: &KeyValue) -> (String, String) {
    (kv.key.clone(), text(kv.value.as_ref()))
}

fn text(value: Option<&AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

/// The receiver; it stops when dropped.
pub struct OtlpReceiver {
    /// `http://127.0.0.1:<port>`, for `[telemetry] otlp_endpoint`.
    pub endpoint: String,
    received: Received,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl OtlpReceiver {
    pub async fn start() -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let received = Received::default();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let service = TraceServiceServer::new(received.clone());
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(
                    tokio_stream::wrappers::TcpListenerStream::new(listener),
                    async {
                        let _ = stopped.await;
                    },
                ),
        );
        Ok(Self {
            endpoint,
            received,
            _stop: stop,
        })
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ExportedSpan> {
        self.received
            .0
            .lock()
            .map(|spans| spans.clone())
            .unwrap_or_default()
    }

    /// The spans received, once `done` accepts them; panics with what was received
    /// after `timeout`.
    pub async fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&[ExportedSpan]) -> bool,
    ) -> Vec<ExportedSpan> {
        let deadline = Instant::now() + timeout;
        loop {
            let spans = self.spans();
            if done(&spans) {
                return spans;
            }
            if Instant::now() >= deadline {
                let names: Vec<String> = spans
                    .iter()
                    .map(|s| format!("{}:{}:{}", s.region, s.name, s.trace_id))
                    .collect();
                panic!("{what}: not within {timeout:?}; received {names:#?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
