//! The node's hybrid cache: foyer, memory in front of disk (`<data_dir>/cache`).
//!
//! Two kinds of entries share it:
//! - **Local rows** (memory only): point reads of rows stored here, filled by snapshots
//!   and invalidated by every commit before the commit is answered (`RowCache`), so a
//!   read never sees a row older than the last acknowledged write. They are valid only
//!   in the process that filled them (a crash between a commit and its invalidation
//!   cannot leave a stale row for the next start).
//! - **Remote results** (memory and disk): the answers other regions gave to `mesh`
//!   query legs, for a TTL (default 5 s, per table `cache_ttl_ms`); no invalidation
//!   crosses regions. They survive restarts on disk and are never served once expired.
//!   Before one is cached, this jurisdiction's policy must allow storing its rows here.
//!
//! foyer has no per-entry TTL: each value carries its expiry (`entry`), checked on read,
//! and a sweeper removes remote results from memory and disk once they expire
//! (`expiry`), so an answer is not kept past its TTL merely because nobody read it.

mod config;
mod entry;
mod expiry;

use std::hash::BuildHasher;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use foyer::{
    BlockEngineConfig, DeviceBuilder, Event, EventListener, FsDeviceBuilder, HybridCache,
    HybridCacheBuilder, HybridCachePolicy,
};
use thiserror::Error;

pub use entry::EntryKind;
use entry::{Entry, now_unix_ms};

pub use crate::limits::CACHE_REMOTE_ENTRY_MAX_BYTES;
use crate::storage::RowCache;
pub use config::CacheConfig;

/// Invalidation stripes: a commit marks the stripes of the keys it changed.
const STRIPES: usize = 4096;
/// Disk blocks; an entry must fit in one.
const DISK_BLOCK_BYTES: usize = 4 * 1024 * 1024;
/// How often expired remote results are swept.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);
/// Local rows are re-read at least this often even without writes (a bound, not the
/// mechanism: commits invalidate them).
const LOCAL_ROW_TTL: Duration = Duration::from_secs(60);

#[derive(Debug, Error)]
pub enum CacheError {
    #[error("cannot open the cache under {path}: {message}")]
    Open { path: String, message: String },
}

/// Counts of one kind of entry.
#[derive(Debug, Default)]
pub struct KindStats {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub inserts: AtomicU64,
    /// Inserts the residency policy refused (nothing was cached).
    pub refused: AtomicU64,
    /// Entries removed because their TTL passed: found so on a read, or swept (or,
    /// for local rows, found from an earlier process).
    pub expired: AtomicU64,
}

/// What `system.cache` and the metrics show.
#[derive(Clone, Debug)]
pub struct CacheReport {
    pub kind: EntryKind,
    pub hits: u64,
    pub misses: u64,
    pub inserts: u64,
    pub refused: u64,
    pub expired: u64,
    pub evictions: u64,
    pub memory_used_bytes: u64,
    pub memory_capacity_bytes: u64,
    pub disk_capacity_bytes: u64,
}

/// The cache's own key, derived from the node's secret with a label of its own, so the
/// redactors' keyed hash and the cache's never share a key.
fn derive_key_secret(node_secret: &[u8]) -> [u8; 32] {
    use hmac::{Hmac, Mac};
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(node_secret)
        .expect("HMAC takes a key of any length");
    mac.update(b"domicile cache keys v1");
    mac.finalize().into_bytes().into()
}

struct Evictions(Arc<AtomicU64>);

impl EventListener for Evictions {
    type Key = Vec<u8>;
    type Value = Vec<u8>;

