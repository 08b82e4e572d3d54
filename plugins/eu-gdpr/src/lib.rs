//! EU residency policy (simplified GDPR Chapter V); the rules are in README.md.

use domicile_sdk_wasm::residency::*;

pub struct EuGdpr;

fn is_eu(region: &str) -> bool {
    region.starts_with("eu-")
}

/// Code 44: a transfer of EU personal data outside the EU that this policy refuses.
const TRANSFER_REFUSED: u32 = 44;
/// Code 5: personal data inside a saga message.
const PERSONAL_DATA_IN_MESSAGE: u32 = 5;

const PERSONAL_FIELD_NAMES: &[&str] = &["name", "email", "iban", "phone", "address"];

impl Guest for EuGdpr {
    fn may_store(batch: RowBatch, target: u16) -> BatchDecision {
        if is_eu(region(&batch, target)) {
            return allow_all();
        }
        // Decide per row: only EU-homed rows are refused.
        let refusal = deny(
            TRANSFER_REFUSED,
            "GDPR Art. 44: EU personal data may be stored only in the EU",
        );
        per_row(&batch, Decision::Allow, refusal)
    }

    fn may_leave(batch: RowBatch, destination: u16, why: Purpose) -> BatchDecision {
        if is_eu(region(&batch, destination)) {
            return allow_all();
        }
        let outside = match why {
            Purpose::QueryResult | Purpose::Support => {
                Decision::AllowWith(actions_by_class(&batch.table, |class| match class {
                    DataClass::Pii => ColumnAction::Mask,
                    DataClass::Sensitive => ColumnAction::Remove,
                    DataClass::Public => ColumnAction::Keep,
                }))
            }
            Purpose::Replication => {
                Decision::AllowWith(actions_by_class(&batch.table, |class| match class {
                    DataClass::Public => ColumnAction::Keep,
                    DataClass::Pii | DataClass::Sensitive => ColumnAction::Remove,
                }))
            }
            Purpose::Storage | Purpose::SagaStep => deny(
                TRANSFER_REFUSED,
                "GDPR Art. 44: EU personal data may not be transferred outside the EU",
            ),
        };
        per_row(&batch, Decision::Allow, outside)
    }

    fn may_send_step(payload: StepPayload, _source: String, _destination: String) -> Decision {
        for (field, value) in &payload.fields {
            let lowered = field.to_ascii_lowercase();
            let named_personal = PERSONAL_FIELD_NAMES.iter().any(|n| lowered.contains(n));
            let looks_personal =
                matches!(value, Value::Text(text) if looks_like_email_or_iban(text));
            if named_personal || looks_personal {
                return deny(
                    PERSONAL_DATA_IN_MESSAGE,
                    "GDPR Art. 5(1)(c): saga messages carry references and amounts, not personal data",
                );
            }
        }
        Decision::Allow
    }
}

/// `eu_rows` for rows homed in the EU, `other_rows` for the rest, as one default plus
/// exceptions (whichever is more common becomes the default).
fn per_row(batch: &RowBatch, other_rows: Decision, eu_rows: Decision) -> BatchDecision {
    let eu: Vec<bool> = batch
        .home_regions
        .iter()
        .map(|&home| is_eu(region(batch, home)))
        .collect();
    let eu_count = eu.iter().filter(|&&e| e).count();
    let (default, exception, exception_is_eu) = if eu_count * 2 >= eu.len() {
        (eu_rows, other_rows, false)
    } else {
        (other_rows, eu_rows, true)
    };
    let exceptions = eu
        .iter()
        .enumerate()
        .filter(|(_, is_eu)| **is_eu == exception_is_eu)
        .map(|(index, _)| (index as u32, exception.clone()))
        .collect();
    BatchDecision {
        default,
        exceptions,
    }
}

fn looks_like_email_or_iban(text: &str) -> bool {
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let iban = compact.len() >= 15
        && compact.len() <= 34
        && compact.chars().take(2).all(|c| c.is_ascii_uppercase())
        && compact.chars().skip(2).take(2).all(|c| c.is_ascii_digit());
    text.contains('@') || iban
}

domicile_sdk_wasm::residency_policy!(EuGdpr);

#[cfg(test)]
mod tests {
    use super::*;
    use domicile_sdk_wasm::testing::batch;

    fn accounts(homes: &[u16]) -> RowBatch {
        batch(
            "accounts",
            &[
                ("id", DataClass::Public),
                ("email", DataClass::Pii),
                ("balance", DataClass::Sensitive),
            ],
            &["eu-central", "us-east", "ap-southeast"],
            &homes
                .iter()
                .map(|&h| {
                    (
                        h,
                        vec![Value::Bigint(1), Value::Text("a@b.eu".into()), Value::Null],
                    )
                })
                .collect::<Vec<_>>(),
        )
    }

    #[test]
    fn eu_rows_are_stored_only_in_the_eu() {
        assert!(matches!(
            EuGdpr::may_store(accounts(&[0, 0]), 0).default,
            Decision::Allow
        ));
        let decision = EuGdpr::may_store(accounts(&[0, 1]), 1);
        let refused: Vec<u32> = match &decision.default {
            Decision::Deny(_) => vec![0],
            _ => decision
                .exceptions
                .iter()
                .filter(|(_, d)| matches!(d, Decision::Deny(_)))
                .map(|(i, _)| *i)
                .collect(),
        };
        assert_eq!(refused, vec![0], "only the EU-homed row is refused");
    }

    #[test]
    fn results_leaving_the_eu_mask_pii_and_drop_sensitive() {
        let decision = EuGdpr::may_leave(accounts(&[0]), 2, Purpose::QueryResult);
        let Decision::AllowWith(actions) = decision.default else {
            panic!("expected allow-with")
        };
        assert_eq!(
            actions,
            vec![ColumnAction::Keep, ColumnAction::Mask, ColumnAction::Remove]
        );
        assert!(matches!(
            EuGdpr::may_leave(accounts(&[0]), 0, Purpose::Storage).default,
            Decision::Allow
        ));
        assert!(matches!(
            EuGdpr::may_leave(accounts(&[0]), 1, Purpose::Storage).default,
            Decision::Deny(_)
        ));
    }

    #[test]
    fn saga_messages_carry_no_personal_data() {
        let clean = StepPayload {
            saga_type: "transfer-saga".into(),
            step: "debit".into(),
            fields: vec![
                ("account_id".into(), Value::Bigint(7)),
                ("amount".into(), Value::Text("10.00".into())),
            ],
        };
        assert!(matches!(
            EuGdpr::may_send_step(clean, "eu-central".into(), "us-east".into()),
            Decision::Allow
        ));
        for field in [
            ("iban".to_string(), Value::Text("x".into())),
            (
                "note".to_string(),
                Value::Text("DE89 3704 0044 0532 0130 00".into()),
            ),
        ] {
            let payload = StepPayload {
                saga_type: "t".into(),
                step: "s".into(),
                fields: vec![field],
            };
            assert!(matches!(
                EuGdpr::may_send_step(payload, "eu-central".into(), "us-east".into()),
                Decision::Deny(_)
            ));
        }
    }
}
