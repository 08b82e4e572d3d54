//! Where DataFusion's defaults answer differently from PostgreSQL, the plan is rewritten
//! to give PostgreSQL's answer; PostgreSQL 15 is the reference the SQL tests compare
//! against (`tests/slt`, `tests/differential.rs`).
//!
//! | DataFusion default | PostgreSQL | rewrite |
//! | --- | --- | --- |
//! | a cast to an integer truncates | rounds (numeric half away from zero, float half to even) | [`rounding_casts`] |
//! | integer `+ - *` and unary `-` wrap around on overflow | error `integer out of range` (SQLSTATE 22003) | [`checked_arithmetic`] |
//! | `sum(bigint)` is a BIGINT that wraps around | `sum(bigint)` is a `numeric`, exact | [`exact_sums`] |
//! | `id = true`, `name = 5` compare after casting one side | `operator does not exist` | [`comparable_types`] (refuses) |
//! | `id = '7'` compares texts or casts the column | the quoted literal is read as the column's type (a UUID in any of its spellings) | [`comparable_types`], [`uuid_text`] |
//!
//! [`analyzer_rules`] gives DataFusion's analyzer rules with ours in place: the check
//! [`ComparableTypes`] before type coercion, and [`PostgresSemantics`], the three
//! rewrites, after it; so every query, INSERT ... SELECT and parameter binding gets them.
//! UPDATE and DELETE expressions, planned without the analyzer, go through
//! [`rewrite_expr`].

mod checked_arithmetic;
mod comparable_types;
mod exact_sums;
mod rounding_casts;
mod uuid_text;

pub(crate) use comparable_types::{ComparableTypes, Kind, kind};

use datafusion::common::DFSchema;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::error::Result;
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::utils::merge_schema;
use datafusion::logical_expr::{Expr, LogicalPlan, ScalarUDF};
use datafusion::optimizer::AnalyzerRule;

/// The functions the rewrites call; registered with the session so that a plan
/// unparsed to SQL (a `mesh` leg sent to a peer) parses back on the peer.
pub(crate) fn functions() -> Vec<std::sync::Arc<ScalarUDF>> {
    let mut functions = checked_arithmetic::functions();
    functions.push(std::sync::Arc::clone(&uuid_text::UUID_TEXT));
    functions
}

/// DataFusion's analyzer rules with [`ComparableTypes`] just before its type coercion
/// and [`PostgresSemantics`] at the end.
pub(crate) fn analyzer_rules() -> Vec<std::sync::Arc<dyn AnalyzerRule + Send + Sync>> {
    let mut rules = datafusion::optimizer::Analyzer::new().rules;
    let coercion = rules
        .iter()
        .position(|rule| rule.name() == "type_coercion")
        .unwrap_or(rules.len());
    rules.insert(coercion, std::sync::Arc::new(ComparableTypes));
    rules.push(std::sync::Arc::new(PostgresSemantics));
    rules
}

/// The analyzer rule: every expression of every plan node (subqueries included) is
/// rewritten bottom-up; output names are kept, so `SELECT a + b` is still a column
/// named `a + b`.
#[derive(Debug, Default)]
pub(crate) struct PostgresSemantics;

impl AnalyzerRule for PostgresSemantics {
    fn name(&self) -> &str {
        "postgres_semantics"
    }

    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        rewrite_plan(plan, rewrite_one)
    }
}

/// `plan` with `rewrite` applied bottom-up to every expression of every node
/// (subqueries included), each over the schema of the node's inputs; output names are
/// kept.
fn rewrite_plan(
    plan: LogicalPlan,
    rewrite: fn(Expr, &DFSchema) -> Result<Transformed<Expr>>,
) -> Result<LogicalPlan> {
    plan.transform_up_with_subqueries(|plan| {
        let inputs = plan.inputs();
        let schema = if inputs.is_empty() {
            plan.schema().as_ref().clone()
        } else {
            merge_schema(&inputs)
        };
        let names = NamePreserver::new(&plan);
        plan.map_expressions(|expr| {
            let saved = names.save(&expr);
            let rewritten = expr.transform_up(|expr| rewrite(expr, &schema))?;
            Ok(rewritten.update_data(|expr| saved.restore(expr)))
        })?
        // A node's output type can change (an exact sum is a DECIMAL), and with it
        // the schema of every node above; children come first (`transform_up`).
        .map_data(|plan| plan.recompute_schema())
    })
    .map(|rewritten| rewritten.data)
}

/// The same rewrites for one expression over `schema` (an UPDATE's SET value or a
/// DELETE's WHERE, after type coercion).
pub(crate) fn rewrite_expr(expr: Expr, schema: &DFSchema) -> Result<Expr> {
    Ok(expr.transform_up(|expr| rewrite_one(expr, schema))?.data)
}

/// One node: its children are already rewritten (`transform_up`).
fn rewrite_one(expr: Expr, schema: &DFSchema) -> Result<Transformed<Expr>> {
    let expr = rounding_casts::rounded(expr, schema)?;
    let expr = expr.transform_data(|expr| checked_arithmetic::checked(expr, schema))?;
    expr.transform_data(|expr| exact_sums::exact(expr, schema))
}

#[cfg(test)]
mod tests {
    use datafusion::execution::SessionStateBuilder;
    use datafusion::prelude::{SessionConfig, SessionContext};

    /// The first value `sql` answers on a session with [`super::PostgresSemantics`] and
    /// its functions, as text (`""` for NULL), or `error: ...`.
    pub(super) async fn one(sql: &str) -> String {
        let config =
            SessionConfig::new().set_bool("datafusion.sql_parser.parse_float_as_decimal", true);
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_default_features()
            .with_analyzer_rules(super::analyzer_rules())
            .build();
        let context = SessionContext::new_with_state(state);
        for function in super::functions() {
            context.register_udf(function.as_ref().clone());
        }
        let batches = match context.sql(sql).await {
            Ok(frame) => frame.collect().await,
            Err(error) => Err(error),
        };
        match batches {
            Ok(batches) => arrow::util::pretty::pretty_format_batches(&batches)
                .map(|t| t.to_string())
                .unwrap_or_default()
                .lines()
                .nth(3)
                .unwrap_or_default()
                .trim_matches(|c| c == '|' || c == ' ')
                .to_string(),
            Err(error) => format!("error: {error}"),
        }
    }

    #[tokio::test]
    async fn output_names_are_kept() {
        let context = SessionContext::new();
        context.add_analyzer_rule(std::sync::Arc::new(super::PostgresSemantics));
        let frame = context
            .sql("SELECT x + 1, -x, sum(x) FROM (VALUES (CAST(1 AS BIGINT))) AS v(x) GROUP BY x")
            .await
            .expect("plans");
        let names: Vec<String> = frame
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        assert_eq!(names, ["v.x + Int64(1)", "(- v.x)", "sum(v.x)"]);
    }
}
