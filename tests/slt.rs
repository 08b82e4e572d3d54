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

use domicile_tests::postgres::Postgres;
use domicile_tests::sql_engines::{Domicile, Reference, domicile_node};
use sqllogictest::{DefaultColumnType, Record, Runner};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slt_files_give_postgresqls_answers_on_domicile() {
    let files = slt_files();
    assert!(!files.is_empty(), "no .slt files selected");
    let postgres = Postgres::start().expect("PostgreSQL starts");

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
        let domicile = Domicile::of(&node);
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
        Reference::fresh_database(&postgres, &database)
            .await
            .expect("a fresh PostgreSQL database");
        let url = postgres.url(&database);
        let mut runner = Runner::new(move || {
            let url = url.clone();
            async move { Reference::connect(&url).await }
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
