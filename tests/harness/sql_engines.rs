//! The two SQL engines the conformance and differential tests compare, behind
//! sqllogictest's `AsyncDB`: a Domicile node in this process (its `SqlEngine` called
//! directly, no network) and a database of the reference PostgreSQL. Both answer rows
//! as sqllogictest text: `NULL`, `(empty)` for an empty string, booleans as
//! `true`/`false`, floats without a trailing `.0`, timestamps as `YYYY-MM-DD HH:MM:SS[.f]`.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, RecordBatch};
use arrow::datatypes::DataType;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use domicile::auth::{Principal, Role};
use domicile::server::Node;
use domicile::sql::SqlEngine;
use futures::TryStreamExt;
use sqllogictest::{AsyncDB, DBOutput, DefaultColumnType};

#[derive(Debug)]
pub struct DbError(pub String);

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
pub struct Domicile {
    engine: Arc<SqlEngine>,
    principal: Principal,
}

impl Domicile {
    /// The engine of `node`, called as an admin homed in its region.
    pub fn of(node: &Node) -> Self {
        Self {
            engine: Arc::clone(&node.engine),
            principal: Principal {
                user: "sql-tests".into(),
                role: Role::Admin,
                home_region: node.engine.identity().region.to_string(),
                compliance: Vec::new(),
            },
        }
    }

    /// `batches` as sqllogictest rows (see the module docs for the text of each type).
    pub fn rows(batches: &[RecordBatch]) -> Result<Vec<Vec<String>>, DbError> {
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
pub struct Reference {
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

impl Reference {
    /// A new, empty database `name` of `postgres` (dropped first if a run left it), and a
    /// connection to it.
    pub async fn fresh_database(
        postgres: &crate::postgres::Postgres,
        name: &str,
    ) -> Result<Self, DbError> {
        let mut admin = Self::connect(&postgres.url("postgres")).await?;
        admin
            .run(&format!("DROP DATABASE IF EXISTS {name}"))
            .await?;
        admin.run(&format!("CREATE DATABASE {name}")).await?;
        Self::connect(&postgres.url(name)).await
    }

    /// A connection to the database `url` names.
    pub async fn connect(url: &str) -> Result<Self, DbError> {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .map_err(|e| DbError(e.to_string()))?;
        tokio::spawn(connection);
        Ok(Self { client })
    }
}

/// A fresh in-process node (residency guard off: these files test SQL, not policies).
pub async fn domicile_node(dir: &Path) -> Node {
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
