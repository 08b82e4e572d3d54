//! Schema `mesh`: every user table of this node, read across all regions. A scan has
//! one partition per region; each runs that region's leg (pushed-down projection,
//! filters, limit) and tags its rows with `mesh_region`.

use std::fmt;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray};
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{SchemaProvider, Session};
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};
use futures::{StreamExt, TryStreamExt};

use super::leg_cache;
use super::leg_sql::{can_push, leg_sql};
use super::remote::{self, LegError, LegStream};
use super::{Federation, REGION_COLUMN, with_region_tag};
use crate::catalog::{Locality, TableDef};
use crate::sql::StatementContext;
use crate::sql::arrow_convert::table_schema;
use crate::storage::Store;

/// Schema `mesh` of catalog `domicile`.
#[derive(Debug)]
pub struct MeshSchema {
    pub(crate) store: Store,
    pub(crate) federation: Arc<Federation>,
}

impl MeshSchema {
    /// The `mesh` schema over `store`'s catalog, its legs run by `federation`.
    pub fn new(store: Store, federation: Arc<Federation>) -> Self {
        Self { store, federation }
    }

    fn def(&self, name: &str) -> Option<Arc<TableDef>> {
        self.store
            .table(name)
            .filter(|def| def.locality != Locality::Replica && !name.contains('.'))
    }
}

#[async_trait]
impl SchemaProvider for MeshSchema {
    fn table_names(&self) -> Vec<String> {
        self.store
            .tables()
            .iter()
            .filter(|def| def.locality != Locality::Replica && !def.name.contains('.'))
            .map(|def| def.name.clone())
            .collect()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        Ok(self.def(name).map(|def| {
            Arc::new(MeshTable::new(def, Arc::clone(&self.federation))) as Arc<dyn TableProvider>
        }))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.def(name).is_some()
    }
}

#[derive(Debug)]
pub(super) struct MeshTable {
    pub(super) def: Arc<TableDef>,
    /// The table's own columns (what a leg reads).
    pub(super) table_schema: SchemaRef,
    /// The table's columns and `mesh_region`.
    schema: SchemaRef,
    pub(super) federation: Arc<Federation>,
}

impl MeshTable {
    fn new(def: Arc<TableDef>, federation: Arc<Federation>) -> Self {
        let table_schema = table_schema(&def);
        let schema = with_region_tag(&table_schema);
        Self {
            def,
            table_schema,
            schema,
            federation,
        }
    }
}

/// The regions a filter on `mesh_region` allows (`= 'r'`, `IN (...)`, `... OR ...`),
/// if it is one.
fn region_filter(filter: &Expr) -> Option<Vec<String>> {
    let (column, values) = match filter {
        Expr::BinaryExpr(binary) if binary.op == datafusion::logical_expr::Operator::Or => {
            let mut regions = region_filter(&binary.left)?;
            regions.extend(region_filter(&binary.right)?);
            return Some(regions);
        }
        Expr::BinaryExpr(binary) if binary.op == datafusion::logical_expr::Operator::Eq => {
            match (binary.left.as_ref(), binary.right.as_ref()) {
                (Expr::Column(c), Expr::Literal(v, _)) | (Expr::Literal(v, _), Expr::Column(c)) => {
                    (c, vec![v.clone()])
                }
                _ => return None,
            }
        }
        Expr::InList(list) if !list.negated => match list.expr.as_ref() {
            Expr::Column(c) => (
                c,
                list.list
                    .iter()
                    .map(|e| match e {
                        Expr::Literal(v, _) => Some(v.clone()),
                        _ => None,
                    })
                    .collect::<Option<Vec<_>>>()?,
            ),
            _ => return None,
        },
        _ => return None,
    };
    if column.name != REGION_COLUMN {
        return None;
    }
    values
        .into_iter()
        .map(|v| match v {
            datafusion::common::ScalarValue::Utf8(Some(s))
            | datafusion::common::ScalarValue::Utf8View(Some(s))
            | datafusion::common::ScalarValue::LargeUtf8(Some(s)) => Some(s),
            _ => None,
        })
        .collect()
}

