//! Integer arithmetic that overflows is an error, as in PostgreSQL; DataFusion's
//! `+ - *` and unary `-` on integers wrap around (`9223372036854775807 + 1` is
//! `-9223372036854775808`), a wrong answer no one is told about.
//!
//! PostgreSQL raises `integer out of range` / `bigint out of range` (SQLSTATE 22003,
//! `numeric_value_out_of_range`; PostgreSQL 15 `int.c` and `int8.c`: `int4pl`, `int8mul`,
//! `int4um` ...). After type coercion both operands of an integer operator have one type,
//! and the operator becomes a call of `checked_add`, `checked_sub`, `checked_mul` or
//! `checked_neg`, evaluated by Arrow's checked kernels. The error names the type, never
//! the operands: they may be stored values.
//!
//! Division and remainder need no rewrite: Arrow's integer `div` and `rem` already
//! refuse division by zero and `MIN / -1`. Casts between integer types are not `safe`
//! and refuse overflow too.

use std::sync::{Arc, LazyLock};

use arrow::array::{ArrayRef, Datum, Scalar};
use arrow::compute::kernels::numeric;
use arrow::datatypes::DataType;
use arrow::error::ArrowError;
use datafusion::common::tree_node::Transformed;
use datafusion::common::{DFSchema, ScalarValue, exec_err, plan_err};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::type_coercion::binary::BinaryTypeCoercer;
use datafusion::logical_expr::{
    BinaryExpr, ColumnarValue, Expr, ExprSchemable, Operator, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature, Volatility,
};

/// Which checked operation a function computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Op {
    Add,
    Sub,
    Mul,
    Neg,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Add => "checked_add",
            Op::Sub => "checked_sub",
            Op::Mul => "checked_mul",
            Op::Neg => "checked_neg",
        }
    }
}

/// `checked_add(a, b)` and its siblings: integer arithmetic that refuses overflow.
#[derive(Debug, PartialEq, Eq, Hash)]
struct CheckedArithmetic {
    op: Op,
    signature: Signature,
}

impl CheckedArithmetic {
    fn udf(op: Op) -> Arc<ScalarUDF> {
        Arc::new(ScalarUDF::new_from_impl(CheckedArithmetic {
            op,
            signature: Signature::user_defined(Volatility::Immutable),
        }))
    }
}

static ADD: LazyLock<Arc<ScalarUDF>> = LazyLock::new(|| CheckedArithmetic::udf(Op::Add));
static SUB: LazyLock<Arc<ScalarUDF>> = LazyLock::new(|| CheckedArithmetic::udf(Op::Sub));
static MUL: LazyLock<Arc<ScalarUDF>> = LazyLock::new(|| CheckedArithmetic::udf(Op::Mul));
static NEG: LazyLock<Arc<ScalarUDF>> = LazyLock::new(|| CheckedArithmetic::udf(Op::Neg));

pub(super) fn functions() -> Vec<Arc<ScalarUDF>> {
    vec![
        Arc::clone(&ADD),
        Arc::clone(&SUB),
        Arc::clone(&MUL),
        Arc::clone(&NEG),
    ]
}

/// `expr` with an integer `+ - *` or unary `-` replaced by its checked function.
pub(super) fn checked(expr: Expr, schema: &DFSchema) -> Result<Transformed<Expr>> {
    let is_integer = |e: &Expr| e.get_type(schema).is_ok_and(|t| t.is_integer());
    match expr {
        Expr::BinaryExpr(BinaryExpr { left, op, right })
            if matches!(op, Operator::Plus | Operator::Minus | Operator::Multiply)
                && is_integer(&left)
                && is_integer(&right) =>
        {
            let function = match op {
                Operator::Plus => &ADD,
                Operator::Minus => &SUB,
                _ => &MUL,
            };
            Ok(Transformed::yes(function.call(vec![*left, *right])))
        }
        Expr::Negative(inner) if is_integer(&inner) => Ok(Transformed::yes(NEG.call(vec![*inner]))),
        other => Ok(Transformed::no(other)),
    }
}

/// PostgreSQL's name for an integer type, for `<name> out of range`.
fn type_name(data_type: &DataType) -> &'static str {
    match data_type {
        DataType::Int16 => "smallint",
        DataType::Int32 => "integer",
        DataType::Int64 => "bigint",
        _ => "integer",
    }
}

