use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;

use super::Metrics;
use crate::plugins::PluginRegistry;
use crate::storage::Store;

#[derive(Clone)]
struct MetricsState {
    metrics: Arc<Metrics>,
    store: Store,
    plugins: Arc<PluginRegistry>,
}

/// Serves `GET /metrics` on `listener` until the future is dropped.
pub async fn serve_metrics(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    store: Store,
    plugins: Arc<PluginRegistry>,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(scrape))
        .with_state(MetricsState {
            metrics,
            store,
            plugins,
        });
    axum::serve(listener, app).await
}

async fn scrape(State(state): State<MetricsState>) -> impl IntoResponse {
    state.metrics.observe_storage(
        state.store.commits(),
        state.store.statements_committed(),
        state.store.rows_read(),
    );
    state.metrics.observe_plugins(&state.plugins);
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.encode(),
    )
}
