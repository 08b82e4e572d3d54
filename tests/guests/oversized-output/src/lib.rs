//! Answers may-store with a 8 MiB denial reason: the host must refuse to copy it in.
use domicile_sdk_wasm::residency::*;
struct Hostile;
impl Guest for Hostile {
    fn may_store(_: RowBatch, _: u16) -> BatchDecision {
        deny_all(1, &"x".repeat(8 << 20))
    }
    fn may_leave(_: RowBatch, _: u16, _: Purpose) -> BatchDecision {
        allow_all()
    }
    fn may_send_step(_: StepPayload, _: String, _: String) -> Decision {
        Decision::Allow
    }
}
domicile_sdk_wasm::export_residency_policy!(Hostile);
