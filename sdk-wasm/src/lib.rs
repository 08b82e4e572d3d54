//! The crate Domicile plugin authors build against.
//!
//! A plugin is a WASM component for one of three worlds of `wit/domicile-plugin.wit`.
//! This crate generates the bindings for each world, re-exports them under short names,
//! and adds helpers. A plugin crate is a `cdylib` built with
//! `cargo build --target wasm32-wasip2`; its logic is plain Rust, so it is unit-tested
//! with a native `cargo test` (see [`testing`]).
//!
//! ```
//! use domicile_sdk_wasm::residency::*;
//!
//! struct KeepEverythingHome;
//!
//! impl Guest for KeepEverythingHome {
//!     fn may_store(batch: RowBatch, target: u16) -> BatchDecision {
//!         if batch.home_regions.iter().all(|&home| home == target) {
//!             allow_all()
//!         } else {
//!             deny_all(1, "rows are stored only in their home region")
//!         }
//!     }
//!     fn may_leave(_: RowBatch, _: u16, _: Purpose) -> BatchDecision {
//!         deny_all(2, "nothing leaves")
//!     }
//!     fn may_send_step(_: StepPayload, _: String, _: String) -> Decision {
//!         Decision::Allow
//!     }
//! }
//! domicile_sdk_wasm::residency_policy!(KeepEverythingHome);
//!
//! let batch = domicile_sdk_wasm::testing::batch("t", &[("id", DataClass::Public)],
//!     &["eu-central", "us-east"], &[(0, vec![Value::Bigint(1)])]);
//! assert!(matches!(KeepEverythingHome::may_store(batch, 1).default, Decision::Deny(_)));
//! ```

#[doc(hidden)]
pub mod bindings {
    pub mod residency {
        wit_bindgen::generate!({
            world: "residency-policy",
            path: "../wit",
            pub_export_macro: true,
            export_macro_name: "export_residency_policy",
            default_bindings_module: "domicile_sdk_wasm::bindings::residency",
        });
    }

    pub mod redactor {
        wit_bindgen::generate!({
            world: "cdc-redactor",
            path: "../wit",
            pub_export_macro: true,
            export_macro_name: "export_cdc_redactor",
            default_bindings_module: "domicile_sdk_wasm::bindings::redactor",
        });
    }

    pub mod saga {
        wit_bindgen::generate!({
            world: "saga-step",
            path: "../wit",
            pub_export_macro: true,
            export_macro_name: "export_saga_step",
            default_bindings_module: "domicile_sdk_wasm::bindings::saga",
            additional_derives: [PartialEq],
        });
    }
}

/// Exports `$ty` (implementing [`residency::Guest`]) as the plugin's residency policy.
/// Expands to nothing off wasm32, so the same crate also builds natively for tests.
#[macro_export]
macro_rules! residency_policy {
    ($ty:ident) => {
        #[cfg(target_arch = "wasm32")]
        $crate::export_residency_policy!($ty);
    };
}

/// Exports `$ty` (implementing [`redactor::Guest`]) as the plugin's CDC redactor.
#[macro_export]
macro_rules! cdc_redactor {
    ($ty:ident) => {
        #[cfg(target_arch = "wasm32")]
        $crate::export_cdc_redactor!($ty);
    };
}

/// Exports `$ty` (implementing [`saga::Guest`]) as the plugin's saga steps.
#[macro_export]
macro_rules! saga_step {
    ($ty:ident) => {
        #[cfg(target_arch = "wasm32")]
        $crate::export_saga_step!($ty);
    };
}

#[doc(hidden)]
pub use bindings::redactor::export_cdc_redactor;
#[doc(hidden)]
pub use bindings::residency::export_residency_policy;
#[doc(hidden)]
pub use bindings::saga::export_saga_step;

/// Everything a residency policy needs: implement [`residency::Guest`], then
/// `domicile_sdk_wasm::residency_policy!(YourType);`.
pub mod residency {
    pub use crate::bindings::residency::domicile::plugin::types::{
        Column, DataClass, Decimal, Purpose, Table, Value,
    };
    pub use crate::bindings::residency::exports::domicile::plugin::residency::{
        BatchDecision, ColumnAction, Decision, Denial, Guest, RowBatch, StepPayload,
    };

    /// Every row allowed, all columns kept.
    pub fn allow_all() -> BatchDecision {
        BatchDecision {
            default: Decision::Allow,
            exceptions: Vec::new(),
        }
    }

