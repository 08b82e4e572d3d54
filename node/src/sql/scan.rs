//! `StorageScanExec`: reads rows of one table from a storage snapshot as Arrow batches.
//! Point lookups are answered inline; scans run on a blocking thread that hands batches
//! over a bounded channel, so a large result is streamed, never held whole in memory.

use std::fmt;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::memory::MemoryStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};
use tokio_stream::wrappers::ReceiverStream;

use super::arrow_convert::rows_to_batch;
use super::dml::guard_session;
use super::pushdown::Access;
use crate::catalog::TableDef;
use crate::limits::{SCAN_BATCH_ROWS_MAX, SCAN_CHANNEL_BATCHES_MAX};
use crate::residency::GuardSession;
use crate::storage::{Snapshot, Store, Value};

/// Point lookups up to this many keys are answered on the calling task.
const INLINE_LOOKUP_KEYS_MAX: usize = 64;

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
    fn name(&self) -> &str {
        "StorageScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if children.is_empty() {
            Ok(self)
        } else {
            Err(DataFusionError::Internal(
                "StorageScanExec has no children".into(),
            ))
        }
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        if partition != 0 {
            return Err(DataFusionError::Internal(format!(
                "StorageScanExec has no partition {partition}"
            )));
        }
        let session = guard_session(&context)?;
        let egress = session
            .guard
            .decides_egress(&session.principal, &self.def)
            .then_some(session);
        let schema = self.schema();
        let snapshot = self.store.snapshot().map_err(external)?;
        let reader = RowReader {
            def: Arc::clone(&self.def),
            snapshot,
            access: self.access.clone(),
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
        let (sender, receiver) = tokio::sync::mpsc::channel(SCAN_CHANNEL_BATCHES_MAX);
        tokio::task::spawn_blocking(move || {
            let result = reader.produce(|batch| sender.blocking_send(Ok(batch)).is_ok());
            if let Err(error) = result {
                let _ = sender.blocking_send(Err(error));
            }
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            schema,
            ReceiverStream::new(receiver),
        )))
    }
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
    egress: Option<Arc<GuardSession>>,
}

impl RowReader {
    /// Puts rows leaving the region to the policy (masking or removing columns in
    /// place) and audits the decision durably before anything is released.
    fn release(&self, rows: &mut [Vec<Value>]) -> Result<()> {
        let Some(session) = &self.egress else {
            return Ok(());
        };
        let verdict =
            session
                .guard
                .check_egress(&session.principal, &self.def, &self.projection, rows);
        if let Some(entry) = verdict.audit {
            tokio::runtime::Handle::current()
                .block_on(session.guard.record(entry))
                .map_err(external)?;
        }
        verdict.outcome.map_err(external)
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
