//! Panics (a trap) in may-store and may-send-step.
use domicile_sdk_wasm::residency::*;
struct Hostile;
impl Guest for Hostile {
    fn may_store(batch: RowBatch, _: u16) -> BatchDecision {
        let empty: Vec<u16> = Vec::new();
        let index = batch.rows.len() + 5;
        if empty[index] == 0 {
            allow_all()
        } else {
            allow_all()
        }
    }
    fn may_leave(_: RowBatch, _: u16, _: Purpose) -> BatchDecision {
        allow_all()
    }
    fn may_send_step(payload: StepPayload, _: String, _: String) -> Decision {
        // Panics (its message goes to stderr) on the awaited path too.
        let empty: Vec<u16> = Vec::new();
        if empty[payload.fields.len() + 5] == 0 {
            Decision::Allow
        } else {
            Decision::Allow
        }
    }
}
domicile_sdk_wasm::export_residency_policy!(Hostile);
