use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;

use super::Metrics;
use crate::cdc::CdcStatus;
use crate::connection_gate::{ConnectionGate, GatedListener, GatedStream};
use crate::plugins::PluginRegistry;
use crate::storage::Store;

/// What a scrape reads: the registry, and the state copied into it just before.
#[derive(Clone)]
pub struct MetricsState {
    pub metrics: Arc<Metrics>,
    pub store: Store,
    pub plugins: Arc<PluginRegistry>,
    pub cdc: Arc<CdcStatus>,
    pub cache: Arc<crate::cache::NodeCache>,
    pub auth: Arc<crate::auth::Authenticator>,
    /// Every listener's connection gate.
    pub connections: Vec<Arc<ConnectionGate>>,
}

/// Serves `GET /metrics` on `listener` until the future is dropped.
pub async fn serve_metrics(listener: GatedListener, state: MetricsState) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(scrape))
        .with_state(state);
    axum::serve(listener, app).await
}

async fn scrape(State(state): State<MetricsState>) -> impl IntoResponse {
    state.metrics.observe_storage(&state.store);
    state.metrics.observe_plugins(&state.plugins);
    state.metrics.observe_auth(state.auth.login_refusals());
    state.metrics.observe_connections(&state.connections);
    let store = state.store.clone();
    let backlog = tokio::task::spawn_blocking(move || store.outbox_backlog())
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    state.metrics.observe_cdc(&state.cdc, &backlog);
    state.metrics.observe_cache(&state.cache.report());
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.encode(),
    )
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
