//! Pings every configured peer on an interval and keeps what it learned: reachability,
//! round-trip time, the last error. `system.regions` reads it.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crate::clock::now_unix_ms;

use super::PeerConfig;
use super::proto::PingRequest;
use super::router::PeerRouter;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerStatus {
    pub region: String,
    pub address: String,
    pub reachable: bool,
    /// Round trip of the last successful ping.
    pub rtt_us: Option<u64>,
    pub last_error: Option<String>,
    pub last_seen_unix_ms: Option<u64>,
}

pub struct PeerMonitor {
    statuses: Arc<RwLock<Vec<PeerStatus>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for PeerMonitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerMonitor")
            .field("peers", &self.tasks.len())
            .finish()
    }
}

impl PeerMonitor {
    /// A monitor for a node without peers.
    pub fn none() -> Self {
        Self {
            statuses: Arc::new(RwLock::new(Vec::new())),
            tasks: Vec::new(),
        }
    }

    /// Starts pinging `peers` as the node of `region`, over the router's own channels:
    /// the pings keep the connections that forwarded reads and writes use open, so no
    /// client call pays for a TCP and TLS handshake across the WAN.
    pub fn start(
        region: &str,
        peers: &[PeerConfig],
        router: &PeerRouter,
        interval: Duration,
    ) -> anyhow::Result<Self> {
        let statuses = Arc::new(RwLock::new(
            peers
                .iter()
                .map(|p| PeerStatus {
                    region: p.region.clone(),
                    address: p.address.clone(),
                    reachable: false,
                    rtt_us: None,
                    last_error: Some("not contacted yet".into()),
                    last_seen_unix_ms: None,
                })
                .collect::<Vec<_>>(),
        ));
        let mut tasks = Vec::new();
        for (index, peer) in peers.iter().enumerate() {
            let mut client = router
                .peer_client(&peer.region)
                .ok_or_else(|| anyhow::anyhow!("peer {} has no channel", peer.region))?;
            let statuses = Arc::clone(&statuses);
            let own_region = region.to_string();
            tasks.push(tokio::spawn(async move {
                let mut ticker = tokio::time::interval(interval);
                ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    ticker.tick().await;
                    let started = Instant::now();
                    let outcome = client
                        .ping(PingRequest {
                            region: own_region.clone(),
                        })
                        .await;
                    let rtt = started.elapsed();
                    let mut all = statuses.write().expect("peer status lock poisoned");
                    let status = &mut all[index];
                    match outcome {
                        Ok(reply) if reply.get_ref().region == status.region => {
                            status.reachable = true;
                            status.rtt_us =
                                Some(u64::try_from(rtt.as_micros()).unwrap_or(u64::MAX));
                            status.last_error = None;
                            status.last_seen_unix_ms = Some(now_unix_ms());
                        }
                        Ok(reply) => {
                            status.reachable = false;
                            status.last_error = Some(format!(
                                "answered as region {}",
                                reply.get_ref().region
                            ));
                        }
                        Err(error) => {
                            if status.reachable {
                                tracing::warn!(peer = %status.region, error = %crate::redact_text::shown(&error.message()), "peer unreachable");
                            }
                            status.reachable = false;
                            status.last_error = Some(describe(&error));
                        }
                    }
                }
            }));
        }
        Ok(Self { statuses, tasks })
    }

    pub fn statuses(&self) -> Vec<PeerStatus> {
        self.statuses
            .read()
            .expect("peer status lock poisoned")
            .clone()
    }
}

/// A status with its transport cause (TLS errors are in the source chain).
fn describe(status: &tonic::Status) -> String {
    use std::error::Error;
    let mut text = status.message().to_string();
    let mut source = status.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    crate::redact_text::shown(&text)
}

impl Drop for PeerMonitor {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}
