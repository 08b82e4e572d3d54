//! Interactive transactions: several statements that commit together or not at all,
//! serializable by optimistic validation inside the single writer.
//!
//! A transaction reads a snapshot taken at `Store::begin` and keeps its own writes in
//! memory (`writes`); its statements read both, so they see what earlier statements of
//! the transaction wrote. Every read is recorded: the keys it looked up, the key ranges
//! it scanned, the tables whose partitions it listed, and the definition of each table
//! it touched. At commit the writer, in its serial order, compares each recorded read
//! in the snapshot with the same read in the current committed state. If all agree,
//! every read the transaction made would read the same now, so applying its writes at
//! this point is what running the whole transaction at this point would have done, and
//! the history stays equivalent to the serial order of commits (serializable). If one
//! differs, another commit changed what the transaction saw: nothing is applied and the
//! commit fails with a serialization failure (SQLSTATE 40001), to be retried. First
//! committer wins; there are no locks, so no deadlocks and no waits.
//!
//! Validation compares contents, not versions: a row changed and changed back reads the
//! same, which is still serializable. A scanned range is recorded whole, even where the
//! statement stopped early (a LIMIT): that only adds conflicts, it never misses one.
//! A transaction that wrote nothing commits without the writer: it read one committed
//! state, so it is serialized at its snapshot.
//!
//! The writes, their change events (outbox) and the audit entries the statements staged
//! reach the database in one commit of the writer, with everything else of that commit's
//! batch, fsync'd before the transaction is answered.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use redb::{ReadOnlyTable, ReadableTable};

use super::error::StorageError;
use super::key_codec;
use super::row_codec::{RowDecoder, encode_row};
use super::snapshot::{RowScan, Snapshot};
use super::store::{CatalogCache, StoreCounters};
use super::value::Value;
use super::write_context::{RowWrites, WriteContext, primary_key_of};
use crate::catalog::{TableDef, TableId};
use crate::limits::{TRANSACTION_READS_MAX, TRANSACTION_ROWS_MAX};

type RowsTable = ReadOnlyTable<&'static [u8], &'static [u8]>;

/// An open transaction. Cheap to clone (clones share it); statements of one transaction
/// run one at a time.
#[derive(Clone)]
pub struct Transaction {
    shared: Arc<Shared>,
}

pub(super) struct Shared {
    /// The committed rows as of `Store::begin`.
    pub(super) base: Arc<RowsTable>,
    pub(super) counters: Arc<StoreCounters>,
    pub(super) catalog: Arc<RwLock<CatalogCache>>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Row key → encoded row, or `None` for a deleted row.
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// Tables with changed rows that feed the outbox, by id.
    change_tables: BTreeMap<TableId, TableDef>,
    audit: Vec<Vec<u8>>,
    reads: ReadSet,
    /// The definition of every table the transaction read or wrote, as it used it.
    tables: BTreeMap<TableId, TableDef>,
    rows_written: usize,
    statements: usize,
    /// Committed, failed to commit or rolled back: nothing more runs in it.
    ended: bool,
}

/// What a transaction read, to be read again at commit.
#[derive(Default)]
struct ReadSet {
    keys: BTreeSet<Vec<u8>>,
    ranges: BTreeSet<(Vec<u8>, Vec<u8>)>,
    /// Tables whose list of partitions was read.
    partition_lists: BTreeSet<TableId>,
}

impl ReadSet {
    fn len(&self) -> usize {
        self.keys.len() + self.ranges.len() + self.partition_lists.len()
    }
}

fn too_many_reads() -> StorageError {
    StorageError::TransactionTooLarge(format!(
        "the transaction read more than transaction_reads_max = {TRANSACTION_READS_MAX} keys \
         and ranges; commit or roll back, and split the work"
    ))
}

impl State {
    fn check_reads(&self) -> Result<(), StorageError> {
        if self.reads.len() > TRANSACTION_READS_MAX {
            return Err(too_many_reads());
        }
        Ok(())
    }

    fn use_table(&mut self, def: &TableDef) {
        self.tables.entry(def.id).or_insert_with(|| def.clone());
    }
}

