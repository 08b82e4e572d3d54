//! Phase 8: the gRPC services and the metrics endpoint on their listeners, served until
//! the node is told to stop.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use arrow_flight::flight_service_server::FlightServiceServer;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic_health::ServingStatus;
use tonic_health::pb::health_server::{Health, HealthServer};

use super::call_limit::{CallBounds, CallLimitLayer};
use super::listeners::Bound;
use super::startup::{ClientAccess, Engines, Mesh, Storage};
use crate::admin::AdminService;
use crate::admin::proto::admin_server::AdminServer;
use crate::config::{ListenConfig, NodeConfig};
use crate::connection_gate::GatedListener;
use crate::flight::{AdvertisedActions, CLIENT_ACTIONS, FlightSqlServer, MESH_LEG_ACTIONS};
use crate::limits::{
    CONNECTION_AGE_GRACE_S, CONNECTION_AGE_MAX_S, GRPC_MESSAGE_SIZE_MAX_BYTES,
    HTTP2_HEADER_LIST_BYTES_MAX, HTTP2_KEEPALIVE_INTERVAL_S, HTTP2_KEEPALIVE_TIMEOUT_S,
    HTTP2_STREAMS_PER_CONNECTION_MAX,
};
use crate::metrics::{MetricsState, serve_metrics};
use crate::peer_api::{PeerFlightSql, PeerService};
use crate::peers::proto::peer_server::PeerServer;

/// A gRPC server whose calls pass a [`CallLimitLayer`].
type LimitedServer = tonic::transport::Server<CallLimitStack>;
/// A [`LimitedServer`] with its services added.
type LimitedRouter = tonic::transport::server::Router<CallLimitStack>;
type CallLimitStack = tower::layer::util::Stack<CallLimitLayer, tower::layer::util::Identity>;