    /// Every row refused with one reason.
    pub fn deny_all(code: u32, reason: &str) -> BatchDecision {
        BatchDecision {
            default: deny(code, reason),
            exceptions: Vec::new(),
        }
    }

    pub fn deny(code: u32, reason: &str) -> Decision {
        Decision::Deny(Denial {
            code,
            reason: reason.to_string(),
        })
    }

    /// One action per column of `table`, chosen by the column's class.
    pub fn actions_by_class(
        table: &Table,
        action: impl Fn(DataClass) -> ColumnAction,
    ) -> Vec<ColumnAction> {
        table.columns.iter().map(|c| action(c.class)).collect()
    }

    /// The name of region `index` of a batch ("" if out of range).
    /// `decision` for the rows whose home region satisfies `own`, `Allow` for the rest:
    /// a jurisdiction's policy restricts its own data, not data passing through.
    pub fn for_own_rows(
        batch: &RowBatch,
        own: impl Fn(&str) -> bool,
        decision: Decision,
    ) -> BatchDecision {
        let others: Vec<u32> = batch
            .home_regions
            .iter()
            .enumerate()
            .filter(|(_, home)| !own(region(batch, **home)))
            .map(|(row, _)| row as u32)
            .collect();
        if others.len() == batch.home_regions.len() {
            return allow_all();
        }
        BatchDecision {
            default: decision,
            exceptions: others
                .into_iter()
                .map(|row| (row, Decision::Allow))
                .collect(),
        }
    }

    pub fn region(batch: &RowBatch, index: u16) -> &str {
        batch
            .regions
            .get(usize::from(index))
            .map_or("", String::as_str)
    }

    /// The value of column `name` in row `row`, if both exist.
    pub fn cell<'a>(batch: &'a RowBatch, row: usize, name: &str) -> Option<&'a Value> {
        let column = batch.table.columns.iter().position(|c| c.name == name)?;
        batch.rows.get(row)?.get(column)
    }
}

/// Everything a CDC redactor needs: implement [`redactor::Guest`], then
/// `domicile_sdk_wasm::cdc_redactor!(YourType);`.
pub mod redactor {
    pub use crate::bindings::redactor::domicile::plugin::keyed_hash::hmac;
    pub use crate::bindings::redactor::domicile::plugin::types::{
        Column, DataClass, Decimal, Table, Value,
    };
    pub use crate::bindings::redactor::exports::domicile::plugin::redactor::{
        ChangeEvent, EventBatch, Guest, Operation, RedactedBatch,
    };
}

/// Everything a saga-step plugin needs: implement [`saga::Guest`], then
/// `domicile_sdk_wasm::saga_step!(YourType);`.
///
/// Write the step logic against [`saga::Tables`] rather than the raw host imports: the
/// component passes [`saga::HostTables`] (the step's transaction on the node), native
/// unit tests pass [`testing::MemoryTables`].
pub mod saga {
    use crate::bindings::saga::domicile::plugin::saga_host;
    pub use crate::bindings::saga::domicile::plugin::types::{Column, DataClass, Decimal, Value};
    pub use crate::bindings::saga::exports::domicile::plugin::saga::{
        Guest, SagaType, StepDescriptor, StepFailure, StepInput,
    };

    /// Rows of the step's declared tables, inside the step's one local transaction.
    pub trait Tables {
        /// Columns of `table`, in the order rows hold their values.
        fn columns(&mut self, table: &str) -> Result<Vec<Column>, String>;
        /// The row whose primary key is `key` (key columns in key order).
        fn read(&mut self, table: &str, key: &[Value]) -> Result<Option<Vec<Value>>, String>;
        /// Inserts or replaces a whole row.
        fn write(&mut self, table: &str, row: &[Value]) -> Result<(), String>;
        fn delete(&mut self, table: &str, key: &[Value]) -> Result<(), String>;
    }

    /// The node's tables, through the `saga-host` imports (only inside a component).
    pub struct HostTables;

    impl Tables for HostTables {
        fn columns(&mut self, table: &str) -> Result<Vec<Column>, String> {
            saga_host::table_columns(table)
        }
        fn read(&mut self, table: &str, key: &[Value]) -> Result<Option<Vec<Value>>, String> {
            saga_host::read_row(table, key)
        }
        fn write(&mut self, table: &str, row: &[Value]) -> Result<(), String> {
            saga_host::write_row(table, row)
        }
        fn delete(&mut self, table: &str, key: &[Value]) -> Result<(), String> {
            saga_host::delete_row(table, key)
        }
    }

