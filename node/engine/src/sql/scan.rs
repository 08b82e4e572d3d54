//! `StorageScanExec`: reads rows of one table from a storage snapshot as Arrow batches.
//! Point lookups are answered inline; scans run on a blocking thread that hands batches
//! over a bounded channel, so a large result is streamed, never held whole in memory.

use std::fmt;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::memory::MemoryStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};
use futures::{StreamExt, TryStreamExt};
use tokio_stream::wrappers::ReceiverStream;

use super::StatementContext;
use super::arrow_convert::{rows_to_batch, table_schema};
use super::dml::WriteError;
use super::dml::guard_session;
use super::pushdown::Access;
use crate::catalog::TableDef;
use crate::limits::INLINE_LOOKUP_KEYS_MAX;
use crate::limits::{SCAN_BATCH_ROWS_MAX, SCAN_CHANNEL_BATCHES_MAX, SCAN_CONSUMER_IDLE_MAX};
use crate::storage::{Snapshot, Store, Value};

#[derive(Debug)]
pub(crate) struct StorageScanExec {
    def: Arc<TableDef>,
    store: Store,
    access: Access,
    projection: Vec<usize>,
    limit: Option<usize>,
    properties: Arc<PlanProperties>,
}

impl StorageScanExec {
    pub(crate) fn new(
        def: Arc<TableDef>,
        store: Store,
        access: Access,
        projection: Vec<usize>,
        schema: SchemaRef,
        limit: Option<usize>,
    ) -> Self {
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(schema),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        Self {
            def,
            store,
            access,
            projection,
            limit,
            properties,
        }
    }
}

impl DisplayAs for StorageScanExec {
    fn fmt_as(&self, _: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "StorageScanExec: table={}, {}",
            self.def.name,
            self.access.describe()
        )?;
        if let Some(limit) = self.limit {
            write!(f, ", limit={limit}")?;
        }
        Ok(())
    }
}

impl ExecutionPlan for StorageScanExec {
    crate::leaf_exec_methods!("StorageScanExec", no_expressions);

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        crate::sql::leaf_exec::only_partition_zero("StorageScanExec", partition)?;
        let session = guard_session(&context)?;
        let local = session.router.local_region().to_string();
        if session.copies && self.def.locality == crate::catalog::Locality::Replica {
            return Err(DataFusionError::Plan(crate::sql::copy_refused(&format!(
                "global.{}",
                self.def.name.trim_start_matches("global.")
            ))));
        }
        // A mesh leg answers for this node's own partition only.
        let access = if session.local_only {
            self.access.within(&local)
        } else {
            self.access.clone()
        };
        let remote: Vec<String> = match &access.partitions {
            Some(partitions) if session.router.has_peers() && !session.local_only => partitions
                .iter()
                .filter(|p| **p != local)
                .cloned()
                .collect(),
            _ => Vec::new(),
        };
        if !remote.is_empty() && session.copies {
            return Err(DataFusionError::Plan(crate::sql::copy_refused(&format!(
                "the partition of {} homed in {}",
                self.def.name,
                remote.join(", ")
            ))));
        }
        if !remote.is_empty() && session.transaction.is_some() {
            return Err(external(WriteError::OutsideTransaction {
                what: format!(
                    "a read of the rows of {} homed in {}",
                    self.def.name,
                    remote.join(", ")
                ),
                local_region: local,
            }));
        }
        if !remote.is_empty() {
            return self.execute_with_remote(&session, &local, remote);
        }
        let decides = session
            .guard
            .decides_egress(&session.destinations(), &self.def);
        // Inside a transaction: its snapshot, its own writes over it, reads recorded.
        let snapshot = match &session.transaction {
            Some(transaction) => transaction.snapshot(),
            None => self.store.snapshot().map_err(external)?,
        };
        let egress = decides.then_some(session);
        let schema = self.schema();
        let reader = RowReader {
            def: Arc::clone(&self.def),
            snapshot,
            access,
            projection: self.projection.clone(),
            limit: self.limit,
            schema: Arc::clone(&schema),
            egress,
        };
        // Rows leaving for another region wait for a policy decision and a durable
        // audit entry, which block: those scans always run on a blocking thread.
        if let Some(keys) = &self.access.keys
            && keys.len() <= INLINE_LOOKUP_KEYS_MAX
            && reader.egress.is_none()
        {
            let mut batches = Vec::new();
            reader.produce(|batch| {
                batches.push(batch);
                true
            })?;
            return Ok(Box::pin(MemoryStream::try_new(batches, schema, None)?));
        }
        Ok(spawn_reader(reader))
    }
}

