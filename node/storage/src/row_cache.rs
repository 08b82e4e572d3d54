//! The seam between storage and a cache of committed rows (`cache::NodeCache`): point
//! reads look there first, and every commit tells it which row keys changed before the
//! statements that made them are answered.
//!
//! A read and a commit race: a snapshot taken just before a commit may fill the cache
//! with the row the commit replaced. `epoch` closes that gap: a snapshot reads it before
//! it opens, and a fill from a snapshot older than the last commit that touched the key
//! (or a colliding one) is refused, or undone if the commit lands during the fill.

/// A cache of encoded rows keyed by their storage key (table, partition, primary key).
pub trait RowCache: Send + Sync {
    /// Read before a snapshot opens; passed back with its fills.
    fn epoch(&self) -> u64;
    /// The encoded row under `key`, if cached and still valid.
    fn get(&self, key: &[u8]) -> Option<Vec<u8>>;
    /// Caches `row` read from a snapshot that opened at `epoch`.
    fn fill(&self, key: &[u8], row: &[u8], epoch: u64);
    /// Called after a commit is durable and visible, with every row key it changed.
    fn committed(&self, keys: &[Vec<u8>]);
}
