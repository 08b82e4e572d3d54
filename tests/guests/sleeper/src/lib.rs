//! Sleeps for an hour in may-store and may-send-step: a wait the epoch deadline cannot interrupt (the host
//! would be blocked, not the guest), so the host must refuse to wait at all.
use domicile_sdk_wasm::residency::*;
struct Hostile;
impl Guest for Hostile {
    fn may_store(_: RowBatch, _: u16) -> BatchDecision {
        std::thread::sleep(std::time::Duration::from_secs(3600));
        allow_all()
    }
    fn may_leave(_: RowBatch, _: u16, _: Purpose) -> BatchDecision {
        allow_all()
    }
    fn may_send_step(_: StepPayload, _: String, _: String) -> Decision {
        std::thread::sleep(std::time::Duration::from_secs(3600));
        Decision::Allow
    }
}
domicile_sdk_wasm::export_residency_policy!(Hostile);