/// Runs `reader` on a blocking thread that hands its batches over a bounded channel:
/// the reader waits while the consumer is slow, and stops when the consumer goes away.
/// The reader works in the statement's span: its policy decisions (plugin calls) and
/// audit commits belong to the statement's trace.
fn spawn_reader(reader: RowReader) -> SendableRecordBatchStream {
    let schema = Arc::clone(&reader.schema);
    let span = reader
        .egress
        .as_ref()
        .map_or_else(tracing::Span::current, |session| session.span.clone());
    stream_from_blocking(schema, SCAN_CONSUMER_IDLE_MAX, move |emit| {
        let _entered = span.enter();
        reader.produce(|batch| emit(Ok(batch)))
    })
}

/// Runs `produce` on a blocking thread and streams what it emits through a channel of
/// `SCAN_CHANNEL_BATCHES_MAX` batches. `emit` answers false once the consumer is gone, or
/// once it took nothing for `idle`: a consumer that stopped reading (a client or a peer)
/// would otherwise hold the thread and its storage snapshot for ever. The reader then
/// stops, and the stream ends with an error, never as if it were complete. An error
/// `produce` returns ends the stream too.
fn stream_from_blocking(
    schema: SchemaRef,
    idle: std::time::Duration,
    produce: impl FnOnce(&mut dyn FnMut(Result<arrow::array::RecordBatch>) -> bool) -> Result<()>
    + Send
    + 'static,
) -> SendableRecordBatchStream {
    use std::sync::atomic::{AtomicBool, Ordering};
    let (sender, receiver) = tokio::sync::mpsc::channel(SCAN_CHANNEL_BATCHES_MAX);
    let handle = tokio::runtime::Handle::current();
    let abandoned = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&abandoned);
    tokio::task::spawn_blocking(move || {
        let mut send = |item| match handle.block_on(tokio::time::timeout(idle, sender.send(item))) {
            Ok(sent) => sent.is_ok(),
            Err(_) => {
                flag.store(true, Ordering::Relaxed);
                false
            }
        };
        if let Err(error) = produce(&mut send) {
            let _ = send(Err(error));
        }
    });
    let ended = futures::stream::once(async move {
        abandoned.load(Ordering::Relaxed).then(|| {
            Err(DataFusionError::ResourcesExhausted(format!(
                "the scan was stopped: its reader took no rows for {} s",
                idle.as_secs()
            )))
        })
    })
    .filter_map(std::future::ready);
    Box::pin(RecordBatchStreamAdapter::new(
        schema,
        ReceiverStream::new(receiver).chain(ended),
    ))
}

impl StorageScanExec {
    /// Rows whose region filter names other regions: the local partitions read here,
    /// each remote region's rows read by its home node (which decides, for this
    /// principal, what may leave it) — nothing of them is stored here.
    fn execute_with_remote(
        &self,
        session: &Arc<StatementContext>,
        local: &str,
        remote: Vec<String>,
    ) -> Result<SendableRecordBatchStream> {
        let schema = self.schema();
        let locals: Vec<String> = self
            .access
            .partitions
            .iter()
            .flatten()
            .filter(|p| p.as_str() == local)
            .cloned()
            .collect();
        let local_access = Access {
            keys: self.access.keys.clone(),
            partitions: Some(locals),
        };
        let def = Arc::clone(&self.def);
        let keys = match &self.access.keys {
            Some(keys) => {
                let pk_schema = Arc::new(table_schema(&def).project(&def.primary_key)?);
                Some(rows_to_batch(&def, &def.primary_key, &pk_schema, keys)?)
            }
            None => None,
        };
        let columns: Vec<String> = self
            .projection
            .iter()
            .map(|&i| def.columns[i].name.clone())
            .collect();
        let local_rows = stream_rows(
            Arc::clone(&def),
            self.store.clone(),
            local_access,
            self.projection.clone(),
            self.limit,
            Arc::clone(session),
        )?;
        // Each home region's rows are asked for once the ones before them are read,
        // and pass through as they arrive: nothing here holds a whole answer.
        let limit = self.limit;
        let session = Arc::clone(session);
        let stream_schema = Arc::clone(&schema);
        let remote_rows = futures::stream::iter(remote)
            .then(move |region| {
                let session = Arc::clone(&session);
                let def = Arc::clone(&def);
                let columns = columns.clone();
                let keys = keys.clone();
                let stream_schema = Arc::clone(&stream_schema);
                async move {
                    let call = session.router.scan_rows(
                        &region,
                        &session.principal,
                        &def.name,
                        columns,
                        keys.as_ref(),
                        limit,
                    );
                    let rows = tracing::Instrument::instrument(call, session.span.clone())
                        .await
                        .map_err(|e| external(WriteError::Forward(e)))?;
                    Ok::<_, DataFusionError>(rows.map(move |batch| {
                        let batch = batch.map_err(|e| external(WriteError::Forward(e)))?;
                        // The home node's schema must be ours: same catalog, same columns.
                        Ok(arrow::array::RecordBatch::try_new(
                            Arc::clone(&stream_schema),
                            batch.columns().to_vec(),
                        )?)
                    }))
                }
            })
            .try_flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            schema,
            local_rows.chain(remote_rows),
        )))
    }
}