#[async_trait]
impl TableProvider for MeshTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|filter| {
                if can_push(filter) {
                    // The region's node applies it exactly.
                    TableProviderFilterPushDown::Exact
                } else if region_filter(filter).is_some() {
                    // Chooses the regions asked; checked again here.
                    TableProviderFilterPushDown::Inexact
                } else {
                    TableProviderFilterPushDown::Unsupported
                }
            })
            .collect())
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let width = self.table_schema.fields().len();
        let projection: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..=width).collect(),
        };
        // What each leg reads: the projected table columns, or (for `count(*)` and
        // the like) the first key column, dropped again here.
        let mut leg_columns: Vec<usize> =
            projection.iter().copied().filter(|&i| i < width).collect();
        leg_columns.dedup();
        if leg_columns.is_empty() {
            leg_columns.push(self.def.primary_key.first().copied().unwrap_or(0));
        }
        let mut regions = self.federation.regions();
        let mut pushed = Vec::new();
        for filter in filters {
            if can_push(filter) {
                pushed.push(filter.clone());
            } else if let Some(allowed) = region_filter(filter) {
                regions.retain(|r| allowed.contains(r));
            }
        }
        let sql = leg_sql(
            &self.def.name,
            Arc::clone(&self.table_schema),
            &leg_columns,
            &pushed,
            limit,
        )?;
        let schema = Arc::new(self.schema.project(&projection)?);
        // Where each output column comes from: a leg column, or the region tag.
        let sources = projection
            .iter()
            .map(|&i| leg_columns.iter().position(|&c| c == i))
            .collect();
        let leg_schema = Arc::new(self.table_schema.project(&leg_columns)?);
        Ok(Arc::new(MeshScanExec::new(
            Arc::clone(&self.def),
            Arc::clone(&self.federation),
            Leg {
                def: Arc::clone(&self.def),
                columns: leg_columns,
                schema: leg_schema,
                sql,
                cacheable: true,
            },
            regions,
            (sources, schema),
        )))
    }
}

#[derive(Debug)]
pub(super) struct MeshScanExec {
    table: String,
    def: Arc<TableDef>,
    /// The table columns each leg reads, and their schema.
    leg_columns: Vec<usize>,
    leg_schema: SchemaRef,
    /// The leg every region runs.
    sql: String,
    /// See [`Leg::cacheable`].
    cacheable: bool,
    regions: Vec<String>,
    /// Per output column: `Some(i)`, leg column `i`; `None`, `mesh_region`.
    sources: Vec<Option<usize>>,
    schema: SchemaRef,
    federation: Arc<Federation>,
    properties: Arc<PlanProperties>,
}

impl DisplayAs for MeshScanExec {
    fn fmt_as(&self, _: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "MeshScanExec: table={}, regions=[{}], leg={}",
            self.table,
            self.regions.join(", "),
            self.sql
        )
    }
}

impl MeshScanExec {
    /// A scan that asks `regions` the `leg`; `output` says where each output column
    /// comes from (a leg column, or `None`: the region tag) and the output schema.
    pub(super) fn new(
        def: Arc<TableDef>,
        federation: Arc<Federation>,
        leg: Leg,
        regions: Vec<String>,
        output: (Vec<Option<usize>>, SchemaRef),
    ) -> Self {
        let (sources, schema) = output;
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(&schema)),
            Partitioning::UnknownPartitioning(regions.len().max(1)),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        Self {
            table: def.name.clone(),
            def,
            leg_columns: leg.columns,
            leg_schema: leg.schema,
            sql: leg.sql,
            cacheable: leg.cacheable,
            regions,
            sources,
            schema,
            federation,
            properties,
        }
    }

    /// A leg's batch with the output's columns: its own, and the region tag.
    fn tag(&self, batch: &RecordBatch, region: &str) -> Result<RecordBatch> {
        let tag: ArrayRef = Arc::new(StringArray::from(vec![region; batch.num_rows()]));
        let columns = self
            .sources
            .iter()
            .map(|source| match source {
                Some(i) => batch.columns().get(*i).cloned().ok_or_else(|| {
                    DataFusionError::Execution(format!(
                        "region {region} answered without column {i}"
                    ))
                }),
                None => Ok(Arc::clone(&tag)),
            })
            .collect::<Result<Vec<_>>>()?;
        let options =
            arrow::array::RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
        Ok(RecordBatch::try_new_with_options(
            Arc::clone(&self.schema),
            columns,
            &options,
        )?)
    }
}

