//! The sqllogictest files under `tests/slt/`, each run twice in one test: in-process
//! against a Domicile node's `SqlEngine` (no network), and against PostgreSQL 15 (a
//! throwaway server on this machine, a fresh database per file). Every record's
//! expected answer, written as PostgreSQL gives it, must hold on both. Where Domicile
//! knowingly answers otherwise, the file says so with a `# difference:` comment and a
//! pair of records labelled `onlyif domicile` / `onlyif postgresql`; those comments are
//! the list of documented differences (`grep -h '# difference' tests/slt/*.slt`).
//!
//! `SLT_FILTER=numbers` runs only the files whose name contains it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use domicile::auth::{Principal, Role};
use domicile::server::Node;
use domicile::sql::SqlEngine;
use domicile_tests::arrow::array::{Array, RecordBatch};
use domicile_tests::arrow::datatypes::DataType;
use domicile_tests::arrow::util::display::{ArrayFormatter, FormatOptions};
use domicile_tests::postgres::Postgres;
use futures::TryStreamExt;
use sqllogictest::{AsyncDB, DBOutput, DefaultColumnType, Record, Runner};

#[derive(Debug)]
struct DbError(String);

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DbError {}

/// An empty string, as sqllogictest writes it.
fn cell(text: String) -> String {
    if text.is_empty() {
        "(empty)".to_string()
    } else {
        text
    }
}

/// One Domicile node, in this process, its SQL engine called directly.
#[derive(Clone)]
struct Domicile {
    engine: Arc<SqlEngine>,
    principal: Principal,
}

impl Domicile {
    fn rows(batches: &[RecordBatch]) -> Result<Vec<Vec<String>>, DbError> {
        let options = FormatOptions::default()
            .with_null("NULL")
            .with_timestamp_format(Some("%Y-%m-%d %H:%M:%S%.f"));
        let mut rows = Vec::new();
        for batch in batches {
            let formatters = batch
                .columns()
                .iter()
                .map(|column| ArrayFormatter::try_new(column.as_ref(), &options))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| DbError(e.to_string()))?;
            for row in 0..batch.num_rows() {
                let mut out = Vec::with_capacity(formatters.len());
                for (formatter, column) in formatters.iter().zip(batch.columns()) {
                    let text = formatter.value(row).to_string();
                    let text = match column.data_type() {
                        // PostgreSQL prints a float8 20 as "20", Arrow as "20.0".
                        DataType::Float32 | DataType::Float64 if !column.is_null(row) => {
                            text.strip_suffix(".0").map(str::to_string).unwrap_or(text)
                        }
                        // And fractions of a second without trailing zeros.
                        DataType::Timestamp(..) if text.contains('.') => {
                            text.trim_end_matches('0').trim_end_matches('.').to_string()
                        }
                        _ => text,
                    };
                    out.push(cell(text));
                }
                rows.push(out);
            }
        }
        Ok(rows)
    }
}

#[async_trait::async_trait]
impl AsyncDB for Domicile {
    type Error = DbError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, DbError> {
        let (prepared, stream) = self
            .engine
            .run(&self.principal, sql)
            .await
            .map_err(|e| DbError(e.to_string()))?;
        let batches: Vec<RecordBatch> = stream
            .try_collect()
            .await
            .map_err(|e| DbError(e.to_string()))?;
        if !prepared.returns_rows() {
            let count = Self::rows(&batches)?
                .first()
                .and_then(|row| row.first())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            return Ok(DBOutput::StatementComplete(count));
        }
        let width = prepared.output_schema().fields().len();
        Ok(DBOutput::Rows {
            types: vec![DefaultColumnType::Any; width],
            rows: Self::rows(&batches)?,
        })
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "domicile"
    }
}

/// One database of the reference PostgreSQL.
struct Reference {
    client: tokio_postgres::Client,
}

