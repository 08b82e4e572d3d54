//! `start_saga(type, idempotency_key, {field: value, ...})`: starting a saga from SQL.
//!
//! A table function rather than a statement of our own so that any SQL client (ADBC,
//! the Flight SQL JDBC driver) can call it and read back the saga it started:
//!
//! ```sql
//! SELECT * FROM start_saga('transfer', 'order-4711', {
//!     'from_account': 1005, 'to_account': 2001, 'amount': 25.00, 'currency': 'EUR',
//!     'from_region': 'us-east', 'to_region': 'eu-central'})
//! ```
//!
//! The arguments are planned once, when the statement is prepared, and must be
//! constants; the saga starts when the statement is executed (never at EXPLAIN), which
//! needs the writer role. The same key returns the same saga, so executing the
//! statement again is harmless.

use std::fmt;
use std::sync::Arc;

use arrow::array::{RecordBatch, StructArray};
use arrow::datatypes::{DataType, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::{ScalarValue, plan_err};
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::Expr;
use datafusion::logical_expr::simplify::SimplifyContext;
use datafusion::optimizer::simplify_expressions::ExprSimplifier;
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};

use super::dml::guard_session;
use super::system_tables::{saga_batch, saga_schema};
use crate::auth::Role;
use crate::saga::SagaEngine;
use crate::saga::fields::{Field, Fields};

/// The name `start_saga` is called by in SQL.
pub const FUNCTION_NAME: &str = "start_saga";

const USAGE: &str = "start_saga(saga_type, idempotency_key, {'field': value, ...}) \
                     takes three constant arguments";

/// The table function registered as `start_saga`.
pub struct StartSagaFunction {
    sagas: Arc<SagaEngine>,
}

impl StartSagaFunction {
    /// `start_saga(...)` starting sagas on `sagas`.
    pub fn new(sagas: Arc<SagaEngine>) -> Self {
        Self { sagas }
    }
}

impl fmt::Debug for StartSagaFunction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StartSagaFunction")
    }
}

impl TableFunctionImpl for StartSagaFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let [saga_type, key, input] = args.exprs() else {
            return plan_err!("{USAGE}, got {}", args.exprs().len());
        };
        let saga_type = text_argument("saga_type", constant(saga_type)?)?;
        let idempotency_key = text_argument("idempotency_key", constant(key)?)?;
        let input = match constant(input)? {
            ScalarValue::Struct(input) => struct_fields(&input)?,
            other => {
                return plan_err!(
                    "start_saga: the input must be a struct such as {{'amount': 10.00}}, got {}",
                    other.data_type()
                );
            }
        };
        Ok(Arc::new(StartSagaTable(Arc::new(Request {
            sagas: Arc::clone(&self.sagas),
            saga_type,
            idempotency_key,
            input,
        }))))
    }
}

/// One saga start, as planned.
struct Request {
    sagas: Arc<SagaEngine>,
    saga_type: String,
    idempotency_key: String,
    input: Fields,
}

impl fmt::Debug for Request {
    /// The input stays out of plans and logs: it is the caller's business data.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StartSaga")
            .field("saga_type", &self.saga_type)
            .field("idempotency_key", &self.idempotency_key)
            .finish_non_exhaustive()
    }
}

/// Folds an argument (a literal, a cast, a struct built of constants) to its value.
fn constant(expr: &Expr) -> Result<ScalarValue> {
    let simplifier = ExprSimplifier::new(SimplifyContext::default());
    match simplifier.simplify(expr.clone())? {
        Expr::Literal(value, _) => Ok(value),
        _ => plan_err!("{USAGE} (no columns, parameters or volatile functions)"),
    }
}

fn text_argument(name: &str, value: ScalarValue) -> Result<String> {
    match value {
        ScalarValue::Utf8(Some(text))
        | ScalarValue::LargeUtf8(Some(text))
        | ScalarValue::Utf8View(Some(text)) => Ok(text),
        other => plan_err!("start_saga: {name} must be text, got {}", other.data_type()),
    }
}

