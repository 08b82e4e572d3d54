//! Singapore residency policy (simplified PDPA transfer limitation); see README.md.

use domicile_sdk_wasm::residency::*;

pub struct SgPdpa;

/// Regions whose protection this policy deems comparable to the PDPA (here: Singapore
/// and the EU, standing in for binding contractual safeguards).
fn comparable_protection(region: &str) -> bool {
    region.starts_with("ap-southeast") || region.starts_with("eu-")
}

fn is_sg(region: &str) -> bool {
    region.starts_with("ap-southeast")
}

/// Code 26: a transfer the Transfer Limitation Obligation does not allow.
const TRANSFER_LIMITED: u32 = 26;

impl Guest for SgPdpa {
    fn may_store(batch: RowBatch, target: u16) -> BatchDecision {
        if comparable_protection(region(&batch, target)) {
            allow_all()
        } else {
            deny_all(
                TRANSFER_LIMITED,
                "PDPA s.26: personal data is stored only where protection is comparable",
            )
        }
    }

    fn may_leave(batch: RowBatch, destination: u16, why: Purpose) -> BatchDecision {
        let destination = region(&batch, destination);
        if is_sg(destination) {
            return allow_all();
        }
        let decision = match why {
            Purpose::QueryResult | Purpose::Support => {
                Decision::AllowWith(actions_by_class(&batch.table, |class| match class {
                    DataClass::Pii => ColumnAction::Mask,
                    DataClass::Sensitive | DataClass::Public => ColumnAction::Keep,
                }))
            }
            Purpose::Replication => {
                Decision::AllowWith(actions_by_class(&batch.table, |class| match class {
                    DataClass::Public => ColumnAction::Keep,
                    DataClass::Pii | DataClass::Sensitive => ColumnAction::Remove,
                }))
            }
            Purpose::Storage if comparable_protection(destination) => Decision::Allow,
            Purpose::Storage | Purpose::SagaStep => deny(
                TRANSFER_LIMITED,
                "PDPA s.26: transfer outside Singapore without comparable protection",
            ),
        };
        for_own_rows(&batch, is_sg, decision)
    }

    fn may_send_step(payload: StepPayload, _source: String, _destination: String) -> Decision {
        let personal = payload.fields.iter().any(|(field, value)| {
            let lowered = field.to_ascii_lowercase();
            ["nric", "name", "email", "iban", "phone"]
                .iter()
                .any(|n| lowered.contains(n))
                || matches!(value, Value::Text(text) if text.contains('@'))
        });
        if personal {
            deny(
                TRANSFER_LIMITED,
                "PDPA s.26: saga messages carry no personal data",
            )
        } else {
            Decision::Allow
        }
    }
}

domicile_sdk_wasm::residency_policy!(SgPdpa);

#[cfg(test)]
mod tests {
    use super::*;
    use domicile_sdk_wasm::testing::batch;

    fn rows() -> RowBatch {
        batch(
            "accounts",
            &[("id", DataClass::Public), ("name", DataClass::Pii)],
            &["ap-southeast", "us-east", "eu-central"],
            &[(0, vec![Value::Bigint(1), Value::Text("Tan".into())])],
        )
    }

    #[test]
    fn storage_follows_comparable_protection() {
        assert!(matches!(
            SgPdpa::may_store(rows(), 0).default,
            Decision::Allow
        ));
        assert!(matches!(
            SgPdpa::may_store(rows(), 2).default,
            Decision::Allow
        ));
        assert!(matches!(
            SgPdpa::may_store(rows(), 1).default,
            Decision::Deny(_)
        ));
        let Decision::AllowWith(actions) =
            SgPdpa::may_leave(rows(), 1, Purpose::QueryResult).default
        else {
            panic!("expected allow-with");
        };
        assert_eq!(actions, vec![ColumnAction::Keep, ColumnAction::Mask]);
    }
}
