//! `domicile sql`: a Flight SQL client for people. Runs one statement (`-e`), a file of
//! statements (`-f`), or reads statements from stdin (interactive when it is a terminal),
//! printing tables, row counts and timings.

use std::io::{IsTerminal, Write};
use std::time::Instant;

use anyhow::{Context, bail};
use arrow::array::RecordBatch;
use arrow::util::pretty::pretty_format_batches;
use arrow_flight::error::FlightError;
use arrow_flight::sql::client::FlightSqlServiceClient;
use futures::TryStreamExt;
use tonic::transport::Channel;

use super::endpoint::Target;
use super::statements::split_statements;
use crate::limits::GRPC_MESSAGE_SIZE_MAX_BYTES;

/// How `domicile sql` prints a result (`--format`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ResultFormat {
    /// A table, then the row count (and time).
    #[default]
    Table,
    /// RFC 4180 CSV with a header row; row counts, `OK` and times go to stderr.
    Csv,
    /// One JSON array of objects per result; row counts, `OK` and times go to stderr.
    Json,
}

/// How a command reaches a node's Flight SQL listener and logs in.
#[derive(clap::Args)]
pub struct SqlLogin {
    #[command(flatten)]
    pub target: Target,
    #[arg(long)]
    pub user: String,
    /// File holding the password; else DOMICILE_PASSWORD; else asked on the terminal.
    #[arg(long)]
    pub password_file: Option<std::path::PathBuf>,
}

impl SqlLogin {
    /// Reads the password (see [`read_password`]) and logs in.
    pub async fn connect(&self) -> anyhow::Result<SqlShell> {
        let password = read_password(&self.user, self.password_file.as_deref())?;
        SqlShell::connect_to(&self.target, &self.user, &password).await
    }
}

pub struct SqlShell {
    /// Whether outcomes carry their time (`\timing` toggles it).
    pub timing: bool,
    pub format: ResultFormat,
    client: FlightSqlServiceClient<Channel>,
}

impl SqlShell {
    /// [`SqlShell::connect_to`] `endpoint`, trusting the system's roots for
    /// `grpc+tls://` and allowing plaintext only to loopback.
    pub async fn connect(endpoint: &str, user: &str, password: &str) -> anyhow::Result<Self> {
        Self::connect_to(&Target::new(endpoint), user, password).await
    }

    /// Connects (see [`Target::connect`]) and logs in (Flight SQL handshake).
    pub async fn connect_to(target: &Target, user: &str, password: &str) -> anyhow::Result<Self> {
        let channel = target.connect().await?;
        let inner = arrow_flight::flight_service_client::FlightServiceClient::new(channel)
            .max_decoding_message_size(GRPC_MESSAGE_SIZE_MAX_BYTES)
            .max_encoding_message_size(GRPC_MESSAGE_SIZE_MAX_BYTES);
        let mut client = FlightSqlServiceClient::new_from_inner(inner);
        client.handshake(user, password).await.map_err(|e| {
            // The client wraps the status in text; keep only the server's message.
            let text = e.to_string();
            let reason = text
                .split("message: \"")
                .nth(1)
                .and_then(|m| m.split('"').next())
                .unwrap_or(&text);
            anyhow::anyhow!("login failed: {reason}")
        })?;
        Ok(Self {
            client,
            timing: true,
            format: ResultFormat::Table,
        })
    }

    /// Runs one statement and prints its outcome. Errors are printed, not returned, so
    /// a script or session continues unless the caller decides otherwise.
    pub async fn run(&mut self, sql: &str, out: &mut impl Write) -> anyhow::Result<bool> {
        let started = Instant::now();
        match self.execute(sql).await {
            Ok(Outcome::Rows(batches)) => {
                let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
                let plural = if rows == 1 { "" } else { "s" };
                let status = match self.time(started) {
                    Some(ms) => format!("({rows} row{plural}, {ms:.1} ms)"),
                    None => format!("({rows} row{plural})"),
                };
                match self.format {
                    ResultFormat::Table => {
                        if !batches.is_empty() && batches[0].num_columns() > 0 {
                            writeln!(out, "{}", pretty_format_batches(&batches)?)?;
                        }
                        writeln!(out, "{status}")?;
                    }
                    ResultFormat::Csv => {
                        let mut writer = arrow_csv::WriterBuilder::new()
                            .with_header(true)
                            .build(&mut *out);
                        for batch in &batches {
                            writer.write(batch)?;
                        }
                        eprintln!("{status}");
                    }
                    ResultFormat::Json => {
                        let mut writer = arrow_json::ArrayWriter::new(&mut *out);
                        for batch in &batches {
                            writer.write(batch)?;
                        }
                        writer.finish()?;
                        writeln!(out)?;
                        eprintln!("{status}");
                    }
                }
                Ok(true)
            }
            Ok(Outcome::Done) => {
                let status = match self.time(started) {
                    Some(ms) => format!("OK ({ms:.1} ms)"),
                    None => "OK".to_string(),
                };
                match self.format {
                    ResultFormat::Table => writeln!(out, "{status}")?,
                    ResultFormat::Csv | ResultFormat::Json => eprintln!("{status}"),
                }
                Ok(true)
            }
            Err(error) => {
                match self.format {
                    ResultFormat::Table => writeln!(out, "ERROR: {error}")?,
                    ResultFormat::Csv | ResultFormat::Json => eprintln!("ERROR: {error}"),
                }
                Ok(false)
            }
        }
    }