    /// The value of input field `name`.
    pub fn field<'a>(input: &'a StepInput, name: &str) -> Result<&'a Value, StepFailure> {
        input
            .fields
            .iter()
            .find(|(field, _)| field == name)
            .map(|(_, value)| value)
            .ok_or_else(|| StepFailure::Rejected(format!("input field {name} is missing")))
    }

    /// Position of column `name` in `columns`.
    pub fn column_index(columns: &[Column], name: &str) -> Result<usize, StepFailure> {
        columns
            .iter()
            .position(|c| c.name == name)
            .ok_or_else(|| StepFailure::Rejected(format!("column {name} is missing")))
    }

    /// A host error (a storage problem, a bound exceeded): worth retrying.
    pub fn retryable(error: String) -> StepFailure {
        StepFailure::Retryable(error)
    }

    /// A decimal value as an [`crate::Amount`].
    pub fn amount(value: &Value) -> Result<crate::Amount, StepFailure> {
        match value {
            Value::Decimal(d) => crate::Amount::new(&d.unscaled, d.scale)
                .ok_or_else(|| StepFailure::Rejected("malformed decimal".into())),
            _ => Err(StepFailure::Rejected("expected a decimal".into())),
        }
    }

    /// An [`crate::Amount`] as a decimal value.
    pub fn decimal(amount: crate::Amount) -> Value {
        let (unscaled, scale) = amount.parts();
        Value::Decimal(Decimal { unscaled, scale })
    }
}

/// Exact decimal arithmetic for money: an unscaled integer and a scale, as the WIT
/// `decimal` record carries them. No floating point anywhere.
#[derive(Clone, Copy, Debug)]
pub struct Amount {
    units: i128,
    scale: i8,
}

impl Amount {
    /// `unscaled` / 10^`scale`; `None` if `unscaled` is not an integer.
    pub fn new(unscaled: &str, scale: i8) -> Option<Self> {
        Some(Self {
            units: unscaled.parse().ok()?,
            scale,
        })
    }

    pub fn parts(self) -> (String, i8) {
        (self.units.to_string(), self.scale)
    }

    pub fn is_negative(self) -> bool {
        self.units < 0
    }

    /// Both at the larger scale; `None` on overflow.
    fn aligned(self, other: Self) -> Option<(i128, i128, i8)> {
        let scale = self.scale.max(other.scale);
        let up = |a: Self| {
            10i128
                .checked_pow(u32::try_from(i32::from(scale) - i32::from(a.scale)).ok()?)
                .and_then(|f| a.units.checked_mul(f))
        };
        Some((up(self)?, up(other)?, scale))
    }

    pub fn checked_add(self, other: Self) -> Option<Self> {
        let (a, b, scale) = self.aligned(other)?;
        Some(Self {
            units: a.checked_add(b)?,
            scale,
        })
    }

    pub fn checked_sub(self, other: Self) -> Option<Self> {
        let (a, b, scale) = self.aligned(other)?;
        Some(Self {
            units: a.checked_sub(b)?,
            scale,
        })
    }

    /// The same amount at `scale`, if that loses no digits.
    pub fn rescaled(self, scale: i8) -> Option<Self> {
        let (a, _, common) = self.aligned(Self { units: 0, scale })?;
        if common == scale {
            return Some(Self { units: a, scale });
        }
        let factor = 10i128.checked_pow(u32::try_from(common - scale).ok()?)?;
        (a % factor == 0).then_some(Self {
            units: a / factor,
            scale,
        })
    }

    /// Compares exactly; `None` only if aligning overflows.
    pub fn compare(self, other: Self) -> Option<std::cmp::Ordering> {
        let (a, b, _) = self.aligned(other)?;
        Some(a.cmp(&b))
    }
}

/// Masks text the way the host's `mask` action does: all but the last four characters
/// become '*'.
pub fn mask_text(text: &str) -> String {
    let count = text.chars().count();
    text.chars()
        .enumerate()
        .map(|(i, c)| if i + 4 >= count { c } else { '*' })
        .collect()
}

/// Building inputs by hand, for native unit tests of a plugin.
pub mod testing {
    use crate::residency::{Column, DataClass, RowBatch, Table, Value};

    pub use memory_tables::MemoryTables;

    mod memory_tables {
        use std::collections::BTreeMap;

        use crate::saga::{Column, DataClass, Tables, Value};

        struct MemoryTable {
            columns: Vec<Column>,
            key: Vec<usize>,
            rows: Vec<Vec<Value>>,
        }