impl Transaction {
    pub(super) fn new(
        base: RowsTable,
        counters: Arc<StoreCounters>,
        catalog: Arc<RwLock<CatalogCache>>,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                base: Arc::new(base),
                counters,
                catalog,
                state: Mutex::new(State::default()),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.shared.state()
    }

    /// A read view of the transaction: its snapshot with its own writes over it. Reads
    /// through it are recorded for validation at commit.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot::in_transaction(Arc::clone(&self.shared))
    }

    /// Runs one statement of the transaction on a blocking thread. The statement reads
    /// the transaction's view and stages writes; they join the transaction only if it
    /// returns `Ok`, so a failed statement leaves nothing and the transaction goes on
    /// (statement-level atomicity, as the SQL standard has it).
    ///
    /// Errors: `TransactionEnded` once it committed or rolled back,
    /// `TransactionTooLarge` past `TRANSACTION_ROWS_MAX` rows written or
    /// `TRANSACTION_READS_MAX` reads, and whatever the statement returns.
    pub async fn write<T, E>(
        &self,
        statement: impl FnOnce(&mut TransactionStatement<'_>) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StorageError> + Send + 'static,
    {
        let shared = Arc::clone(&self.shared);
        let ran = tokio::task::spawn_blocking(move || {
            let mut state = shared.state();
            if state.ended {
                return Err(E::from(StorageError::TransactionEnded));
            }
            let mut ctx = TransactionStatement {
                shared: &shared,
                state: &mut state,
                staged: BTreeMap::new(),
                staged_tables: BTreeMap::new(),
                staged_audit: Vec::new(),
            };
            let value = statement(&mut ctx)?;
            let TransactionStatement {
                staged,
                staged_tables,
                staged_audit,
                ..
            } = ctx;
            let new_rows = staged
                .keys()
                .filter(|key| !state.writes.contains_key(*key))
                .count();
            if state.rows_written + new_rows > TRANSACTION_ROWS_MAX {
                return Err(E::from(StorageError::TransactionTooLarge(format!(
                    "the transaction would change more than transaction_rows_max = \
                     {TRANSACTION_ROWS_MAX} rows; this statement was not applied"
                ))));
            }
            state.rows_written += new_rows;
            state.writes.extend(staged);
            for (id, def) in staged_tables {
                state.change_tables.entry(id).or_insert(def);
            }
            state.audit.extend(staged_audit);
            state.statements += 1;
            Ok(value)
        })
        .await;
        match ran {
            Ok(outcome) => outcome,
            Err(_) => Err(E::from(StorageError::StatementPanicked)),
        }
    }

    /// Rows the transaction has changed so far.
    pub fn rows_written(&self) -> usize {
        self.state().rows_written
    }

    /// Whether the transaction has written nothing (no rows, no audit entries).
    pub fn is_read_only(&self) -> bool {
        let state = self.state();
        state.writes.is_empty() && state.audit.is_empty()
    }

    /// Ends the transaction without applying anything.
    pub fn rollback(&self) {
        let mut state = self.state();
        state.ended = true;
        state.writes.clear();
        state.audit.clear();
    }

    /// Marks the transaction ended and takes what the writer needs to commit it.
    pub(super) fn take_for_commit(&self) -> Result<Option<CommitSet>, StorageError> {
        let mut state = self.state();
        if state.ended {
            return Err(StorageError::TransactionEnded);
        }
        state.ended = true;
        if state.writes.is_empty() && state.audit.is_empty() {
            return Ok(None);
        }
        Ok(Some(CommitSet {
            shared: Arc::clone(&self.shared),
            writes: std::mem::take(&mut state.writes),
            change_tables: std::mem::take(&mut state.change_tables),
            audit: std::mem::take(&mut state.audit),
            reads: std::mem::take(&mut state.reads),
            tables: std::mem::take(&mut state.tables),
        }))
    }
}

impl std::fmt::Debug for Transaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.state();
        f.debug_struct("Transaction")
            .field("statements", &state.statements)
            .field("rows_written", &state.rows_written)
            .field("reads", &state.reads.len())
            .field("ended", &state.ended)
            .finish()
    }
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // A statement panicked while holding the state: its staged writes were never
        // merged, and the recorded reads are only ever more than were made.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The encoded row under `key` as the transaction sees it; records the read.
    pub(super) fn read_key(
        &self,
        def: &TableDef,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>, StorageError> {
        let mut state = self.state();
        if state.ended {
            return Err(StorageError::TransactionEnded);
        }
        state.use_table(def);
        if let Some(own) = state.writes.get(key) {
            return Ok(own.clone());
        }
        state.reads.keys.insert(key.to_vec());
        state.check_reads()?;
        let found = self.base.get(key)?.map(|bytes| bytes.value().to_vec());
        if found.is_some() {
            self.counters.rows_read.fetch_add(1, Ordering::Relaxed);
        }
        Ok(found)
    }

    /// The partitions of `table_id` holding rows in the snapshot or in the
    /// transaction's own writes; records the read.
    pub(super) fn partitions(&self, table_id: TableId) -> Result<Vec<String>, StorageError> {
        let mut state = self.state();
        if state.ended {
            return Err(StorageError::TransactionEnded);
        }
        state.reads.partition_lists.insert(table_id);
        state.check_reads()?;
        let mut partitions = super::partitions::partitions_of(self.base.as_ref(), table_id)?;
        merge_partitions(&mut partitions, &state.writes, table_id);
        Ok(partitions)
    }

    /// A scan of `start..end` of the snapshot with the transaction's writes over it;
    /// records the range.
    pub(super) fn scan(
        &self,
        def: &TableDef,
        start: Vec<u8>,
        end: Vec<u8>,
        projection: &[usize],
    ) -> Result<RowScan, StorageError> {
        let mut state = self.state();
        if state.ended {
            return Err(StorageError::TransactionEnded);
        }
        state.use_table(def);
        let own: Vec<(Vec<u8>, Option<Vec<u8>>)> = state
            .writes
            .range(start.clone()..end.clone())
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        state.reads.ranges.insert((start.clone(), end.clone()));
        state.check_reads()?;
        drop(state);
        let range = self.base.range(start.as_slice()..end.as_slice())?;
        Ok(RowScan::with_overlay(
            range,
            RowDecoder::new(def, projection),
            Arc::clone(&self.counters),
            own,
        ))
    }
}

