//! A well-behaved but strict policy: refuses everything. Used as "version 2" in hot-swap
//! tests, where a decision must visibly change.
use domicile_sdk_wasm::residency::*;

struct Strict;

impl Guest for Strict {
    fn may_store(_: RowBatch, _: u16) -> BatchDecision {
        deny_all(99, "strict policy: nothing is stored")
    }
    fn may_leave(_: RowBatch, _: u16, _: Purpose) -> BatchDecision {
        deny_all(99, "strict policy: nothing leaves")
    }
    fn may_send_step(_: StepPayload, _: String, _: String) -> Decision {
        deny(99, "strict policy: no messages")
    }
}

domicile_sdk_wasm::export_residency_policy!(Strict);
