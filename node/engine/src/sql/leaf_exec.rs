//! What every leaf `ExecutionPlan` of this crate (storage scans, mutations, mesh scans,
//! saga starts) says the same way: its name, properties, that it has no children, and
//! that it runs as one partition unless it says otherwise.

/// Implements `name`, `properties`, `children` and `with_new_children` of a leaf plan
/// with a `properties: Arc<PlanProperties>` field; with `no_expressions`, also
/// `apply_expressions` for a plan that holds no physical expressions. Exported (at the
/// crate root) for the leaf plans of the crates above, `mesh.<table>`'s scan.
#[macro_export]
macro_rules! leaf_exec_methods {
    ($name:literal) => {
        fn name(&self) -> &str {
            $name
        }

        fn properties(&self) -> &std::sync::Arc<datafusion::physical_plan::PlanProperties> {
            &self.properties
        }

        fn children(&self) -> Vec<&std::sync::Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
            vec![]
        }

        fn with_new_children(
            self: std::sync::Arc<Self>,
            children: Vec<std::sync::Arc<dyn datafusion::physical_plan::ExecutionPlan>>,
        ) -> datafusion::error::Result<std::sync::Arc<dyn datafusion::physical_plan::ExecutionPlan>>
        {
            if children.is_empty() {
                Ok(self)
            } else {
                Err(datafusion::error::DataFusionError::Internal(
                    concat!($name, " has no children").into(),
                ))
            }
        }
    };
    ($name:literal, no_expressions) => {
        $crate::leaf_exec_methods!($name);

        fn apply_expressions(
            &self,
            _f: &mut dyn FnMut(
                &std::sync::Arc<dyn datafusion::physical_expr::PhysicalExpr>,
            ) -> datafusion::error::Result<
                datafusion::common::tree_node::TreeNodeRecursion,
            >,
        ) -> datafusion::error::Result<datafusion::common::tree_node::TreeNodeRecursion> {
            Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
        }
    };
}

/// Refuses a partition a single-partition plan does not have.
pub fn only_partition_zero(plan: &str, partition: usize) -> datafusion::error::Result<()> {
    if partition == 0 {
        Ok(())
    } else {
        Err(datafusion::error::DataFusionError::Internal(format!(
            "{plan} has no partition {partition}"
        )))
    }
}