impl ScalarUDFImpl for CheckedArithmetic {
    fn name(&self) -> &str {
        self.op.name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    /// Integers only; two operands of different integer types meet at the type the
    /// operator would have chosen (`int + bigint` is `bigint`).
    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        match (self.op, arg_types) {
            (Op::Neg, [only]) if only.is_integer() => Ok(vec![only.clone()]),
            (Op::Add | Op::Sub | Op::Mul, [left, right])
                if left.is_integer() && right.is_integer() =>
            {
                if left == right {
                    return Ok(vec![left.clone(), right.clone()]);
                }
                let (l, r) =
                    BinaryTypeCoercer::new(left, &Operator::Plus, right).get_input_types()?;
                Ok(vec![l, r])
            }
            _ => plan_err!(
                "{} takes {} integer argument(s), got {arg_types:?}",
                self.op.name(),
                if self.op == Op::Neg { 1 } else { 2 }
            ),
        }
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match arg_types.first() {
            Some(first) => Ok(first.clone()),
            None => plan_err!("{} needs arguments", self.op.name()),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let result_type = args.return_type().clone();
        let all_scalars = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let operands: Vec<Operand> = args.args.iter().map(Operand::new).collect::<Result<_>>()?;
        let computed = match (self.op, operands.as_slice()) {
            (Op::Neg, [value]) => numeric::neg(value.array()),
            (op, [left, right]) => {
                let kernel = match op {
                    Op::Add => numeric::add,
                    Op::Sub => numeric::sub,
                    _ => numeric::mul,
                };
                kernel(left.datum().as_ref(), right.datum().as_ref())
            }
            _ => return exec_err!("{}: wrong number of arguments", self.op.name()),
        };
        let array = computed.map_err(|error| match error {
            ArrowError::ArithmeticOverflow(_) => {
                DataFusionError::Execution(format!("{} out of range", type_name(&result_type)))
            }
            other => DataFusionError::from(other),
        })?;
        if all_scalars {
            Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(
                &array, 0,
            )?))
        } else {
            Ok(ColumnarValue::Array(array))
        }
    }
}

/// One argument as an Arrow array, remembering whether it was a scalar (a scalar is a
/// one-row array that Arrow broadcasts when wrapped in [`Scalar`]).
struct Operand {
    array: ArrayRef,
    scalar: bool,
}

impl Operand {
    fn new(value: &ColumnarValue) -> Result<Self> {
        Ok(match value {
            ColumnarValue::Array(array) => Operand {
                array: Arc::clone(array),
                scalar: false,
            },
            ColumnarValue::Scalar(value) => Operand {
                array: value.to_array_of_size(1)?,
                scalar: true,
            },
        })
    }

    fn array(&self) -> &ArrayRef {
        &self.array
    }

    fn datum(&self) -> Box<dyn Datum> {
        if self.scalar {
            Box::new(Scalar::new(Arc::clone(&self.array)))
        } else {
            Box::new(Arc::clone(&self.array))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::one;

    #[tokio::test]
    async fn integer_overflow_is_an_error_as_in_postgresql() {
        // Expected values are PostgreSQL 15's answers to the same SELECT.
        for (sql, expected) in [
            (
                "SELECT CAST(2147483646 AS INT) + CAST(1 AS INT)",
                "2147483647",
            ),
            ("SELECT -CAST(-2147483647 AS INT)", "2147483647"),
            ("SELECT 9223372036854775806 + 1", "9223372036854775807"),
            ("SELECT -9223372036854775807 - 1", "-9223372036854775808"),
            ("SELECT 3037000499 * 3037000499", "9223372030926249001"),
            (
                "SELECT CAST(40000 AS INT) * CAST(-40000 AS INT)",
                "-1600000000",
            ),
            ("SELECT CAST(NULL AS BIGINT) + 1", ""),
        ] {
            assert_eq!(one(sql).await, expected, "{sql}");
        }
        for (overflow, message) in [
            (
                "SELECT CAST(2147483647 AS INT) + CAST(1 AS INT)",
                "integer out of range",
            ),
            ("SELECT -CAST(-2147483648 AS INT)", "integer out of range"),
            ("SELECT 9223372036854775807 + 1", "bigint out of range"),
            ("SELECT -9223372036854775807 - 2", "bigint out of range"),
            ("SELECT 3037000500 * 3037000500", "bigint out of range"),
            ("SELECT -(-9223372036854775807 - 1)", "bigint out of range"),
            (
                "SELECT x * x FROM (VALUES (CAST(1 AS BIGINT)), (4294967296)) AS v(x)",
                "bigint out of range",
            ),
            (
                "SELECT -x FROM (VALUES (CAST(-2147483648 AS INT))) AS v(x)",
                "integer out of range",
            ),
        ] {
            let answer = one(overflow).await;
            assert!(
                answer.starts_with("error") && answer.contains(message),
                "{overflow}: {answer}"
            );
            assert!(
                !answer.contains("4294967296"),
                "operands are not quoted: {answer}"
            );
        }
    }

    #[tokio::test]
    async fn operands_of_other_types_are_left_alone() {
        for (sql, expected) in [
            ("SELECT 1.5 + 2.25", "3.75"),
            ("SELECT CAST('1e308' AS DOUBLE) * 10 > 0", "true"),
            ("SELECT DATE '2024-02-28' + INTERVAL '1 day'", "2024-02-29"),
            ("SELECT 7 / 2", "3"),
        ] {
            assert_eq!(one(sql).await, expected, "{sql}");
        }
    }
}
