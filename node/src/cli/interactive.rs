//! `domicile sql` reading statements from stdin. On a terminal: line editing and
//! history (rustyline; history kept in `~/.domicile_history`, or `DOMICILE_HISTORY`),
//! and psql-style commands (`\d`, `\d TABLE`, `\timing`, `\q`, `\?`). Piped: statements
//! are read and run as they end.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use rustyline::DefaultEditor;
use rustyline::error::ReadlineError;

use super::sql_shell::{SqlShell, run_script};
use super::statements::ends_statement;

const PROMPT: &str = "domicile> ";
const CONTINUED: &str = "      ... ";

const HELP: &str = "\
\\d            tables: locality, region column, home region, primary key, CDC
\\d TABLE      columns of TABLE: type, nullability, data class, primary key
\\timing       show or hide how long each statement took
\\q            quit (also Ctrl-D)
Statements end with ';'. Ctrl-C discards the statement being typed.";

/// Runs the statements read from stdin; whether every statement succeeded.
pub async fn interactive(shell: &mut SqlShell) -> anyhow::Result<bool> {
    if std::io::stdin().is_terminal() {
        terminal(shell).await
    } else {
        piped(shell).await
    }
}

async fn piped(shell: &mut SqlShell) -> anyhow::Result<bool> {
    let mut buffer = String::new();
    let mut all_ok = true;
    let mut stdout = std::io::stdout();
    for line in std::io::stdin().lock().lines() {
        buffer.push_str(&line?);
        buffer.push('\n');
        if ends_statement(&buffer) {
            all_ok &= run_script(shell, &buffer, &mut stdout).await?;
            buffer.clear();
        }
    }
    all_ok &= run_script(shell, &buffer, &mut stdout).await?;
    Ok(all_ok)
}

/// Where history is kept: `DOMICILE_HISTORY`, else `~/.domicile_history`; none
/// without a home directory.
fn history_file() -> Option<PathBuf> {
    std::env::var_os("DOMICILE_HISTORY")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".domicile_history"))
        })
}

/// A line from the editor, read off the async threads (reading blocks).
async fn read_line(
    editor: DefaultEditor,
    prompt: &'static str,
) -> anyhow::Result<(DefaultEditor, Result<String, ReadlineError>)> {
    Ok(tokio::task::spawn_blocking(move || {
        let mut editor = editor;
        let line = editor.readline(prompt);
        (editor, line)
    })
    .await?)
}

async fn terminal(shell: &mut SqlShell) -> anyhow::Result<bool> {
    let mut editor = DefaultEditor::new()?;
    let history = history_file();
    if let Some(path) = &history {
        // A first session has no history yet.
        let _ = editor.load_history(path);
    }
    println!("domicile sql: statements end with ';', \\? for help, \\q to quit");
    let mut buffer = String::new();
    let mut all_ok = true;
    let mut stdout = std::io::stdout();
    loop {
        let prompt = if buffer.is_empty() { PROMPT } else { CONTINUED };
        let (returned, line) = read_line(editor, prompt).await?;
        editor = returned;
        let line = match line {
            Ok(line) => line,
            Err(ReadlineError::Interrupted) => {
                buffer.clear();
                continue;
            }
            Err(ReadlineError::Eof) => break,
            Err(error) => return Err(error.into()),
        };
        if buffer.is_empty() && line.trim_start().starts_with('\\') {
            let _ = editor.add_history_entry(line.trim());
            match meta_command(shell, line.trim(), &mut stdout).await? {
                Meta::Quit => break,
                Meta::Done(ok) => all_ok &= ok,
            }
            continue;
        }
        buffer.push_str(&line);
        buffer.push('\n');
        if ends_statement(&buffer) {
            let _ = editor.add_history_entry(buffer.trim());
            all_ok &= run_script(shell, &buffer, &mut stdout).await?;
            buffer.clear();
        }
    }
    if let Some(path) = &history
        && let Err(error) = editor.save_history(path)
    {
        eprintln!("history not saved to {}: {error}", path.display());
    }
    Ok(all_ok)
}

enum Meta {
    Quit,
    /// Ran; whether it succeeded.
    Done(bool),
}

/// `name` as a SQL string literal.
fn literal(name: &str) -> String {
    format!("'{}'", name.replace('\'', "''"))
}

async fn meta_command(
    shell: &mut SqlShell,
    command: &str,
    out: &mut impl Write,
) -> anyhow::Result<Meta> {
    let mut words = command.split_whitespace();
    let ok = match (words.next().unwrap_or_default(), words.next()) {
        ("\\q", None) => return Ok(Meta::Quit),
        ("\\?", None) => {
            writeln!(out, "{HELP}")?;
            true
        }
        ("\\timing", None) => {
            shell.timing = !shell.timing;
            writeln!(
                out,
                "Timing is {}.",
                if shell.timing { "on" } else { "off" }
            )?;
            true
        }
        ("\\d", None) => {
            shell
                .run(
                    "SELECT table_name, locality, region_column, home_region, primary_key, cdc \
                     FROM system.tables ORDER BY table_name",
                    out,
                )
                .await?
        }
        ("\\d", Some(table)) => {
            let table = literal(table.trim_end_matches(';'));
            shell
                .run(
                    &format!(
                        "SELECT table_name, locality, region_column, home_region, primary_key \
                         FROM system.tables WHERE table_name = {table}"
                    ),
                    out,
                )
                .await?
                && shell
                    .run(
                        &format!(
                            "SELECT column_name, data_type, nullable, class, primary_key \
                             FROM system.columns WHERE table_name = {table} ORDER BY ordinal"
                        ),
                        out,
                    )
                    .await?
        }
        _ => {
            writeln!(out, "unknown command {command}; \\? lists the commands")?;
            false
        }
    };
    Ok(Meta::Done(ok))
}