impl ExecutionPlan for MeshScanExec {
    domicile_engine::leaf_exec_methods!("MeshScanExec", no_expressions);

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let session = context
            .session_config()
            .get_extension::<StatementContext>()
            .ok_or_else(|| DataFusionError::Internal("no guard session".into()))?;
        if session.local_only {
            return Err(DataFusionError::Plan(
                "a mesh leg cannot itself read mesh tables".into(),
            ));
        }
        if session.copies {
            return Err(DataFusionError::Plan(crate::sql::copy_refused(&format!(
                "mesh.{}",
                self.table
            ))));
        }
        if session.transaction.is_some() {
            return Err(DataFusionError::External(Box::new(
                crate::sql::WriteError::OutsideTransaction {
                    what: format!("a read of mesh.{}", self.table),
                    local_region: session.router.local_region().to_string(),
                },
            )));
        }
        let Some(region) = self.regions.get(partition).cloned() else {
            // No region left after the region filter: nothing to read.
            return Ok(Box::pin(RecordBatchStreamAdapter::new(
                Arc::clone(&self.schema),
                futures::stream::empty(),
            )));
        };
        let federation = Arc::clone(&self.federation);
        let sql = self.sql.clone();
        let question = Leg {
            def: Arc::clone(&self.def),
            columns: self.leg_columns.clone(),
            schema: Arc::clone(&self.leg_schema),
            sql,
            cacheable: self.cacheable,
        };
        let this = MeshScanExec {
            table: self.table.clone(),
            def: Arc::clone(&self.def),
            leg_columns: Vec::new(),
            leg_schema: Arc::clone(&self.leg_schema),
            sql: String::new(),
            cacheable: self.cacheable,
            regions: Vec::new(),
            sources: self.sources.clone(),
            schema: Arc::clone(&self.schema),
            federation: Arc::clone(&self.federation),
            properties: Arc::clone(&self.properties),
        };
        let leg = async move {
            // The region must start answering within the timeout; after that each of
            // its messages must follow within it (see `remote::run`).
            let timeout = federation.timeout;
            let first = tokio::time::timeout(timeout, async {
                let mut answer = run_leg(&federation, &session, &region, question).await?;
                let first = answer.try_next().await?;
                Ok::<_, LegError>((first, answer))
            })
            .await
            .unwrap_or_else(|_| {
                Err(LegError::Timeout {
                    region: region.clone(),
                    timeout_ms: timeout.as_millis(),
                })
            });
            let answer: LegStream = match first {
                Ok((Some(first), rest)) => {
                    Box::pin(futures::stream::once(std::future::ready(Ok(first))).chain(rest))
                }
                Ok((None, _)) => Box::pin(futures::stream::empty()),
                Err(error) if session.options.mesh_partial_results => {
                    tracing::warn!(region = %region, table = %this.table, error = %error, "mesh query answered without a region");
                    if let Ok(mut warnings) = session.warnings.lock() {
                        warnings.push(format!("partial result: {error}"));
                    }
                    Box::pin(futures::stream::empty())
                }
                Err(error) => {
                    return Err(DataFusionError::External(
                        format!(
                            "{error} (SET {} = true to answer from the regions that can)",
                            crate::auth::SessionOptions::MESH_PARTIAL_RESULTS
                        )
                        .into(),
                    ));
                }
            };
            // Rows already passed on cannot be taken back: a region that fails after its
            // first rows fails the query, partial results or not.
            Ok::<_, DataFusionError>(answer.map(move |batch| match batch {
                Ok(batch) => this.tag(&batch, &region),
                Err(error) => Err(DataFusionError::External(
                    format!("{error} (midway through its answer)").into(),
                )),
            }))
        };
        let stream = futures::stream::once(leg).try_flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&self.schema),
            stream,
        )))
    }
}

/// What every region is asked: `sql`, answering `schema`, whose first columns are the
/// table's `columns` (what the residency policy sees when the answer is cached).
pub(super) struct Leg {
    pub(super) def: Arc<TableDef>,
    pub(super) columns: Vec<usize>,
    pub(super) schema: SchemaRef,
    pub(super) sql: String,
    /// Whether `columns` are all the answer is computed from, so the cache decision on
    /// them covers it (false for aggregates over non-`public` columns: never cached).
    pub(super) cacheable: bool,
}

/// One region's answer as it comes: this node's own leg in process, another's from the
/// cache or over the mesh (kept in the cache once complete, when small enough).
async fn run_leg(
    federation: &Arc<Federation>,
    session: &StatementContext,
    region: &str,
    leg: Leg,
) -> Result<LegStream, LegError> {
    let Leg {
        def,
        columns,
        schema,
        sql,
        cacheable,
    } = leg;
    if region == federation.region {
        let engine = federation
            .engine()
            .ok_or_else(|| LegError::failed(region, "the node is stopping"))?;
        let stream = engine
            .run_mesh_leg(&session.principal, &sql, None)
            .await
            .map_err(|e| LegError::failed(region, e))?;
        let region = region.to_string();
        return Ok(Box::pin(
            stream.map_err(move |e| LegError::failed(&region, e)),
        ));
    }
    let key = leg_cache::key(region, &session.principal, &federation.region, &sql);
    if cacheable && let Some(batches) = leg_cache::cached(federation, &key).await {
        return Ok(Box::pin(futures::stream::iter(batches.into_iter().map(Ok))));
    }
    let answer = tracing::Instrument::instrument(
        remote::run(
            &federation.router,
            region,
            &session.principal,
            sql,
            federation.timeout,
        ),
        session.span.clone(),
    )
    .await?;
    if !cacheable {
        return Ok(answer);
    }
    let federation = Arc::clone(federation);
    let principal = session.principal.clone();
    let region = region.to_string();
    Ok(leg_cache::keep_when_complete(answer, move |batches| {
        leg_cache::keep(
            &federation,
            &principal,
            &def,
            &columns,
            &region,
            key,
            (schema, &batches),
        );
    }))
}
