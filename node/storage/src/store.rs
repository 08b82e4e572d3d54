use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::watch;

use super::change_log::{self, ChangeEvent, OutboxBacklog};
use super::error::StorageError;
use super::snapshot::Snapshot;
use super::write_context::WriteContext;
use super::writer::Writer;
use crate::catalog::TableDef;

/// Row key (see `key_codec`) → encoded row (see `row_codec`).
pub(super) const ROWS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("rows");
/// Table name → JSON `TableDef`.
pub(super) const CATALOG: TableDefinition<&str, &[u8]> = TableDefinition::new("catalog");
/// Counters that must survive restarts (e.g. `next_table_id`).
pub(super) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// Named records of node subsystems (e.g. the plugin registry), key → bytes. Storage does
/// not interpret them.
pub(super) const NODE_STATE: TableDefinition<&str, &[u8]> = TableDefinition::new("node_state");

pub(super) const META_NEXT_TABLE_ID: &str = "next_table_id";

/// In-memory copy of the persisted catalog. Updated only by the writer thread, after the
/// commit that changed the persisted catalog succeeded, so readers never see a table that
/// is not durable.
#[derive(Default)]
pub(super) struct CatalogCache {
    pub(super) by_name: BTreeMap<String, Arc<TableDef>>,
}

/// Counters that tests and metrics read to prove what storage did, and the newest
/// durable outbox and change-stream sequence numbers for those who wait on them.
pub(super) struct StoreCounters {
    pub(super) rows_read: AtomicU64,
    pub(super) commits: AtomicU64,
    pub(super) statements_committed: AtomicU64,
    /// Time the writer spent on batches (running statements and committing) and, of
    /// that, in redb's commit (page writes and fsync), in microseconds: how close the
    /// single writer is to saturation, and what bounds it.
    pub(super) writer_busy_us: AtomicU64,
    pub(super) commit_us: AtomicU64,
    /// Batches that waited for more statements (`storage.commit_window_us`).
    pub(super) commit_waits: AtomicU64,
    pub(super) outbox_head: watch::Sender<u64>,
    pub(super) stream_head: watch::Sender<u64>,
    /// The cache of committed rows, once the node attached one.
    pub(super) row_cache: std::sync::OnceLock<Arc<dyn super::RowCache>>,
}

/// A node's durable store: open it once and share it (it is cheap to clone).
#[derive(Clone)]
pub struct Store {
    db: Arc<DatabaseHandle>,
    catalog: Arc<RwLock<CatalogCache>>,
    counters: Arc<StoreCounters>,
    writer: Writer,
}

impl Store {
    /// Opens (or creates) the database at `path`, loads the catalog and starts the writer
    /// with the default commit window. After a crash redb recovers to the last durable
    /// commit here.
    pub fn open(path: &Path) -> Result<Self, StorageError> {
        Self::open_with_window(
            path,
            std::time::Duration::from_micros(crate::limits::COMMIT_WINDOW_DEFAULT_US),
        )
    }

    /// `open`, with the writer's commit window (`storage.commit_window_us`).
    pub fn open_with_window(
        path: &Path,
        commit_window: std::time::Duration,
    ) -> Result<Self, StorageError> {
        let db = Arc::new(DatabaseHandle {
            db: Some(Database::create(path)?),
            closed: Arc::new(AtomicBool::new(false)),
        });
        let catalog = Arc::new(RwLock::new(load_catalog(&db)?));
        let stream_head = change_log::stream_bounds(&db)?.map_or(0, |(_, last)| last);
        let counters = Arc::new(StoreCounters {
            rows_read: AtomicU64::new(0),
            commits: AtomicU64::new(0),
            statements_committed: AtomicU64::new(0),
            writer_busy_us: AtomicU64::new(0),
            commit_us: AtomicU64::new(0),
            commit_waits: AtomicU64::new(0),
            outbox_head: watch::Sender::new(change_log::change_head(&db)?),
            stream_head: watch::Sender::new(stream_head),
            row_cache: std::sync::OnceLock::new(),
        });
        let writer = Writer::start(
            Arc::clone(&db),
            Arc::clone(&catalog),
            Arc::clone(&counters),
            commit_window,
        )?;
        Ok(Self {
            db,
            catalog,
            counters,
            writer,
        })
    }

