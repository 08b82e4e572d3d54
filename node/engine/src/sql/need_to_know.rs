//! Need-to-know views of the system tables that describe other people's activity:
//! `system.audit` (who read or stored what, where it went) and `system.sagas` (whose
//! money moves, with the caller's idempotency keys and the steps' failure texts).
//!
//! The rows are built when the statement is planned, as for every system table; what
//! a principal sees is decided when the statement executes, from the principal in the
//! statement's `StatementContext` (a planning-time `Session` does not carry it):
//!
//! | reader | `system.audit` | `system.sagas` |
//! | --- | --- | --- |
//! | `admin` of this node | every entry | every column |
//! | homed in this node's region | every entry | every column |
//! | homed in another region | only entries naming them | references and states: `last_error` and `idempotency_key` are NULL |
//! | no session (internal listing), or a peer's call | nothing | nothing |
//!
//! Why: an audit entry names a user, a table, its columns and where rows went, which
//! is this region's business; a saga's key and failure text are its customer's.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch, StringArray, new_null_array};
use arrow::compute::filter_record_batch;
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::datasource::TableProvider;
use datafusion::error::Result;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, TableType};
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::memory::MemoryStream;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};

use super::StatementContext;
use crate::auth::{Principal, Role};

/// Which need-to-know rule a table follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Rule {
    /// `system.audit`: other regions' readers see their own entries only.
    Audit,
    /// `system.sagas`: other regions' readers see no keys and no failure texts.
    Sagas,
}

/// A system table whose rows depend on who reads them.
#[derive(Debug)]
pub(crate) struct NeedToKnowTable {
    rule: Rule,
    region: Arc<str>,
    batch: RecordBatch,
}

impl NeedToKnowTable {
    pub(crate) fn new(rule: Rule, region: Arc<str>, batch: RecordBatch) -> Self {
        Self {
            rule,
            region,
            batch,
        }
    }
}

/// `batch` as `principal` may see it on a node of `region` under `rule`.
pub(crate) fn visible(
    rule: Rule,
    region: &str,
    principal: Option<&Principal>,
    batch: &RecordBatch,
) -> Result<RecordBatch> {
    let Some(principal) = principal else {
        return Ok(batch.slice(0, 0));
    };
    if principal.may(Role::Admin) || principal.home_region == region {
        return Ok(batch.clone());
    }
    match rule {
        Rule::Audit => {
            let own = batch
                .column_by_name("principal")
                .and_then(|c| c.as_any().downcast_ref::<StringArray>())
                .map(|names| {
                    names
                        .iter()
                        .map(|name| Some(name == Some(principal.user.as_str())))
                        .collect::<BooleanArray>()
                })
                .unwrap_or_else(|| BooleanArray::from(vec![false; batch.num_rows()]));
            Ok(filter_record_batch(batch, &own)?)
        }
        Rule::Sagas => {
            let schema = batch.schema();
            let columns: Vec<ArrayRef> = schema
                .fields()
                .iter()
                .zip(batch.columns())
                .map(|(field, column)| {
                    if matches!(field.name().as_str(), "last_error" | "idempotency_key") {
                        new_null_array(field.data_type(), column.len())
                    } else {
                        Arc::clone(column)
                    }
                })
                .collect();
            Ok(RecordBatch::try_new(nullable(&schema), columns)?)
        }
    }
}

/// Every column nullable: a withheld column is NULL.
fn nullable(schema: &arrow::datatypes::Schema) -> SchemaRef {
    Arc::new(arrow::datatypes::Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect::<Vec<_>>(),
    ))
}

#[async_trait]
impl TableProvider for NeedToKnowTable {
    fn schema(&self) -> SchemaRef {
        nullable(&self.batch.schema())
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    /// The principal is known only when the statement executes (it travels in the
    /// task's session config), so the rows are chosen then, in [`NeedToKnowExec`].
    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let full = self.schema();
        let projection: Vec<usize> = match projection {
            Some(columns) => columns.clone(),
            None => (0..full.fields().len()).collect(),
        };
        let schema = Arc::new(full.project(&projection)?);
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(&schema)),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        Ok(Arc::new(NeedToKnowExec {
            rule: self.rule,
            region: Arc::clone(&self.region),
            batch: self.batch.clone(),
            projection,
            limit,
            schema,
            properties,
        }))
    }
}

/// Scans a need-to-know table: [`visible`] for the statement's principal, then the
/// projection and limit.
#[derive(Debug)]
struct NeedToKnowExec {
    rule: Rule,
    region: Arc<str>,
    batch: RecordBatch,
    projection: Vec<usize>,
    limit: Option<usize>,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
}

