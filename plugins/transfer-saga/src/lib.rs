//! The `transfer` saga: move an amount from one account to another, possibly in another
//! region. Two steps, each run on the node that owns its account, each with a
//! compensation; the rules are in README.md.

use std::cmp::Ordering;

use domicile_sdk_wasm::Amount;
use domicile_sdk_wasm::saga::*;

pub struct TransferSaga;

const ACCOUNTS: &str = "accounts";

/// The fields a transfer's input carries: references and an amount, never personal data.
pub mod fields {
    pub const FROM_ACCOUNT: &str = "from_account";
    pub const TO_ACCOUNT: &str = "to_account";
    pub const AMOUNT: &str = "amount";
    pub const CURRENCY: &str = "currency";
    pub const FROM_REGION: &str = "from_region";
    pub const TO_REGION: &str = "to_region";
}

/// Which way a step moves money on its account.
#[derive(Clone, Copy)]
enum Movement {
    Withdraw,
    Deposit,
}

impl Guest for TransferSaga {
    fn describe() -> Vec<SagaType> {
        let step = |name: &str, region_field: &str| StepDescriptor {
            name: name.into(),
            region_field: region_field.into(),
            tables: vec![ACCOUNTS.into()],
        };
        vec![SagaType {
            name: "transfer".into(),
            steps: vec![
                step("debit", fields::FROM_REGION),
                step("credit", fields::TO_REGION),
            ],
        }]
    }

    fn execute(input: StepInput) -> Result<Vec<(String, Value)>, StepFailure> {
        execute_on(&mut HostTables, &input)
    }

    fn compensate(input: StepInput) -> Result<(), StepFailure> {
        compensate_on(&mut HostTables, &input)
    }
}

/// `execute`, against any [`Tables`].
pub fn execute_on(
    tables: &mut impl Tables,
    input: &StepInput,
) -> Result<Vec<(String, Value)>, StepFailure> {
    let (account_field, movement, label) = match input.step.as_str() {
        "debit" => (fields::FROM_ACCOUNT, Movement::Withdraw, "debited"),
        "credit" => (fields::TO_ACCOUNT, Movement::Deposit, "credited"),
        other => return Err(StepFailure::Rejected(format!("unknown step {other}"))),
    };
    let amount = move_money(tables, input, account_field, movement)?;
    Ok(vec![(label.into(), decimal(amount))])
}

/// `compensate`, against any [`Tables`]: the opposite movement. Undoing a credit whose
/// money has been spent since is refused (the saga then needs support), never forced
/// into an overdraft.
pub fn compensate_on(tables: &mut impl Tables, input: &StepInput) -> Result<(), StepFailure> {
    let (account_field, movement) = match input.step.as_str() {
        "debit" => (fields::FROM_ACCOUNT, Movement::Deposit),
        "credit" => (fields::TO_ACCOUNT, Movement::Withdraw),
        other => return Err(StepFailure::Rejected(format!("unknown step {other}"))),
    };
    move_money(tables, input, account_field, movement).map(|_| ())
}

fn move_money(
    tables: &mut impl Tables,
    input: &StepInput,
    account_field: &str,
    movement: Movement,
) -> Result<Amount, StepFailure> {
    let amount = amount(field(input, fields::AMOUNT)?)?;
    if amount.compare(Amount::new("0", 0).expect("zero")) != Some(Ordering::Greater) {
        return Err(StepFailure::Rejected("the amount must be positive".into()));
    }
    let Value::Text(currency) = field(input, fields::CURRENCY)? else {
        return Err(StepFailure::Rejected("currency must be text".into()));
    };
    let account = field(input, account_field)?.clone();

    let columns = tables.columns(ACCOUNTS).map_err(retryable)?;
    let balance_at = column_index(&columns, "balance")?;
    let currency_at = column_index(&columns, "currency")?;
    let mut row = tables
        .read(ACCOUNTS, std::slice::from_ref(&account))
        .map_err(retryable)?
        .ok_or_else(|| StepFailure::Rejected("account not found".into()))?;
    if !matches!(&row[currency_at], Value::Text(c) if c == currency) {
        return Err(StepFailure::Rejected(
            "the account is held in another currency".into(),
        ));
    }
    let balance = self::amount(&row[balance_at])?;
    let (_, balance_scale) = balance.parts();
    let new_balance = match movement {
        Movement::Withdraw => balance.checked_sub(amount),
        Movement::Deposit => balance.checked_add(amount),
    }
    .and_then(|b| b.rescaled(balance_scale))
    .ok_or_else(|| {
        StepFailure::Rejected("the amount has more decimal places than the account".into())
    })?;
    if new_balance.is_negative() {
        return Err(StepFailure::Rejected("insufficient funds".into()));
    }
    row[balance_at] = decimal(new_balance);
    tables.write(ACCOUNTS, &row).map_err(retryable)?;
    Ok(amount)
}