    pub fn table(&self, name: &str) -> Option<Arc<TableDef>> {
        self.catalog_read().by_name.get(name).cloned()
    }

    pub fn tables(&self) -> Vec<Arc<TableDef>> {
        self.catalog_read().by_name.values().cloned().collect()
    }

    /// A consistent read view of everything committed so far.
    pub fn snapshot(&self) -> Result<Snapshot, StorageError> {
        // The cache's epoch is read before the view opens (see `RowCache`).
        let cache = self
            .counters
            .row_cache
            .get()
            .map(|cache| (Arc::clone(cache), cache.epoch()));
        let txn = self.db.begin_read()?;
        let rows = txn.open_table(ROWS)?;
        Ok(Snapshot::new(rows, Arc::clone(&self.counters), cache))
    }

    /// Begins an interactive transaction on a snapshot of everything committed so far
    /// (see `transaction`).
    pub fn begin(&self) -> Result<super::Transaction, StorageError> {
        let txn = self.db.begin_read()?;
        let rows = txn.open_table(ROWS)?;
        Ok(super::Transaction::new(
            rows,
            Arc::clone(&self.counters),
            Arc::clone(&self.catalog),
        ))
    }

    /// Commits `transaction`: in the writer's serial order, checks that everything it
    /// read is still as it read it, then applies its writes, change events and audit
    /// entries in one durable commit. A transaction that wrote nothing commits at once.
    /// The transaction has ended afterwards, whatever the outcome.
    ///
    /// Errors: `SerializationFailure` (SQLSTATE 40001) when a concurrent commit changed
    /// something it read: nothing of it was applied, retry it; `TransactionEnded` if it
    /// had already ended; a storage failure of the commit.
    pub async fn commit(&self, transaction: &super::Transaction) -> Result<(), StorageError> {
        let Some(commit) = transaction.take_for_commit()? else {
            return Ok(());
        };
        let span = commit_span(true);
        tracing::Instrument::instrument(
            self.writer
                .submit(move |ctx| ctx.commit_transaction(commit)),
            span,
        )
        .await
    }

    /// Point reads of snapshots consult `cache` from now on; commits invalidate it.
    /// Attached once, at start.
    pub fn attach_row_cache(&self, cache: Arc<dyn super::RowCache>) {
        let _ = self.counters.row_cache.set(cache);
    }

