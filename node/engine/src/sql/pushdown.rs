//! Which rows a filter list can possibly select, decided before touching storage:
//! equality / IN on every primary-key column becomes point lookups, equality / IN on a
//! REGIONAL BY ROW table's region column becomes a set of partitions. Everything else is a
//! scan of the chosen partitions. The filters themselves are always evaluated again
//! afterwards, so this only has to be a superset, never exact.

use std::collections::BTreeSet;

use datafusion::common::ScalarValue;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator};

use super::arrow_convert::scalar_to_value;
use crate::catalog::{Locality, TableDef};
pub(crate) use crate::limits::POINT_LOOKUP_KEYS_MAX;
use crate::storage::Value;

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Access {
    /// `Some`: only rows with one of these full primary keys can match.
    pub(crate) keys: Option<Vec<Vec<Value>>>,
    /// `Some`: only these partitions can hold matching rows. `None`: every partition.
    pub(crate) partitions: Option<Vec<String>>,
}

impl Access {
    pub(crate) fn describe(&self) -> String {
        let keys = match &self.keys {
            Some(keys) => format!("point lookup of {} key(s)", keys.len()),
            None => "range scan".to_string(),
        };
        match &self.partitions {
            Some(partitions) => format!("{keys} in partitions [{}]", partitions.join(", ")),
            None => format!("{keys} in all partitions"),
        }
    }
}

impl Access {
    /// The same access, narrowed to partition `region`.
    pub(crate) fn within(&self, region: &str) -> Access {
        let partitions = match &self.partitions {
            None => vec![region.to_string()],
            Some(partitions) => partitions
                .iter()
                .filter(|p| p.as_str() == region)
                .cloned()
                .collect(),
        };
        Access {
            keys: self.keys.clone(),
            partitions: Some(partitions),
        }
    }
}

pub(crate) fn plan_access(def: &TableDef, filters: &[Expr]) -> Access {
    let mut key_values: Vec<Option<Vec<Value>>> = vec![None; def.primary_key.len()];
    let mut partitions: Option<Vec<String>> = match &def.locality {
        Locality::Regional { region } => Some(vec![region.clone()]),
        _ => None,
    };
    let region_column = def.region_column_index();

    for filter in filters {
        let Some((column, scalars)) = column_equals_literals(filter) else {
            continue;
        };
        let Some(position) = def.column_index(&column) else {
            continue;
        };
        let values: Option<Vec<Value>> = scalars
            .iter()
            .map(|s| scalar_to_value(def, position, s))
            .collect();
        // A literal that does not fit the column matches nothing by equality, but leave
        // such filters to DataFusion rather than reasoning about casts here.
        let Some(values) = values else { continue };
        if let Some(slot) = def.primary_key.iter().position(|&p| p == position) {
            key_values[slot] = Some(values.clone());
        }
        if Some(position) == region_column {
            let regions: BTreeSet<String> = values
                .into_iter()
                .filter_map(|v| match v {
                    Value::Text(region) => Some(region),
                    _ => None,
                })
                .collect();
            partitions = Some(regions.into_iter().collect());
        }
    }

    let keys = if key_values.iter().all(Option::is_some) {
        let mut keys: Vec<Vec<Value>> = vec![Vec::new()];
        for values in key_values.into_iter().flatten() {
            if keys.len().saturating_mul(values.len()) > POINT_LOOKUP_KEYS_MAX {
                return Access {
                    keys: None,
                    partitions,
                };
            }
            keys = keys
                .into_iter()
                .flat_map(|prefix| {
                    values.iter().map(move |v| {
                        let mut key = prefix.clone();
                        key.push(v.clone());
                        key
                    })
                })
                .collect();
        }
        Some(keys)
    } else {
        None
    };
    Access { keys, partitions }
}

