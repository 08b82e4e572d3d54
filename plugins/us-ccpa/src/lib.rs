//! US residency policy (simplified CCPA/CPRA); the rules are in README.md.

use domicile_sdk_wasm::residency::*;

pub struct UsCcpa;

fn is_us(region: &str) -> bool {
    region.starts_with("us-")
}

/// Code 121: sensitive personal information used beyond what the purpose needs.
const SENSITIVE_USE_LIMITED: u32 = 121;

const SENSITIVE_FIELD_NAMES: &[&str] = &["ssn", "iban", "email", "name", "phone", "address"];

impl Guest for UsCcpa {
    fn may_store(_batch: RowBatch, _target: u16) -> BatchDecision {
        // The CCPA does not localise data: storage anywhere in the mesh is allowed.
        allow_all()
    }

    fn may_leave(batch: RowBatch, destination: u16, why: Purpose) -> BatchDecision {
        if is_us(region(&batch, destination)) {
            return allow_all();
        }
        let decision = match why {
            Purpose::QueryResult | Purpose::Support | Purpose::Storage => {
                Decision::AllowWith(actions_by_class(&batch.table, |class| match class {
                    DataClass::Sensitive => ColumnAction::Mask,
                    DataClass::Pii | DataClass::Public => ColumnAction::Keep,
                }))
            }
            Purpose::Replication => {
                Decision::AllowWith(actions_by_class(&batch.table, |class| match class {
                    DataClass::Public => ColumnAction::Keep,
                    DataClass::Pii | DataClass::Sensitive => ColumnAction::Remove,
                }))
            }
            Purpose::SagaStep => deny(
                SENSITIVE_USE_LIMITED,
                "CPRA §1798.121: rows do not travel in saga steps",
            ),
        };
        for_own_rows(&batch, is_us, decision)
    }

    fn may_send_step(payload: StepPayload, _source: String, _destination: String) -> Decision {
        let personal = payload.fields.iter().any(|(field, _)| {
            let lowered = field.to_ascii_lowercase();
            SENSITIVE_FIELD_NAMES.iter().any(|n| lowered.contains(n))
        });
        if personal {
            deny(
                SENSITIVE_USE_LIMITED,
                "CPRA §1798.121: saga messages carry references and amounts only",
            )
        } else {
            Decision::Allow
        }
    }
}

domicile_sdk_wasm::residency_policy!(UsCcpa);

#[cfg(test)]
mod tests {
    use super::*;
    use domicile_sdk_wasm::testing::batch;

    fn rows() -> RowBatch {
        batch(
            "accounts",
            &[
                ("id", DataClass::Public),
                ("email", DataClass::Pii),
                ("balance", DataClass::Sensitive),
            ],
            &["us-east", "eu-central"],
            &[(
                0,
                vec![Value::Bigint(1), Value::Text("a@b.com".into()), Value::Null],
            )],
        )
    }

    #[test]
    fn data_of_other_jurisdictions_passing_through_is_not_restricted() {
        let mut passing = rows();
        passing.home_regions = vec![1];
        assert!(matches!(
            UsCcpa::may_leave(passing, 1, Purpose::Storage).default,
            Decision::Allow
        ));
    }

    #[test]
    fn us_data_may_be_stored_anywhere_and_leaves_with_sensitive_masked() {
        assert!(matches!(
            UsCcpa::may_store(rows(), 1).default,
            Decision::Allow
        ));
        let Decision::AllowWith(actions) =
            UsCcpa::may_leave(rows(), 1, Purpose::QueryResult).default
        else {
            panic!("expected allow-with");
        };
        assert_eq!(
            actions,
            vec![ColumnAction::Keep, ColumnAction::Keep, ColumnAction::Mask]
        );
        assert!(matches!(
            UsCcpa::may_leave(rows(), 1, Purpose::SagaStep).default,
            Decision::Deny(_)
        ));
    }
}