/// Adds the partitions of `table_id` that `keys` hold to `partitions` (kept sorted).
fn merge_partitions<V>(
    partitions: &mut Vec<String>,
    staged: &BTreeMap<Vec<u8>, V>,
    table_id: TableId,
) {
    super::partitions::add_staged_partitions(partitions, staged, table_id);
    partitions.sort();
}

/// One statement of a transaction, as it reads and stages (see `RowWrites`).
pub struct TransactionStatement<'t> {
    shared: &'t Shared,
    state: &'t mut State,
    staged: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    staged_tables: BTreeMap<TableId, TableDef>,
    staged_audit: Vec<Vec<u8>>,
}

impl TransactionStatement<'_> {
    /// The encoded row under `key`: this statement's staged write, the transaction's,
    /// or the snapshot's (a recorded read).
    fn bytes(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        if let Some(staged) = self.staged.get(key) {
            return Ok(staged.clone());
        }
        if let Some(own) = self.state.writes.get(key) {
            return Ok(own.clone());
        }
        self.state.reads.keys.insert(key.to_vec());
        self.state.check_reads()?;
        let found = self
            .shared
            .base
            .get(key)?
            .map(|bytes| bytes.value().to_vec());
        if found.is_some() {
            self.shared
                .counters
                .rows_read
                .fetch_add(1, Ordering::Relaxed);
        }
        Ok(found)
    }

    fn stage(&mut self, def: &TableDef, key: Vec<u8>, value: Option<Vec<u8>>) {
        self.state.use_table(def);
        if def.cdc && !self.staged_tables.contains_key(&def.id) {
            self.staged_tables.insert(def.id, def.clone());
        }
        self.staged.insert(key, value);
    }
}

