use axum::Router;
use axum::extract::State;
use axum::http::header::{ACCEPT, CONTENT_TYPE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;

use super::{Format, MetricsState};
use crate::connection_gate::{GatedListener, GatedStream};

/// Serves, on `listener`, until the future is dropped:
/// - `GET /metrics`: the Prometheus exposition (text 0.0.4, or OpenMetrics 1.0 when
///   `Accept` asks for it);
/// - `GET /healthz`: 200 while the process serves HTTP (liveness);
/// - `GET /readyz`: 200 when every readiness check passes, else 503; the body lists
///   each check (`[+] name ok` / `[-] name failed: why`), as Kubernetes' own do.
pub async fn serve_metrics(listener: GatedListener, state: MetricsState) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(scrape))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state);
    axum::serve(listener, app).await
}

async fn scrape(State(state): State<MetricsState>, headers: HeaderMap) -> impl IntoResponse {
    let format = Format::negotiate(headers.get(ACCEPT).and_then(|v| v.to_str().ok()));
    (
        [(CONTENT_TYPE, format.content_type())],
        state.scrape(format).await,
    )
}

async fn healthz() -> impl IntoResponse {
    ([(CONTENT_TYPE, "text/plain; charset=utf-8")], "ok\n")
}

async fn readyz(State(state): State<MetricsState>) -> impl IntoResponse {
    let checks = state.readiness().await;
    let ready = checks.iter().all(|(_, failure)| failure.is_none());
    let mut body = String::new();
    for (name, failure) in &checks {
        match failure {
            None => body.push_str(&format!("[+] {name} ok\n")),
            Some(why) => body.push_str(&format!("[-] {name} failed: {why}\n")),
        }
    }
    body.push_str(if ready { "ready\n" } else { "not ready\n" });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, [(CONTENT_TYPE, "text/plain; charset=utf-8")], body)
}

/// The metrics listener admits connections like the others (`connection_gate`).
impl axum::serve::Listener for GatedListener {
    type Io = GatedStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        self.accept_admitted().await
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        GatedListener::local_addr(self)
    }
}
