use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};

use redb::{ReadableTable, Table};

use super::change_log::{self, ChangeEvent, ChangeOp};
use super::error::StorageError;
use super::key_codec;
use super::row_codec::{RowDecoder, encode_row};
use super::store::{CatalogCache, META_NEXT_TABLE_ID, StoreCounters};
use super::value::Value;
use crate::catalog::{TableDef, TableId};

/// A catalog change that becomes visible in memory only after its commit is durable.
pub(super) enum CatalogChange {
    Put(Arc<TableDef>),
    Remove(String),
}

/// Why a catalog change was refused (the statement fails; nothing is written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatalogRefusal {
    AlreadyExists(String),
    Invalid(String),
}

/// What a write statement does with rows, wherever it runs: in a group commit of the
/// writer (`WriteContext`, autocommit) or inside an interactive transaction
/// (`TransactionStatement`). SQL writes are written once against this trait.
pub trait RowWrites {
    /// Whether `def` is still the table of its name (see `WriteContext::is_current`).
    fn is_current(&mut self, def: &TableDef) -> bool;
    /// The row with this primary key in `partition`, this statement's writes included.
    fn lookup(
        &mut self,
        def: &TableDef,
        partition: &str,
        primary_key: &[Value],
        projection: &[usize],
    ) -> Result<Option<Vec<Value>>, StorageError>;
    /// Whether any partition holds a row with this primary key (staged writes included).
    fn exists(&mut self, def: &TableDef, primary_key: &[Value]) -> Result<bool, StorageError>;
    /// Partitions of `table_id` holding rows.
    fn partitions(&mut self, table_id: TableId) -> Result<Vec<String>, StorageError>;
    /// Visits every row of `partition` (or all) as of the start of this statement, with
    /// all columns, until `visit` returns `false`.
    fn scan<E: From<StorageError>>(
        &mut self,
        def: &TableDef,
        partition: Option<&str>,
        visit: impl FnMut(Vec<Value>) -> Result<bool, E>,
    ) -> Result<(), E>;
    /// Stages `values` (every column, in order) as the row of its primary key.
    fn put_row(&mut self, def: &TableDef, partition: &str, values: &[Value]);
    fn delete_row(&mut self, def: &TableDef, partition: &str, primary_key: &[Value]);
    /// Stages an audit entry that commits with the statement's data or not at all.
    fn append_audit(&mut self, body: Vec<u8>);
}

impl RowWrites for WriteContext<'_> {
    fn is_current(&mut self, def: &TableDef) -> bool {
        WriteContext::is_current(self, def)
    }

    fn lookup(
        &mut self,
        def: &TableDef,
        partition: &str,
        primary_key: &[Value],
        projection: &[usize],
    ) -> Result<Option<Vec<Value>>, StorageError> {
        WriteContext::lookup(self, def, partition, primary_key, projection)
    }

    fn exists(&mut self, def: &TableDef, primary_key: &[Value]) -> Result<bool, StorageError> {
        WriteContext::exists(self, def, primary_key)
    }

    fn partitions(&mut self, table_id: TableId) -> Result<Vec<String>, StorageError> {
        WriteContext::partitions(self, table_id)
    }

    fn scan<E: From<StorageError>>(
        &mut self,
        def: &TableDef,
        partition: Option<&str>,
        visit: impl FnMut(Vec<Value>) -> Result<bool, E>,
    ) -> Result<(), E> {
        WriteContext::scan(self, def, partition, visit)
    }

    fn put_row(&mut self, def: &TableDef, partition: &str, values: &[Value]) {
        WriteContext::put_row(self, def, partition, values);
    }

    fn delete_row(&mut self, def: &TableDef, partition: &str, primary_key: &[Value]) {
        WriteContext::delete_row(self, def, partition, primary_key);
    }

    fn append_audit(&mut self, body: Vec<u8>) {
        WriteContext::append_audit(self, body);
    }
}

