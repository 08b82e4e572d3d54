//! `domicile mesh status`: the regions a node knows, as it sees them (its
//! `system.regions`: peers, reachability, round trip, replica lag), as a table or JSON.

use arrow::util::display::{ArrayFormatter, FormatOptions};

use crate::cli::output::{OutputFormat, render};
use crate::cli::sql_shell::SqlLogin;

#[derive(clap::Subcommand)]
pub enum MeshCommand {
    /// Every region the node knows: address, reachable, round trip, replica lag.
    Status {
        #[command(flatten)]
        login: SqlLogin,
        /// `table` (default) or `json`.
        #[arg(short = 'o', long = "output", value_enum, default_value_t)]
        output: OutputFormat,
    },
}

const COLUMNS: [&str; 7] = [
    "region",
    "address",
    "is_self",
    "reachable",
    "rtt_ms",
    "replica_lag_ms",
    "last_error",
];

pub async fn run(command: MeshCommand) -> anyhow::Result<()> {
    let MeshCommand::Status { login, output } = command;
    let mut shell = login.connect().await?;
    let batches = shell
        .query(&format!(
            "SELECT {} FROM system.regions ORDER BY region",
            COLUMNS.join(", ")
        ))
        .await?;
    let options = FormatOptions::default();
    let mut rows = Vec::new();
    for batch in &batches {
        let formatters = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<Result<Vec<_>, _>>()?;
        for row in 0..batch.num_rows() {
            rows.push(
                formatters
                    .iter()
                    .map(|f| f.value(row).to_string())
                    .collect(),
            );
        }
    }
    println!("{}", render(output, &COLUMNS, &rows, "no regions"));
    Ok(())
}