    fn on_leave(&self, reason: Event, _key: &Vec<u8>, _value: &Vec<u8>) {
        if reason == Event::Evict {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
}

pub struct NodeCache {
    hybrid: HybridCache<Vec<u8>, Vec<u8>>,
    /// Random per process: local-row entries of another process are not served.
    incarnation: u64,
    stripes: Box<[AtomicU64]>,
    commits: AtomicU64,
    local: KindStats,
    remote: KindStats,
    evictions: Arc<AtomicU64>,
    config: CacheConfig,
    hasher: std::collections::hash_map::RandomState,
    /// Keys remote results under HMAC-SHA256(this, key): a leg's key holds its SQL, and
    /// a literal in a filter (an e-mail) must not reach `data_dir/cache` in clear.
    remote_key_secret: [u8; 32],
    /// When each remote result expires, for the sweeper.
    expiry: Mutex<expiry::ExpiryIndex>,
    closed: AtomicBool,
}

impl std::fmt::Debug for NodeCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeCache")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl NodeCache {
    /// Opens the cache under `dir` (created if missing), recovering disk entries.
    /// `node_secret` (the node's keyed-hash secret, at least 32 bytes) keys the hash that
    /// remote results are stored under; a node with another secret finds none of them.
    pub async fn open(
        dir: &Path,
        config: CacheConfig,
        node_secret: &[u8],
    ) -> Result<Arc<Self>, CacheError> {
        let failed = |message: String| CacheError::Open {
            path: dir.display().to_string(),
            message,
        };
        std::fs::create_dir_all(dir).map_err(|e| failed(e.to_string()))?;
        let evictions = Arc::new(AtomicU64::new(0));
        let memory = usize::try_from(config.memory_bytes).unwrap_or(usize::MAX);
        let builder = HybridCacheBuilder::new()
            .with_name("domicile")
            .with_policy(HybridCachePolicy::WriteOnInsertion)
            .with_event_listener(Arc::new(Evictions(Arc::clone(&evictions))))
            .memory(memory)
            .with_weighter(|key: &Vec<u8>, value: &Vec<u8>| key.len() + value.len())
            .storage();
        let builder = if config.disk_bytes > 0 {
            let device = FsDeviceBuilder::new(dir)
                .with_capacity(usize::try_from(config.disk_bytes).unwrap_or(usize::MAX))
                .build()
                .map_err(|e| failed(e.to_string()))?;
            builder.with_engine_config(
                BlockEngineConfig::new(device).with_block_size(DISK_BLOCK_BYTES),
            )
        } else {
            builder
        };
        let hybrid = builder.build().await.map_err(|e| failed(e.to_string()))?;
        let cache = Arc::new(Self {
            hybrid,
            incarnation: rand::random(),
            stripes: (0..STRIPES).map(|_| AtomicU64::new(0)).collect(),
            commits: AtomicU64::new(0),
            local: KindStats::default(),
            remote: KindStats::default(),
            evictions,
            config,
            hasher: std::collections::hash_map::RandomState::new(),
            remote_key_secret: derive_key_secret(node_secret),
            expiry: Mutex::new(expiry::ExpiryIndex::open(dir)),
            closed: AtomicBool::new(false),
        });
        // Entries recovered from disk that expired while the node was down go now.
        cache.sweep(now_unix_ms());
        tokio::spawn(sweeper(Arc::downgrade(&cache)));
        Ok(cache)
    }

    /// Removes every remote result expired at `now_unix_ms` from memory and disk;
    /// returns how many.
    pub fn sweep(&self, now_unix_ms: u64) -> usize {
        let due = match self.expiry.lock() {
            Ok(mut index) => index.expired(now_unix_ms),
            Err(_) => return 0,
        };
        for key in &due {
            self.hybrid.remove(key);
        }
        self.remote
            .expired
            .fetch_add(due.len() as u64, Ordering::Relaxed);
        due.len()
    }

    /// What a remote result is stored under: a keyed hash of `key`, never `key`.
    fn remote_cache_key(&self, key: &[u8]) -> Vec<u8> {
        use hmac::{Hmac, Mac};
        let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(&self.remote_key_secret)
            .expect("HMAC takes a key of any length");
        mac.update(key);
        entry::cache_key(EntryKind::RemoteResult, &mac.finalize().into_bytes())
    }

    /// Writes what memory holds of remote results to disk and stops the cache.
    pub async fn close(&self) {
        self.closed.store(true, Ordering::Release);
        if let Err(error) = self.hybrid.close().await {
            tracing::warn!(error = %error, "the cache did not close cleanly");
        }
    }

    pub fn caches_local_rows(&self) -> bool {
        self.config.local_rows
    }

    /// The TTL of remote results of a table: its own, or the node's default.
    pub fn remote_ttl(&self, table_ttl_ms: Option<u64>) -> Duration {
        Duration::from_millis(table_ttl_ms.unwrap_or(self.config.remote_ttl_ms))
    }

    fn stripe(&self, key: &[u8]) -> &AtomicU64 {
        let index = usize::try_from(self.hasher.hash_one(key) % STRIPES as u64).unwrap_or(0);
        &self.stripes[index]
    }

    fn stats(&self, kind: EntryKind) -> &KindStats {
        match kind {
            EntryKind::LocalRow => &self.local,
            EntryKind::RemoteResult => &self.remote,
        }
    }

    /// A remote result cached under `key`, unless expired.
    pub async fn remote_get(&self, key: &[u8]) -> Option<Vec<u8>> {
        let cache_key = self.remote_cache_key(key);
        let found = match self.hybrid.get(&cache_key).await {
            Ok(found) => found,
            Err(error) => {
                tracing::warn!(error = %error, "cache read failed; asking the region");
                None
            }
        };
        let stats = &self.remote;
        let Some(found) = found else {
            stats.misses.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        // A swept key is not served even if the disk tier still returned it (a removal
        // can overtake the insert's write to disk), nor one the index does not know.
        let indexed = self
            .expiry
            .lock()
            .is_ok_and(|index| index.contains(&cache_key));
        match Entry::decode(found.value()) {
            Some(entry) if entry.kind == EntryKind::RemoteResult && !entry.expired() && indexed => {
                stats.hits.fetch_add(1, Ordering::Relaxed);
                Some(entry.payload.to_vec())
            }
            _ => {
                // Removed now; counted as expired by the sweep, which removes it anyway.
                stats.misses.fetch_add(1, Ordering::Relaxed);
                self.hybrid.remove(&cache_key);
                None
            }
        }
    }

    /// Caches a remote result for `ttl` (memory and disk). The caller has had the
    /// residency policy allow storing it here.
    pub fn remote_put(&self, key: &[u8], payload: &[u8], ttl: Duration) {
        if ttl.is_zero() || payload.len() > CACHE_REMOTE_ENTRY_MAX_BYTES {
            return;
        }
        let expires =
            now_unix_ms().saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
        let value = Entry::encode(EntryKind::RemoteResult, expires, 0, payload);
        let cache_key = self.remote_cache_key(key);
        if let Ok(mut index) = self.expiry.lock() {
            index.insert(&cache_key, expires);
        }
        self.hybrid.insert(cache_key, value);
        self.remote.inserts.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a remote result the policy did not let this node store.
    pub fn remote_refused(&self) {
        self.remote.refused.fetch_add(1, Ordering::Relaxed);
    }

    pub fn report(&self) -> Vec<CacheReport> {
        [EntryKind::LocalRow, EntryKind::RemoteResult]
            .into_iter()
            .map(|kind| {
                let stats = self.stats(kind);
                CacheReport {
                    kind,
                    hits: stats.hits.load(Ordering::Relaxed),
                    misses: stats.misses.load(Ordering::Relaxed),
                    inserts: stats.inserts.load(Ordering::Relaxed),
                    refused: stats.refused.load(Ordering::Relaxed),
                    expired: stats.expired.load(Ordering::Relaxed),
                    evictions: self.evictions.load(Ordering::Relaxed),
                    memory_used_bytes: self.hybrid.memory().usage() as u64,
                    memory_capacity_bytes: self.config.memory_bytes,
                    disk_capacity_bytes: self.config.disk_bytes,
                }
            })
            .collect()
    }
}

/// Sweeps `cache` every `SWEEP_INTERVAL` until it is closed or dropped.
async fn sweeper(cache: Weak<NodeCache>) {
    let mut ticks = tokio::time::interval(SWEEP_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(cache) = cache.upgrade() else {
            return;
        };
        if cache.closed.load(Ordering::Acquire) {
            return;
        }
        cache.sweep(now_unix_ms());
    }
}

impl RowCache for NodeCache {
    fn epoch(&self) -> u64 {
        self.commits.load(Ordering::Acquire)
    }

    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        let cache_key = entry::cache_key(EntryKind::LocalRow, key);
        let stats = &self.local;
        let Some(found) = self.hybrid.memory().get(&cache_key) else {
            stats.misses.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        match Entry::decode(found.value()) {
            Some(entry)
                if entry.kind == EntryKind::LocalRow
                    && entry.incarnation == self.incarnation
                    && !entry.expired() =>
            {
                stats.hits.fetch_add(1, Ordering::Relaxed);
                Some(entry.payload.to_vec())
            }
            _ => {
                stats.expired.fetch_add(1, Ordering::Relaxed);
                stats.misses.fetch_add(1, Ordering::Relaxed);
                self.hybrid.memory().remove(&cache_key);
                None
            }
        }
    }

    fn fill(&self, key: &[u8], row: &[u8], epoch: u64) {
        let stripe = self.stripe(key);
        if stripe.load(Ordering::Acquire) > epoch {
            return;
        }
        let cache_key = entry::cache_key(EntryKind::LocalRow, key);
        let expires = now_unix_ms().saturating_add(LOCAL_ROW_TTL.as_millis() as u64);
        let value = Entry::encode(EntryKind::LocalRow, expires, self.incarnation, row);
        self.hybrid.memory().insert(cache_key.clone(), value);
        // A commit of this key that landed during the insert: undo it.
        if stripe.load(Ordering::Acquire) > epoch {
            self.hybrid.memory().remove(&cache_key);
        } else {
            self.local.inserts.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn committed(&self, keys: &[Vec<u8>]) {
        let commit = self.commits.fetch_add(1, Ordering::AcqRel) + 1;
        for key in keys {
            self.stripe(key).fetch_max(commit, Ordering::AcqRel);
            self.hybrid
                .memory()
                .remove(&entry::cache_key(EntryKind::LocalRow, key));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> CacheConfig {
        CacheConfig {
            memory_bytes: 4 << 20,
            disk_bytes: 16 << 20,
            ..CacheConfig::default()
        }
    }

    #[tokio::test]
    async fn expired_remote_results_are_swept_even_unread_and_after_a_restart() {
        let dir = tempfile::tempdir().expect("dir");
        let secret = [7u8; 32];
        let cache = NodeCache::open(dir.path(), small(), &secret)
            .await
            .expect("open");
        cache.remote_put(b"leg one", b"answer one", Duration::from_secs(3600));
        cache.remote_put(b"leg two", b"answer two", Duration::from_secs(7200));
        assert_eq!(cache.sweep(now_unix_ms()), 0, "nothing has expired yet");
        let in_ninety_minutes = now_unix_ms() + 90 * 60 * 1000;
        assert_eq!(cache.sweep(in_ninety_minutes), 1);
        // Still within its TTL by the real clock, so only the sweep can have taken it.
        assert_eq!(cache.remote_get(b"leg one").await, None);
        assert_eq!(
            cache.remote_get(b"leg two").await.as_deref(),
            Some(&b"answer two"[..])
        );
        assert_eq!(cache.report()[1].expired, 1);
        cache.close().await;
        drop(cache);

        // The disk tier recovers "leg two"; the sweeper still knows when it expires
        // (and removes "leg one" once more, harmlessly: its log record stays).
        let cache = NodeCache::open(dir.path(), small(), &secret)
            .await
            .expect("reopen");
        let leg_two = cache.remote_cache_key(b"leg two");
        assert!(
            cache.hybrid.get(&leg_two).await.expect("read").is_some(),
            "recovered from disk"
        );
        assert_eq!(cache.sweep(now_unix_ms() + 3 * 3600 * 1000), 2);
        assert!(cache.hybrid.get(&leg_two).await.expect("read").is_none());
        assert_eq!(cache.sweep(now_unix_ms() + 4 * 3600 * 1000), 0);
        cache.close().await;
    }
}
