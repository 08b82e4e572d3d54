//! `domicile mesh status`: the regions a node knows, as it sees them (its
//! `system.regions`: peers, reachability, round trip, replica lag), as a table or JSON.

use std::path::PathBuf;

use arrow::util::display::{ArrayFormatter, FormatOptions};

use crate::cli::endpoint::Target;
use crate::cli::output::{OutputFormat, render};
use crate::cli::sql_shell::{SqlShell, read_password};

#[derive(clap::Subcommand)]
pub enum MeshCommand {
    /// Every region the node knows: address, reachable, round trip, replica lag.
    Status {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        user: String,
        /// File holding the password; else DOMICILE_PASSWORD; else asked on the terminal.
        #[arg(long)]
        password_file: Option<PathBuf>,
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
    let MeshCommand::Status {
        target,
        user,
        password_file,
        output,
    } = command;
    let password = read_password(&user, password_file.as_deref())?;
    let mut shell = SqlShell::connect_to(&target, &user, &password).await?;
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
