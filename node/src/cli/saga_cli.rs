//! `domicile saga start | list | show | retry | compensate`: sagas through a node's
//! admin API (the node that starts a saga orchestrates it).

use clap::Subcommand;

use super::admin_client::AdminSession;
use super::output::{OutputFormat, render};
use crate::saga::fields::{Field, Fields};
use crate::saga::{SagaRecord, StepState};

#[derive(Subcommand)]
pub enum SagaCommand {
    /// Start a transfer: debit FROM on its region's node, credit TO on its region's
    /// node; the same idempotency key returns the saga it started first.
    Start {
        /// The saga type; the bundled `transfer-saga` plugin declares `transfer`.
        saga_type: String,
        #[arg(long)]
        from: i64,
        #[arg(long)]
        to: i64,
        /// Exact decimal, e.g. 10.00.
        #[arg(long)]
        amount: String,
        #[arg(long)]
        currency: String,
        /// The region whose node holds the debited account.
        #[arg(long)]
        from_region: String,
        /// The region whose node holds the credited account.
        #[arg(long)]
        to_region: String,
        #[arg(long)]
        idempotency_key: String,
        /// Wait up to this many milliseconds (at most 30 000) for the saga to end and
        /// print how it ended; 0 prints it as recorded.
        #[arg(long, default_value_t = 0)]
        wait_ms: u64,
    },
    /// This node's sagas, e.g. `--state stuck`.
    List {
        #[arg(long)]
        state: Option<String>,
        /// `table` (default) or `json`.
        #[arg(short = 'o', long = "output", value_enum, default_value_t)]
        output: OutputFormat,
    },
    /// One saga, step by step.
    Show { id: String },
    /// Support: drive a stuck saga again.
    Retry { id: String },
    /// Support: undo a stuck saga.
    Compensate { id: String },
}

/// `12.50` → unscaled `1250`, scale 2.
fn decimal_field(text: &str) -> anyhow::Result<Field> {
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    let digits = format!("{int}{frac}");
    anyhow::ensure!(
        !int.is_empty()
            && digits
                .trim_start_matches('-')
                .bytes()
                .all(|b| b.is_ascii_digit())
            && frac.bytes().all(|b| b.is_ascii_digit()),
        "amount {text} is not a decimal like 10.00"
    );
    let unscaled: i128 = digits.parse()?;
    let scale = i8::try_from(frac.len())?;
    Ok(Field::Decimal(unscaled.to_string(), scale))
}

/// One line per saga.
pub fn summary(saga: &SagaRecord) -> String {
    let step = saga
        .current_step()
        .map(|s| format!(" step {}@{}", s.name, s.region))
        .unwrap_or_default();
    let error = saga
        .last_error
        .as_deref()
        .map(|e| format!(" error: {e}"))
        .unwrap_or_default();
    format!(
        "{} {} {}{step} attempts {} key {}{error}",
        saga.id,
        saga.saga_type,
        saga.state.as_str(),
        saga.attempts(),
        saga.idempotency_key
    )
}

/// The columns of `saga list`.
const SAGA_COLUMNS: [&str; 8] = [
    "id",
    "type",
    "state",
    "step",
    "region",
    "attempts",
    "idempotency_key",
    "last_error",
];

fn saga_rows(sagas: &[SagaRecord]) -> Vec<Vec<String>> {
    sagas
        .iter()
        .map(|saga| {
            let step = saga.current_step();
            vec![
                saga.id.clone(),
                saga.saga_type.clone(),
                saga.state.as_str().to_string(),
                step.map(|s| s.name.clone()).unwrap_or_default(),
                step.map(|s| s.region.clone()).unwrap_or_default(),
                saga.attempts().to_string(),
                saga.idempotency_key.clone(),
                saga.last_error.clone().unwrap_or_default(),
            ]
        })
        .collect()
}

fn details(saga: &SagaRecord) -> String {
    let mut out = summary(saga);
    out.push_str(&format!("\n  epoch {}", saga.epoch));
    for step in &saga.steps {
        let state = match step.state {
            StepState::Pending => "pending",
            StepState::Done => "done",
            StepState::Uncertain => "uncertain",
            StepState::Compensated => "compensated",
        };
        out.push_str(&format!(
            "\n  {} on {}: {state}, {} attempts{}",
            step.name,
            step.region,
            step.attempts,
            step.last_error
                .as_deref()
                .map(|e| format!(", last error: {e}"))
                .unwrap_or_default()
        ));
    }
    out
}

pub async fn run(session: &mut AdminSession, command: SagaCommand) -> anyhow::Result<()> {
    match command {
        SagaCommand::Start {
            saga_type,
            from,
            to,
            amount,
            currency,
            from_region,
            to_region,
            idempotency_key,
            wait_ms,
        } => {
            let fields: Fields = vec![
                ("from_account".into(), Field::Bigint(from)),
                ("to_account".into(), Field::Bigint(to)),
                ("amount".into(), decimal_field(&amount)?),
                ("currency".into(), Field::Text(currency)),
                ("from_region".into(), Field::Text(from_region)),
                ("to_region".into(), Field::Text(to_region)),
            ];
            let saga = session
                .start_saga_settled(
                    &saga_type,
                    &fields,
                    &idempotency_key,
                    std::time::Duration::from_millis(wait_ms),
                )
                .await?;
            println!("{}", summary(&saga));
        }
        SagaCommand::List { state, output } => {
            let sagas = session.sagas(state.as_deref()).await?;
            let empty = match &state {
                Some(state) => format!("no {state} sagas"),
                None => "no sagas".to_string(),
            };
            println!(
                "{}",
                render(output, &SAGA_COLUMNS, &saga_rows(&sagas), &empty)
            );
        }
        SagaCommand::Show { id } => println!("{}", details(&session.saga(&id).await?)),
        SagaCommand::Retry { id } => {
            println!("{}", summary(&session.support_saga(&id, "retry").await?));
        }
        SagaCommand::Compensate { id } => {
            println!(
                "{}",
                summary(&session.support_saga(&id, "compensate").await?)
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_exact_decimals() {
        assert_eq!(
            decimal_field("10.00").expect("ok"),
            Field::Decimal("1000".into(), 2)
        );
        assert_eq!(
            decimal_field("7").expect("ok"),
            Field::Decimal("7".into(), 0)
        );
        assert!(decimal_field("1e3").is_err());
        assert!(decimal_field(".5").is_err());
        assert!(decimal_field("ten").is_err());
    }
}
