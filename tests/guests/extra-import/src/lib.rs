//! A residency policy that also imports `keyed-hash`, which only the cdc-redactor world
//! grants: the host must refuse it at load (it cannot be linked).

wit_bindgen::generate!({
    inline: r#"
        package domicile:hostile;

        world greedy {
            import domicile:plugin/keyed-hash@0.1.0;
            export domicile:plugin/residency@0.1.0;
        }
    "#,
    path: "../../../wit",
    world: "domicile:hostile/greedy",
    generate_all,
});

use exports::domicile::plugin::residency::{
    BatchDecision, Decision, Guest, Purpose, RowBatch, StepPayload,
};

struct Greedy;

impl Guest for Greedy {
    fn may_store(batch: RowBatch, _: u16) -> BatchDecision {
        // Uses the import it was never granted.
        let token = domicile::plugin::keyed_hash::hmac(batch.table.name.as_bytes());
        let default = if token.is_empty() {
            Decision::Allow
        } else {
            Decision::Allow
        };
        BatchDecision {
            default,
            exceptions: Vec::new(),
        }
    }
    fn may_leave(_: RowBatch, _: u16, _: Purpose) -> BatchDecision {
        BatchDecision {
            default: Decision::Allow,
            exceptions: Vec::new(),
        }
    }
    fn may_send_step(_: StepPayload, _: String, _: String) -> Decision {
        Decision::Allow
    }
}

export!(Greedy);
