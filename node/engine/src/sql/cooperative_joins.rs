//! `CooperativeJoins`: a physical optimizer rule that makes the rows a join hands on
//! count against tokio's cooperative budget, so a query can be cancelled (Flight's
//! CancelFlightInfo) while a join runs.
//!
//! DataFusion's own `EnsureCooperative` makes leaves and exchanges yield. A join that
//! builds a large product from small inputs (`a CROSS JOIN b` feeding `count(*)`) polls
//! its inputs rarely, and the operator above it loops over the join's batches inside
//! one poll: without a budget check between them the task never yields, and an aborted
//! query runs to its end. One `CooperativeExec` above each join gives that loop a yield
//! point every 128 batches (tokio's budget). It cannot interrupt a join's own step (a
//! nested-loop join probing one batch against its whole build side): see
//! `flight::cancel` for what a cancellation then answers.

use std::sync::Arc;

use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::error::Result;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::coop::CooperativeExec;

/// Wraps every operator with two or more inputs (the joins, and unions) in a
/// `CooperativeExec`. Rows and order are unchanged.
#[derive(Debug, Default)]
pub(crate) struct CooperativeJoins;

impl PhysicalOptimizerRule for CooperativeJoins {
    fn name(&self) -> &str {
        "CooperativeJoins"
    }

    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|plan| {
            if plan.children().len() < 2 {
                return Ok(Transformed::no(plan));
            }
            Ok(Transformed::yes(Arc::new(CooperativeExec::new(plan))))
        })
        .map(|transformed| transformed.data)
    }

    fn schema_check(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::physical_plan::displayable;

    async fn physical(sql: &str) -> Arc<dyn ExecutionPlan> {
        let (_, plan) = crate::sql::test_plans::physical_plan(sql).await;
        CooperativeJoins
            .optimize(plan, &ConfigOptions::default())
            .expect("optimized")
    }

    #[tokio::test]
    async fn every_join_hands_its_rows_on_through_a_budget_check() {
        let plan = physical("SELECT count(*) FROM t a, t b, t c WHERE a.v + b.v > c.v").await;
        let text = displayable(plan.as_ref()).indent(false).to_string();
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        let joins: Vec<usize> = lines
            .iter()
            .enumerate()
            .filter(|(_, line)| line.contains("Join"))
            .map(|(at, _)| at)
            .collect();
        assert_eq!(joins.len(), 2, "{text}");
        for at in joins {
            assert!(
                at > 0 && lines[at - 1].starts_with("CooperativeExec"),
                "the join on line {at} is not wrapped:\n{text}"
            );
        }
    }

    #[tokio::test]
    async fn a_plan_without_joins_is_unchanged() {
        let plan = physical("SELECT v FROM t WHERE v > 1").await;
        let text = displayable(plan.as_ref()).indent(false).to_string();
        assert_eq!(text.matches("CooperativeExec").count(), 0, "{text}");
    }
}
