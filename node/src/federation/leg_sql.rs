//! The query one region runs for a `mesh.<table>` scan, written by DataFusion's
//! unparser from a logical plan (table scan with projection, filters and limit): names
//! and literals are quoted by the unparser, never pasted into SQL text here.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use datafusion::common::Column;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::datasource::empty::EmptyTable;
use datafusion::datasource::provider_as_source;
use datafusion::error::Result;
use datafusion::logical_expr::{Expr, LogicalPlanBuilder};
use datafusion::sql::unparser::Unparser;

/// Whether `filter` can be sent to a region: it names only table columns (not the
/// `mesh_region` tag) and the unparser can write it.
pub(crate) fn can_push(filter: &Expr) -> bool {
    let names_region = filter
        .column_refs()
        .iter()
        .any(|c| c.name == super::REGION_COLUMN);
    !names_region
        && Unparser::default()
            .expr_to_sql(&unqualified(filter))
            .is_ok()
}

/// The filter with its columns unqualified: the leg reads the table under its own
/// name, not as `mesh.<table>`.
pub(super) fn unqualified(filter: &Expr) -> Expr {
    filter
        .clone()
        .transform(|e| match e {
            Expr::Column(c) => Ok(Transformed::yes(Expr::Column(Column::new_unqualified(
                c.name,
            )))),
            other => Ok(Transformed::no(other)),
        })
        .map_or_else(|_| filter.clone(), |t| t.data)
}

/// `SELECT <projection> FROM <table> WHERE <filters> LIMIT <limit>`, as the unparser
/// writes it. `schema` is the table's (without `mesh_region`).
pub(crate) fn leg_sql(
    table: &str,
    schema: SchemaRef,
    projection: &[usize],
    filters: &[Expr],
    limit: Option<usize>,
) -> Result<String> {
    let source = provider_as_source(Arc::new(EmptyTable::new(schema)));
    let plan = LogicalPlanBuilder::scan_with_filters_fetch(
        table,
        source,
        Some(projection.to_vec()),
        filters.iter().map(unqualified).collect(),
        limit,
    )?
    .build()?;
    Ok(Unparser::default().plan_to_sql(&plan)?.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{DataType, Field, Schema};
    use datafusion::logical_expr::{col, lit};
    use datafusion::prelude::SessionContext;

    fn accounts() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("region", DataType::Utf8, false),
            Field::new("balance", DataType::Decimal128(18, 2), false),
        ]))
    }

    #[tokio::test]
    async fn legs_are_unparsed_plans_that_parse_back_and_quote_literals() {
        let filter = col("mesh.accounts.region")
            .eq(lit("it's; DROP TABLE accounts"))
            .and(col("id").gt(lit(5_i64)));
        let sql = leg_sql("accounts", accounts(), &[0, 2], &[filter], Some(10)).expect("sql");
        assert!(!sql.contains("mesh"), "{sql}");
        assert!(sql.contains("'it''s; DROP TABLE accounts'"), "{sql}");
        assert!(sql.contains("LIMIT 10"), "{sql}");
        // It plans against a table of that schema.
        let context = SessionContext::new();
        context
            .register_table("accounts", Arc::new(EmptyTable::new(accounts())))
            .expect("register");
        let plan = context
            .state()
            .create_logical_plan(&sql)
            .await
            .expect("parses");
        assert_eq!(plan.schema().fields().len(), 2);
    }

    #[test]
    fn filters_on_the_region_tag_stay_home() {
        assert!(!can_push(
            &col(super::super::REGION_COLUMN).eq(lit("us-east"))
        ));
        assert!(can_push(&col("balance").gt(lit(1_i64))));
    }
}