        /// In-memory tables standing in for the node in native tests of a saga step.
        /// Not transactional: a test that needs "a failed step writes nothing" checks
        /// what the step returned before it looks at the rows.
        #[derive(Default)]
        pub struct MemoryTables {
            tables: BTreeMap<String, MemoryTable>,
        }

        impl MemoryTables {
            /// Adds table `name`; `key` lists the primary-key column names in key order.
            pub fn with_table(
                mut self,
                name: &str,
                columns: &[(&str, DataClass)],
                key: &[&str],
            ) -> Self {
                let columns: Vec<Column> = columns
                    .iter()
                    .map(|(name, class)| Column {
                        name: (*name).to_string(),
                        class: *class,
                    })
                    .collect();
                let key = key
                    .iter()
                    .map(|k| {
                        columns
                            .iter()
                            .position(|c| c.name == *k)
                            .expect("key column")
                    })
                    .collect();
                self.tables.insert(
                    name.to_string(),
                    MemoryTable {
                        columns,
                        key,
                        rows: Vec::new(),
                    },
                );
                self
            }

            /// Every row of `table`, in insertion order.
            pub fn rows(&self, table: &str) -> &[Vec<Value>] {
                self.tables.get(table).map_or(&[], |t| t.rows.as_slice())
            }

            fn table(&mut self, name: &str) -> Result<&mut MemoryTable, String> {
                self.tables
                    .get_mut(name)
                    .ok_or_else(|| format!("no table {name}"))
            }
        }

        impl MemoryTable {
            fn position(&self, key: &[Value]) -> Option<usize> {
                self.rows
                    .iter()
                    .position(|row| self.key.iter().zip(key).all(|(&i, value)| &row[i] == value))
            }
        }

        impl Tables for MemoryTables {
            fn columns(&mut self, table: &str) -> Result<Vec<Column>, String> {
                Ok(self.table(table)?.columns.clone())
            }

            fn read(&mut self, table: &str, key: &[Value]) -> Result<Option<Vec<Value>>, String> {
                let table = self.table(table)?;
                Ok(table.position(key).map(|i| table.rows[i].clone()))
            }

            fn write(&mut self, table: &str, row: &[Value]) -> Result<(), String> {
                let table = self.table(table)?;
                if row.len() != table.columns.len() {
                    return Err("wrong number of values".into());
                }
                let key: Vec<Value> = table.key.iter().map(|&i| row[i].clone()).collect();
                match table.position(&key) {
                    Some(i) => table.rows[i] = row.to_vec(),
                    None => table.rows.push(row.to_vec()),
                }
                Ok(())
            }

            fn delete(&mut self, table: &str, key: &[Value]) -> Result<(), String> {
                let table = self.table(table)?;
                if let Some(i) = table.position(key) {
                    table.rows.remove(i);
                }
                Ok(())
            }
        }
    }

    /// A row batch of table `name` with `columns`; `rows` are (home region index, values).
    pub fn batch(
        name: &str,
        columns: &[(&str, DataClass)],
        regions: &[&str],
        rows: &[(u16, Vec<Value>)],
    ) -> RowBatch {
        RowBatch {
            table: Table {
                name: name.to_string(),
                columns: columns
                    .iter()
                    .map(|(name, class)| Column {
                        name: (*name).to_string(),
                        class: *class,
                    })
                    .collect(),
            },
            regions: regions.iter().map(|r| (*r).to_string()).collect(),
            home_regions: rows.iter().map(|(home, _)| *home).collect(),
            rows: rows.iter().map(|(_, values)| values.clone()).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Amount, mask_text};

    #[test]
    fn amounts_are_exact_across_scales() {
        let a = Amount::new("1050", 2).expect("10.50");
        let b = Amount::new("3", 0).expect("3");
        assert_eq!(a.checked_sub(b).map(Amount::parts), Some(("750".into(), 2)));
        assert_eq!(b.checked_sub(a).map(|x| x.is_negative()), Some(true));
        assert_eq!(a.compare(b), Some(std::cmp::Ordering::Greater));
        assert_eq!(a.rescaled(4).map(Amount::parts), Some(("105000".into(), 4)));
        assert!(Amount::new("1055", 2).and_then(|x| x.rescaled(1)).is_none());
        assert!(Amount::new("1.5", 0).is_none());
    }

    #[test]
    fn masking_keeps_the_last_four_characters() {
        assert_eq!(
            mask_text("DE89370400440532013000"),
            "******************3000"
        );
        assert_eq!(mask_text("abc"), "abc");
        assert_eq!(mask_text("Zoë Müller"), "******ller");
    }
}
