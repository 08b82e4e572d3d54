//! Knowing when a query's work has stopped, for an honest answer to a cancellation.
//!
//! Dropping a query's stream does not stop its work at once: DataFusion runs parts of a
//! plan in tasks of their own (repartitions, merges, the inputs of EXPLAIN ANALYZE),
//! and an aborted task stops only when its current poll returns, which for a join's
//! step can take minutes. So before execution every operator's output is wrapped in a
//! `QueryWorkExec` whose stream holds a share of one token: a task that works for the
//! query is inside a poll of some operator's stream and holds it, so the query's work
//! has stopped exactly when no share is left (`WorkWatch::stopped`). Rows, order and
//! partitioning are unchanged.

use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::Result;
use datafusion::execution::{RecordBatchStream, SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::{
    ChildrenPropertiesMode, DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties,
    ReplaceChildrenOptions,
};
use futures::Stream;

/// What every stream of one query's plan holds a share of.
#[derive(Debug)]
struct WorkToken;

/// Tells whether the work of a query has stopped: every stream of its plan is gone.
#[derive(Debug, Clone)]
pub struct WorkWatch(Weak<WorkToken>);

impl WorkWatch {
    /// True once no operator of the query is running or can run any more.
    pub fn stopped(&self) -> bool {
        self.0.strong_count() == 0
    }
}

/// `plan` with every operator's output wrapped so that its streams hold a share of a
/// new token, and the watch over that token. Called once per execution, after
/// optimization.
pub(crate) fn track(plan: Arc<dyn ExecutionPlan>) -> Result<(Arc<dyn ExecutionPlan>, WorkWatch)> {
    let token = Arc::new(WorkToken);
    let watch = WorkWatch(Arc::downgrade(&token));
    let tracked = wrap(plan, &token)?;
    Ok((tracked, watch))
}

/// `node` and every operator below it, each wrapped in a `QueryWorkExec`.
fn wrap(node: Arc<dyn ExecutionPlan>, token: &Arc<WorkToken>) -> Result<Arc<dyn ExecutionPlan>> {
    let children = node.children();
    let node = if children.is_empty() {
        node
    } else {
        let wrapped = children
            .into_iter()
            .map(|child| wrap(Arc::clone(child), token))
            .collect::<Result<Vec<_>>>()?;
        // A wrapped child keeps its properties, so the operator keeps its own.
        Arc::clone(&node).replace_children(
            wrapped,
            ReplaceChildrenOptions::new(ChildrenPropertiesMode::Keep),
        )?
    };
    Ok(Arc::new(QueryWorkExec {
        properties: Arc::clone(node.properties()),
        input: node,
        token: Arc::clone(token),
    }))
}

/// An operator's output, unchanged, through a stream that holds a share of its query's
/// token.
#[derive(Debug)]
struct QueryWorkExec {
    input: Arc<dyn ExecutionPlan>,
    properties: Arc<PlanProperties>,
    token: Arc<WorkToken>,
}

impl DisplayAs for QueryWorkExec {
    fn fmt_as(&self, _: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "QueryWorkExec")
    }
}

impl ExecutionPlan for QueryWorkExec {
    fn name(&self) -> &str {
        "QueryWorkExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
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
        self.replace_children(
            children,
            ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
        )
    }

    fn replace_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
        _options: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if children.len() != 1 {
            return Err(datafusion::error::DataFusionError::Internal(
                "QueryWorkExec has one child".into(),
            ));
        }
        let input = children.swap_remove(0);
        Ok(Arc::new(Self {
            properties: Arc::clone(input.properties()),
            input,
            token: Arc::clone(&self.token),
        }))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        Ok(Box::pin(WorkStream {
            inner: self.input.execute(partition, context)?,
            _token: Arc::clone(&self.token),
        }))
    }
}

struct WorkStream {
    inner: SendableRecordBatchStream,
    _token: Arc<WorkToken>,
}

impl Stream for WorkStream {
    type Item = Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}

impl RecordBatchStream for WorkStream {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::physical_plan::{collect, displayable};

    #[tokio::test]
    async fn every_operator_is_wrapped_and_the_answer_is_unchanged() {
        let sql =
            "SELECT a.v, count(*) AS n FROM t a, t b WHERE a.v < b.v GROUP BY a.v ORDER BY a.v";
        let (context, plan) = crate::sql::test_plans::physical_plan(sql).await;
        let operators = displayable(plan.as_ref())
            .indent(false)
            .to_string()
            .lines()
            .count();
        let expected = collect(Arc::clone(&plan), context.task_ctx())
            .await
            .expect("runs");
        let (tracked, watch) = track(plan).expect("tracked");
        let text = displayable(tracked.as_ref()).indent(false).to_string();
        assert_eq!(text.matches("QueryWorkExec").count(), operators, "{text}");
        assert!(!watch.stopped(), "the plan holds the token");
        let answer = collect(Arc::clone(&tracked), context.task_ctx())
            .await
            .expect("runs");
        assert_eq!(
            arrow::util::pretty::pretty_format_batches(&answer)
                .expect("text")
                .to_string(),
            arrow::util::pretty::pretty_format_batches(&expected)
                .expect("text")
                .to_string()
        );
        drop(tracked);
        assert!(watch.stopped());
    }

    /// A stream still alive anywhere (here: one a task would be polling) keeps the
    /// query's work from counting as stopped.
    #[tokio::test]
    async fn a_live_stream_counts_as_work() {
        let (context, plan) =
            crate::sql::test_plans::physical_plan("SELECT v FROM t WHERE v > 1").await;
        let (tracked, watch) = track(plan).expect("tracked");
        let stream = tracked.execute(0, context.task_ctx()).expect("stream");
        drop(tracked);
        assert!(!watch.stopped());
        drop(stream);
        assert!(watch.stopped());
    }
}
