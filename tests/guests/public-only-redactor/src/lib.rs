//! A well-behaved redactor stricter than the bundled one: only `public` columns leave
//! (no masked emails, no IBAN tokens). Used as "version 2" in hot-swap tests, where
//! later change events must visibly lose columns.
use domicile_sdk_wasm::redactor::*;

struct PublicOnly;

impl Guest for PublicOnly {
    fn redact(batch: EventBatch) -> Result<RedactedBatch, String> {
        let keep: Vec<bool> = batch
            .table
            .columns
            .iter()
            .map(|c| c.class == DataClass::Public)
            .collect();
        let pick = |row: Vec<Value>| -> Vec<Value> {
            row.into_iter()
                .zip(&keep)
                .filter_map(|(value, keep)| keep.then_some(value))
                .collect()
        };
        let columns = batch
            .table
            .columns
            .iter()
            .zip(&keep)
            .filter_map(|(column, keep)| keep.then(|| column.clone()))
            .collect();
        let events = batch
            .events
            .into_iter()
            .map(|event| {
                Some(ChangeEvent {
                    op: event.op,
                    key: event.key,
                    before: event.before.map(pick),
                    after: event.after.map(pick),
                })
            })
            .collect();
        Ok(RedactedBatch { columns, events })
    }
}

domicile_sdk_wasm::cdc_redactor!(PublicOnly);