/// What one statement sees and stages inside a group commit.
///
/// Reads see everything committed before, everything earlier statements of the same
/// batch applied, and this statement's own staged row writes (`lookup` and `exists`), but
/// `scan` sees the table as it was when this statement began: the SQL semantics of UPDATE
/// and DELETE, which read their input before they write. Staged writes reach the
/// transaction only if the statement returns `Ok` (see `writer`).
pub struct WriteContext<'txn> {
    pub(super) rows: Table<'txn, &'static [u8], &'static [u8]>,
    pub(super) catalog: Table<'txn, &'static str, &'static [u8]>,
    pub(super) meta: Table<'txn, &'static str, u64>,
    pub(super) staged_rows: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    pub(super) staged_catalog: Vec<CatalogChange>,
    pub(super) staged_range_deletes: Vec<(Vec<u8>, Vec<u8>)>,
    pub(super) staged_meta: Vec<(&'static str, u64)>,
    pub(super) node_state: Table<'txn, &'static str, &'static [u8]>,
    pub(super) staged_state: BTreeMap<String, Option<Vec<u8>>>,
    pub(super) audit: Table<'txn, u64, &'static [u8]>,
    pub(super) audit_tip: Table<'txn, &'static str, &'static [u8]>,
    pub(super) staged_audit: Vec<Vec<u8>>,
    pub(super) outbox: Table<'txn, u64, &'static [u8]>,
    pub(super) stream: Table<'txn, u64, &'static [u8]>,
    /// Staged row keys of CDC tables, and those tables as the statement saw them.
    pub(super) cdc_keys: BTreeMap<Vec<u8>, TableId>,
    /// Every row key this batch changed, for the row cache once the commit is visible.
    pub(super) changed_row_keys: Vec<Vec<u8>>,
    pub(super) cdc_defs: HashMap<TableId, TableDef>,
    /// The running statement's trace (W3C `traceparent`), recorded on its change events.
    pub(super) trace_parent: Option<String>,
    pub(super) staged_stream: Vec<(u64, Vec<u8>)>,
    /// Outbox events up to and including this sequence number are removed.
    pub(super) staged_outbox_removal: Option<u64>,
    /// Stream messages below this sequence number are removed.
    pub(super) staged_stream_prune: Option<u64>,
    /// Newest outbox and stream sequence numbers written by applied statements of this
    /// batch, announced to waiting readers once the commit is durable.
    pub(super) outbox_head: Option<u64>,
    pub(super) stream_head: Option<u64>,
    pub(super) counters: Arc<StoreCounters>,
    pub(super) catalog_cache: Arc<RwLock<CatalogCache>>,
}

