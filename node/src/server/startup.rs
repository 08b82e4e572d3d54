//! The phases of a node's start, in order: open storage, let clients in (users, TLS),
//! open plugins, reach the peers, build the engines, start replication. Binding the
//! listeners (`listeners`) and serving (`serving`) follow. Each phase takes what the
//! ones before it made and fails with the config key or path to fix.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::Duration;

use anyhow::Context;
use datafusion::catalog::SchemaProvider;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::transport::ServerTlsConfig;

use super::client_tls;
use crate::auth::{Authenticator, UserRecord};
use crate::cache::NodeCache;
use crate::cdc::{CdcStatus, Follower, KafkaFollower, KafkaPublisher, Relay};
use crate::config::NodeConfig;
use crate::federation::{Federation, MeshAggregatePushdown, MeshSchema};
use crate::metrics::Metrics;
use crate::peers::{MeshTls, PeerMonitor, PeerRouter};
use crate::plugins::{PluginLimits, PluginRegistry, PluginRuntime, keyed_hash_secret};
use crate::residency::{GuardMode, ResidencyGuard};
use crate::saga::SagaEngine;
use crate::sql::{NodeIdentity, START_SAGA, SqlEngine, StartSagaFunction, SystemTable};
use crate::storage::{CloseWatch, Store};

/// The node's durable state, open.
pub(super) struct Storage {
    pub store: Store,
    pub cache: Arc<NodeCache>,
    /// Signals when the database file is closed (after the last handle is dropped).
    pub closed: CloseWatch,
    /// The node's keyed-hash secret (`plugins::keyed_hash_secret`).
    secret: Arc<[u8]>,
}

/// Phase 1: the database under `data_dir` (crash recovery runs here), the node's
/// secret, records moved to their current layout, and the cache.
pub(super) async fn open_storage(config: &NodeConfig) -> anyhow::Result<Storage> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data_dir {}", config.data_dir.display()))?;
    let database: PathBuf = config.data_dir.join("domicile.redb");
    let commit_window = Duration::from_micros(config.storage.commit_window_us);
    let store = Store::open_with_window(&database, commit_window)
        .with_context(|| format!("cannot open storage at {}", database.display()))?;
    let secret = keyed_hash_secret::load_or_create(&store)
        .await
        .context("cannot load the keyed-hash secret")?;
    crate::saga::legacy_records::move_to_orchestrators(&store, &config.region)
        .await
        .context("cannot move saga participant records to their orchestrators")?;
    let cache = NodeCache::open(
        &config.data_dir.join("cache"),
        config.cache.clone(),
        &secret,
    )
    .await
    .context("cannot open the cache")?;
    if cache.caches_local_rows() {
        store.attach_row_cache(Arc::clone(&cache) as Arc<dyn crate::storage::RowCache>);
    }
    let closed = store.close_watch();
    Ok(Storage {
        store,
        cache,
        closed,
        secret,
    })
}

/// Who may log in, and the client listeners' TLS.
pub(super) struct ClientAccess {
    pub auth: Arc<Authenticator>,
    pub tls: Option<ServerTlsConfig>,
}

/// Phase 2: the configured users, and `[listen.tls]`. Demo passwords are refused on a
/// listener reachable from other hosts.
pub(super) fn client_access(config: &NodeConfig) -> anyhow::Result<ClientAccess> {
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
    let tls = config
        .listen
        .tls
        .as_ref()
        .map(client_tls::server_config)
        .transpose()?;
    Ok(ClientAccess { auth, tls })
}

/// Phase 3: the plugin runtime and registry, with the active versions loaded from
/// storage and the trust (`trusted_keys`, `plugins.minimum_versions`) validated config
/// parsed.
pub(super) async fn open_plugins(
    config: &NodeConfig,
    storage: &Storage,
) -> anyhow::Result<Arc<PluginRegistry>> {
    let limits = PluginLimits {
        call_deadline: Duration::from_millis(config.plugins.call_deadline_ms),
        memory_max_bytes: config.plugins.memory_max_bytes,
        component_size_max_bytes: config.plugins.component_size_max_bytes,
    };
    let runtime = PluginRuntime::new(limits).context("cannot start the plugin runtime")?;
    PluginRegistry::open(
        runtime,
        storage.store.clone(),
        config.trust()?,
        Arc::clone(&storage.secret),
    )
    .context("cannot open the plugin registry")
}

