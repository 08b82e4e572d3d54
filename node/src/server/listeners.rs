//! Binding a node's listeners and admitting connections through a gate on each.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;

use super::Listening;
use crate::config::NodeConfig;
use crate::connection_gate::{ConnectionGate, ConnectionLimits, GatedListener};
use crate::limits::{METRICS_CONNECTION_LIFETIME_MAX_S, METRICS_CONNECTIONS_MAX};

/// Every listener of the node, bound, each behind its gate.
pub(super) struct Bound {
    pub flight_sql: GatedListener,
    pub metrics: Option<GatedListener>,
    pub admin: Option<GatedListener>,
    pub peer: Option<GatedListener>,
    /// The gates, for `/metrics` (connections open and refused, per listener).
    pub gates: Vec<Arc<ConnectionGate>>,
    pub listening: Listening,
}

/// Phase 7: binds `listen.flight_sql` and whichever of `listen.metrics`,
/// `listen.admin` and `listen.peer` are set (`peer_listener`, when given, was bound by
/// the caller instead), then gates each: connections per listener (a share of the
/// open-file limit) and per client address (`listen.connections_per_address`), and a
/// deadline for the greeting.
pub(super) async fn bind(
    config: &NodeConfig,
    peer_listener: Option<std::net::TcpListener>,
) -> anyhow::Result<Bound> {
    let listen = &config.listen;
    let flight_sql = bind_one("listen.flight_sql", listen.flight_sql).await?;
    let metrics = bind_optional("listen.metrics", listen.metrics).await?;
    let admin = bind_optional("listen.admin", listen.admin).await?;
    let peer = match peer_listener {
        Some(listener) => {
            listener.set_nonblocking(true)?;
            Some(TcpListener::from_std(listener)?)
        }
        None => bind_optional("listen.peer", listen.peer).await?,
    };
    let address = |l: &Option<TcpListener>| l.as_ref().map(TcpListener::local_addr).transpose();
    let listening = Listening {
        flight_sql: flight_sql.local_addr()?,
        admin: address(&admin)?,
        metrics: address(&metrics)?,
        peer: address(&peer)?,
        tls: listen.tls.is_some(),
    };
    let limits = ConnectionLimits::for_listeners(
        1 + [&metrics, &admin, &peer]
            .iter()
            .filter(|l| l.is_some())
            .count(),
    )
    .with_per_address(listen.connections_per_address);
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
    // Scrapes are short requests: few connections, each briefly (axum sets no header
    // or idle timeout of its own).
    let scrapes = ConnectionLimits {
        per_listener: METRICS_CONNECTIONS_MAX,
        per_address: METRICS_CONNECTIONS_MAX.min(limits.per_address),
        descriptors: limits.descriptors,
    };
    Ok(Bound {
        flight_sql: gate("flight_sql", flight_sql, limits),
        metrics: metrics.map(|l| {
            gate("metrics", l, scrapes)
                .with_lifetime(Duration::from_secs(METRICS_CONNECTION_LIFETIME_MAX_S))
        }),
        admin: admin.map(|l| gate("admin", l, limits)),
        peer: peer.map(|l| gate("peer", l, limits)),
        gates,
        listening,
    })
}

async fn bind_one(key: &str, address: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {key} {address}"))
}

async fn bind_optional(
    key: &str,
    address: Option<SocketAddr>,
) -> anyhow::Result<Option<TcpListener>> {
    match address {
        Some(address) => Ok(Some(bind_one(key, address).await?)),
        None => Ok(None),
    }
}
