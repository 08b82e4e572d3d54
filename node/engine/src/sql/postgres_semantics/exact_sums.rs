//! `sum` of a BIGINT is exact, as in PostgreSQL; DataFusion's is a BIGINT that wraps
//! around when the total passes 2^63.
//!
//! PostgreSQL sums `bigint` into a `numeric` (PostgreSQL 15 manual, 9.21, "Aggregate
//! Functions": `sum(bigint)` returns `numeric`); a sum over `smallint` or `integer` is a
//! `bigint`, which no table this side of 2^32 rows can overflow. The argument of a `sum`
//! (aggregate or window) whose values are BIGINT is cast to `DECIMAL(38,0)`, so the sum
//! is a `DECIMAL(38,0)`: exact up to 10^38, an error beyond. Integers narrower than
//! BIGINT reach `sum` as a cast to BIGINT (DataFusion widens them) and keep their sum.

use arrow::datatypes::DataType;
use datafusion::common::DFSchema;
use datafusion::common::tree_node::Transformed;
use datafusion::error::Result;
use datafusion::logical_expr::expr::{AggregateFunction, Cast, WindowFunction};
use datafusion::logical_expr::{Expr, ExprSchemable, WindowFunctionDefinition, cast};

/// What a BIGINT is summed as.
pub(crate) const EXACT_SUM_TYPE: DataType = DataType::Decimal128(38, 0);

/// `expr` with the argument of a `sum` over BIGINT values cast to [`EXACT_SUM_TYPE`].
pub(super) fn exact(expr: Expr, schema: &DFSchema) -> Result<Transformed<Expr>> {
    match expr {
        Expr::AggregateFunction(AggregateFunction { func, mut params })
            if func.name() == "sum" && sums_bigint(&params.args, schema) =>
        {
            params.args = widened(params.args);
            Ok(Transformed::yes(Expr::AggregateFunction(
                AggregateFunction { func, params },
            )))
        }
        Expr::WindowFunction(mut window)
            if is_sum(&window) && sums_bigint(&window.params.args, schema) =>
        {
            let args = std::mem::take(&mut window.params.args);
            window.params.args = widened(args);
            Ok(Transformed::yes(Expr::WindowFunction(window)))
        }
        other => Ok(Transformed::no(other)),
    }
}

fn is_sum(window: &WindowFunction) -> bool {
    matches!(&window.fun, WindowFunctionDefinition::AggregateUDF(f) if f.name() == "sum")
}

/// Whether `args` is one BIGINT expression that is not a widened narrower integer.
fn sums_bigint(args: &[Expr], schema: &DFSchema) -> bool {
    let [argument] = args else {
        return false;
    };
    if !matches!(argument.get_type(schema), Ok(DataType::Int64)) {
        return false;
    }
    match argument {
        Expr::Cast(Cast { expr, .. }) => !matches!(
            expr.get_type(schema),
            Ok(DataType::Int8 | DataType::Int16 | DataType::Int32)
                | Ok(DataType::UInt8 | DataType::UInt16 | DataType::UInt32)
        ),
        _ => true,
    }
}

fn widened(args: Vec<Expr>) -> Vec<Expr> {
    args.into_iter()
        .map(|argument| cast(argument, EXACT_SUM_TYPE))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::tests::one;

    #[tokio::test]
    async fn sums_of_bigints_do_not_wrap() {
        // Expected values are PostgreSQL 15's answers to the same SELECT.
        for (sql, expected) in [
            (
                "SELECT sum(x) FROM (VALUES (9223372036854775807), (9223372036854775807)) AS v(x)",
                "18446744073709551614",
            ),
            (
                "SELECT sum(x) OVER () FROM (VALUES (9223372036854775807), (1)) AS v(x) LIMIT 1",
                "9223372036854775808",
            ),
            (
                "SELECT sum(x) FROM (VALUES (CAST(2147483647 AS INT)), (CAST(2147483647 AS INT))) AS v(x)",
                "4294967294",
            ),
            (
                "SELECT sum(x) FROM (VALUES (CAST(NULL AS BIGINT))) AS v(x)",
                "",
            ),
            ("SELECT sum(x) FROM (VALUES (1.5), (2.25)) AS v(x)", "3.75"),
        ] {
            assert_eq!(one(sql).await, expected, "{sql}");
        }
    }
}