/// The struct's fields as saga input, typed as the WIT values steps receive.
fn struct_fields(input: &StructArray) -> Result<Fields> {
    let mut fields = Fields::with_capacity(input.num_columns());
    for (field, column) in input.fields().iter().zip(input.columns()) {
        let value = ScalarValue::try_from_array(column, 0)?;
        fields.push((field.name().clone(), saga_field(field.name(), value)?));
    }
    Ok(fields)
}

fn saga_field(name: &str, value: ScalarValue) -> Result<Field> {
    if value.is_null() {
        return Ok(Field::Null);
    }
    let field = match value {
        ScalarValue::Boolean(Some(b)) => Field::Boolean(b),
        ScalarValue::Int8(Some(i)) => Field::Int(i.into()),
        ScalarValue::Int16(Some(i)) => Field::Int(i.into()),
        ScalarValue::Int32(Some(i)) => Field::Int(i),
        ScalarValue::Int64(Some(i)) => Field::Bigint(i),
        ScalarValue::UInt8(Some(i)) => Field::Int(i.into()),
        ScalarValue::UInt16(Some(i)) => Field::Int(i.into()),
        ScalarValue::UInt32(Some(i)) => Field::Bigint(i.into()),
        ScalarValue::Float32(Some(d)) => Field::Double(d.into()),
        ScalarValue::Float64(Some(d)) => Field::Double(d),
        ScalarValue::Decimal128(Some(unscaled), _, scale) => {
            Field::Decimal(unscaled.to_string(), scale)
        }
        ScalarValue::Utf8(Some(t))
        | ScalarValue::LargeUtf8(Some(t))
        | ScalarValue::Utf8View(Some(t)) => Field::Text(t),
        ScalarValue::Binary(Some(b)) | ScalarValue::LargeBinary(Some(b)) => Field::Bytes(b),
        ScalarValue::Date32(Some(d)) => Field::Date(d),
        ScalarValue::TimestampSecond(Some(t), None) => {
            Field::Timestamp(t.saturating_mul(1_000_000))
        }
        ScalarValue::TimestampMillisecond(Some(t), None) => {
            Field::Timestamp(t.saturating_mul(1_000))
        }
        ScalarValue::TimestampMicrosecond(Some(t), None) => Field::Timestamp(t),
        ScalarValue::TimestampNanosecond(Some(t), None) => Field::Timestamp(t.div_euclid(1_000)),
        other => {
            let data_type = other.data_type();
            let hint = match data_type {
                DataType::Timestamp(_, Some(_)) => " (use a timestamp without time zone)",
                _ => "",
            };
            return plan_err!(
                "start_saga: field {name} has type {data_type}, which a saga input cannot carry{hint}"
            );
        }
    };
    Ok(field)
}

#[derive(Debug)]
struct StartSagaTable(Arc<Request>);

#[async_trait]
impl TableProvider for StartSagaTable {
    fn schema(&self) -> SchemaRef {
        saga_schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let schema = match projection {
            Some(projection) => Arc::new(saga_schema().project(projection)?),
            None => saga_schema(),
        };
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(&schema)),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Final,
            Boundedness::Bounded,
        ));
        Ok(Arc::new(StartSagaExec {
            request: Arc::clone(&self.0),
            projection: projection.cloned(),
            properties,
        }))
    }
}

#[derive(Debug)]
struct StartSagaExec {
    request: Arc<Request>,
    projection: Option<Vec<usize>>,
    properties: Arc<PlanProperties>,
}

impl DisplayAs for StartSagaExec {
    fn fmt_as(&self, _: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "StartSagaExec: saga_type={}, idempotency_key={}",
            self.request.saga_type, self.request.idempotency_key
        )
    }
}