impl WriteContext<'_> {
    /// The row with this primary key in `partition`, including this statement's staged writes.
    pub fn lookup(
        &mut self,
        def: &TableDef,
        partition: &str,
        primary_key: &[Value],
        projection: &[usize],
    ) -> Result<Option<Vec<Value>>, StorageError> {
        let key = key_codec::row_key(def.id, partition, primary_key);
        let bytes = match self.staged_rows.get(&key) {
            Some(staged) => staged.clone(),
            None => self
                .rows
                .get(key.as_slice())?
                .map(|guard| guard.value().to_vec()),
        };
        let Some(bytes) = bytes else { return Ok(None) };
        self.counters.rows_read.fetch_add(1, Ordering::Relaxed);
        Ok(Some(RowDecoder::new(def, projection).decode(&bytes)?))
    }

    /// Whether any partition holds a row with this primary key (including staged writes).
    /// Primary keys are unique per table across partitions.
    pub fn exists(&mut self, def: &TableDef, primary_key: &[Value]) -> Result<bool, StorageError> {
        let mut partitions = self.partitions(def.id)?;
        super::partitions::add_staged_partitions(&mut partitions, &self.staged_rows, def.id);
        for partition in partitions {
            let key = key_codec::row_key(def.id, &partition, primary_key);
            let present = match self.staged_rows.get(&key) {
                Some(staged) => staged.is_some(),
                None => self.rows.get(key.as_slice())?.is_some(),
            };
            if present {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Partitions of `table_id` holding committed rows (see `partitions::partitions_of`).
    pub fn partitions(&self, table_id: TableId) -> Result<Vec<String>, StorageError> {
        super::partitions::partitions_of(&self.rows, table_id)
    }

    /// Visits every committed row of `partition` (or all partitions) as of the start of
    /// this statement, with all columns, until `visit` returns `false`.
    pub fn scan<E: From<StorageError>>(
        &mut self,
        def: &TableDef,
        partition: Option<&str>,
        mut visit: impl FnMut(Vec<Value>) -> Result<bool, E>,
    ) -> Result<(), E> {
        let prefix = match partition {
            Some(partition) => key_codec::partition_prefix(def.id, partition),
            None => key_codec::table_prefix(def.id),
        };
        let end = key_codec::prefix_end(&prefix);
        let all: Vec<usize> = (0..def.columns.len()).collect();
        let decoder = RowDecoder::new(def, &all);
        let range = self
            .rows
            .range(prefix.as_slice()..end.as_slice())
            .map_err(StorageError::from)?;
        for entry in range {
            let (_, bytes) = entry.map_err(StorageError::from)?;
            self.counters.rows_read.fetch_add(1, Ordering::Relaxed);
            let row = decoder.decode(bytes.value()).map_err(StorageError::from)?;
            if !visit(row)? {
                break;
            }
        }
        Ok(())
    }

    /// Stages `values` (every column, in order) as the row of its primary key.
    pub fn put_row(&mut self, def: &TableDef, partition: &str, values: &[Value]) {
        let key = key_codec::row_key(def.id, partition, &primary_key_of(def, values));
        self.track_change(def, &key);
        self.staged_rows.insert(key, Some(encode_row(def, values)));
    }

    pub fn delete_row(&mut self, def: &TableDef, partition: &str, primary_key: &[Value]) {
        let key = key_codec::row_key(def.id, partition, primary_key);
        self.track_change(def, &key);
        self.staged_rows.insert(key, None);
    }

    /// Stages an encoded row (or its removal) under `key` as a committing transaction
    /// wrote it; `change_table` is its table when the table feeds the outbox.
    pub(super) fn stage_raw(
        &mut self,
        key: Vec<u8>,
        value: Option<Vec<u8>>,
        change_table: Option<&TableDef>,
    ) {
        if let Some(def) = change_table {
            self.track_change(def, &key);
        }
        self.staged_rows.insert(key, value);
    }

    /// Validates a committing transaction against what is committed now and stages
    /// its writes (see `transaction`).
    pub(super) fn commit_transaction(
        &mut self,
        commit: super::transaction::CommitSet,
    ) -> Result<(), StorageError> {
        commit.apply(self)
    }

    /// Remembers that a row of a CDC table changes: its outbox event is made when the
    /// statement is applied, from the row as committed before and as staged after.
    fn track_change(&mut self, def: &TableDef, key: &[u8]) {
        if def.cdc {
            self.cdc_defs.entry(def.id).or_insert_with(|| def.clone());
            self.cdc_keys.insert(key.to_vec(), def.id);
        }
    }

    /// Stages messages for the change stream and the removal of the outbox events up to
    /// `relayed_through` they were made from (the CDC relay's one commit per batch).
    pub fn relay_changes(&mut self, messages: Vec<(u64, Vec<u8>)>, relayed_through: u64) {
        self.staged_stream.extend(messages);
        self.staged_outbox_removal = Some(
            self.staged_outbox_removal
                .map_or(relayed_through, |seq| seq.max(relayed_through)),
        );
    }

    /// Stages removal of stream messages below `seq` (retention).
    pub fn prune_stream_below(&mut self, seq: u64) {
        self.staged_stream_prune = Some(seq);
    }

    /// Allocates a table id and stages the definition; `build` receives the id.
    pub fn create_table(
        &mut self,
        build: impl FnOnce(TableId) -> Result<TableDef, String>,
    ) -> Result<Result<Arc<TableDef>, CatalogRefusal>, StorageError> {
        let next = match self
            .staged_meta
            .iter()
            .rev()
            .find(|(k, _)| *k == META_NEXT_TABLE_ID)
        {
            Some((_, v)) => *v,
            None => self
                .meta
                .get(META_NEXT_TABLE_ID)?
                .map(|g| g.value())
                .unwrap_or(1),
        };
        let id = u32::try_from(next)
            .map_err(|_| StorageError::Transaction("table ids exhausted".into()))?;
        let def = match build(id) {
            Ok(def) => def,
            Err(message) => return Ok(Err(CatalogRefusal::Invalid(message))),
        };
        if let Err(message) = def.validate_new() {
            return Ok(Err(CatalogRefusal::Invalid(message)));
        }
        if self.table_exists(&def.name)? {
            return Ok(Err(CatalogRefusal::AlreadyExists(def.name)));
        }
        self.staged_meta.push((META_NEXT_TABLE_ID, next + 1));
        let def = Arc::new(def);
        self.staged_catalog
            .push(CatalogChange::Put(Arc::clone(&def)));
        Ok(Ok(def))
    }

    /// Stages removal of the table and all its rows.
    pub fn drop_table(&mut self, def: &TableDef) {
        let prefix = key_codec::table_prefix(def.id);
        let end = key_codec::prefix_end(&prefix);
        self.staged_range_deletes.push((prefix, end));
        self.staged_catalog
            .push(CatalogChange::Remove(def.name.clone()));
    }

    /// The definition of `name` as this transaction sees it (staged changes included).
    pub fn table_def(&mut self, name: &str) -> Result<Option<Arc<TableDef>>, StorageError> {
        for change in self.staged_catalog.iter().rev() {
            match change {
                CatalogChange::Put(def) if def.name == name => return Ok(Some(Arc::clone(def))),
                CatalogChange::Remove(removed) if removed == name => return Ok(None),
                _ => {}
            }
        }
        let Some(bytes) = self.catalog.get(name)? else {
            return Ok(None);
        };
        let def: TableDef =
            serde_json::from_slice(bytes.value()).map_err(|e| StorageError::CorruptCatalog {
                name: name.to_string(),
                detail: e.to_string(),
            })?;
        Ok(Some(Arc::new(def)))
    }

    /// Stages a new definition of an existing table (same id): columns added, never
    /// removed or retyped, so stored rows keep decoding.
    pub fn replace_table(&mut self, def: TableDef) -> Result<Arc<TableDef>, CatalogRefusal> {
        def.validate().map_err(CatalogRefusal::Invalid)?;
        def.validate_shape().map_err(CatalogRefusal::Invalid)?;
        let def = Arc::new(def);
        self.staged_catalog
            .push(CatalogChange::Put(Arc::clone(&def)));
        Ok(def)
    }

    pub fn table_exists(&mut self, name: &str) -> Result<bool, StorageError> {
        for change in self.staged_catalog.iter().rev() {
            match change {
                CatalogChange::Put(def) if def.name == name => return Ok(true),
                CatalogChange::Remove(removed) if removed == name => return Ok(false),
                _ => {}
            }
        }
        Ok(self.catalog.get(name)?.is_some())
    }

    /// A node-state record, including this statement's staged writes.
    pub fn get_state(&mut self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        if let Some(staged) = self.staged_state.get(key) {
            return Ok(staged.clone());
        }
        Ok(self
            .node_state
            .get(key)?
            .map(|guard| guard.value().to_vec()))
    }

    /// Committed node-state keys starting with `prefix` (staged writes not included).
    pub fn state_keys(&mut self, prefix: &str) -> Result<Vec<String>, StorageError> {
        let mut keys = Vec::new();
        for entry in self.node_state.range(prefix..)? {
            let (key, _) = entry?;
            if !key.value().starts_with(prefix) {
                break;
            }
            keys.push(key.value().to_string());
        }
        Ok(keys)
    }

    pub fn put_state(&mut self, key: String, value: Vec<u8>) {
        self.staged_state.insert(key, Some(value));
    }

    /// Stages an entry for the hash-chained audit log: it is chained and stored only if
    /// this statement succeeds, in the same commit as the statement's data.
    pub fn append_audit(&mut self, body: Vec<u8>) {
        self.staged_audit.push(body);
    }

    pub fn delete_state(&mut self, key: String) {
        self.staged_state.insert(key, None);
    }

    /// Whether `def` is still the table of its name: a statement planned against a table
    /// that was dropped (or dropped and re-created) since must not write under a dead id.
    pub fn is_current(&self, def: &TableDef) -> bool {
        for change in self.staged_catalog.iter().rev() {
            match change {
                CatalogChange::Put(staged) if staged.name == def.name => {
                    return staged.id == def.id;
                }
                CatalogChange::Remove(name) if *name == def.name => return false,
                _ => {}
            }
        }
        let cache = self
            .catalog_cache
            .read()
            .expect("catalog lock poisoned: storage invariant broken");
        cache
            .by_name
            .get(&def.name)
            .is_some_and(|current| current.id == def.id)
    }

    /// Applies staged writes to the transaction. Called by the writer only after the
    /// statement succeeded; an error here poisons the whole batch.
    pub(super) fn apply_staged(&mut self) -> Result<(), StorageError> {
        let changes = self.capture_changes()?;
        for (start, end) in std::mem::take(&mut self.staged_range_deletes) {
            self.rows
                .retain_in(start.as_slice()..end.as_slice(), |_, _| false)?;
        }
        for (key, value) in std::mem::take(&mut self.staged_rows) {
            match value {
                Some(bytes) => {
                    self.rows.insert(key.as_slice(), bytes.as_slice())?;
                }
                None => {
                    self.rows.remove(key.as_slice())?;
                }
            }
            self.changed_row_keys.push(key);
        }
        for (key, value) in std::mem::take(&mut self.staged_state) {
            match value {
                Some(bytes) => {
                    self.node_state.insert(key.as_str(), bytes.as_slice())?;
                }
                None => {
                    self.node_state.remove(key.as_str())?;
                }
            }
        }
        for (key, value) in std::mem::take(&mut self.staged_meta) {
            self.meta.insert(key, value)?;
        }
        if let Some(head) = change_log::append_outbox(&mut self.outbox, &mut self.meta, changes)? {
            self.outbox_head = Some(head);
        }
        self.apply_staged_stream()?;
        super::audit_log::append(
            &mut self.audit,
            &mut self.audit_tip,
            std::mem::take(&mut self.staged_audit),
        )?;
        for change in &self.staged_catalog {
            match change {
                CatalogChange::Put(def) => {
                    let bytes = serde_json::to_vec(def.as_ref())
                        .map_err(|e| StorageError::Transaction(e.to_string()))?;
                    self.catalog.insert(def.name.as_str(), bytes.as_slice())?;
                }
                CatalogChange::Remove(name) => {
                    self.catalog.remove(name.as_str())?;
                }
            }
        }
        Ok(())
    }

    /// The outbox events of this statement: one per changed row of a CDC table, the row
    /// before as committed so far (earlier statements of the batch included) and after as
    /// staged. A row written and removed again, or rewritten unchanged, has none.
    fn capture_changes(&mut self) -> Result<Vec<ChangeEvent>, StorageError> {
        let keys = std::mem::take(&mut self.cdc_keys);
        let defs = std::mem::take(&mut self.cdc_defs);
        let mut events = Vec::with_capacity(keys.len());
        let commit_time_us = change_log::now_unix_us();
        for (key, table_id) in keys {
            let Some(def) = defs.get(&table_id) else {
                continue;
            };
            let all: Vec<usize> = (0..def.columns.len()).collect();
            let decoder = RowDecoder::new(def, &all);
            let before = match self.rows.get(key.as_slice())? {
                Some(bytes) => Some(decoder.decode(bytes.value())?),
                None => None,
            };
            let after = match self.staged_rows.get(&key) {
                Some(Some(bytes)) => Some(decoder.decode(bytes)?),
                _ => None,
            };
            let op = match (&before, &after) {
                (None, Some(_)) => ChangeOp::Create,
                (Some(_), None) => ChangeOp::Delete,
                (Some(b), Some(a)) if b != a => ChangeOp::Update,
                _ => continue,
            };
            let row = after
                .as_ref()
                .or(before.as_ref())
                .map_or_else(Vec::new, |row| primary_key_of(def, row));
            events.push(ChangeEvent {
                seq: 0,
                table: def.name.clone(),
                op,
                key: row,
                before,
                after,
                commit_time_us,
                trace_parent: self.trace_parent.clone(),
            });
        }
        Ok(events)
    }

    fn apply_staged_stream(&mut self) -> Result<(), StorageError> {
        for (seq, message) in std::mem::take(&mut self.staged_stream) {
            self.stream.insert(seq, message.as_slice())?;
            self.stream_head = Some(self.stream_head.map_or(seq, |head| head.max(seq)));
        }
        if let Some(through) = self.staged_outbox_removal.take() {
            self.outbox.retain_in(..=through, |_, _| false)?;
        }
        if let Some(below) = self.staged_stream_prune.take() {
            self.stream.retain_in(..below, |_, _| false)?;
        }
        Ok(())
    }

    /// Forgets everything a failed statement staged.
    pub(super) fn discard_staged(&mut self) {
        self.cdc_keys.clear();
        self.cdc_defs.clear();
        self.staged_stream.clear();
        self.staged_outbox_removal = None;
        self.staged_stream_prune = None;
        self.staged_rows.clear();
        self.staged_catalog.clear();
        self.staged_range_deletes.clear();
        self.staged_meta.clear();
        self.staged_state.clear();
        self.staged_audit.clear();
    }
}

pub(crate) fn primary_key_of(def: &TableDef, values: &[Value]) -> Vec<Value> {
    def.primary_key.iter().map(|&i| values[i].clone()).collect()
}
