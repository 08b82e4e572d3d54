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
        let range = self.rows.range(prefix.as_slice()..end.as_slice())?;
        Ok(RowScan {
            range,
            decoder: RowDecoder::new(def, projection),
            counters: Arc::clone(&self.counters),
        })
    }
}

/// Iterator over decoded rows; owns its position in the snapshot, so it can move to a
/// blocking thread and be drained a batch at a time.
pub struct RowScan {
    range: redb::Range<'static, &'static [u8], &'static [u8]>,
    decoder: RowDecoder,
    counters: Arc<StoreCounters>,
}

impl Iterator for RowScan {
    type Item = Result<Vec<Value>, StorageError>;

    fn next(&mut self) -> Option<Self::Item> {
        let entry = self.range.next()?;
        Some(entry.map_err(StorageError::from).and_then(|(_, bytes)| {
            self.counters.rows_read.fetch_add(1, Ordering::Relaxed);
            Ok(self.decoder.decode(bytes.value())?)
        }))
    }
}