    /// Runs `statement` as part of the next group commit and returns its result once the
    /// commit is durable. The statement reads and stages writes through the context; its
    /// writes are applied only if it returns `Ok`, so a failing statement leaves nothing
    /// behind, and it never observes a half-applied statement of another caller.
    pub async fn write<T, E>(
        &self,
        statement: impl FnOnce(&mut WriteContext<'_>) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StorageError> + Send + 'static,
    {
        let span = commit_span(false);
        tracing::Instrument::instrument(self.writer.submit(statement), span).await
    }

    /// The committed node-state records of `keys`, read in one snapshot (`None`: absent).
    pub fn state_values<const N: usize>(
        &self,
        keys: [&str; N],
    ) -> Result<[Option<Vec<u8>>; N], StorageError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(NODE_STATE)?;
        let mut out = [const { None }; N];
        for (slot, key) in out.iter_mut().zip(keys) {
            *slot = table.get(key)?.map(|value| value.value().to_vec());
        }
        Ok(out)
    }

    /// Committed node-state records whose key starts with `prefix`, in key order.
    pub fn state_with_prefix(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(NODE_STATE)?;
        let mut out = Vec::new();
        for entry in table.range(prefix..)? {
            let (key, value) = entry?;
            if !key.value().starts_with(prefix) {
                break;
            }
            out.push((key.value().to_string(), value.value().to_vec()));
        }
        Ok(out)
    }

    /// Audit entries after sequence number `after`, oldest first, at most `limit`.
    pub fn audit_entries(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<super::AuditRecord>, StorageError> {
        super::audit_log::read(&self.db, after, limit)
    }

    /// The newest `limit` audit entries, oldest first.
    pub fn audit_newest(&self, limit: usize) -> Result<Vec<super::AuditRecord>, StorageError> {
        super::audit_log::newest(&self.db, limit)
    }

    /// Walks the audit chain; the outer error is a storage failure, the inner one the
    /// first broken link.
    pub fn verify_audit(
        &self,
    ) -> Result<Result<super::AuditVerified, super::AuditBreak>, StorageError> {
        super::audit_log::verify(&self.db)
    }

    /// The oldest `limit` changes not yet relayed, in commit order.
    pub fn outbox_oldest(&self, limit: usize) -> Result<Vec<ChangeEvent>, StorageError> {
        change_log::outbox_oldest(&self.db, limit)
    }

    pub fn outbox_backlog(&self) -> Result<OutboxBacklog, StorageError> {
        change_log::outbox_backlog(&self.db)
    }

    /// Change-stream messages after sequence number `after`, oldest first.
    pub fn stream_after(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, StorageError> {
        change_log::stream_after(&self.db, after, limit)
    }

    /// The oldest and newest sequence numbers still in the change stream.
    pub fn stream_bounds(&self) -> Result<Option<(u64, u64)>, StorageError> {
        change_log::stream_bounds(&self.db)
    }

    /// Follows the newest durable change sequence number (outbox).
    pub fn watch_changes(&self) -> watch::Receiver<u64> {
        self.counters.outbox_head.subscribe()
    }

    /// Follows the newest durable change-stream sequence number.
    pub fn watch_stream(&self) -> watch::Receiver<u64> {
        self.counters.stream_head.subscribe()
    }

    /// A handle that tells when the database file has been closed cleanly: after every
    /// `Store` clone, snapshot and the writer thread are gone.
    pub fn close_watch(&self) -> CloseWatch {
        CloseWatch(Arc::clone(&self.db.closed))
    }

    /// Rows decoded from storage since start (reads and writes), for tests and metrics.
    pub fn rows_read(&self) -> u64 {
        self.counters.rows_read.load(Ordering::Relaxed)
    }

    pub fn commits(&self) -> u64 {
        self.counters.commits.load(Ordering::Relaxed)
    }

    pub fn statements_committed(&self) -> u64 {
        self.counters.statements_committed.load(Ordering::Relaxed)
    }

    /// Microseconds the writer has been busy since start (statements and commits).
    pub fn writer_busy_us(&self) -> u64 {
        self.counters.writer_busy_us.load(Ordering::Relaxed)
    }

    /// Microseconds of that spent committing (page writes and fsync).
    pub fn commit_us(&self) -> u64 {
        self.counters.commit_us.load(Ordering::Relaxed)
    }

    /// Group commits that waited for more statements (the commit window).
    pub fn commit_waits(&self) -> u64 {
        self.counters.commit_waits.load(Ordering::Relaxed)
    }

    fn catalog_read(&self) -> std::sync::RwLockReadGuard<'_, CatalogCache> {
        // A poisoned lock means a writer panicked mid-update: the in-memory catalog can
        // no longer be trusted, and continuing would serve wrong schemas.
        self.catalog
            .read()
            .expect("catalog lock poisoned: storage invariant broken")
    }
}

/// The open database, and a flag raised only after it has been dropped, i.e. after
/// redb released the file lock and recorded a clean shutdown.
pub(super) struct DatabaseHandle {
    db: Option<Database>,
    closed: Arc<AtomicBool>,
}

impl std::ops::Deref for DatabaseHandle {
    type Target = Database;

    fn deref(&self) -> &Database {
        self.db
            .as_ref()
            .expect("the database is only taken in drop")
    }
}

impl Drop for DatabaseHandle {
    fn drop(&mut self) {
        drop(self.db.take());
        self.closed.store(true, Ordering::Release);
    }
}

/// Waits for the database file to be closed (redb then marks it cleanly shut down, so
/// the next open skips crash recovery).
pub struct CloseWatch(Arc<AtomicBool>);

impl CloseWatch {
    /// Returns whether the file closed within `timeout`.
    pub fn wait(&self, timeout: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        while !self.0.load(Ordering::Acquire) {
            if std::time::Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        true
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("tables", &self.catalog_read().by_name.len())
            .finish()
    }
}

fn load_catalog(db: &Database) -> Result<CatalogCache, StorageError> {
    // Create the tables on first start so readers never meet a missing table.
    let txn = db.begin_write()?;
    {
        txn.open_table(ROWS)?;
        txn.open_table(CATALOG)?;
        txn.open_table(META)?;
        txn.open_table(NODE_STATE)?;
        txn.open_table(super::audit_log::AUDIT)?;
        txn.open_table(super::audit_log::AUDIT_TIP)?;
        txn.open_table(change_log::OUTBOX)?;
        txn.open_table(change_log::CHANGE_STREAM)?;
    }
    txn.commit()?;

    let txn = db.begin_read()?;
    let table = txn.open_table(CATALOG)?;
    let mut cache = CatalogCache::default();
    for entry in table.iter()? {
        let (name, bytes) = entry?;
        let name = name.value().to_string();
        let def: TableDef = serde_json::from_slice(bytes.value()).map_err(|error| {
            StorageError::CorruptCatalog {
                name: name.clone(),
                detail: error.to_string(),
            }
        })?;
        def.validate()
            .map_err(|detail| StorageError::CorruptCatalog {
                name: name.clone(),
                detail,
            })?;
        cache.by_name.insert(name, Arc::new(def));
    }
    Ok(cache)
}

/// The span of one statement's wait for its group commit (queueing, the commit, its
/// fsync), as a child of the traced work that submitted it; work outside any span (a
/// background task's bookkeeping) is not traced.
fn commit_span(transaction: bool) -> tracing::Span {
    if tracing::Span::current().is_none() {
        return tracing::Span::none();
    }
    tracing::info_span!("storage commit", db.transaction = transaction)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn state_values_reads_exactly_the_keys_asked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("node.redb")).expect("store");
        store
            .write(|ctx| {
                ctx.put_state("saga/x".into(), b"1".to_vec());
                ctx.put_state("saga/x/y".into(), b"2".to_vec());
                Ok::<_, StorageError>(())
            })
            .await
            .expect("write");
        let [x, prefix, missing] = store
            .state_values(["saga/x", "saga/", "saga/z"])
            .expect("read");
        assert_eq!(x.as_deref(), Some(&b"1"[..]));
        assert_eq!(prefix, None, "a prefix of stored keys is not a key");
        assert_eq!(missing, None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn only_a_contended_commit_waits_for_siblings() {
        let dir = tempfile::tempdir().expect("tempdir");
        let window = std::time::Duration::from_millis(10);
        let store = Store::open_with_window(&dir.path().join("node.redb"), window).expect("store");
        let put = |store: &Store, key: String| {
            let store = store.clone();
            async move {
                store
                    .write(move |ctx| {
                        ctx.put_state(key, b"v".to_vec());
                        Ok::<_, StorageError>(())
                    })
                    .await
                    .expect("write")
            }
        };
        for i in 0..20 {
            put(&store, format!("lone/{i}")).await;
        }
        assert_eq!(store.commits(), 20);
        assert_eq!(store.commit_waits(), 0, "a lone writer never waits");

        let burst: Vec<_> = (0..64).map(|i| put(&store, format!("burst/{i}"))).collect();
        futures::future::join_all(burst).await;
        assert_eq!(store.statements_committed(), 84);
        assert!(store.commits() < 84, "concurrent statements share commits");

        // Five statements queued while the writer is held: the next batch carries all
        // five. The lone statement after it finds fewer waiting than that, so it gives
        // them the window; the one after that is alone again and does not wait.
        let (running, is_running) = tokio::sync::oneshot::channel();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let held = tokio::spawn({
            let store = store.clone();
            async move {
                store
                    .write(move |ctx| {
                        let _ = running.send(());
                        let _ = released.recv();
                        ctx.put_state("held".into(), b"v".to_vec());
                        Ok::<_, StorageError>(())
                    })
                    .await
            }
        });
        is_running.await.expect("the held statement runs");
        let queued: Vec<_> = (0..5)
            .map(|i| tokio::spawn(put(&store, format!("queued/{i}"))))
            .collect();
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        release.send(()).expect("release");
        held.await.expect("task").expect("held write");
        for put in queued {
            put.await.expect("task");
        }
        let before = store.commit_waits();
        put(&store, "after/1".into()).await;
        put(&store, "after/2".into()).await;
        assert_eq!(store.commit_waits() - before, 1);
    }
}