/// `column = literal`, `literal = column`, `column IN (literal, ...)`, or an OR of those
/// on one column (DataFusion rewrites short IN lists into such ORs).
fn column_equals_literals(expr: &Expr) -> Option<(String, Vec<ScalarValue>)> {
    match expr {
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Or,
            right,
        }) => {
            let (left_column, mut left_values) = column_equals_literals(left)?;
            let (right_column, right_values) = column_equals_literals(right)?;
            if left_column != right_column {
                return None;
            }
            left_values.extend(right_values);
            Some((left_column, left_values))
        }
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Eq,
            right,
        }) => match (left.as_ref(), right.as_ref()) {
            (Expr::Column(c), other) | (other, Expr::Column(c)) => {
                Some((c.name.clone(), vec![literal_value(other)?]))
            }
            _ => None,
        },
        Expr::InList(in_list) if !in_list.negated => {
            let Expr::Column(c) = in_list.expr.as_ref() else {
                return None;
            };
            let scalars: Option<Vec<ScalarValue>> =
                in_list.list.iter().map(literal_value).collect();
            Some((c.name.clone(), scalars?))
        }
        _ => None,
    }
}

/// A literal, or a cast of one (bound parameters can arrive wrapped in a cast).
fn literal_value(expr: &Expr) -> Option<ScalarValue> {
    match expr {
        Expr::Literal(value, _) => Some(value.clone()),
        Expr::Cast(cast) => literal_value(&cast.expr)?
            .cast_to(cast.field.data_type())
            .ok(),
        Expr::TryCast(cast) => literal_value(&cast.expr)?
            .cast_to(cast.field.data_type())
            .ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use datafusion::logical_expr::{col, lit};

    use super::*;
    use crate::catalog::{ColumnDef, ColumnType, DataClass};

    fn accounts() -> TableDef {
        let column = |id: u16, name: &str, column_type| ColumnDef {
            id,
            name: name.into(),
            column_type,
            nullable: id > 1,
            class: DataClass::Public,
        };
        TableDef {
            id: 1,
            name: "accounts".into(),
            columns: vec![
                column(0, "id", ColumnType::BigInt),
                column(1, "region", ColumnType::Text),
                column(2, "balance", ColumnType::BigInt),
            ],
            primary_key: vec![0],
            locality: Locality::RegionalByRow {
                region_column: "region".into(),
            },
            next_column_id: 3,
            cdc: false,
            cache_ttl_ms: None,
        }
    }

    #[test]
    fn equality_and_in_on_the_key_become_point_lookups() {
        let def = accounts();
        let access = plan_access(&def, &[col("id").eq(lit(5i64))]);
        assert_eq!(access.keys, Some(vec![vec![Value::BigInt(5)]]));
        let cast = datafusion::logical_expr::cast(lit(5i32), arrow::datatypes::DataType::Int64);
        let access = plan_access(&def, &[col("id").eq(cast)]);
        assert_eq!(access.keys, Some(vec![vec![Value::BigInt(5)]]));
        let access = plan_access(
            &def,
            &[col("id").in_list(vec![lit(1i64), lit(2i64)], false)],
        );
        assert_eq!(access.keys.map(|k| k.len()), Some(2));
        let access = plan_access(&def, &[col("id").eq(lit(1i64)).or(col("id").eq(lit(3i64)))]);
        let expected = vec![vec![Value::BigInt(1)], vec![Value::BigInt(3)]];
        assert_eq!(access.keys, Some(expected));
        let mixed = col("id").eq(lit(1i64)).or(col("balance").eq(lit(3i64)));
        assert_eq!(
            plan_access(&def, &[mixed]).keys,
            None,
            "an OR over two columns selects no keys"
        );
    }

    #[test]
    fn other_filters_scan_and_negations_never_select_keys() {
        let def = accounts();
        assert_eq!(plan_access(&def, &[col("id").gt(lit(5i64))]).keys, None);
        assert_eq!(
            plan_access(&def, &[col("id").in_list(vec![lit(1i64)], true)]).keys,
            None
        );
        assert_eq!(
            plan_access(&def, &[col("balance").eq(lit(1i64))]).keys,
            None
        );
    }

    #[test]
    fn region_filters_prune_partitions() {
        let def = accounts();
        let access = plan_access(&def, &[lit("eu-central").eq(col("region"))]);
        assert_eq!(access.partitions, Some(vec!["eu-central".to_string()]));
        assert_eq!(plan_access(&def, &[]).partitions, None);
    }
}
