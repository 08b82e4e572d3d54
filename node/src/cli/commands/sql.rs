//! `domicile sql`: SQL against a node over Flight SQL.

use std::path::PathBuf;

use crate::bounded_file;
use crate::cli::interactive::interactive;
use crate::cli::sql_shell::{ResultFormat, SqlLogin, run_script};

#[derive(clap::Args)]
pub struct SqlArgs {
    #[command(flatten)]
    login: SqlLogin,
    /// Run this statement and exit.
    #[arg(short = 'e', long = "execute", conflicts_with = "file")]
    execute: Option<String>,
    /// Run the statements in this file and exit.
    #[arg(short = 'f', long = "file")]
    file: Option<PathBuf>,
    /// How results are printed: `table` (default), `csv` or `json` (for csv and json,
    /// row counts and `OK` go to stderr, so stdout holds only data).
    #[arg(long, value_enum, default_value_t)]
    format: ResultFormat,
}

/// Runs the statement, the file or an interactive session; whether every statement
/// succeeded.
pub async fn run(args: SqlArgs) -> anyhow::Result<bool> {
    let SqlArgs {
        login,
        execute,
        file,
        format,
    } = args;
    let mut shell = login.connect().await?;
    shell.format = format;
    let mut stdout = std::io::stdout();
    match (execute, file) {
        (Some(sql), _) => shell.run(&sql, &mut stdout).await,
        (None, Some(path)) => {
            let script =
                bounded_file::read_to_string(&path, crate::limits::SQL_SCRIPT_FILE_SIZE_MAX_BYTES)?;
            run_script(&mut shell, &script, &mut stdout).await
        }
        (None, None) => interactive(&mut shell).await,
    }
}
