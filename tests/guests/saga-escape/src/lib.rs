//! A saga step that tries to reach past its transaction: one step per attempt. Each
//! first makes a legitimate write to account 1, so a test can check that a refused or
//! interrupted step leaves nothing behind. Host refusals are returned as `retryable`
//! with the host's text, so the test sees them.
use domicile_sdk_wasm::saga::*;

struct Hostile;

fn account(id: i64, region: &str, cents: i64) -> Vec<Value> {
    vec![
        Value::Bigint(id),
        Value::Text(region.into()),
        Value::Decimal(Decimal {
            unscaled: cents.to_string(),
            scale: 2,
        }),
        Value::Text("EUR".into()),
    ]
}

impl Guest for Hostile {
    fn describe() -> Vec<SagaType> {
        let step = |name: &str| StepDescriptor {
            name: name.into(),
            region_field: "region".into(),
            tables: vec!["accounts".into()],
        };
        vec![SagaType {
            name: "escape".into(),
            steps: [
                "foreign-row",
                "undeclared-table",
                "too-many-rows",
                "spin",
                "trap",
                "fine",
            ]
            .into_iter()
            .map(step)
            .collect(),
        }]
    }

    fn execute(input: StepInput) -> Result<Vec<(String, Value)>, StepFailure> {
        let mut tables = HostTables;
        tables
            .write("accounts", &account(1, "eu-central", 1))
            .map_err(retryable)?;
        match input.step.as_str() {
            "foreign-row" => tables.write("accounts", &account(2, "us-east", 5)),
            "undeclared-table" => tables.read("secrets", &[Value::Bigint(1)]).map(|_| ()),
            "too-many-rows" => (10..100_000)
                .try_for_each(|id| tables.write("accounts", &account(id, "eu-central", 0))),
            "spin" => loop {
                std::hint::black_box(&input);
            },
            "trap" => {
                let empty: Vec<u8> = Vec::new();
                let index = input.fields.len() + 3;
                Err(format!("{}", empty[index]))
            }
            _ => Ok(()),
        }
        .map_err(retryable)?;
        Ok(Vec::new())
    }

    fn compensate(_: StepInput) -> Result<(), StepFailure> {
        Ok(())
    }
}
domicile_sdk_wasm::export_saga_step!(Hostile);
