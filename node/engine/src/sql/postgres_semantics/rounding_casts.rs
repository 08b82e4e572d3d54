//! Casts to integer types round, as PostgreSQL's do; Arrow's truncate.
//!
//! PostgreSQL rounds a `numeric` to an integer half away from zero (`2.5::numeric::int`
//! is 3, `-2.5` gives -3) and a `float8` to the nearest even integer (`rint`: `2.5` gives
//! 2, `3.5` gives 4); out of range is an error (PostgreSQL 15 manual, 8.1.2 and 8.1.3,
//! and `numeric_int4`, `dtoi4`). The same cast runs for `CAST(x AS INT)`, for a value
//! assigned to an integer column (INSERT, UPDATE ... SET) and for a parameter bound
//! there. After DataFusion's type coercion, every cast from a decimal or a float to an
//! integer type becomes one that rounds first: a decimal is first cast to scale 0 (Arrow
//! rounds half away from zero when it lowers a scale), a float is rounded half to even.
//! Overflow stays an error (casts are not `safe`).

use arrow::datatypes::DataType;
use datafusion::common::DFSchema;
use datafusion::common::tree_node::Transformed;
use datafusion::error::Result;
use datafusion::functions::math::expr_fn::{round, trunc};
use datafusion::logical_expr::expr::{Cast, TryCast};
use datafusion::logical_expr::{Expr, ExprSchemable, cast, lit, when};

/// `expr` (a cast) rewritten to round before it narrows to an integer type.
pub(super) fn rounded(expr: Expr, schema: &DFSchema) -> Result<Transformed<Expr>> {
    let (inner, field, is_try) = match &expr {
        Expr::Cast(Cast { expr: inner, field }) => (inner, field, false),
        Expr::TryCast(TryCast { expr: inner, field }) => (inner, field, true),
        _ => return Ok(Transformed::no(expr)),
    };
    if !field.data_type().is_integer() {
        return Ok(Transformed::no(expr));
    }
    let Ok(source) = inner.get_type(schema) else {
        return Ok(Transformed::no(expr));
    };
    let whole = match source {
        DataType::Decimal128(precision, scale) if scale > 0 => {
            let digits = precision.saturating_sub(scale as u8).saturating_add(1);
            cast(
                inner.as_ref().clone(),
                DataType::Decimal128(digits.clamp(1, 38), 0),
            )
        }
        DataType::Decimal256(precision, scale) if scale > 0 => {
            let digits = precision.saturating_sub(scale as u8).saturating_add(1);
            cast(
                inner.as_ref().clone(),
                DataType::Decimal256(digits.clamp(1, 76), 0),
            )
        }
        DataType::Float16 | DataType::Float32 | DataType::Float64 => {
            half_to_even(cast(inner.as_ref().clone(), DataType::Float64))?
        }
        _ => return Ok(Transformed::no(expr)),
    };
    let outer = if is_try {
        Expr::TryCast(TryCast::new_from_field(
            Box::new(whole),
            std::sync::Arc::clone(field),
        ))
    } else {
        Expr::Cast(Cast::new_from_field(
            Box::new(whole),
            std::sync::Arc::clone(field),
        ))
    };
    Ok(Transformed::yes(outer))
}

/// `x` (FLOAT8) rounded to the nearest integer, ties to even (C's `rint`).
fn half_to_even(x: Expr) -> Result<Expr> {
    let fraction = x.clone() - trunc(vec![x.clone()]);
    let tie = fraction
        .clone()
        .eq(lit(0.5_f64))
        .or(fraction.eq(lit(-0.5_f64)));
    when(tie, lit(2.0_f64) * round(vec![x.clone() / lit(2.0_f64)])).otherwise(round(vec![x]))
}

#[cfg(test)]
mod tests {
    use super::super::tests::one;

    #[tokio::test]
    async fn casts_to_integers_round_as_postgresql_does() {
        // Expected values are PostgreSQL 15's answers to the same SELECT.
        for (sql, expected) in [
            ("SELECT CAST(2.5 AS INT)", "3"),
            ("SELECT CAST(-2.5 AS INT)", "-3"),
            ("SELECT CAST(2.49 AS INT)", "2"),
            ("SELECT CAST(7.9 AS BIGINT)", "8"),
            ("SELECT CAST(9.5 AS SMALLINT)", "10"),
            ("SELECT CAST(CAST(2.5 AS DOUBLE) AS INT)", "2"),
            ("SELECT CAST(CAST(3.5 AS DOUBLE) AS INT)", "4"),
            ("SELECT CAST(CAST(-2.5 AS DOUBLE) AS INT)", "-2"),
            ("SELECT CAST(CAST(0.5 AS DOUBLE) AS INT)", "0"),
            ("SELECT CAST(CAST(1.6 AS REAL) AS INT)", "2"),
            ("SELECT CAST(CAST(-7.9 AS DOUBLE) AS BIGINT)", "-8"),
            ("SELECT CAST(7 AS INT)", "7"),
            ("SELECT CAST(2.5 AS DOUBLE)", "2.5"),
            ("SELECT TRY_CAST(2.5 AS INT)", "3"),
        ] {
            assert_eq!(one(sql).await, expected, "{sql}");
        }
        for overflow in [
            "SELECT CAST(2147483647.5 AS INT)",
            "SELECT CAST(CAST('1e300' AS DOUBLE) AS BIGINT)",
            "SELECT CAST(CAST('NaN' AS DOUBLE) AS INT)",
        ] {
            assert!(one(overflow).await.starts_with("error"), "{overflow}");
        }
    }
}
