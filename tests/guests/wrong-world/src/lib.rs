//! A CDC redactor offered where a residency policy is expected: refused at load.
use domicile_sdk_wasm::redactor::*;
struct Redactor;
impl Guest for Redactor {
    fn redact(batch: EventBatch) -> Result<RedactedBatch, String> {
        Ok(RedactedBatch {
            columns: batch.table.columns,
            events: batch.events.into_iter().map(Some).collect(),
        })
    }
}
domicile_sdk_wasm::export_cdc_redactor!(Redactor);
