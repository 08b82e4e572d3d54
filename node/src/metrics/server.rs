use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;

use super::Metrics;
use crate::cdc::CdcStatus;
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
}

/// Serves `GET /metrics` on `listener` until the future is dropped.
pub async fn serve_metrics(listener: TcpListener, state: MetricsState) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(scrape))
        .with_state(state);
    axum::serve(listener, app).await
}

async fn scrape(State(state): State<MetricsState>) -> impl IntoResponse {
    state.metrics.observe_storage(&state.store);
    state.metrics.observe_plugins(&state.plugins);
    state.metrics.observe_auth(state.auth.login_refusals());
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