#[async_trait::async_trait]
impl AsyncDB for Reference {
    type Error = DbError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, DbError> {
        let error = |e: tokio_postgres::Error| {
            DbError(
                e.as_db_error()
                    .map_or_else(|| e.to_string(), |db| db.message().to_string()),
            )
        };
        // Prepared first for the column types (text answers do not carry them).
        let statement = self.client.prepare(sql).await.map_err(error)?;
        let types: Vec<tokio_postgres::types::Type> = statement
            .columns()
            .iter()
            .map(|c| c.type_().clone())
            .collect();
        if types.is_empty() {
            let count = self.client.execute(&statement, &[]).await.map_err(error)?;
            return Ok(DBOutput::StatementComplete(count));
        }
        let mut rows = Vec::new();
        for message in self.client.simple_query(sql).await.map_err(error)? {
            let tokio_postgres::SimpleQueryMessage::Row(row) = message else {
                continue;
            };
            let mut out = Vec::with_capacity(types.len());
            for (index, column_type) in types.iter().enumerate() {
                let text = match (row.get(index), column_type) {
                    (None, _) => "NULL".to_string(),
                    (Some("t"), &tokio_postgres::types::Type::BOOL) => "true".to_string(),
                    (Some("f"), &tokio_postgres::types::Type::BOOL) => "false".to_string(),
                    (Some(text), _) => text.to_string(),
                };
                out.push(cell(text));
            }
            rows.push(out);
        }
        Ok(DBOutput::Rows {
            types: vec![DefaultColumnType::Any; types.len()],
            rows,
        })
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "postgresql"
    }
}

fn slt_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("slt");
    let filter = std::env::var("SLT_FILTER").unwrap_or_default();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/slt")
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|e| e == "slt"))
        .filter(|path| path.to_string_lossy().contains(&filter))
        .collect();
    files.sort();
    files
}

/// A fresh in-process node (residency guard off: these files test SQL, not policies).
async fn domicile_node(dir: &Path) -> Node {
    let config = dir.join("node.toml");
    // Nobody connects (the engine is called directly), but a node needs a user.
    let hash = domicile::auth::hash_password("slt-unused").expect("hash");
    std::fs::write(
        &config,
        format!(
            "region = \"eu-central\"\njurisdiction = \"EU\"\ndata_dir = \"data\"\n\n\
             [listen]\nflight_sql = \"127.0.0.1:0\"\n\n[residency]\nguard = \"off\"\n\n\
             [[users]]\nname = \"slt\"\npassword_hash = \"{hash}\"\nroles = [\"admin\"]\nhome_region = \"eu-central\"\n"
        ),
    )
    .expect("config");
    let config = domicile::config::NodeConfig::load(&config).expect("config loads");
    Node::start(&config).await.expect("node starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slt_files_give_postgresqls_answers_on_domicile() {
    let files = slt_files();
    assert!(!files.is_empty(), "no .slt files selected");
    let postgres = Postgres::start().expect("PostgreSQL starts");
    let (admin, connection) =
        tokio_postgres::connect(&postgres.url("postgres"), tokio_postgres::NoTls)
            .await
            .expect("connect to PostgreSQL");
    tokio::spawn(connection);

    let mut failures = Vec::new();
    let mut records = 0usize;
    for (index, file) in files.iter().enumerate() {
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        records += sqllogictest::parse_file::<DefaultColumnType>(file)
            .expect("parses")
            .iter()
            .filter(|r| matches!(r, Record::Statement { .. } | Record::Query { .. }))
            .count();

        let dir = tempfile::tempdir().expect("dir");
        let node = domicile_node(dir.path()).await;
        let domicile = Domicile {
            engine: Arc::clone(&node.engine),
            principal: Principal {
                user: "slt".into(),
                role: Role::Admin,
                home_region: "eu-central".into(),
                compliance: Vec::new(),
            },
        };
        let mut runner = Runner::new(move || {
            let db = domicile.clone();
            async move { Ok(db) }
        });
        runner.add_label("domicile");
        if let Err(error) = runner.run_file_async(file).await {
            failures.push(format!("{name} on Domicile: {error}"));
        }
        node.stop().await.expect("node stops");

        let database = format!("slt_{index}");
        admin
            .batch_execute(&format!("CREATE DATABASE {database}"))
            .await
            .expect("create database");
        let url = postgres.url(&database);
        let mut runner = Runner::new(move || {
            let url = url.clone();
            async move {
                let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                    .await
                    .map_err(|e| DbError(e.to_string()))?;
                tokio::spawn(connection);
                Ok(Reference { client })
            }
        });
        runner.add_label("postgresql");
        if let Err(error) = runner.run_file_async(file).await {
            failures.push(format!("{name} on PostgreSQL: {error}"));
        }
    }
    println!(
        "{} slt files, {records} records, each on Domicile and PostgreSQL",
        files.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
