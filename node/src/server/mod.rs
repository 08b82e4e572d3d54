//! Starting and stopping one node: open storage, build the SQL engine, bind listeners,
//! serve until told to stop.

mod call_limit;
mod client_tls;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use arrow_flight::flight_service_server::FlightServiceServer;
use tokio::net::TcpListener;

use crate::admin::AdminService;
use crate::admin::proto::admin_server::AdminServer;
use crate::auth::{Authenticator, UserRecord};
use crate::cache::NodeCache;
use crate::cdc::{CdcStatus, Follower, KafkaFollower, KafkaPublisher, Relay};
use crate::config::NodeConfig;
use crate::connection_gate::{ConnectionGate, ConnectionLimits, GatedListener};
use crate::federation::Federation;
use crate::flight::FlightSqlServer;
use crate::limits::{
    CONNECTION_AGE_GRACE_S, CONNECTION_AGE_MAX_S, GRPC_MESSAGE_SIZE_MAX_BYTES,
    HTTP2_HEADER_LIST_BYTES_MAX, HTTP2_KEEPALIVE_INTERVAL_S, HTTP2_KEEPALIVE_TIMEOUT_S,
    HTTP2_STREAMS_PER_CONNECTION_MAX, METRICS_CONNECTION_LIFETIME_MAX_S, METRICS_CONNECTIONS_MAX,
};
use crate::metrics::{Metrics, MetricsState, serve_metrics};
use crate::peer_api::{PeerFlightSql, PeerService};
use crate::peers::proto::peer_server::PeerServer;
use crate::peers::{MeshTls, PeerMonitor, PeerRouter};
use crate::plugins::{
    PluginKind, PluginLimits, PluginRegistry, PluginRuntime, Trust, keyed_hash_secret, signing,
};
use crate::residency::{GuardMode, ResidencyGuard};
use crate::saga::SagaEngine;
use crate::sql::{MeshHandles, NodeIdentity, SqlEngine};
use crate::storage::{CloseWatch, Store};

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
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("cannot create data_dir {}", config.data_dir.display()))?;
        let database: PathBuf = config.data_dir.join("domicile.redb");
        let commit_window = std::time::Duration::from_micros(config.storage.commit_window_us);
        let store = Store::open_with_window(&database, commit_window)
            .with_context(|| format!("cannot open storage at {}", database.display()))?;
        let node_secret = keyed_hash_secret::load_or_create(&store)
            .await
            .context("cannot load the keyed-hash secret")?;
        crate::saga::legacy_records::move_to_orchestrators(&store, &config.region)
            .await
            .context("cannot move saga participant records to their orchestrators")?;
        let cache = NodeCache::open(
            &config.data_dir.join("cache"),
            config.cache.clone(),
            &node_secret,
        )
        .await
        .context("cannot open the cache")?;
        if cache.caches_local_rows() {
            store.attach_row_cache(Arc::clone(&cache) as Arc<dyn crate::storage::RowCache>);
        }

        let users: HashMap<String, UserRecord> = config
            .users
            .iter()
            .map(|u| {
                let record = UserRecord {
                    password_hash: u.password_hash.clone(),
                    role: u.role(),
                    home_region: u.home_region.clone(),
                    compliance: u.compliance.clone(),
                };
                (u.name.clone(), record)
            })
            .collect();
        let auth = Authenticator::new(users, Duration::from_secs(config.auth.token_ttl_secs));
        client_tls::refuse_demo_passwords(&config.listen, &config.users, &auth)?;
        let client_tls = config
            .listen
            .tls
            .as_ref()
            .map(client_tls::server_config)
            .transpose()?;

        let started_at_unix_ms = crate::clock::now_unix_ms();
        let identity = Arc::new(NodeIdentity {
            region: Arc::from(config.region.as_str()),
            jurisdiction: config.jurisdiction.clone(),
            started_at_unix_ms,
        });
        let metrics = Arc::new(Metrics::new());
        let storage_closed = store.close_watch();
        let plugins = open_plugins(config, &store).await?;
        if config.residency.guard == GuardMode::Off {
            tracing::warn!(
                "residency guard is OFF: rows are stored and results leave without policy decisions or audit"
            );
        }
        let guard = Arc::new(ResidencyGuard::new(
            Arc::clone(&plugins),
            store.clone(),
            Arc::clone(&identity.region),
            identity.jurisdiction.clone(),
            config.residency.guard,
        ));
        let mesh_tls = match &config.mesh {
            Some(mesh) => Some(MeshTls::load(mesh, &config.region)?),
            None => None,
        };
        let router = match (&mesh_tls, &config.mesh) {
            (Some(tls), Some(mesh)) => PeerRouter::new(
                &config.region,
                &config.peers,
                tls,
                Duration::from_millis(mesh.peer_timeout_ms),
            )?,
            _ => PeerRouter::none(&config.region),
        };
        let peers = match (&mesh_tls, &config.mesh) {
            (Some(_), Some(mesh)) if !config.peers.is_empty() => PeerMonitor::start(
                &config.region,
                &config.peers,
                &router,
                Duration::from_millis(mesh.ping_interval_ms),
            )?,
            _ => PeerMonitor::none(),
        };
        let router = Arc::new(router);
        let cdc_status = Arc::new(CdcStatus::default());
        let federation = Federation::new(
            &config.region,
            Arc::clone(&router),
            Duration::from_millis(config.federation.timeout_ms),
            Some(Arc::clone(&cache)),
            Arc::clone(&guard),
        );
        let saga_guard = Arc::clone(&guard);
        let sagas = Arc::new(SagaEngine::new(
            store.clone(),
            Arc::clone(&plugins),
            Arc::clone(&guard),
            Arc::clone(&router),
            (&config.region, &config.jurisdiction),
            Duration::from_millis(config.saga.step_timeout_ms),
        ));
        let engine = Arc::new(SqlEngine::new(
            store.clone(),
            Arc::clone(&identity),
            Arc::clone(&metrics),
            Arc::clone(&plugins),
            Arc::clone(&guard),
            MeshHandles {
                peers: Arc::new(peers),
                router: Arc::clone(&router),
                cdc: Arc::clone(&cdc_status),
                sagas: Arc::clone(&sagas),
                mesh_schema: Arc::new(crate::federation::MeshSchema::new(
                    store.clone(),
                    Arc::clone(&federation),
                )),
                optimizer_rules: vec![Arc::new(crate::federation::MeshAggregatePushdown)],
                cache: federation.cache().cloned(),
            },
        ));
        federation.bind(&engine);
        let resumed = sagas.resume_all().context("cannot read the saga log")?;
        if resumed > 0 {
            tracing::info!(sagas = resumed, "resuming unfinished sagas");
        }
        let (shutdown, mut shutdown_signal) = tokio::sync::watch::channel(false);
        let mut background = Vec::new();
        let destinations = match router.peer_regions() {
            regions if regions.is_empty() => vec!["*".to_string()],
            regions => regions,
        };
        let relay = Relay {
            store: store.clone(),
            plugins,
            guard,
            region: config.region.clone(),
            jurisdiction: config.jurisdiction.clone(),
            destinations,
            status: Arc::clone(&cdc_status),
            acknowledged_by: config
                .cdc
                .kafka_brokers
                .is_some()
                .then_some(crate::cdc::KAFKA_PUBLISHED_KEY),
        };
        background.push(tokio::spawn(relay.run(shutdown_signal.clone())));
        if let Some(brokers) = &config.cdc.kafka_brokers {
            let group = config
                .cdc
                .kafka_group
                .clone()
                .unwrap_or_else(|| format!("domicile-replica-{}", config.region));
            let publisher = KafkaPublisher::new(
                store.clone(),
                brokers,
                &config.region,
                Arc::clone(&cdc_status),
            )
            .context("cannot create the Kafka producer (cdc.kafka_brokers)")?;
            let consumer = KafkaFollower::new(
                store.clone(),
                brokers,
                &group,
                &config.region,
                config.peers.iter().map(|peer| peer.region.clone()),
                Arc::clone(&cdc_status),
            )
            .context("cannot create the Kafka consumer (cdc.kafka_brokers)")?;
            background.push(tokio::spawn(publisher.run(shutdown_signal.clone())));
            background.push(tokio::spawn(consumer.run(shutdown_signal.clone())));
        }
        let embedded_sources = if config.cdc.kafka_brokers.is_some() {
            Vec::new()
        } else {
            router.peer_regions()
        };
        for source in embedded_sources {
            let follower = Follower {
                store: store.clone(),
                router: Arc::clone(&router),
                source,
                status: Arc::clone(&cdc_status),
            };
            background.push(tokio::spawn(follower.run(shutdown_signal.clone())));
        }

        let flight_listener = TcpListener::bind(config.listen.flight_sql)
            .await
            .with_context(|| {
                format!(
                    "cannot listen on listen.flight_sql {}",
                    config.listen.flight_sql
                )
            })?;
        let flight_address = flight_listener.local_addr()?;
        let metrics_listener = match config.listen.metrics {
            Some(address) => Some(
                TcpListener::bind(address)
                    .await
                    .with_context(|| format!("cannot listen on listen.metrics {address}"))?,
            ),
            None => None,
        };
        let metrics_address = match &metrics_listener {
            Some(listener) => Some(listener.local_addr()?),
            None => None,
        };
        let admin_listener = match config.listen.admin {
            Some(address) => Some(
                TcpListener::bind(address)
                    .await
                    .with_context(|| format!("cannot listen on listen.admin {address}"))?,
            ),
            None => None,
        };
        let admin_address = match &admin_listener {
            Some(listener) => Some(listener.local_addr()?),
            None => None,
        };
        let peer_listener = match (peer_listener, config.listen.peer) {
            (Some(listener), _) => {
                listener.set_nonblocking(true)?;
                Some(TcpListener::from_std(listener)?)
            }
            (None, Some(address)) => Some(
                TcpListener::bind(address)
                    .await
                    .with_context(|| format!("cannot listen on listen.peer {address}"))?,
            ),
            (None, None) => None,
        };
        let peer_address = match &peer_listener {
            Some(listener) => Some(listener.local_addr()?),
            None => None,
        };
        // Every listener admits connections through a gate (count per listener and per
        // client address, greeting deadline); the open-file limit is split between them.
        let limits = ConnectionLimits::for_listeners(
            1 + [metrics_address, admin_address, peer_address]
                .iter()
                .filter(|a| a.is_some())
                .count(),
        )
        .with_per_address(config.listen.connections_per_address);
        tracing::info!(
            per_listener = limits.per_listener,
            per_address = limits.per_address,
            open_files = limits.descriptors,
            "connection limits"
        );
        let mut gates = Vec::new();
        let mut gate = |name: &'static str, listener: TcpListener, limits: ConnectionLimits| {
            let gate = ConnectionGate::new(name, limits);
            gates.push(Arc::clone(&gate));
            GatedListener::new(listener, gate)
        };
        let flight_listener = gate("flight_sql", flight_listener, limits);
        // Scrapes are short requests: few connections, each briefly (axum sets no
        // header or idle timeout of its own).
        let scrapes = ConnectionLimits {
            per_listener: METRICS_CONNECTIONS_MAX,
            per_address: METRICS_CONNECTIONS_MAX.min(limits.per_address),
            descriptors: limits.descriptors,
        };
        let metrics_listener = metrics_listener.map(|l| {
            gate("metrics", l, scrapes)
                .with_lifetime(Duration::from_secs(METRICS_CONNECTION_LIFETIME_MAX_S))
        });
        let admin_listener = admin_listener.map(|l| gate("admin", l, limits));
        let peer_listener = peer_listener.map(|l| gate("peer", l, limits));
        let peer_server = match (peer_listener, &mesh_tls) {
            (Some(listener), Some(tls)) => {
                let service = PeerServer::new(PeerService::new(
                    config.region.clone(),
                    config.peers.iter().map(|p| p.region.clone()),
                    Arc::clone(&engine),
                    Arc::clone(&sagas),
                    shutdown_signal.clone(),
                ))
                .max_decoding_message_size(GRPC_MESSAGE_SIZE_MAX_BYTES);
                let legs = FlightServiceServer::new(PeerFlightSql::new(
                    Arc::clone(&engine),
                    config.peers.iter().map(|p| p.region.clone()),
                ))
                .max_decoding_message_size(GRPC_MESSAGE_SIZE_MAX_BYTES)
                .max_encoding_message_size(GRPC_MESSAGE_SIZE_MAX_BYTES);
                let router = hardened(tonic::transport::Server::builder())
                    .tls_config(tls.server())
                    .context("mesh TLS configuration")?
                    .layer(call_limit(&config.listen))
                    .add_service(service)
                    .add_service(legs);
                Some((router, listener))
            }
            _ => None,
        };
        let admin_service = AdminServer::new(AdminService::new(
            Arc::clone(&auth),
            Arc::clone(engine.plugins()),
            Arc::clone(&sagas),
            Arc::clone(&saga_guard),
        ))
        .max_decoding_message_size(GRPC_MESSAGE_SIZE_MAX_BYTES);

        let service = FlightServiceServer::new(FlightSqlServer::new(
            Arc::clone(&engine),
            Arc::clone(&auth),
            Arc::clone(&metrics),
        ))
        .max_decoding_message_size(GRPC_MESSAGE_SIZE_MAX_BYTES)
        .max_encoding_message_size(GRPC_MESSAGE_SIZE_MAX_BYTES);
        let mut metrics_shutdown = shutdown_signal.clone();
        let mut admin_shutdown = shutdown_signal.clone();
        let mut peer_shutdown = shutdown_signal.clone();
        let metrics_state = MetricsState {
            metrics,
            store,
            plugins: Arc::clone(engine.plugins()),
            cdc: cdc_status,
            cache: Arc::clone(&cache),
            auth: Arc::clone(&auth),
            connections: gates,
        };
        let client_server = || -> anyhow::Result<LimitedServer> {
            let builder = hardened(tonic::transport::Server::builder());
            let builder = match &client_tls {
                Some(tls) => builder
                    .tls_config(tls.clone())
                    .context("listen.tls: the certificate and key do not make a TLS identity")?,
                None => builder,
            };
            Ok(builder.layer(call_limit(&config.listen)))
        };
        let mut flight_server = client_server()?;
        let mut admin_server = client_server()?;
        let serve = tokio::spawn(async move {
            let flight = flight_server
                .add_service(service)
                .serve_with_incoming_shutdown(flight_listener.incoming(), async move {
                    let _ = shutdown_signal.wait_for(|stop| *stop).await;
                });
            let metrics_server = async move {
                match metrics_listener {
                    Some(listener) => tokio::select! {
                        served = serve_metrics(listener, metrics_state) => served.map_err(anyhow::Error::from),
                        _ = metrics_shutdown.wait_for(|stop| *stop) => Ok(()),
                    },
                    None => Ok(()),
                }
            };
            let admin_server = async move {
                match admin_listener {
                    Some(listener) => admin_server
                        .add_service(admin_service)
                        .serve_with_incoming_shutdown(listener.incoming(), async move {
                            let _ = admin_shutdown.wait_for(|stop| *stop).await;
                        })
                        .await
                        .context("admin server failed"),
                    None => Ok(()),
                }
            };
            let peer = async move {
                match peer_server {
                    Some((router, listener)) => router
                        .serve_with_incoming_shutdown(listener.incoming(), async move {
                            let _ = peer_shutdown.wait_for(|stop| *stop).await;
                        })
                        .await
                        .context("peer server failed"),
                    None => Ok(()),
                }
            };
            let (flight, metrics, admin, peer) =
                tokio::join!(flight, metrics_server, admin_server, peer);
            flight.context("flight sql server failed")?;
            admin?;
            peer?;
            metrics
        });
        Ok(Self {
            listening: Listening {
                flight_sql: flight_address,
                admin: admin_address,
                metrics: metrics_address,
                peer: peer_address,
                tls: config.listen.tls.is_some(),
            },
            engine,
            serve,
            shutdown,
            storage_closed,
            background,
            sagas,
            cache,
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

/// The plugin runtime and registry, with the active versions loaded from storage.
async fn open_plugins(config: &NodeConfig, store: &Store) -> anyhow::Result<Arc<PluginRegistry>> {
    let limits = PluginLimits {
        call_deadline: Duration::from_millis(config.plugins.call_deadline_ms),
        memory_max_bytes: config.plugins.memory_max_bytes,
        component_size_max_bytes: config.plugins.component_size_max_bytes,
    };
    let runtime = PluginRuntime::new(limits).context("cannot start the plugin runtime")?;
    let mut trusted: HashMap<String, Vec<ed25519_dalek::VerifyingKey>> = HashMap::new();
    for key in &config.trusted_keys {
        let public = signing::parse_public_key(&key.public_key).map_err(anyhow::Error::msg)?;
        trusted
            .entry(key.jurisdiction.clone())
            .or_default()
            .push(public);
    }
    let secret = keyed_hash_secret::load_or_create(store)
        .await
        .context("cannot load the keyed-hash secret")?;
    let mut minimum_versions = HashMap::new();
    for (name, &version) in &config.plugins.minimum_versions {
        let kind = name
            .split_once('/')
            .and_then(|(jurisdiction, kind)| Some((jurisdiction, PluginKind::parse(kind)?)));
        let Some((jurisdiction, kind)) = kind else {
            anyhow::bail!("plugins.minimum_versions.{name}: not <jurisdiction>/<kind>");
        };
        minimum_versions.insert((jurisdiction.to_string(), kind), version);
    }
    let trust = Trust {
        keys: trusted,
        minimum_versions,
    };
    PluginRegistry::open(runtime, store.clone(), trust, secret)
        .context("cannot open the plugin registry")
}

/// A gRPC server whose calls pass a [`call_limit::CallLimitLayer`].
type LimitedServer = tonic::transport::Server<
    tower::layer::util::Stack<call_limit::CallLimitLayer, tower::layer::util::Identity>,
>;

/// The call bounds of one listener, from `[listen]`: one layer per listener, whose
/// counts are shared by every connection it is applied to.
fn call_limit(listen: &crate::config::ListenConfig) -> call_limit::CallLimitLayer {
    call_limit::CallLimitLayer::new(call_limit::CallBounds {
        per_listener: listen.calls_in_flight,
        per_address: listen.calls_in_flight_per_address,
    })
}

/// The HTTP/2 settings every gRPC listener serves with: keepalive pings close
/// connections whose client vanished or stopped answering; a connection's streams and
/// headers are bounded; a connection older than `CONNECTION_AGE_MAX_S` is asked to
/// reconnect (`limits.rs`).
fn hardened(builder: tonic::transport::Server) -> tonic::transport::Server {
    builder
        .http2_keepalive_interval(Some(Duration::from_secs(HTTP2_KEEPALIVE_INTERVAL_S)))
        .http2_keepalive_timeout(Some(Duration::from_secs(HTTP2_KEEPALIVE_TIMEOUT_S)))
        .max_concurrent_streams(HTTP2_STREAMS_PER_CONNECTION_MAX)
        .http2_max_header_list_size(HTTP2_HEADER_LIST_BYTES_MAX)
        .max_connection_age(Duration::from_secs(CONNECTION_AGE_MAX_S))
        .max_connection_age_grace(Duration::from_secs(CONNECTION_AGE_GRACE_S))
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
