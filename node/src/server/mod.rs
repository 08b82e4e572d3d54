//! Starting and stopping one node. The start runs in phases (`startup`: open storage,
//! let clients in, open plugins, reach the peers, build the engines, start replication;
//! `listeners`: bind and gate; `serving`: serve until told to stop); this module holds
//! the running node and its stop.

mod call_limit;
mod client_tls;
mod listeners;
mod serving;
mod startup;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::cache::NodeCache;
use crate::config::NodeConfig;
use crate::saga::SagaEngine;
use crate::sql::SqlEngine;
use crate::storage::CloseWatch;

/// How long a stopping node waits for calls in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// How long a stopping node waits for storage to close after the server stopped.
const STORAGE_CLOSE_GRACE: Duration = Duration::from_secs(5);

/// Where a started node listens.
#[derive(Clone, Debug)]
pub struct Listening {
    pub flight_sql: SocketAddr,
    pub admin: Option<SocketAddr>,
    pub metrics: Option<SocketAddr>,
    pub peer: Option<SocketAddr>,
    /// Whether `flight_sql` and `admin` speak TLS (`[listen.tls]`).
    pub tls: bool,
}

impl Listening {
    /// A client listener's address as the URL stock clients take: `grpc+tls://` with
    /// `[listen.tls]`, `grpc://` without (ADBC, the Go and Java Flight SQL drivers and
    /// `domicile sql` accept both; none accepts `http://`).
    pub fn client_url(&self, address: SocketAddr) -> String {
        let scheme = if self.tls { "grpc+tls" } else { "grpc" };
        format!("{scheme}://{address}")
    }
}

pub struct Node {
    pub listening: Listening,
    pub engine: Arc<SqlEngine>,
    serve: tokio::task::JoinHandle<anyhow::Result<()>>,
    shutdown: tokio::sync::watch::Sender<bool>,
    /// The CDC relay and replica followers; they stop with `shutdown`.
    background: Vec<tokio::task::JoinHandle<()>>,
    sagas: Arc<SagaEngine>,
    cache: Arc<NodeCache>,
    storage_closed: CloseWatch,
}

impl Node {
    /// Opens storage, binds every listener and starts serving.
    pub async fn start(config: &NodeConfig) -> anyhow::Result<Self> {
        Self::start_with_peer_listener(config, None).await
    }

    /// [`Node::start`], serving the peer API on `peer_listener` (already bound by the
    /// caller, who needed the address before the node existed) instead of binding
    /// `listen.peer`.
    pub async fn start_with_peer_listener(
        config: &NodeConfig,
        peer_listener: Option<std::net::TcpListener>,
    ) -> anyhow::Result<Self> {
        config.validate()?;
        let storage = startup::open_storage(config).await?;
        let access = startup::client_access(config)?;
        let plugins = startup::open_plugins(config, &storage).await?;
        let mesh = startup::connect_mesh(config)?;
        let engines = startup::build_engines(config, &storage, &plugins, &mesh)?;
        let (shutdown, stop) = tokio::sync::watch::channel(false);
        let background = startup::start_replication(
            config,
            &storage.store,
            &plugins,
            &engines,
            &mesh.router,
            &stop,
        )?;
        let bound = listeners::bind(config, peer_listener).await?;
        let listening = bound.listening.clone();
        let serve = serving::serve(config, bound, &storage, &access, &mesh, &engines, stop)?;
        Ok(Self {
            listening,
            engine: engines.engine,
            serve,
            shutdown,
            storage_closed: storage.closed,
            background,
            sagas: engines.sagas,
            cache: storage.cache,
        })
    }

    /// Stops accepting calls and lets calls in flight finish, for at most
    /// `SHUTDOWN_GRACE` (clients that keep idle connections open do not hold the node),
    /// then closes storage cleanly.
    pub async fn stop(self) -> anyhow::Result<()> {
        let Self {
            serve,
            shutdown,
            storage_closed,
            engine,
            background,
            sagas,
            cache,
            ..
        } = self;
        let _ = shutdown.send(true);
        sagas.stop(SHUTDOWN_GRACE).await;
        drop(sagas);
        for task in background {
            // Each ends at its next await once told to stop; a stuck one must not keep
            // the node from stopping.
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, task).await;
        }
        let served = match tokio::time::timeout(SHUTDOWN_GRACE, serve).await {
            Ok(served) => served.context("server task panicked")?,
            Err(_) => {
                tracing::warn!(
                    grace_secs = SHUTDOWN_GRACE.as_secs(),
                    "connections still open after the grace period; stopping anyway"
                );
                Ok(())
            }
        };
        drop(engine);
        cache.close().await;
        drop(cache);
        let closed = tokio::task::spawn_blocking(move || storage_closed.wait(STORAGE_CLOSE_GRACE))
            .await
            .unwrap_or(false);
        if closed {
            tracing::info!("storage closed cleanly");
        } else {
            tracing::warn!("storage still in use at exit; the next start runs crash recovery");
        }
        served
    }

    /// Serves until the process gets SIGINT or SIGTERM, then stops cleanly.
    pub async fn run_until_signal(self) -> anyhow::Result<()> {
        wait_for_signal().await;
        tracing::info!("stopping");
        self.stop().await
    }
}

pub(crate) async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
