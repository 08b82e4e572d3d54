//! CDC redactor: what of a change event may leave its region. Per column, by class and
//! name: `pii` names are dropped, `pii` emails are masked (first letter and domain kept),
//! `pii` IBANs become stable tokens (keyed hash by the host), other `pii` and every
//! `sensitive` column is dropped, `public` columns pass. A masked or tokenized column is
//! declared `public` in the output: it no longer identifies anyone by itself, and the
//! residency policy then decides on what actually leaves, not on what went in.

use domicile_sdk_wasm::redactor::*;

pub struct PiiRedactor;

/// What happens to one column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Treatment {
    Keep,
    Drop,
    MaskEmail,
    Tokenize,
}

pub fn treatment(column: &Column) -> Treatment {
    let name = column.name.to_ascii_lowercase();
    match column.class {
        DataClass::Public => Treatment::Keep,
        DataClass::Sensitive => Treatment::Drop,
        DataClass::Pii if name.contains("email") => Treatment::MaskEmail,
        DataClass::Pii if name.contains("iban") => Treatment::Tokenize,
        DataClass::Pii => Treatment::Drop,
    }
}

/// `ana.lopez@example.eu` → `a***@example.eu`; text without '@' is fully masked.
pub fn mask_email(email: &str) -> String {
    match email.split_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}***@{domain}")
        }
        None => "***".to_string(),
    }
}

fn token(hash: &[u8]) -> String {
    let hex: String = hash.iter().take(12).map(|b| format!("{b:02x}")).collect();
    format!("tok_{hex}")
}

fn redact_row(
    treatments: &[Treatment],
    row: Vec<Value>,
    hash: &impl Fn(&[u8]) -> Vec<u8>,
) -> Vec<Value> {
    row.into_iter()
        .zip(treatments)
        .filter_map(|(value, treatment)| match (treatment, value) {
            (Treatment::Drop, _) => None,
            (Treatment::Keep, value) => Some(value),
            (_, Value::Null) => Some(Value::Null),
            (Treatment::MaskEmail, Value::Text(text)) => Some(Value::Text(mask_email(&text))),
            (Treatment::Tokenize, Value::Text(text)) => {
                Some(Value::Text(token(&hash(text.as_bytes()))))
            }
            // A masked or tokenized column of another type is dropped to NULL rather than leak.
            (Treatment::MaskEmail | Treatment::Tokenize, _) => Some(Value::Null),
        })
        .collect()
}

/// The redaction itself, with the keyed hash injected (the host's in the component,
/// any function in native tests).
pub fn redact_with(batch: EventBatch, hash: impl Fn(&[u8]) -> Vec<u8>) -> RedactedBatch {
    let treatments: Vec<Treatment> = batch.table.columns.iter().map(treatment).collect();
    let columns = batch
        .table
        .columns
        .iter()
        .zip(&treatments)
        .filter(|(_, t)| **t != Treatment::Drop)
        .map(|(c, t)| Column {
            name: c.name.clone(),
            class: match t {
                Treatment::MaskEmail | Treatment::Tokenize => DataClass::Public,
                _ => c.class,
            },
        })
        .collect();
    let events = batch
        .events
        .into_iter()
        .map(|event| {
            Some(ChangeEvent {
                op: event.op,
                key: event.key,
                before: event.before.map(|row| redact_row(&treatments, row, &hash)),
                after: event.after.map(|row| redact_row(&treatments, row, &hash)),
            })
        })
        .collect();
    RedactedBatch { columns, events }
}

impl Guest for PiiRedactor {
    fn redact(batch: EventBatch) -> Result<RedactedBatch, String> {
        Ok(redact_with(batch, hmac))
    }
}

domicile_sdk_wasm::cdc_redactor!(PiiRedactor);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_dropped_emails_masked_ibans_tokenized() {
        let column = |name: &str, class| Column {
            name: name.into(),
            class,
        };
        let batch = EventBatch {
            table: Table {
                name: "accounts".into(),
                columns: vec![
                    column("id", DataClass::Public),
                    column("name", DataClass::Pii),
                    column("email", DataClass::Pii),
                    column("iban", DataClass::Pii),
                    column("balance", DataClass::Sensitive),
                ],
            },
            source_region: "eu-central".into(),
            events: vec![ChangeEvent {
                op: Operation::Create,
                key: vec![Value::Bigint(1)],
                before: None,
                after: Some(vec![
                    Value::Bigint(1),
                    Value::Text("Ana".into()),
                    Value::Text("ana@example.eu".into()),
                    Value::Text("DE89370400440532013000".into()),
                    Value::Null,
                ]),
            }],
        };
        let redacted = redact_with(batch, |data| data.iter().rev().copied().collect());
        let names: Vec<&str> = redacted.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, vec!["id", "email", "iban"]);
        assert!(
            redacted
                .columns
                .iter()
                .all(|c| c.class == DataClass::Public),
            "what remains is de-identified and declared public"
        );
        let after = redacted.events[0]
            .as_ref()
            .and_then(|e| e.after.clone())
            .expect("after");
        assert!(matches!(&after[1], Value::Text(t) if t == "a***@example.eu"));
        assert!(
            matches!(&after[2], Value::Text(t) if t.starts_with("tok_") && !t.contains("DE89"))
        );
    }
}