/// The way to the other regions' nodes.
pub(super) struct Mesh {
    /// The node's mesh identity (`[mesh]`); `None` for a node alone.
    pub tls: Option<MeshTls>,
    pub router: Arc<PeerRouter>,
    pub monitor: Arc<PeerMonitor>,
}

/// Phase 4: the mesh certificate, a channel to each peer, and their reachability
/// (pinged in the background).
pub(super) fn connect_mesh(config: &NodeConfig) -> anyhow::Result<Mesh> {
    let Some(mesh) = &config.mesh else {
        return Ok(Mesh {
            tls: None,
            router: Arc::new(PeerRouter::none(&config.region)),
            monitor: Arc::new(PeerMonitor::none()),
        });
    };
    let tls = MeshTls::load(mesh, &config.region)?;
    let router = PeerRouter::new(
        &config.region,
        &config.peers,
        &tls,
        Duration::from_millis(mesh.peer_timeout_ms),
    )?;
    let monitor = if config.peers.is_empty() {
        PeerMonitor::none()
    } else {
        PeerMonitor::start(
            &config.region,
            &config.peers,
            &router,
            Duration::from_millis(mesh.ping_interval_ms),
        )?
    };
    Ok(Mesh {
        tls: Some(tls),
        router: Arc::new(router),
        monitor: Arc::new(monitor),
    })
}

/// What answers statements and runs sagas.
pub(super) struct Engines {
    pub metrics: Arc<Metrics>,
    pub plugins: Arc<PluginRegistry>,
    pub guard: Arc<ResidencyGuard>,
    pub sagas: Arc<SagaEngine>,
    pub engine: Arc<SqlEngine>,
    pub cdc: Arc<CdcStatus>,
}

/// Phase 5: the residency guard, the saga engine, the SQL engine with the `mesh`
/// schema, and the sagas a previous run left unfinished, resumed.
pub(super) fn build_engines(
    config: &NodeConfig,
    storage: &Storage,
    plugins: &Arc<PluginRegistry>,
    mesh: &Mesh,
) -> anyhow::Result<Engines> {
    let identity = Arc::new(NodeIdentity {
        region: Arc::from(config.region.as_str()),
        jurisdiction: config.jurisdiction.clone(),
        started_at_unix_ms: crate::clock::now_unix_ms(),
    });
    if config.residency.guard == GuardMode::Off {
        tracing::warn!(
            "residency guard is OFF: rows are stored and results leave without policy decisions or audit"
        );
    }
    let guard = Arc::new(ResidencyGuard::new(
        Arc::clone(plugins),
        storage.store.clone(),
        Arc::clone(&identity.region),
        identity.jurisdiction.clone(),
        config.residency.guard,
    ));
    let sagas = Arc::new(SagaEngine::new(
        storage.store.clone(),
        Arc::clone(plugins),
        Arc::clone(&guard),
        Arc::clone(&mesh.router),
        (&config.region, &config.jurisdiction),
        Duration::from_millis(config.saga.step_timeout_ms),
    ));
    let metrics = Arc::new(Metrics::new());
    let cdc = Arc::new(CdcStatus::default());
    let engine = SqlEngine::builder(
        storage.store.clone(),
        Arc::clone(&identity),
        Arc::clone(&metrics),
        Arc::clone(&guard),
        Arc::clone(&mesh.router),
    )
    .schema("mesh", mesh_schema(config, storage, mesh, &guard))
    .optimizer_rule(Arc::new(MeshAggregatePushdown))
    .table_function(
        START_SAGA,
        Arc::new(StartSagaFunction::new(Arc::clone(&sagas))),
    )
    .system_tables(system_tables(storage, &identity, plugins, mesh, &cdc))
    .build();
    // Idle interactive transactions are rolled back (their snapshots released).
    engine.transactions().start_reaper();
    let resumed = sagas.resume_all().context("cannot read the saga log")?;
    if resumed > 0 {
        tracing::info!(sagas = resumed, "resuming unfinished sagas");
    }
    Ok(Engines {
        metrics,
        plugins: Arc::clone(plugins),
        guard,
        sagas,
        engine,
        cdc,
    })
}

