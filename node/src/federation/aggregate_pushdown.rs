//! Partial aggregates for `mesh` queries: `count`, `sum`, `min` and `max` grouped by
//! plain columns are computed by each region on its own rows and combined here, so a
//! region sends one row per group instead of every row.
//!
//! The rule matches `Aggregate` directly over a `mesh.<table>` scan whose filters all
//! went to the regions (a filter kept here, e.g. on `mesh_region`, would have to run
//! before the aggregate, so the plan is left alone). Each region runs
//! `SELECT g.., count(x) AS p0, sum(y) AS p1 .. FROM t WHERE .. GROUP BY g..` (written by
//! the unparser) on the rows its policy releases; here `sum` combines counts and sums,
//! `min`/`max` themselves, per group and `mesh_region` tag. A final projection casts back
//! to the original types and names. Anything else (DISTINCT, FILTER, ORDER BY in an
//! aggregate, expressions as groups or arguments, other functions) is aggregated here
//! from rows, as without this rule.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::Transformed;
use datafusion::common::{Column, DFSchema};
use datafusion::datasource::empty::EmptyTable;
use datafusion::datasource::{TableType, provider_as_source, source_as_provider};
use datafusion::error::Result;
use datafusion::functions_aggregate::expr_fn::{count, max, min, sum};
use datafusion::logical_expr::expr::{AggregateFunction, Cast};
use datafusion::logical_expr::{
    Aggregate, Expr, ExprSchemable, LogicalPlan, LogicalPlanBuilder, cast, lit,
};
use datafusion::optimizer::{ApplyOrder, OptimizerConfig, OptimizerRule};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::sql::unparser::Unparser;

use super::leg_sql::{can_push, unqualified};
use super::mesh_table::{Leg, MeshScanExec, MeshTable};
use super::{Federation, REGION_COLUMN, with_region_tag};
use crate::catalog::TableDef;

#[derive(Debug, Default)]
pub struct MeshAggregatePushdown;

/// The partial counting a region's matching rows, for aggregates without table groups.
const LEG_ROWS: &str = "leg_rows";

/// How one original aggregate is computed: the partial each region sends, and how the
/// partials combine.
#[derive(Clone, Copy)]
enum Combine {
    /// `count`: summed here, 0 when no region had rows.
    Count,
    Sum,
    Min,
    Max,
}

impl OptimizerRule for MeshAggregatePushdown {
    fn name(&self) -> &str {
        "mesh_aggregate_pushdown"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::BottomUp)
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        let LogicalPlan::Aggregate(aggregate) = &plan else {
            return Ok(Transformed::no(plan));
        };
        match pushed_down(aggregate)? {
            Some(rewritten) => Ok(Transformed::yes(rewritten)),
            None => Ok(Transformed::no(plan)),
        }
    }
}