impl DisplayAs for NeedToKnowExec {
    fn fmt_as(&self, _: DisplayFormatType, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NeedToKnowExec: rule={:?}", self.rule)
    }
}

impl ExecutionPlan for NeedToKnowExec {
    crate::leaf_exec_methods!("NeedToKnowExec", no_expressions);

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        crate::sql::leaf_exec::only_partition_zero("NeedToKnowExec", partition)?;
        let session = context.session_config().get_extension::<StatementContext>();
        // A peer's call (`via_region`) shows nothing: what a peer's user may see of
        // this node's audit log and sagas is not a peer's to claim.
        let principal = session
            .as_ref()
            .filter(|s| s.via_region.is_none())
            .map(|s| &s.principal);
        let shown = visible(self.rule, &self.region, principal, &self.batch)?;
        let shown = shown.project(&self.projection)?;
        let shown = match self.limit {
            Some(limit) => shown.slice(0, limit.min(shown.num_rows())),
            None => shown,
        };
        // `count(*)` projects no column: the row count must travel on its own.
        let options =
            arrow::array::RecordBatchOptions::new().with_row_count(Some(shown.num_rows()));
        let shown = RecordBatch::try_new_with_options(
            Arc::clone(&self.schema),
            shown.columns().to_vec(),
            &options,
        )?;
        Ok(Box::pin(MemoryStream::try_new(
            vec![shown],
            Arc::clone(&self.schema),
            None,
        )?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{DataType, Field, Schema};

    fn principal(user: &str, role: Role, home: &str) -> Principal {
        Principal {
            user: user.into(),
            role,
            home_region: home.into(),
            compliance: Vec::new(),
        }
    }

    fn texts(batch: &RecordBatch, name: &str) -> Vec<Option<String>> {
        let column = batch.column_by_name(name).expect("column");
        let strings = column.as_any().downcast_ref::<StringArray>().expect("text");
        strings.iter().map(|s| s.map(str::to_string)).collect()
    }

    fn audit() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("principal", DataType::Utf8, false),
            Field::new("table_name", DataType::Utf8, false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec!["apac", "alice", "apac@us-east"])),
                Arc::new(StringArray::from(vec!["accounts", "accounts", "cards"])),
            ],
        )
        .expect("batch")
    }

    fn sagas() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("last_error", DataType::Utf8, true),
            Field::new("idempotency_key", DataType::Utf8, false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec!["s1"])),
                Arc::new(StringArray::from(vec![Some("account 7 not found")])),
                Arc::new(StringArray::from(vec!["customer-42-rent"])),
            ],
        )
        .expect("batch")
    }

    #[test]
    fn readers_of_other_regions_see_only_their_own_audit_entries() {
        let batch = audit();
        let foreign = principal("apac", Role::Reader, "ap-southeast");
        let seen = visible(Rule::Audit, "eu-central", Some(&foreign), &batch).expect("view");
        assert_eq!(texts(&seen, "principal"), [Some("apac".to_string())]);
        let local = principal("alice", Role::Reader, "eu-central");
        let seen = visible(Rule::Audit, "eu-central", Some(&local), &batch).expect("view");
        assert_eq!(seen.num_rows(), 3);
        let admin = principal("root", Role::Admin, "us-east");
        let seen = visible(Rule::Audit, "eu-central", Some(&admin), &batch).expect("view");
        assert_eq!(seen.num_rows(), 3);
        let seen = visible(Rule::Audit, "eu-central", None, &batch).expect("view");
        assert_eq!(seen.num_rows(), 0, "no session: nothing");
    }

    #[test]
    fn readers_of_other_regions_see_saga_states_not_keys_or_errors() {
        let batch = sagas();
        let foreign = principal("apac", Role::Writer, "ap-southeast");
        let seen = visible(Rule::Sagas, "us-east", Some(&foreign), &batch).expect("view");
        assert_eq!(texts(&seen, "id"), [Some("s1".to_string())]);
        assert_eq!(texts(&seen, "last_error"), [None]);
        assert_eq!(texts(&seen, "idempotency_key"), [None]);
        let local = principal("bob", Role::Reader, "us-east");
        let seen = visible(Rule::Sagas, "us-east", Some(&local), &batch).expect("view");
        assert_eq!(
            texts(&seen, "idempotency_key"),
            [Some("customer-42-rent".to_string())]
        );
    }
}