/// Streams the matching rows of `def` from a blocking thread (see `spawn_reader`),
/// deciding egress for `session`'s principal if they leave the region.
pub(crate) fn stream_rows(
    def: Arc<TableDef>,
    store: Store,
    access: Access,
    projection: Vec<usize>,
    limit: Option<usize>,
    session: Arc<StatementContext>,
) -> Result<SendableRecordBatchStream> {
    let schema = Arc::new(table_schema(&def).project(&projection)?);
    if access.partitions.as_ref().is_some_and(Vec::is_empty) {
        return Ok(Box::pin(MemoryStream::try_new(Vec::new(), schema, None)?));
    }
    let decides = session.guard.decides_egress(&session.destinations(), &def);
    let egress = decides.then_some(session);
    let reader = RowReader {
        def,
        snapshot: store.snapshot().map_err(external)?,
        access,
        projection,
        limit,
        schema,
        egress,
    };
    Ok(spawn_reader(reader))
}

/// Primary keys sent by a peer (the key columns, in key order) as storage values.
pub(crate) fn keys_from_batches(
    def: &TableDef,
    batches: &[arrow::array::RecordBatch],
) -> std::result::Result<Vec<Vec<Value>>, super::arrow_convert::ConvertError> {
    let mut keys = Vec::new();
    for batch in batches {
        let mut rows: Vec<Vec<Value>> =
            vec![Vec::with_capacity(def.primary_key.len()); batch.num_rows()];
        for (column, &position) in batch.columns().iter().zip(&def.primary_key) {
            super::arrow_convert::append_column_values(def, position, column, &mut rows)?;
        }
        keys.extend(rows);
    }
    Ok(keys)
}

pub(crate) fn external(error: impl std::error::Error + Send + Sync + 'static) -> DataFusionError {
    DataFusionError::External(Box::new(error))
}

struct RowReader {
    def: Arc<TableDef>,
    snapshot: Snapshot,
    access: Access,
    projection: Vec<usize>,
    limit: Option<usize>,
    schema: SchemaRef,
    /// Set when the rows leave for a principal of another region.
    egress: Option<Arc<StatementContext>>,
}

impl RowReader {
    /// Puts rows leaving the region to the policy (masking or removing columns in
    /// place) and audits the decision durably before anything is released.
    fn release(&self, rows: &mut [Vec<Value>]) -> Result<()> {
        let Some(session) = &self.egress else {
            return Ok(());
        };
        let destinations = session.destinations();
        let (outcome, audits) = session.guard.check_egress(
            &session.principal,
            &destinations,
            &self.def,
            &self.projection,
            rows,
        );
        for entry in audits {
            tokio::runtime::Handle::current()
                .block_on(session.guard.record(entry))
                .map_err(external)?;
        }
        outcome.map_err(external)
    }

