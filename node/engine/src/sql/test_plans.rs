//! Physical plans of small queries over an in-memory table `t (v BIGINT)` of four rows,
//! for the tests of physical optimizer rules and execution wrappers.

use std::sync::Arc;

use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionContext;

/// `sql` planned physically by a fresh DataFusion session holding `t`, and the session
/// (to execute the plan in).
pub(crate) async fn physical_plan(sql: &str) -> (SessionContext, Arc<dyn ExecutionPlan>) {
    let context = SessionContext::new();
    context
        .sql("CREATE TABLE t (v BIGINT) AS VALUES (1), (2), (3), (4)")
        .await
        .expect("table")
        .collect()
        .await
        .expect("created");
    let plan = context
        .sql(sql)
        .await
        .expect("planned")
        .create_physical_plan()
        .await
        .expect("physical");
    (context, plan)
}
