//! The cache's section of the node configuration (`[cache]`, README "Configuration").

use serde::Deserialize;

/// The hybrid cache (memory + disk under `<data_dir>/cache`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// Memory tier capacity, bytes (local rows and remote results).
    #[serde(default = "default_cache_memory_bytes")]
    pub memory_bytes: u64,
    /// Disk tier capacity, bytes (remote results); 0: no disk tier.
    #[serde(default = "default_cache_disk_bytes")]
    pub disk_bytes: u64,
    /// How long other regions' answers are served from the cache unless the table sets
    /// `cache_ttl_ms`, in milliseconds; 0: not cached.
    #[serde(default = "default_cache_remote_ttl_ms")]
    pub remote_ttl_ms: u64,
    /// Whether point reads of this node's own rows are cached (in memory).
    #[serde(default = "default_true")]
    pub local_rows: bool,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            memory_bytes: default_cache_memory_bytes(),
            disk_bytes: default_cache_disk_bytes(),
            remote_ttl_ms: default_cache_remote_ttl_ms(),
            local_rows: true,
        }
    }
}

fn default_cache_memory_bytes() -> u64 {
    64 * 1024 * 1024
}

fn default_cache_disk_bytes() -> u64 {
    256 * 1024 * 1024
}

fn default_cache_remote_ttl_ms() -> u64 {
    5_000
}

fn default_true() -> bool {
    true
}
