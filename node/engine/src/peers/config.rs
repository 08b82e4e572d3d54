//! The peers' sections of the node configuration (`[mesh]` and `[[peers]]`, README
//! "Configuration").

use std::path::PathBuf;

use serde::Deserialize;

/// This node's mesh credentials (from `domicile certs`). Relative paths are relative to
/// the config file's folder.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeshConfig {
    /// The cluster CA certificate (PEM): peers must present certificates it signed.
    pub ca_cert: PathBuf,
    /// This node's certificate (PEM), naming its region.
    pub cert: PathBuf,
    /// This node's private key (PEM).
    pub key: PathBuf,
    /// How often each peer is pinged (reachability and round-trip time), in ms.
    #[serde(default = "default_ping_interval_ms")]
    pub ping_interval_ms: u64,
    /// How long a peer call may take before the peer counts as unreachable, in ms.
    #[serde(default = "default_peer_timeout_ms")]
    pub peer_timeout_ms: u64,
}

fn default_ping_interval_ms() -> u64 {
    1000
}

fn default_peer_timeout_ms() -> u64 {
    2000
}

/// A peer this node calls: its region and the address of its `listen.peer`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    pub region: String,
    pub address: String,
}