/// Makes the `mesh` schema (every region's rows of a table) once the engine's address
/// is known: its own leg runs on this node's engine.
fn mesh_schema(
    config: &NodeConfig,
    storage: &Storage,
    mesh: &Mesh,
    guard: &Arc<ResidencyGuard>,
) -> impl FnOnce(Weak<SqlEngine>) -> Arc<dyn SchemaProvider> + 'static {
    let region = config.region.clone();
    let timeout = Duration::from_millis(config.federation.timeout_ms);
    let router = Arc::clone(&mesh.router);
    let cache = Arc::clone(&storage.cache);
    let guard = Arc::clone(guard);
    let store = storage.store.clone();
    move |engine| {
        let federation = Federation::new(&region, router, timeout, Some(cache), guard, engine);
        Arc::new(MeshSchema::new(store, federation))
    }
}

/// Schema `system`: what storage holds, the plugins, the mesh and replication, the
/// cache.
fn system_tables(
    storage: &Storage,
    identity: &Arc<NodeIdentity>,
    plugins: &Arc<PluginRegistry>,
    mesh: &Mesh,
    cdc: &Arc<CdcStatus>,
) -> Vec<SystemTable> {
    let mut tables = SystemTable::of_storage(&storage.store, identity);
    tables.extend([
        SystemTable::plugins(Arc::clone(plugins)),
        SystemTable::regions(
            Arc::clone(identity),
            Arc::clone(&mesh.monitor),
            Arc::clone(cdc),
        ),
        SystemTable::cdc(storage.store.clone(), Arc::clone(cdc)),
        SystemTable::cache(Some(Arc::clone(&storage.cache))),
    ]);
    tables
}

/// Phase 6: the outbox relay, and either the Kafka publisher and consumer
/// (`cdc.kafka_brokers`) or a follower of each peer's change stream. Each task ends
/// when `stop` turns true.
pub(super) fn start_replication(
    config: &NodeConfig,
    store: &Store,
    plugins: &Arc<PluginRegistry>,
    engines: &Engines,
    router: &Arc<PeerRouter>,
    stop: &watch::Receiver<bool>,
) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let mut tasks = Vec::new();
    let destinations = match router.peer_regions() {
        regions if regions.is_empty() => vec!["*".to_string()],
        regions => regions,
    };
    let relay = Relay {
        store: store.clone(),
        plugins: Arc::clone(plugins),
        guard: Arc::clone(&engines.guard),
        region: config.region.clone(),
        jurisdiction: config.jurisdiction.clone(),
        destinations,
        status: Arc::clone(&engines.cdc),
        acknowledged_by: config
            .cdc
            .kafka_brokers
            .is_some()
            .then_some(crate::cdc::KAFKA_PUBLISHED_KEY),
    };
    tasks.push(tokio::spawn(relay.run(stop.clone())));
    let Some(brokers) = &config.cdc.kafka_brokers else {
        for source in router.peer_regions() {
            let follower = Follower {
                store: store.clone(),
                router: Arc::clone(router),
                source,
                status: Arc::clone(&engines.cdc),
            };
            tasks.push(tokio::spawn(follower.run(stop.clone())));
        }
        return Ok(tasks);
    };
    let group = config
        .cdc
        .kafka_group
        .clone()
        .unwrap_or_else(|| format!("domicile-replica-{}", config.region));
    let publisher = KafkaPublisher::new(
        store.clone(),
        brokers,
        &config.region,
        Arc::clone(&engines.cdc),
    )
    .context("cannot create the Kafka producer (cdc.kafka_brokers)")?;
    let consumer = KafkaFollower::new(
        store.clone(),
        brokers,
        &group,
        &config.region,
        config.peers.iter().map(|peer| peer.region.clone()),
        Arc::clone(&engines.cdc),
    )
    .context("cannot create the Kafka consumer (cdc.kafka_brokers)")?;
    tasks.push(tokio::spawn(publisher.run(stop.clone())));
    tasks.push(tokio::spawn(consumer.run(stop.clone())));
    Ok(tasks)
}