    /// Reads matching rows in batches, calling `emit` for each; stops early when `emit`
    /// returns false (the consumer went away) or the limit is reached.
    fn produce(&self, mut emit: impl FnMut(arrow::array::RecordBatch) -> bool) -> Result<()> {
        let limit = self.limit.unwrap_or(usize::MAX);
        let mut emitted = 0usize;
        let mut rows: Vec<Vec<Value>> = Vec::new();
        let partitions = match &self.access.partitions {
            Some(partitions) => partitions.clone(),
            None => self.snapshot.partitions(self.def.id).map_err(external)?,
        };
        let mut flush = |rows: &mut Vec<Vec<Value>>| -> Result<bool> {
            if rows.is_empty() {
                return Ok(true);
            }
            self.release(rows)?;
            let batch = rows_to_batch(&self.def, &self.projection, &self.schema, rows)?;
            rows.clear();
            Ok(emit(batch))
        };
        match &self.access.keys {
            Some(keys) => {
                'keys: for key in keys {
                    for partition in &partitions {
                        if emitted >= limit {
                            break 'keys;
                        }
                        let found = self
                            .snapshot
                            .lookup(&self.def, partition, key, &self.projection)
                            .map_err(external)?;
                        if let Some(row) = found {
                            rows.push(row);
                            emitted += 1;
                            // Primary keys are unique across partitions.
                            break;
                        }
                    }
                    if rows.len() >= SCAN_BATCH_ROWS_MAX && !flush(&mut rows)? {
                        return Ok(());
                    }
                }
            }
            None => {
                'partitions: for partition in &partitions {
                    let scan = self
                        .snapshot
                        .scan(&self.def, Some(partition), &self.projection)
                        .map_err(external)?;
                    for row in scan {
                        if emitted >= limit {
                            break 'partitions;
                        }
                        rows.push(row.map_err(external)?);
                        emitted += 1;
                        if rows.len() >= SCAN_BATCH_ROWS_MAX && !flush(&mut rows)? {
                            return Ok(());
                        }
                    }
                }
            }
        }
        flush(&mut rows)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use arrow::array::{Int64Array, RecordBatch};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    /// A scan of `batches` one-row batches through `stream_from_blocking` with an idle
    /// bound of 200 ms; the counter says how many batches the consumer was sent.
    fn counted_scan(batches: i64) -> (SendableRecordBatchStream, Arc<AtomicUsize>) {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        let produced = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&produced);
        let batch_schema = Arc::clone(&schema);
        let stream = stream_from_blocking(schema, Duration::from_millis(200), move |emit| {
            for n in 0..batches {
                let batch = RecordBatch::try_new(
                    Arc::clone(&batch_schema),
                    vec![Arc::new(Int64Array::from(vec![n]))],
                )?;
                if !emit(Ok(batch)) {
                    return Ok(());
                }
                counter.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        });
        (stream, produced)
    }

    /// A reader whose consumer stops taking batches gives up after `idle` (it would
    /// otherwise hold a blocking thread and a snapshot for ever), and the stream ends
    /// with an error naming the wait, not as if the scan were complete.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_scan_whose_consumer_stops_reading_ends_with_an_error() {
        let (mut stream, produced) = counted_scan(1_000);
        let first = stream.next().await.expect("a batch").expect("no error");
        assert_eq!(first.num_rows(), 1);
        // The consumer takes nothing for longer than `idle`.
        tokio::time::sleep(Duration::from_millis(600)).await;
        let mut taken = 1;
        let ended = loop {
            match stream.next().await {
                Some(Ok(_)) => taken += 1,
                Some(Err(error)) => break error,
                None => panic!("the abandoned scan ended as if complete after {taken} batches"),
            }
        };
        assert!(ended.to_string().contains("took no rows"), "{ended}");
        // Only what fitted in the channel was produced: the reader stopped.
        assert!(
            produced.load(Ordering::Relaxed) <= 1 + SCAN_CHANNEL_BATCHES_MAX,
            "{} batches produced",
            produced.load(Ordering::Relaxed)
        );
        assert_eq!(taken, produced.load(Ordering::Relaxed));
    }

    /// A consumer that keeps reading gets every batch and a clean end.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_scan_read_to_the_end_is_complete() {
        let (stream, produced) = counted_scan(100);
        let batches: Vec<RecordBatch> = stream.try_collect().await.expect("complete");
        assert_eq!(batches.len(), 100);
        assert_eq!(produced.load(Ordering::Relaxed), 100);
    }
}
