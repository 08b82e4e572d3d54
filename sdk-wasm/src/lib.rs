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
pub mod saga {
    pub use crate::bindings::saga::domicile::plugin::saga_host::{
        delete_row, read_row, table_columns, write_row,
    };
    pub use crate::bindings::saga::domicile::plugin::types::{Column, DataClass, Decimal, Value};
    pub use crate::bindings::saga::exports::domicile::plugin::saga::{
        Guest, SagaType, StepDescriptor, StepFailure, StepInput,
    };
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
    use super::mask_text;

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