impl ExecutionPlan for StartSagaExec {
    crate::leaf_exec_methods!("StartSagaExec", no_expressions);

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        crate::sql::leaf_exec::only_partition_zero("StartSagaExec", partition)?;
        let session = guard_session(&context)?;
        if session.transaction.is_some() {
            // A saga commits its steps on several nodes, each on its own: it cannot be
            // part of one node's transaction (nor undone by its rollback).
            return Err(DataFusionError::External(Box::new(
                super::dml::WriteError::OutsideTransaction {
                    what: "start_saga".into(),
                    local_region: session.router.local_region().to_string(),
                },
            )));
        }
        if !session.principal.may(Role::Writer) {
            return Err(DataFusionError::External(
                format!(
                    "user {} may not start sagas: start_saga needs the writer role",
                    session.principal.user
                )
                .into(),
            ));
        }
        let request = Arc::clone(&self.request);
        let projection = self.projection.clone();
        let principal = session.principal.clone();
        let start = async move {
            let saga = request
                .sagas
                .start(
                    &request.saga_type,
                    request.input.clone(),
                    &request.idempotency_key,
                    std::time::Duration::ZERO,
                    &principal,
                )
                .await
                .map_err(|e| DataFusionError::External(Box::new(e)))?;
            tracing::info!(user = %principal.user, saga = %saga.id, saga_type = %saga.saga_type, "saga start requested from SQL");
            let batch: RecordBatch = saga_batch(std::slice::from_ref(&saga))?;
            match projection {
                Some(projection) => Ok(batch.project(&projection)?),
                None => Ok(batch),
            }
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema(),
            futures::stream::once(start),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::SessionContext;

    /// Plans `SELECT {..}` the way the node's session does and folds the struct.
    async fn input_of(sql_struct: &str) -> Result<Fields> {
        let config = datafusion::execution::context::SessionConfig::new()
            .set_bool("datafusion.sql_parser.parse_float_as_decimal", true);
        let context = SessionContext::new_with_config(config);
        let plan = context
            .state()
            .create_logical_plan(&format!("SELECT {sql_struct}"))
            .await?;
        let datafusion::logical_expr::LogicalPlan::Projection(projection) = plan else {
            panic!("expected a projection");
        };
        let expr = match &projection.expr[0] {
            Expr::Alias(alias) => alias.expr.as_ref().clone(),
            other => other.clone(),
        };
        match constant(&expr)? {
            ScalarValue::Struct(input) => struct_fields(&input),
            other => plan_err!("not a struct: {other}"),
        }
    }

    #[tokio::test]
    async fn struct_literals_become_typed_saga_input() {
        let input = input_of(
            "{'from_account': 1005, 'amount': 25.00, 'currency': 'EUR', \
             'day': DATE '2026-11-26', 'at': TIMESTAMP '2026-11-26 00:00:01', \
             'note': NULL, 'small': CAST(7 AS INT)}",
        )
        .await
        .expect("folds");
        assert_eq!(
            input,
            vec![
                ("from_account".to_string(), Field::Bigint(1005)),
                ("amount".to_string(), Field::Decimal("2500".into(), 2)),
                ("currency".to_string(), Field::Text("EUR".into())),
                ("day".to_string(), Field::Date(20_783)),
                (
                    "at".to_string(),
                    Field::Timestamp(20_783 * 86_400_000_000 + 1_000_000)
                ),
                ("note".to_string(), Field::Null),
                ("small".to_string(), Field::Int(7)),
            ]
        );
    }

    #[tokio::test]
    async fn non_constant_and_unsupported_inputs_are_refused_by_name() {
        let error = input_of("{'accounts': [1001, 1002]}")
            .await
            .expect_err("a list is refused");
        assert!(error.to_string().contains("field accounts"), "{error}");
        let error = input_of("{'r': random()}")
            .await
            .expect_err("a volatile value is refused");
        assert!(error.to_string().contains("constant"), "{error}");
    }
}