fn pushed_down(aggregate: &Aggregate) -> Result<Option<LogicalPlan>> {
    let LogicalPlan::TableScan(scan) = aggregate.input.as_ref() else {
        return Ok(None);
    };
    let provider = source_as_provider(&scan.source)?;
    let Some(mesh) = provider.downcast_ref::<MeshTable>() else {
        return Ok(None);
    };
    if scan.fetch.is_some() || !scan.filters.iter().all(can_push) {
        return Ok(None);
    }
    let def = &mesh.def;
    // Groups: table columns (sent to the regions) or the region tag (kept here).
    let mut leg_groups: Vec<Expr> = Vec::new();
    let mut group_positions: Vec<usize> = Vec::new();
    for group in &aggregate.group_expr {
        let Expr::Column(column) = group else {
            return Ok(None);
        };
        if column.name == REGION_COLUMN {
            continue;
        }
        let Some(position) = def.column_index(&column.name) else {
            return Ok(None);
        };
        leg_groups.push(Expr::Column(Column::new_unqualified(&column.name)));
        group_positions.push(position);
    }
    // Aggregates: the partial each region computes, and how to combine it.
    let mut partials: Vec<Expr> = Vec::new();
    let mut combines: Vec<Combine> = Vec::new();
    // A partial is computed from its argument: `max(email)` is an e-mail, `sum(balance)`
    // is as sensitive as a balance. The cache decision sees only the group columns, so
    // an answer is cacheable only when every argument is `public`.
    let mut arguments_public = true;
    for (index, expr) in aggregate.aggr_expr.iter().enumerate() {
        let expr = match expr {
            Expr::Alias(alias) => alias.expr.as_ref(),
            other => other,
        };
        let Expr::AggregateFunction(AggregateFunction { func, params }) = expr else {
            return Ok(None);
        };
        if params.distinct
            || params.filter.is_some()
            || !params.order_by.is_empty()
            || params.null_treatment.is_some()
        {
            return Ok(None);
        }
        // A column, or a column cast (`sum(bigint)` sums a DECIMAL(38,0) cast, see
        // `sql::postgres_semantics`): each region computes either from its own rows.
        let column_argument = |c: &Column| -> Option<(Expr, Option<crate::catalog::DataClass>)> {
            (c.name != REGION_COLUMN).then(|| {
                let class = def.column_index(&c.name).map(|i| def.columns[i].class);
                (Expr::Column(Column::new_unqualified(&c.name)), class)
            })
        };
        let column = match params.args.as_slice() {
            [Expr::Column(c)] => column_argument(c),
            [Expr::Cast(Cast { expr, field })] => match expr.as_ref() {
                Expr::Column(c) => column_argument(c).map(|(column, class)| {
                    let cast = Cast::new_from_field(Box::new(column), Arc::clone(field));
                    (Expr::Cast(cast), class)
                }),
                _ => None,
            },
            _ => None,
        };
        let argument = match (column, params.args.as_slice()) {
            (Some((argument, class)), _) => {
                arguments_public &= class == Some(crate::catalog::DataClass::Public);
                argument
            }
            (None, [Expr::Literal(value, _)]) if func.name() == "count" && !value.is_null() => {
                lit(1_i64)
            }
            _ => return Ok(None),
        };
        let (partial, combine) = match func.name() {
            "count" => (count(argument), Combine::Count),
            "sum" => (sum(argument), Combine::Sum),
            "min" => (min(argument), Combine::Min),
            "max" => (max(argument), Combine::Max),
            _ => return Ok(None),
        };
        partials.push(partial.alias(format!("p{index}")));
        combines.push(combine);
    }
    // Without table columns to group by, a region answers one row even when none of
    // its rows matched (an aggregate without GROUP BY always does); that row would
    // become a group of its `mesh_region` here. Each region also counts its rows, and
    // regions that had none are dropped before combining.
    let counts_rows = leg_groups.is_empty();
    if counts_rows {
        partials.push(count(lit(1_i64)).alias(LEG_ROWS));
    }
    // The leg, as the unparser writes it.
    let source = provider_as_source(Arc::new(EmptyTable::new(Arc::clone(&mesh.table_schema))));
    let leg_plan = LogicalPlanBuilder::scan_with_filters(
        def.name.as_str(),
        source,
        None,
        scan.filters.iter().map(unqualified).collect(),
    )?
    .aggregate(leg_groups, partials)?;
    // Groups first, as the schema says: the unparser alone would list them last.
    let in_order: Vec<Expr> = leg_plan
        .schema()
        .columns()
        .into_iter()
        .map(Expr::Column)
        .collect();
    let leg_plan = leg_plan.project(in_order)?.build()?;
    let sql = Unparser::default().plan_to_sql(&leg_plan)?.to_string();
    let leg_schema: SchemaRef = Arc::new(leg_plan.schema().as_arrow().clone());
    let table = MeshAggregateTable::new(
        Arc::clone(def),
        Arc::clone(&mesh.federation),
        Leg {
            def: Arc::clone(def),
            columns: group_positions,
            schema: Arc::clone(&leg_schema),
            sql,
            cacheable: arguments_public,
        },
    );
    // Here: the same groups over the partials, then the original names and types.
    let name = scan.table_name.clone();
    let mut combined =
        LogicalPlanBuilder::scan(name.clone(), provider_as_source(Arc::new(table)), None)?;
    let qualified = |column: &str| Expr::Column(Column::new(Some(name.clone()), column));
    if counts_rows {
        combined = combined.filter(qualified(LEG_ROWS).gt(lit(0_i64)))?;
    }
    let groups: Vec<Expr> = aggregate
        .group_expr
        .iter()
        .map(|group| match group {
            Expr::Column(column) => qualified(&column.name),
            other => other.clone(),
        })
        .collect();
    let finals: Vec<Expr> = combines
        .iter()
        .enumerate()
        .map(|(index, combine)| {
            let partial = qualified(&format!("p{index}"));
            match combine {
                Combine::Count | Combine::Sum => sum(partial),
                Combine::Min => min(partial),
                Combine::Max => max(partial),
            }
            .alias(format!("f{index}"))
        })
        .collect();
    let combined = combined.aggregate(groups.clone(), finals)?.build()?;
    let original: &DFSchema = aggregate.schema.as_ref();
    let mut outputs = Vec::with_capacity(original.fields().len());
    for (index, (qualifier, field)) in original.iter().enumerate() {
        let value = if index < groups.len() {
            let (_, combined_field) = combined.schema().qualified_field(index);
            Expr::Column(Column::new(
                combined.schema().qualified_field(index).0.cloned(),
                combined_field.name(),
            ))
        } else {
            let at = index - groups.len();
            let value = Expr::Column(Column::new_unqualified(format!("f{at}")));
            match combines[at] {
                Combine::Count => datafusion::functions::expr_fn::coalesce(vec![value, lit(0_i64)]),
                _ => value,
            }
        };
        let value = if value.get_type(combined.schema())? == *field.data_type() {
            value
        } else {
            cast(value, field.data_type().clone())
        };
        outputs.push(value.alias_qualified(qualifier.cloned(), field.name()));
    }
    let rewritten = LogicalPlanBuilder::from(combined)
        .project(outputs)?
        .build()?;
    Ok(Some(rewritten))
}

/// The regions' partial aggregates, tagged with `mesh_region`, as a table.
#[derive(Debug)]
struct MeshAggregateTable {
    def: Arc<TableDef>,
    federation: Arc<Federation>,
    leg: Leg,
    schema: SchemaRef,
}

impl MeshAggregateTable {
    fn new(def: Arc<TableDef>, federation: Arc<Federation>, leg: Leg) -> Self {
        let schema = with_region_tag(&leg.schema);
        Self {
            def,
            federation,
            leg,
            schema,
        }
    }
}

#[async_trait]
impl TableProvider for MeshAggregateTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[datafusion::logical_expr::Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let width = self.leg.schema.fields().len();
        let projection: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..=width).collect(),
        };
        let sources = projection
            .iter()
            .map(|&i| (i < width).then_some(i))
            .collect();
        let schema = Arc::new(self.schema.project(&projection)?);
        Ok(Arc::new(MeshScanExec::new(
            Arc::clone(&self.def),
            Arc::clone(&self.federation),
            Leg {
                def: Arc::clone(&self.leg.def),
                columns: self.leg.columns.clone(),
                schema: Arc::clone(&self.leg.schema),
                sql: self.leg.sql.clone(),
                cacheable: self.leg.cacheable,
            },
            self.federation.regions(),
            (sources, schema),
        )))
    }
}

impl std::fmt::Debug for Leg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leg")
            .field("sql", &self.sql)
            .finish_non_exhaustive()
    }
}
