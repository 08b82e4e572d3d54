//! Values of different kinds do not compare, as in PostgreSQL; DataFusion's type
//! coercion would cast one side (`id = true` compares `id` with 1, `name = 5` compares
//! `name` with `'5'`) and answer rows PostgreSQL refuses to look for.
//!
//! PostgreSQL has no `=` (nor `<`, `IN`, `BETWEEN` ...) between a number and a text,
//! a boolean and a number, a date and a number, and so on: `SELECT 1 = true` is
//! `operator does not exist: integer = boolean` (SQLSTATE 42883; PostgreSQL 15 manual,
//! 10.2 "Operators"). A quoted literal is different: it has no type of its own
//! (`unknown`) and is read as the other side's type (10.2, step 2.a), so
//! `WHERE id = '7'`, `WHERE day = '2024-02-29'` and `WHERE flag = 't'` work, and
//! `WHERE id = 'x'` is an error, not a comparison of texts. A text parameter is treated
//! the same way, as drivers send it. This rule runs before DataFusion's type coercion:
//! a text literal compared with a value of another kind becomes a cast to that kind, and
//! a comparison whose sides are of two kinds otherwise is refused.

use arrow::datatypes::DataType;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::Transformed;
use datafusion::common::{DFSchema, ScalarValue, plan_err};
use datafusion::error::Result;
use datafusion::logical_expr::expr::InList;
use datafusion::logical_expr::{
    Between, BinaryExpr, Expr, ExprSchemable, LogicalPlan, Operator, cast,
};
use datafusion::optimizer::AnalyzerRule;

/// The kinds PostgreSQL compares only within (its type categories, `pg_type.typcategory`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Number,
    Text,
    Boolean,
    DateTime,
    Bytes,
}

/// The kind of a value of `data_type`; `None` for types this rule does not judge
/// (NULL, intervals, times, nested types).
pub(crate) fn kind(data_type: &DataType) -> Option<Kind> {
    match data_type {
        t if t.is_numeric() => Some(Kind::Number),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Some(Kind::Text),
        DataType::Boolean => Some(Kind::Boolean),
        DataType::Date32 | DataType::Date64 | DataType::Timestamp(_, _) => Some(Kind::DateTime),
        DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::FixedSizeBinary(_) => Some(Kind::Bytes),
        DataType::Dictionary(_, value) => kind(value),
        _ => None,
    }
}

/// PostgreSQL's name for a type, for the error.
fn type_name(data_type: &DataType) -> String {
    match data_type {
        DataType::Int16 => "smallint".into(),
        DataType::Int32 => "integer".into(),
        DataType::Int64 => "bigint".into(),
        DataType::Float32 => "real".into(),
        DataType::Float64 => "double precision".into(),
        DataType::Decimal128(_, _) | DataType::Decimal256(_, _) => "numeric".into(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "text".into(),
        DataType::Boolean => "boolean".into(),
        DataType::Date32 | DataType::Date64 => "date".into(),
        DataType::Timestamp(_, None) => "timestamp".into(),
        DataType::Timestamp(_, Some(_)) => "timestamp with time zone".into(),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => "bytea".into(),
        other => other.to_string(),
    }
}

/// The analyzer rule (before type coercion).
#[derive(Debug, Default)]
pub(crate) struct ComparableTypes;

impl AnalyzerRule for ComparableTypes {
    fn name(&self) -> &str {
        "comparable_types"
    }

    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        super::rewrite_plan(plan, resolve)
    }
}

/// `expr` with its text literals read as the type they are compared with; an error if
/// it compares values of two kinds otherwise.
pub(super) fn resolve(expr: Expr, schema: &DFSchema) -> Result<Transformed<Expr>> {
    match expr {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) if is_comparison(&op) => {
            let (left, right) = pair(*left, &op.to_string(), *right, schema)?;
            Ok(Transformed::yes(Expr::BinaryExpr(BinaryExpr::new(
                Box::new(left),
                op,
                Box::new(right),
            ))))
        }
        Expr::InList(InList {
            expr,
            list,
            negated,
        }) => {
            let mut items = Vec::with_capacity(list.len());
            let mut subject = *expr;
            for item in list {
                let (s, item) = pair(subject, "IN", item, schema)?;
                subject = s;
                items.push(item);
            }
            Ok(Transformed::yes(Expr::InList(InList::new(
                Box::new(subject),
                items,
                negated,
            ))))
        }
        Expr::Between(Between {
            expr,
            negated,
            low,
            high,
        }) => {
            let (subject, low) = pair(*expr, "BETWEEN", *low, schema)?;
            let (subject, high) = pair(subject, "BETWEEN", *high, schema)?;
            Ok(Transformed::yes(Expr::Between(Between::new(
                Box::new(subject),
                negated,
                Box::new(low),
                Box::new(high),
            ))))
        }
        other => Ok(Transformed::no(other)),
    }
}

fn is_comparison(op: &Operator) -> bool {
    matches!(
        op,
        Operator::Eq
            | Operator::NotEq
            | Operator::Lt
            | Operator::LtEq
            | Operator::Gt
            | Operator::GtEq
            | Operator::IsDistinctFrom
            | Operator::IsNotDistinctFrom
    )
}