domicile_sdk_wasm::saga_step!(TransferSaga);

#[cfg(test)]
mod tests {
    use super::*;
    use domicile_sdk_wasm::testing::MemoryTables;

    fn money(cents: i64) -> Value {
        Value::Decimal(Decimal {
            unscaled: cents.to_string(),
            scale: 2,
        })
    }

    fn bank() -> MemoryTables {
        let mut tables = MemoryTables::default().with_table(
            ACCOUNTS,
            &[
                ("id", DataClass::Public),
                ("region", DataClass::Public),
                ("iban", DataClass::Pii),
                ("balance", DataClass::Sensitive),
                ("currency", DataClass::Public),
            ],
            &["id"],
        );
        for (id, cents, currency) in [(1, 10_000, "EUR"), (2, 500, "EUR"), (3, 100, "USD")] {
            tables
                .write(
                    ACCOUNTS,
                    &[
                        Value::Bigint(id),
                        Value::Text("eu-central".into()),
                        Value::Text("DE89370400440532013000".into()),
                        money(cents),
                        Value::Text(currency.into()),
                    ],
                )
                .expect("seed");
        }
        tables
    }

    fn input(step: &str, from: i64, to: i64, amount: Value) -> StepInput {
        StepInput {
            saga_id: "s1".into(),
            step: step.into(),
            fields: vec![
                (fields::FROM_ACCOUNT.into(), Value::Bigint(from)),
                (fields::TO_ACCOUNT.into(), Value::Bigint(to)),
                (fields::AMOUNT.into(), amount),
                (fields::CURRENCY.into(), Value::Text("EUR".into())),
            ],
        }
    }

    fn balance(tables: &mut MemoryTables, id: i64) -> Value {
        tables
            .read(ACCOUNTS, &[Value::Bigint(id)])
            .expect("read")
            .expect("row")[3]
            .clone()
    }

    #[test]
    fn debit_then_compensate_restores_the_balance() {
        let mut tables = bank();
        let debit = input("debit", 1, 2, money(2_550));
        let result = execute_on(&mut tables, &debit).expect("debit");
        assert_eq!(result, vec![("debited".to_string(), money(2_550))]);
        assert_eq!(balance(&mut tables, 1), money(7_450));
        compensate_on(&mut tables, &debit).expect("undo");
        assert_eq!(balance(&mut tables, 1), money(10_000));
    }

    #[test]
    fn overdrafts_and_bad_inputs_are_rejected_without_writing() {
        let mut tables = bank();
        for (step, amount, to) in [
            (input("debit", 2, 1, money(501)), "insufficient funds", 2),
            (
                input("debit", 1, 2, money(0)),
                "the amount must be positive",
                1,
            ),
            (input("debit", 3, 2, money(1)), "another currency", 3),
            (input("debit", 9, 2, money(1)), "account not found", 1),
        ] {
            let before = balance(&mut tables, to);
            match execute_on(&mut tables, &step) {
                Err(StepFailure::Rejected(reason)) => assert!(reason.contains(amount), "{reason}"),
                other => panic!("expected a rejection, got {other:?}"),
            }
            assert_eq!(balance(&mut tables, to), before);
        }
        let too_precise = Value::Decimal(Decimal {
            unscaled: "1".into(),
            scale: 3,
        });
        assert!(matches!(
            execute_on(&mut tables, &input("credit", 1, 2, too_precise)),
            Err(StepFailure::Rejected(_))
        ));
    }

    #[test]
    fn undoing_a_spent_credit_is_refused() {
        let mut tables = bank();
        let credit = input("credit", 1, 2, money(100));
        execute_on(&mut tables, &credit).expect("credit");
        execute_on(&mut tables, &input("debit", 2, 1, money(600))).expect("spend it all");
        assert!(matches!(
            compensate_on(&mut tables, &credit),
            Err(StepFailure::Rejected(reason)) if reason.contains("insufficient")
        ));
        assert_eq!(balance(&mut tables, 2), money(0));
    }

    #[test]
    fn each_step_names_the_region_that_runs_it() {
        let types = TransferSaga::describe();
        let steps: Vec<(&str, &str)> = types[0]
            .steps
            .iter()
            .map(|s| (s.name.as_str(), s.region_field.as_str()))
            .collect();
        assert_eq!(steps, [("debit", "from_region"), ("credit", "to_region")]);
    }
}