/// Serves every listener of `bound` until `stop` turns true; the task ends with the
/// first server's failure, or when all have stopped.
pub(super) fn serve(
    config: &NodeConfig,
    bound: Bound,
    storage: &Storage,
    access: &ClientAccess,
    mesh: &Mesh,
    engines: &Engines,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<JoinHandle<anyhow::Result<()>>> {
    let Bound {
        flight_sql,
        metrics,
        admin,
        peer,
        gates,
        ..
    } = bound;
    let flight_sql_service = flight_service(access, engines);
    let flight_health = health::<FlightServiceServer<AdvertisedActions<FlightSqlServer>>>();
    let flight = serve_client(&config.listen, access, flight_sql, stop.clone(), |server| {
        server
            .add_service(flight_health)
            .add_service(flight_sql_service)
    })?;
    let admin = admin
        .map(|listener| {
            let service = admin_service(access, engines);
            let health = health::<AdminServer<AdminService>>();
            serve_client(&config.listen, access, listener, stop.clone(), |server| {
                server.add_service(health).add_service(service)
            })
        })
        .transpose()?;
    let peer = match (peer, &mesh.tls) {
        (Some(listener), Some(_)) => Some(peer_server(config, mesh, engines, listener, &stop)?),
        _ => None,
    };
    let metrics_state = MetricsState {
        metrics: Arc::clone(&engines.metrics),
        region: Arc::from(config.region.as_str()),
        store: storage.store.clone(),
        plugins: Arc::clone(&engines.plugins),
        guard: Arc::clone(&engines.guard),
        sagas: Arc::clone(&engines.sagas),
        peers: Arc::clone(&mesh.monitor),
        cdc: Arc::clone(&engines.cdc),
        cache: Arc::clone(&storage.cache),
        auth: Arc::clone(&access.auth),
        connections: gates,
    };
    let mut metrics_stop = stop;
    Ok(tokio::spawn(async move {
        let metrics = async move {
            match metrics {
                Some(listener) => tokio::select! {
                    served = serve_metrics(listener, metrics_state) => served.map_err(anyhow::Error::from),
                    _ = metrics_stop.wait_for(|stop| *stop) => Ok(()),
                },
                None => Ok(()),
            }
        };
        let optional = |server: Option<Served>| async move {
            match server {
                Some(server) => server.await,
                None => Ok(()),
            }
        };
        let (flight, metrics, admin, peer) =
            tokio::join!(flight, metrics, optional(admin), optional(peer));
        flight.context("flight sql server failed")?;
        admin.context("admin server failed")?;
        peer.context("peer server failed")?;
        metrics
    }))
}

/// `grpc.health.v1.Health` for a listener serving `S`: SERVING for the server as a
/// whole ("") and for `S` by its gRPC name, NOT_FOUND for a service the listener does
/// not carry. Unauthenticated, as health probes are; it tells nothing but that.
fn health<S: tonic::server::NamedService>() -> HealthServer<impl Health> {
    let (reporter, server) = tonic_health::server::health_reporter();
    // The reporter's statuses live in a lock only its own methods take; nothing holds it
    // yet, so setting them cannot wait.
    futures::executor::block_on(reporter.set_service_status(S::NAME, ServingStatus::Serving));
    server
}

/// One server, serving until told to stop.
type Served = std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<()>> + Send>>;

/// Ends when `stop` turns true (or its sender is gone).
async fn until(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// The Flight SQL service, for `listen.flight_sql`.
fn flight_service(
    access: &ClientAccess,
    engines: &Engines,
) -> FlightServiceServer<AdvertisedActions<FlightSqlServer>> {
    let service = FlightSqlServer::new(
        Arc::clone(&engines.engine),
        Arc::clone(&access.auth),
        Arc::clone(&engines.metrics),
    );
    FlightServiceServer::new(AdvertisedActions::new(service, CLIENT_ACTIONS))
        .max_decoding_message_size(GRPC_MESSAGE_SIZE_MAX_BYTES)
        .max_encoding_message_size(GRPC_MESSAGE_SIZE_MAX_BYTES)
}

/// The admin API, for `listen.admin`.
fn admin_service(access: &ClientAccess, engines: &Engines) -> AdminServer<AdminService> {
    AdminServer::new(AdminService::new(
        Arc::clone(&access.auth),
        Arc::clone(&engines.plugins),
        Arc::clone(&engines.sagas),
        Arc::clone(&engines.guard),
    ))
    .max_decoding_message_size(GRPC_MESSAGE_SIZE_MAX_BYTES)
}

/// Serves the service `add` registers on a client listener (hardened HTTP/2,
/// `[listen.tls]` if set, the call bounds) until `stop` turns true.
fn serve_client(
    listen: &ListenConfig,
    access: &ClientAccess,
    listener: GatedListener,
    stop: watch::Receiver<bool>,
    add: impl FnOnce(&mut LimitedServer) -> LimitedRouter,
) -> anyhow::Result<Served> {
    let mut server = client_server(listen, access)?;
    let served = add(&mut server).serve_with_incoming_shutdown(listener.incoming(), until(stop));
    Ok(Box::pin(async move { Ok(served.await?) }))
}

/// The peer API and the `mesh.<table>` legs (Flight SQL) on `listen.peer`, with
/// mutual TLS: only nodes holding a certificate of the cluster CA get in.
fn peer_server(
    config: &NodeConfig,
    mesh: &Mesh,
    engines: &Engines,
    listener: GatedListener,
    stop: &watch::Receiver<bool>,
) -> anyhow::Result<Served> {
    let Some(tls) = &mesh.tls else {
        anyhow::bail!("listen.peer needs [mesh] (ca_cert, cert, key)");
    };
    let peers = || config.peers.iter().map(|p| p.region.clone());
    let service = PeerServer::new(PeerService::new(
        config.region.clone(),
        peers(),
        Arc::clone(&engines.engine),
        Arc::clone(&engines.sagas),
        stop.clone(),
    ))
    .max_decoding_message_size(GRPC_MESSAGE_SIZE_MAX_BYTES);
    let legs = PeerFlightSql::new(Arc::clone(&engines.engine), peers());
    let legs = FlightServiceServer::new(AdvertisedActions::new(legs, MESH_LEG_ACTIONS))
        .max_decoding_message_size(GRPC_MESSAGE_SIZE_MAX_BYTES)
        .max_encoding_message_size(GRPC_MESSAGE_SIZE_MAX_BYTES);
    let server = hardened(tonic::transport::Server::builder())
        .tls_config(tls.server())
        .context("mesh TLS configuration")?
        .layer(call_limit(&config.listen))
        .add_service(health::<PeerServer<PeerService>>())
        .add_service(service)
        .add_service(legs)
        .serve_with_incoming_shutdown(listener.incoming(), until(stop.clone()));
    Ok(Box::pin(async move { Ok(server.await?) }))
}

/// A server for a client listener: hardened HTTP/2, `[listen.tls]`, the call bounds.
fn client_server(listen: &ListenConfig, access: &ClientAccess) -> anyhow::Result<LimitedServer> {
    let builder = hardened(tonic::transport::Server::builder());
    let builder = match &access.tls {
        Some(tls) => builder
            .tls_config(tls.clone())
            .context("listen.tls: the certificate and key do not make a TLS identity")?,
        None => builder,
    };
    Ok(builder.layer(call_limit(listen)))
}

/// The call bounds of one listener, from `[listen]`: one layer per listener, whose
/// counts are shared by every connection it is applied to.
fn call_limit(listen: &ListenConfig) -> CallLimitLayer {
    CallLimitLayer::new(CallBounds {
        per_listener: listen.calls_in_flight,
        per_address: listen.calls_in_flight_per_address,
    })
}

/// The HTTP/2 settings every gRPC listener serves with: keepalive pings close
/// connections whose client vanished or stopped answering; a connection's streams and
/// headers are bounded; a connection older than `CONNECTION_AGE_MAX_S` is asked to
/// reconnect (`limits.rs`). Every call gets a span that continues the caller's W3C
/// trace context (`trace_context::server_span`).
fn hardened(builder: tonic::transport::Server) -> tonic::transport::Server {
    builder
        .trace_fn(crate::trace_context::server_span)
        .http2_keepalive_interval(Some(Duration::from_secs(HTTP2_KEEPALIVE_INTERVAL_S)))
        .http2_keepalive_timeout(Some(Duration::from_secs(HTTP2_KEEPALIVE_TIMEOUT_S)))
        .max_concurrent_streams(HTTP2_STREAMS_PER_CONNECTION_MAX)
        .http2_max_header_list_size(HTTP2_HEADER_LIST_BYTES_MAX)
        .max_connection_age(Duration::from_secs(CONNECTION_AGE_MAX_S))
        .max_connection_age_grace(Duration::from_secs(CONNECTION_AGE_GRACE_S))
}