/// The two sides of one comparison, a text literal cast to the other side's kind; an
/// error if they are of two kinds otherwise.
fn pair(left: Expr, op: &str, right: Expr, schema: &DFSchema) -> Result<(Expr, Expr)> {
    // A placeholder has the type planning inferred from the other side; a bound value
    // of another kind is not cast to it (`engine::exact_cast`) and the statement is
    // analyzed again with the value in place, so this rule judges it then. A side with
    // no type at all (`? = ?`, both untyped) is left to DataFusion.
    let (Ok(l), Ok(r)) = (left.get_type(schema), right.get_type(schema)) else {
        return Ok((left, right));
    };
    if is_uuid_column(&right, schema) {
        return Ok((canonical_uuid(left)?, right));
    }
    if is_uuid_column(&left, schema) {
        return Ok((left, canonical_uuid(right)?));
    }
    let (lk, rk) = (kind(&l), kind(&r));
    match (is_text_literal(&left), is_text_literal(&right)) {
        (true, false) if rk.is_some_and(|k| k != Kind::Text) => Ok((cast(left, r), right)),
        (false, true) if lk.is_some_and(|k| k != Kind::Text) => Ok((left, cast(right, l))),
        (true, _) | (_, true) => Ok((left, right)),
        _ => match (lk, rk) {
            (Some(a), Some(b)) if a != b => plan_err!(
                "operator does not exist: {} {op} {} (compare values of one kind, or add an explicit CAST)",
                type_name(&l),
                type_name(&r)
            ),
            _ => Ok((left, right)),
        },
    }
}

/// Whether `expr` is a UUID column (stored as canonical text, see
/// `arrow_convert::table_schema`).
fn is_uuid_column(expr: &Expr, schema: &DFSchema) -> bool {
    match expr {
        Expr::Column(column) => schema
            .qualified_field_from_column(column)
            .is_ok_and(|(_, field)| crate::sql::arrow_convert::is_uuid_field(field)),
        _ => false,
    }
}

/// A text literal read as a UUID and written as stored; a parameter, the same when it
/// is bound (`uuid_text`).
fn canonical_uuid(side: Expr) -> Result<Expr> {
    match side {
        Expr::Literal(ScalarValue::Utf8(Some(text)), metadata) => Ok(Expr::Literal(
            ScalarValue::Utf8(Some(super::uuid_text::canonical(&text)?)),
            metadata,
        )),
        placeholder @ Expr::Placeholder(_) => {
            Ok(super::uuid_text::UUID_TEXT.call(vec![placeholder]))
        }
        other => Ok(other),
    }
}

/// A quoted literal: PostgreSQL's `unknown`, which takes the other side's type.
fn is_text_literal(expr: &Expr) -> bool {
    matches!(
        expr,
        Expr::Literal(
            ScalarValue::Utf8(_) | ScalarValue::LargeUtf8(_) | ScalarValue::Utf8View(_),
            _
        )
    )
}

#[cfg(test)]
mod tests {
    use super::super::tests::one;

    #[tokio::test]
    async fn values_of_different_kinds_do_not_compare() {
        for refused in [
            "SELECT 1 = true",
            "SELECT x FROM (VALUES (CAST(1 AS BIGINT))) AS v(x) WHERE x = true",
            "SELECT x FROM (VALUES ('a')) AS v(x) WHERE x = 5",
            "SELECT x FROM (VALUES ('a')) AS v(x) WHERE x IN ('a', 5)",
            "SELECT x FROM (VALUES (DATE '2024-01-01')) AS v(x) WHERE x > 20240101",
            "SELECT x FROM (VALUES (1)) AS v(x) WHERE x BETWEEN 0 AND false",
        ] {
            // DataFusion itself finds no common type for a number and a boolean.
            let answer = one(refused).await;
            assert!(
                answer.contains("operator does not exist")
                    || answer.contains("Cannot infer common argument type"),
                "{refused}: {answer}"
            );
        }
        // A quoted literal that is no value of the other side's type is an error
        // (PostgreSQL: `invalid input syntax for type bigint`), not a text comparison.
        for invalid in [
            "SELECT x FROM (VALUES (CAST(7 AS BIGINT))) AS v(x) WHERE x = 'seven'",
            "SELECT x FROM (VALUES (true)) AS v(x) WHERE x = 'maybe'",
            "SELECT x FROM (VALUES (DATE '2024-02-29')) AS v(x) WHERE x IN ('2024-02-30')",
        ] {
            let answer = one(invalid).await;
            assert!(answer.contains("Cast error"), "{invalid}: {answer}");
        }
        // Expected values are PostgreSQL 15's answers to the same SELECT.
        for (sql, expected) in [
            (
                "SELECT x FROM (VALUES (CAST(7 AS BIGINT))) AS v(x) WHERE x = '7'",
                "7",
            ),
            (
                "SELECT x FROM (VALUES (DATE '2024-02-29')) AS v(x) WHERE x = '2024-02-29'",
                "2024-02-29",
            ),
            (
                "SELECT x FROM (VALUES (DATE '2024-02-29')) AS v(x) WHERE x < TIMESTAMP '2024-02-29 12:00:00'",
                "2024-02-29",
            ),
            ("SELECT x FROM (VALUES (1)) AS v(x) WHERE x = 1.0", "1"),
            (
                "SELECT x FROM (VALUES (true)) AS v(x) WHERE x = 't'",
                "true",
            ),
            (
                "SELECT CAST(x AS TEXT) = '1' FROM (VALUES (1)) AS v(x)",
                "true",
            ),
        ] {
            assert_eq!(one(sql).await, expected, "{sql}");
        }
    }
}