impl RowWrites for TransactionStatement<'_> {
    fn is_current(&mut self, def: &TableDef) -> bool {
        self.state.use_table(def);
        let cache = self
            .shared
            .catalog
            .read()
            .expect("catalog lock poisoned: storage invariant broken");
        cache
            .by_name
            .get(&def.name)
            .is_some_and(|current| current.id == def.id)
    }

    fn lookup(
        &mut self,
        def: &TableDef,
        partition: &str,
        primary_key: &[Value],
        projection: &[usize],
    ) -> Result<Option<Vec<Value>>, StorageError> {
        self.state.use_table(def);
        let key = key_codec::row_key(def.id, partition, primary_key);
        let Some(bytes) = self.bytes(&key)? else {
            return Ok(None);
        };
        Ok(Some(RowDecoder::new(def, projection).decode(&bytes)?))
    }

    fn exists(&mut self, def: &TableDef, primary_key: &[Value]) -> Result<bool, StorageError> {
        let mut partitions = self.partitions(def.id)?;
        merge_partitions(&mut partitions, &self.staged, def.id);
        for partition in partitions {
            let key = key_codec::row_key(def.id, &partition, primary_key);
            if self.bytes(&key)?.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn partitions(&mut self, table_id: TableId) -> Result<Vec<String>, StorageError> {
        self.state.reads.partition_lists.insert(table_id);
        self.state.check_reads()?;
        let mut partitions = super::partitions::partitions_of(self.shared.base.as_ref(), table_id)?;
        merge_partitions(&mut partitions, &self.state.writes, table_id);
        Ok(partitions)
    }

    fn scan<E: From<StorageError>>(
        &mut self,
        def: &TableDef,
        partition: Option<&str>,
        mut visit: impl FnMut(Vec<Value>) -> Result<bool, E>,
    ) -> Result<(), E> {
        self.state.use_table(def);
        let prefix = match partition {
            Some(partition) => key_codec::partition_prefix(def.id, partition),
            None => key_codec::table_prefix(def.id),
        };
        let end = key_codec::prefix_end(&prefix);
        // As a statement in the writer: the rows as they were when it began (the
        // transaction's earlier writes included, this statement's own not).
        let own: Vec<(Vec<u8>, Option<Vec<u8>>)> = self
            .state
            .writes
            .range(prefix.clone()..end.clone())
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        self.state
            .reads
            .ranges
            .insert((prefix.clone(), end.clone()));
        self.state.check_reads()?;
        let all: Vec<usize> = (0..def.columns.len()).collect();
        let range = self
            .shared
            .base
            .range(prefix.as_slice()..end.as_slice())
            .map_err(StorageError::from)?;
        let scan = RowScan::with_overlay(
            range,
            RowDecoder::new(def, &all),
            Arc::clone(&self.shared.counters),
            own,
        );
        for row in scan {
            if !visit(row?)? {
                break;
            }
        }
        Ok(())
    }

    fn put_row(&mut self, def: &TableDef, partition: &str, values: &[Value]) {
        let key = key_codec::row_key(def.id, partition, &primary_key_of(def, values));
        self.stage(def, key, Some(encode_row(def, values)));
    }

    fn delete_row(&mut self, def: &TableDef, partition: &str, primary_key: &[Value]) {
        let key = key_codec::row_key(def.id, partition, primary_key);
        self.stage(def, key, None);
    }

    fn append_audit(&mut self, body: Vec<u8>) {
        self.staged_audit.push(body);
    }
}

/// What the writer validates and applies for a committing transaction.
pub(super) struct CommitSet {
    shared: Arc<Shared>,
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    change_tables: BTreeMap<TableId, TableDef>,
    audit: Vec<Vec<u8>>,
    reads: ReadSet,
    tables: BTreeMap<TableId, TableDef>,
}

fn conflict(what: &str) -> StorageError {
    StorageError::SerializationFailure(format!(
        "could not serialize access due to a concurrent commit ({what} changed since the \
         transaction began); nothing of it was applied: retry the transaction"
    ))
}

impl CommitSet {
    /// Checks every read against the state committed so far (earlier statements of the
    /// same batch included) and stages the writes and audit entries into `ctx`. Runs
    /// on the writer thread.
    pub(super) fn apply(self, ctx: &mut WriteContext<'_>) -> Result<(), StorageError> {
        let base = self.shared.base.as_ref();
        for def in self.tables.values() {
            let current = ctx.table_def(&def.name)?;
            if current.as_deref() != Some(def) {
                return Err(conflict(&format!("the definition of table {}", def.name)));
            }
        }
        for table_id in &self.reads.partition_lists {
            let then = super::partitions::partitions_of(base, *table_id)?;
            let now = super::partitions::partitions_of(&ctx.rows, *table_id)?;
            if then != now {
                return Err(conflict("the set of home regions of a table read"));
            }
        }
        for key in &self.reads.keys {
            let then = base.get(key.as_slice())?;
            let now = ctx.rows.get(key.as_slice())?;
            if then.as_ref().map(|v| v.value()) != now.as_ref().map(|v| v.value()) {
                return Err(conflict("a row read"));
            }
        }
        for (start, end) in &self.reads.ranges {
            let mut then = base.range(start.as_slice()..end.as_slice())?;
            let mut now = ctx.rows.range(start.as_slice()..end.as_slice())?;
            loop {
                match (then.next().transpose()?, now.next().transpose()?) {
                    (None, None) => break,
                    (Some((k1, v1)), Some((k2, v2)))
                        if k1.value() == k2.value() && v1.value() == v2.value() => {}
                    _ => return Err(conflict("a range of rows scanned")),
                }
            }
        }
        for (key, value) in self.writes {
            let table_id = key
                .get(..4)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .map(u32::from_be_bytes);
            let def = table_id.and_then(|id| self.change_tables.get(&id));
            ctx.stage_raw(key, value, def);
        }
        for body in self.audit {
            ctx.append_audit(body);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{ColumnDef, ColumnType, DataClass, Locality};
    use crate::{Store, Value};

    const HOME: &str = "eu-central";

    fn accounts(id: TableId) -> TableDef {
        let column = |id: u16, name: &str| ColumnDef {
            id,
            name: name.into(),
            column_type: ColumnType::BigInt,
            nullable: id != 0,
            class: DataClass::Public,
        };
        TableDef {
            id,
            name: "accounts".into(),
            columns: vec![column(0, "id"), column(1, "balance")],
            primary_key: vec![0],
            locality: Locality::Global,
            next_column_id: 2,
            cdc: true,
            cache_ttl_ms: None,
        }
    }

    /// A store with `accounts` holding `balances` under ids 0, 1, ...
    async fn bank(balances: &[i64]) -> (tempfile::TempDir, Store, Arc<TableDef>) {
        let dir = tempfile::tempdir().expect("dir");
        let store = Store::open(&dir.path().join("node.redb")).expect("store");
        let rows: Vec<i64> = balances.to_vec();
        let def = store
            .write(move |ctx| {
                let def = ctx
                    .create_table(|id| Ok(accounts(id)))?
                    .map_err(|refusal| StorageError::Transaction(format!("{refusal:?}")))?;
                for (id, balance) in rows.iter().enumerate() {
                    let id = i64::try_from(id).expect("id");
                    ctx.put_row(&def, HOME, &[Value::BigInt(id), Value::BigInt(*balance)]);
                }
                Ok::<_, StorageError>(def)
            })
            .await
            .expect("create");
        (dir, store, def)
    }

    fn balance_in(snapshot: &Snapshot, def: &TableDef, id: i64) -> Option<i64> {
        match snapshot
            .lookup(def, HOME, &[Value::BigInt(id)], &[1])
            .expect("lookup")
            .as_deref()
        {
            Some([Value::BigInt(balance)]) => Some(*balance),
            None => None,
            other => panic!("unexpected row {other:?}"),
        }
    }

    /// Reads a balance inside the transaction (a recorded read).
    async fn read(txn: &Transaction, def: &Arc<TableDef>, id: i64) -> Option<i64> {
        let def = Arc::clone(def);
        txn.write(move |ctx| {
            let row = ctx.lookup(&def, HOME, &[Value::BigInt(id)], &[1])?;
            Ok::<_, StorageError>(match row.as_deref() {
                Some([Value::BigInt(balance)]) => Some(*balance),
                _ => None,
            })
        })
        .await
        .expect("read")
    }

    async fn set(txn: &Transaction, def: &Arc<TableDef>, id: i64, balance: i64) {
        let def = Arc::clone(def);
        txn.write(move |ctx| {
            ctx.put_row(&def, HOME, &[Value::BigInt(id), Value::BigInt(balance)]);
            Ok::<_, StorageError>(())
        })
        .await
        .expect("write");
    }

    /// Sum of every balance, by a scan inside the transaction (a recorded range).
    async fn total(txn: &Transaction, def: &Arc<TableDef>) -> i64 {
        let def = Arc::clone(def);
        txn.write(move |ctx| {
            let mut sum = 0;
            ctx.scan(&def, Some(HOME), |row| {
                if let Value::BigInt(balance) = row[1] {
                    sum += balance;
                }
                Ok::<_, StorageError>(true)
            })?;
            Ok::<_, StorageError>(sum)
        })
        .await
        .expect("scan")
    }

    fn is_serialization_failure(outcome: Result<(), StorageError>) -> bool {
        matches!(outcome, Err(StorageError::SerializationFailure(_)))
    }

    #[tokio::test]
    async fn a_transaction_sees_its_own_writes_and_nobody_else_does_until_it_commits() {
        let (_dir, store, def) = bank(&[100, 200]).await;
        let txn = store.begin().expect("begin");
        set(&txn, &def, 0, 70).await;
        set(&txn, &def, 5, 30).await;
        assert_eq!(read(&txn, &def, 0).await, Some(70));
        assert_eq!(
            total(&txn, &def).await,
            300,
            "the scan merges its own writes"
        );
        let view = txn.snapshot();
        assert_eq!(balance_in(&view, &def, 5), Some(30));
        let rows: Vec<_> = view
            .scan(&def, Some(HOME), &[0])
            .expect("scan")
            .collect::<Result<_, _>>()
            .expect("rows");
        assert_eq!(rows.len(), 3);
        let outside = store.snapshot().expect("snapshot");
        assert_eq!(balance_in(&outside, &def, 0), Some(100));
        assert_eq!(balance_in(&outside, &def, 5), None);
        let outbox_before = store.outbox_oldest(100).expect("outbox").len();
        store.commit(&txn).await.expect("commit");
        let after = store.snapshot().expect("snapshot");
        assert_eq!(balance_in(&after, &def, 0), Some(70));
        assert_eq!(balance_in(&after, &def, 5), Some(30));
        let outbox = store.outbox_oldest(100).expect("outbox");
        assert_eq!(
            outbox.len() - outbox_before,
            2,
            "one change event per changed row"
        );
    }

    #[tokio::test]
    async fn a_deleted_row_is_gone_inside_the_transaction_only() {
        let (_dir, store, def) = bank(&[1, 2, 3]).await;
        let txn = store.begin().expect("begin");
        let target = Arc::clone(&def);
        txn.write(move |ctx| {
            ctx.delete_row(&target, HOME, &[Value::BigInt(1)]);
            Ok::<_, StorageError>(())
        })
        .await
        .expect("delete");
        assert_eq!(read(&txn, &def, 1).await, None);
        assert_eq!(total(&txn, &def).await, 4);
        assert_eq!(
            balance_in(&store.snapshot().expect("snapshot"), &def, 1),
            Some(2)
        );
        txn.rollback();
        assert!(matches!(
            txn.write(|_| Ok::<_, StorageError>(())).await,
            Err(StorageError::TransactionEnded)
        ));
        assert!(matches!(
            store.commit(&txn).await,
            Err(StorageError::TransactionEnded)
        ));
        assert_eq!(
            balance_in(&store.snapshot().expect("snapshot"), &def, 1),
            Some(2)
        );
    }

    #[tokio::test]
    async fn a_failed_statement_leaves_nothing_in_the_transaction() {
        let (_dir, store, def) = bank(&[10]).await;
        let txn = store.begin().expect("begin");
        let target = Arc::clone(&def);
        let failed = txn
            .write(move |ctx| {
                ctx.put_row(&target, HOME, &[Value::BigInt(0), Value::BigInt(-5)]);
                Err::<(), _>(StorageError::Transaction("refused".into()))
            })
            .await;
        assert!(failed.is_err());
        assert_eq!(read(&txn, &def, 0).await, Some(10));
        assert!(txn.is_read_only());
        store.commit(&txn).await.expect("commit");
    }

    /// Lost update: two transactions read the same balance and both write it.
    #[tokio::test]
    async fn the_second_of_two_read_modify_writes_fails_lost_update() {
        let (_dir, store, def) = bank(&[100]).await;
        let t1 = store.begin().expect("begin");
        let t2 = store.begin().expect("begin");
        let b1 = read(&t1, &def, 0).await.expect("row");
        let b2 = read(&t2, &def, 0).await.expect("row");
        set(&t1, &def, 0, b1 + 10).await;
        set(&t2, &def, 0, b2 + 20).await;
        store.commit(&t1).await.expect("first committer wins");
        assert!(is_serialization_failure(store.commit(&t2).await));
        let now = store.snapshot().expect("snapshot");
        assert_eq!(balance_in(&now, &def, 0), Some(110));
    }

    /// Write skew: each transaction checks the sum over both rows, then debits a
    /// different row. Under snapshot isolation both commit and the sum goes negative.
    #[tokio::test]
    async fn write_skew_is_refused() {
        let (_dir, store, def) = bank(&[50, 50]).await;
        let t1 = store.begin().expect("begin");
        let t2 = store.begin().expect("begin");
        for (txn, id) in [(&t1, 0), (&t2, 1)] {
            let sum = read(txn, &def, 0).await.unwrap_or(0) + read(txn, &def, 1).await.unwrap_or(0);
            assert_eq!(sum, 100);
            let own = read(txn, &def, id).await.expect("row");
            set(txn, &def, id, own - 100).await;
        }
        store.commit(&t1).await.expect("first");
        assert!(is_serialization_failure(store.commit(&t2).await));
        let now = store.snapshot().expect("snapshot");
        let sum = balance_in(&now, &def, 0).unwrap_or(0) + balance_in(&now, &def, 1).unwrap_or(0);
        assert_eq!(sum, 0, "only one debit applied");
    }

    /// Phantom: a transaction that scanned a range fails when another commits a new
    /// row into it, though no row it read changed.
    #[tokio::test]
    async fn a_row_inserted_into_a_scanned_range_fails_the_scanner_phantom() {
        let (_dir, store, def) = bank(&[10, 20]).await;
        let scanner = store.begin().expect("begin");
        let inserter = store.begin().expect("begin");
        assert_eq!(total(&scanner, &def).await, 30);
        set(&scanner, &def, 0, 30).await;
        set(&inserter, &def, 7, 5).await;
        store.commit(&inserter).await.expect("blind insert commits");
        assert!(is_serialization_failure(store.commit(&scanner).await));
    }

    /// Read skew: a transaction reading two rows sees both before or both after a
    /// concurrent transfer between them, never one of each.
    #[tokio::test]
    async fn a_transaction_reads_one_committed_state_read_skew() {
        let (_dir, store, def) = bank(&[50, 50]).await;
        let reader = store.begin().expect("begin");
        let first = read(&reader, &def, 0).await.expect("row");
        let transfer = store.begin().expect("begin");
        set(&transfer, &def, 0, 0).await;
        set(&transfer, &def, 1, 100).await;
        store.commit(&transfer).await.expect("transfer");
        let second = read(&reader, &def, 1).await.expect("row");
        assert_eq!(first + second, 100, "read {first} and {second}");
        // Read only: it commits, serialized at its snapshot.
        store.commit(&reader).await.expect("read-only commit");
    }

    /// A commit that fails validation leaves no trace: no rows, no change events, no
    /// audit entries.
    #[tokio::test]
    async fn a_failed_commit_applies_nothing() {
        let (_dir, store, def) = bank(&[100]).await;
        let loser = store.begin().expect("begin");
        let winner = store.begin().expect("begin");
        read(&loser, &def, 0).await;
        set(&loser, &def, 0, 1).await;
        set(&loser, &def, 9, 9).await;
        let target = Arc::clone(&def);
        loser
            .write(move |ctx| {
                ctx.append_audit(b"loser".to_vec());
                ctx.put_row(&target, HOME, &[Value::BigInt(8), Value::BigInt(8)]);
                Ok::<_, StorageError>(())
            })
            .await
            .expect("audit");
        set(&winner, &def, 0, 2).await;
        read(&winner, &def, 0).await;
        store.commit(&winner).await.expect("winner");
        let outbox = store.outbox_oldest(100).expect("outbox").len();
        let audit = store.audit_newest(100).expect("audit").len();
        assert!(is_serialization_failure(store.commit(&loser).await));
        let now = store.snapshot().expect("snapshot");
        assert_eq!(balance_in(&now, &def, 0), Some(2));
        assert_eq!(balance_in(&now, &def, 9), None);
        assert_eq!(balance_in(&now, &def, 8), None);
        assert_eq!(store.outbox_oldest(100).expect("outbox").len(), outbox);
        assert_eq!(store.audit_newest(100).expect("audit").len(), audit);
    }

    /// Transactions moving random amounts between random accounts, interleaved at
    /// random, each retried on a serialization failure: the total never changes and no
    /// balance goes negative, checked by every transaction and at the end.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn interleaved_transfers_keep_the_bank_balanced() {
        let seed: u64 = std::env::var("DOMICILE_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(rand::random);
        eprintln!("seed {seed} (replay: DOMICILE_SEED={seed})");
        const ACCOUNTS: i64 = 8;
        const START: i64 = 100;
        let (_dir, store, def) = bank(&[START; ACCOUNTS as usize]).await;
        let workers: Vec<_> = (0..6u64)
            .map(|worker| {
                let store = store.clone();
                let def = Arc::clone(&def);
                tokio::spawn(async move {
                    use rand::{Rng, SeedableRng};
                    let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ worker);
                    let (mut committed, mut retried) = (0u32, 0u32);
                    for _ in 0..25 {
                        loop {
                            let txn = store.begin().expect("begin");
                            // A check over all rows now and then: sees a balanced bank.
                            if rng.random_bool(0.3) {
                                assert_eq!(total(&txn, &def).await, ACCOUNTS * START);
                            }
                            let from = rng.random_range(0..ACCOUNTS);
                            let to = (from + rng.random_range(1..ACCOUNTS)) % ACCOUNTS;
                            let amount = rng.random_range(1..=60);
                            let have = read(&txn, &def, from).await.expect("row");
                            tokio::task::yield_now().await;
                            if have < amount {
                                txn.rollback();
                                break;
                            }
                            set(&txn, &def, from, have - amount).await;
                            tokio::task::yield_now().await;
                            let other = read(&txn, &def, to).await.expect("row");
                            set(&txn, &def, to, other + amount).await;
                            match store.commit(&txn).await {
                                Ok(()) => {
                                    committed += 1;
                                    break;
                                }
                                Err(StorageError::SerializationFailure(_)) => retried += 1,
                                Err(error) => panic!("seed {seed}: {error}"),
                            }
                        }
                    }
                    (committed, retried)
                })
            })
            .collect();
        let mut committed = 0;
        for worker in workers {
            committed += worker.await.expect("worker").0;
        }
        assert!(committed > 0, "seed {seed}: nothing committed");
        let now = store.snapshot().expect("snapshot");
        let mut sum = 0;
        for id in 0..ACCOUNTS {
            let balance = balance_in(&now, &def, id).expect("row");
            assert!(balance >= 0, "seed {seed}: account {id} at {balance}");
            sum += balance;
        }
        assert_eq!(sum, ACCOUNTS * START, "seed {seed}: money created or lost");
    }

    /// A transaction planned against a table that was dropped and re-created since it
    /// began does not commit into the new table.
    #[tokio::test]
    async fn a_changed_table_definition_fails_the_commit() {
        let (_dir, store, def) = bank(&[1]).await;
        let txn = store.begin().expect("begin");
        set(&txn, &def, 3, 3).await;
        let dropped = Arc::clone(&def);
        store
            .write(move |ctx| {
                ctx.drop_table(&dropped);
                ctx.create_table(|id| Ok(accounts(id)))?
                    .map_err(|refusal| StorageError::Transaction(format!("{refusal:?}")))?;
                Ok::<_, StorageError>(())
            })
            .await
            .expect("recreate");
        assert!(is_serialization_failure(store.commit(&txn).await));
    }
}
