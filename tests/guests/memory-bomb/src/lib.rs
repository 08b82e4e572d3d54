//! Grows memory without bound in may-store: the host's memory cap must stop it.
use domicile_sdk_wasm::residency::*;
struct Hostile;
impl Guest for Hostile {
    fn may_store(batch: RowBatch, _: u16) -> BatchDecision {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            hoard.push(vec![batch.rows.len() as u8; 1 << 20]);
            if hoard.len() == usize::MAX {
                return allow_all();
            }
        }
    }
    fn may_leave(_: RowBatch, _: u16, _: Purpose) -> BatchDecision {
        allow_all()
    }
    fn may_send_step(_: StepPayload, _: String, _: String) -> Decision {
        Decision::Allow
    }
}
domicile_sdk_wasm::export_residency_policy!(Hostile);
