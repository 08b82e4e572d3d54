//! A redactor that refuses every batch: the relay must hold change events, never
//! publish them unredacted nor drop them.
use domicile_sdk_wasm::redactor::*;

struct Failing;

impl Guest for Failing {
    fn redact(_: EventBatch) -> Result<RedactedBatch, String> {
        Err("failing redactor: refuses every batch".into())
    }
}

domicile_sdk_wasm::cdc_redactor!(Failing);