    /// The rows `sql` answers (empty for a statement without a result).
    pub async fn query(&mut self, sql: &str) -> anyhow::Result<Vec<RecordBatch>> {
        match self.execute(sql).await? {
            Outcome::Rows(batches) => Ok(batches),
            Outcome::Done => Ok(Vec::new()),
        }
    }

    /// Milliseconds since `started`, when timing is on.
    fn time(&self, started: Instant) -> Option<f64> {
        self.timing.then(|| ms(started))
    }

    async fn execute(&mut self, sql: &str) -> anyhow::Result<Outcome> {
        let info = self
            .client
            .execute(sql.to_string(), None)
            .await
            .map_err(|e| anyhow::anyhow!(describe(&e)))?;
        let schema = info.clone().try_decode_schema().ok();
        let mut batches = Vec::new();
        for endpoint in info.endpoint {
            let Some(ticket) = endpoint.ticket else {
                continue;
            };
            let stream = self
                .client
                .do_get(ticket)
                .await
                .map_err(|e| anyhow::anyhow!(describe(&e)))?;
            let mut part: Vec<RecordBatch> = stream
                .try_collect()
                .await
                .map_err(|e| anyhow::anyhow!(describe(&e)))?;
            batches.append(&mut part);
        }
        if schema.as_ref().is_some_and(|s| s.fields().is_empty()) {
            return Ok(Outcome::Done);
        }
        Ok(Outcome::Rows(batches))
    }
}

enum Outcome {
    Rows(Vec<RecordBatch>),
    Done,
}

fn ms(started: Instant) -> f64 {
    started.elapsed().as_secs_f64() * 1000.0
}

/// A gRPC status reads better as its message and code than as its Debug form.
fn describe(error: &FlightError) -> String {
    match error {
        FlightError::Tonic(status) => format!("{} ({:?})", status.message(), status.code()),
        other => other.to_string(),
    }
}

/// Runs each statement of `script` in turn; a script the tokenizer cannot read (an
/// unterminated string) is reported, not sent. Returns whether every statement succeeded.
pub async fn run_script(
    shell: &mut SqlShell,
    script: &str,
    out: &mut impl Write,
) -> anyhow::Result<bool> {
    let statements = match split_statements(script) {
        Ok(statements) => statements,
        Err(error) => {
            writeln!(out, "ERROR: {error}")?;
            return Ok(false);
        }
    };
    let mut all_ok = true;
    for statement in statements {
        all_ok &= shell.run(&statement, out).await?;
    }
    Ok(all_ok)
}

/// The password of `user`: from `password_file`, else `DOMICILE_PASSWORD`, else asked
/// for on the terminal (not echoed) when there is one.
pub fn read_password(
    user: &str,
    password_file: Option<&std::path::Path>,
) -> anyhow::Result<String> {
    if let Some(path) = password_file {
        let text =
            crate::bounded_file::read_to_string(path, crate::limits::PASSWORD_SIZE_MAX_BYTES)
                .context("password file")?;
        return Ok(text.trim_end_matches(['\r', '\n']).to_string());
    }
    if let Ok(password) = std::env::var("DOMICILE_PASSWORD") {
        return Ok(password);
    }
    if std::io::stdin().is_terminal() {
        return rpassword::prompt_password(format!("Password for {user}: "))
            .context("reading the password from the terminal");
    }
    bail!("no password: pass --password-file FILE or set DOMICILE_PASSWORD")
}
