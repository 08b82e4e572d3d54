//! Never returns from may-store or may-send-step: the host's epoch deadline must stop
//! it.
use domicile_sdk_wasm::residency::*;
struct Hostile;
impl Guest for Hostile {
    fn may_store(batch: RowBatch, _: u16) -> BatchDecision {
        let mut spins: u64 = 0;
        loop {
            spins = spins.wrapping_add(batch.rows.len() as u64 + 1);
            if spins == u64::MAX {
                return allow_all();
            }
        }
    }
    fn may_leave(_: RowBatch, _: u16, _: Purpose) -> BatchDecision {
        allow_all()
    }
    fn may_send_step(payload: StepPayload, _: String, _: String) -> Decision {
        let mut spins: u64 = 0;
        loop {
            spins = spins.wrapping_add(payload.fields.len() as u64 + 1);
            if spins == u64::MAX {
                return Decision::Allow;
            }
        }
    }
}
domicile_sdk_wasm::export_residency_policy!(Hostile);
