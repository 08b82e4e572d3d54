use std::sync::Arc;
use std::sync::atomic::Ordering;

use redb::ReadOnlyTable;

use super::error::StorageError;
use super::key_codec;
use super::row_codec::RowDecoder;
use super::store::StoreCounters;
use super::value::Value;
use crate::catalog::{TableDef, TableId};

/// A read-only, point-in-time view. Holding it pins that version of the file (redb MVCC);
/// writers are never blocked by it.
pub struct Snapshot {
    rows: Arc<ReadOnlyTable<&'static [u8], &'static [u8]>>,
    counters: Arc<StoreCounters>,
    /// The row cache and its epoch when this view opened.
    cache: Option<(Arc<dyn super::RowCache>, u64)>,
    /// For a transaction's view: its own writes over the snapshot, and where its reads
    /// are recorded (see `transaction`).
    transaction: Option<Arc<super::transaction::Shared>>,
}

impl Snapshot {
    pub(super) fn new(
        rows: ReadOnlyTable<&'static [u8], &'static [u8]>,
        counters: Arc<StoreCounters>,
        cache: Option<(Arc<dyn super::RowCache>, u64)>,
    ) -> Self {
        Self {
            rows: Arc::new(rows),
            counters,
            cache,
            transaction: None,
        }
    }

    /// A transaction's view. It never reads the row cache: the cache holds the newest
    /// committed rows, and a transaction reads its snapshot.
    pub(super) fn in_transaction(shared: Arc<super::transaction::Shared>) -> Self {
        Self {
            rows: Arc::clone(&shared.base),
            counters: Arc::clone(&shared.counters),
            cache: None,
            transaction: Some(shared),
        }
    }

    /// The row with primary key `primary_key` in `partition`, projected.
    pub fn lookup(
        &self,
        def: &TableDef,
        partition: &str,
        primary_key: &[Value],
        projection: &[usize],
    ) -> Result<Option<Vec<Value>>, StorageError> {
        let key = key_codec::row_key(def.id, partition, primary_key);
        if let Some(transaction) = &self.transaction {
            return match transaction.read_key(def, &key)? {
                Some(bytes) => Ok(Some(RowDecoder::new(def, projection).decode(&bytes)?)),
                None => Ok(None),
            };
        }
        if let Some((cache, _)) = &self.cache
            && let Some(bytes) = cache.get(&key)
        {
            return Ok(Some(RowDecoder::new(def, projection).decode(&bytes)?));
        }
        let Some(bytes) = self.rows.get(key.as_slice())? else {
            return Ok(None);
        };
        self.counters.rows_read.fetch_add(1, Ordering::Relaxed);
        if let Some((cache, epoch)) = &self.cache {
            cache.fill(&key, bytes.value(), *epoch);
        }
        Ok(Some(
            RowDecoder::new(def, projection).decode(bytes.value())?,
        ))
    }

    /// Partitions (home regions) that hold at least one row of `table_id`, found by
    /// skipping from one partition prefix to the next: one seek per partition, no scan.
    pub fn partitions(&self, table_id: TableId) -> Result<Vec<String>, StorageError> {
        if let Some(transaction) = &self.transaction {
            return transaction.partitions(table_id);
        }
        super::partitions::partitions_of(self.rows.as_ref(), table_id)
    }

    /// Every row of `partition` (or of all partitions) in primary-key order, projected.
    pub fn scan(
        &self,
        def: &TableDef,
        partition: Option<&str>,
        projection: &[usize],
    ) -> Result<RowScan, StorageError> {
        let prefix = match partition {
            Some(partition) => key_codec::partition_prefix(def.id, partition),
            None => key_codec::table_prefix(def.id),
        };
        let end = key_codec::prefix_end(&prefix);
        if let Some(transaction) = &self.transaction {
            return transaction.scan(def, prefix, end, projection);
        }
        let range = self.rows.range(prefix.as_slice()..end.as_slice())?;
        Ok(RowScan::with_overlay(
            range,
            RowDecoder::new(def, projection),
            Arc::clone(&self.counters),
            Vec::new(),
        ))
    }
}

/// Iterator over decoded rows; owns its position in the snapshot, so it can move to a
/// blocking thread and be drained a batch at a time.
///
/// In a transaction, its own writes in the range (`overlay`, in key order; `None` is a
/// deleted row) are merged in: they replace the snapshot's row of the same key.
pub struct RowScan {
    range: redb::Range<'static, &'static [u8], &'static [u8]>,
    decoder: RowDecoder,
    counters: Arc<StoreCounters>,
    overlay: std::iter::Peekable<std::vec::IntoIter<OverlayEntry>>,
    /// The snapshot's next row, read ahead while overlay rows sort before it.
    ahead: Option<(Vec<u8>, Vec<u8>)>,
}

type RawEntry = Result<Option<(Vec<u8>, Vec<u8>)>, StorageError>;
/// A row key the transaction wrote, and the encoded row (`None`: deleted).
type OverlayEntry = (Vec<u8>, Option<Vec<u8>>);

impl RowScan {
    pub(super) fn with_overlay(
        range: redb::Range<'static, &'static [u8], &'static [u8]>,
        decoder: RowDecoder,
        counters: Arc<StoreCounters>,
        overlay: Vec<OverlayEntry>,
    ) -> Self {
        Self {
            range,
            decoder,
            counters,
            overlay: overlay.into_iter().peekable(),
            ahead: None,
        }
    }

    fn next_base(&mut self) -> RawEntry {
        if let Some(entry) = self.ahead.take() {
            return Ok(Some(entry));
        }
        match self.range.next() {
            None => Ok(None),
            Some(entry) => {
                let (key, bytes) = entry?;
                Ok(Some((key.value().to_vec(), bytes.value().to_vec())))
            }
        }
    }

    fn decode(&self, bytes: &[u8]) -> Result<Vec<Value>, StorageError> {
        self.counters.rows_read.fetch_add(1, Ordering::Relaxed);
        Ok(self.decoder.decode(bytes)?)
    }

    /// The next row with the overlay merged in.
    fn next_merged(&mut self) -> Option<Result<Vec<Value>, StorageError>> {
        loop {
            let base = match self.next_base() {
                Ok(base) => base,
                Err(error) => return Some(Err(error)),
            };
            let overlay_first = match (&base, self.overlay.peek()) {
                (_, None) => false,
                (None, Some(_)) => true,
                (Some((key, _)), Some((own, _))) => own <= key,
            };
            if !overlay_first {
                return base.map(|(_, bytes)| self.decode(&bytes));
            }
            let (own_key, own) = self.overlay.next()?;
            match base {
                // The transaction's write of the same key replaces the snapshot's row.
                Some((key, _)) if key == own_key => {}
                other => self.ahead = other,
            }
            if let Some(bytes) = own {
                return Some(self.decode(&bytes));
            }
        }
    }
}

impl Iterator for RowScan {
    type Item = Result<Vec<Value>, StorageError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.overlay.peek().is_none() && self.ahead.is_none() {
            let entry = self.range.next()?;
            return Some(
                entry
                    .map_err(StorageError::from)
                    .and_then(|(_, bytes)| self.decode(bytes.value())),
            );
        }
        self.next_merged()
    }
}
