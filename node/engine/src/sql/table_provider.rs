//! `DomicileTable`: one catalog table as a DataFusion `TableProvider`, with projection,
//! limit, key and region pushdown for reads and DataFusion's DML hooks for writes.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::{Constraint, Constraints, DFSchema};
use datafusion::datasource::TableProvider;
use datafusion::datasource::sink::DataSinkExec;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::ExecutionPlan;

use super::arrow_convert::table_schema;
use super::dml::{InsertSink, Mutation, MutationExec, WriteTarget};
use super::pushdown::plan_access;
use super::scan::StorageScanExec;
use crate::catalog::{Locality, TableDef};
use crate::storage::Store;

#[derive(Debug)]
pub(crate) struct DomicileTable {
    def: Arc<TableDef>,
    store: Store,
    local_region: Arc<str>,
    schema: SchemaRef,
    constraints: Constraints,
}

impl DomicileTable {
    pub(crate) fn new(def: Arc<TableDef>, store: Store, local_region: Arc<str>) -> Self {
        let schema = table_schema(&def);
        let constraints =
            Constraints::new_unverified(vec![Constraint::PrimaryKey(def.primary_key.clone())]);
        Self {
            def,
            store,
            local_region,
            schema,
            constraints,
        }
    }

    /// Replicas change only through the CDC consumer, never through SQL.
    fn refuse_replica(&self) -> Result<()> {
        if self.def.locality == Locality::Replica {
            return Err(DataFusionError::Plan(format!(
                "{} is a read-only replica of other regions' data; write at the source region",
                self.def.name
            )));
        }
        Ok(())
    }

    fn target(&self) -> WriteTarget {
        WriteTarget {
            def: Arc::clone(&self.def),
            store: self.store.clone(),
            local_region: Arc::clone(&self.local_region),
        }
    }

    fn physical_exprs(
        &self,
        state: &dyn Session,
        exprs: Vec<Expr>,
    ) -> Result<Vec<Arc<dyn datafusion::physical_expr::PhysicalExpr>>> {
        use datafusion::logical_expr::simplify::SimplifyContext;
        use datafusion::optimizer::simplify_expressions::ExprSimplifier;
        let df_schema = DFSchema::try_from(Arc::clone(&self.schema))?;
        // UPDATE and DELETE skip the optimizer, so their expressions are simplified here:
        // some functions (coalesce) run only in their simplified form.
        let context = SimplifyContext::builder()
            .with_schema(Arc::new(df_schema.clone()))
            .with_config_options(Arc::new(state.config_options().clone()))
            .with_query_execution_start_time(state.execution_props().query_execution_start_time)
            .build();
        let simplifier = ExprSimplifier::new(context);
        exprs
            .into_iter()
            .map(|e| {
                let e = simplifier.coerce(e, &df_schema)?;
                // Before simplifying: constant folding would truncate `CAST(7.9 AS INT)`
                // and wrap `i + 1` where the analyzer's rewrite would not.
                let e = super::postgres_semantics::rewrite_expr(e, &df_schema)?;
                let e = simplifier.simplify(e)?;
                state.create_physical_expr(e, &df_schema)
            })
            .collect()
    }
}

#[async_trait]
impl TableProvider for DomicileTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn constraints(&self) -> Option<&Constraints> {
        Some(&self.constraints)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let projection: Vec<usize> = projection
            .cloned()
            .unwrap_or_else(|| (0..self.def.columns.len()).collect());
        let schema = Arc::new(self.schema.project(&projection)?);
        let access = plan_access(&self.def, filters);
        Ok(Arc::new(StorageScanExec::new(
            Arc::clone(&self.def),
            self.store.clone(),
            access,
            projection,
            schema,
            limit,
        )))
    }

    /// Inexact: DataFusion evaluates every filter again above the scan, so the scan only
    /// has to narrow by key and partition, never to be exactly right.
    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn insert_into(
        &self,
        _state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        insert_op: InsertOp,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.refuse_replica()?;
        if insert_op != InsertOp::Append {
            return Err(DataFusionError::NotImplemented(format!(
                "{insert_op} is not supported; use INSERT INTO"
            )));
        }
        let sink = InsertSink::new(self.target(), Arc::clone(&self.schema));
        Ok(Arc::new(DataSinkExec::new(input, Arc::new(sink), None)))
    }

    async fn delete_from(
        &self,
        state: &dyn Session,
        filters: Vec<Expr>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.refuse_replica()?;
        let access = plan_access(&self.def, &filters);
        let predicates = self.physical_exprs(state, filters)?;
        Ok(Arc::new(MutationExec::new(
            self.target(),
            access,
            predicates,
            Mutation::Delete,
        )))
    }

    async fn update(
        &self,
        state: &dyn Session,
        assignments: Vec<(String, Expr)>,
        filters: Vec<Expr>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.refuse_replica()?;
        let access = plan_access(&self.def, &filters);
        let predicates = self.physical_exprs(state, filters)?;
        let mut positions = Vec::with_capacity(assignments.len());
        let mut exprs = Vec::with_capacity(assignments.len());
        for (name, expr) in assignments {
            let position = self.def.column_index(&name).ok_or_else(|| {
                DataFusionError::Plan(format!("table {} has no column {name}", self.def.name))
            })?;
            positions.push(position);
            exprs.push(expr);
        }
        let values = self.physical_exprs(state, exprs)?;
        let assignments = positions.into_iter().zip(values).collect();
        Ok(Arc::new(MutationExec::new(
            self.target(),
            access,
            predicates,
            Mutation::Update { assignments },
        )))
    }
}
