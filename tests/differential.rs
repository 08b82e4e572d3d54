//! A seeded random differential test, after SQLancer: one table with edge values and
//! NULLs in every column, generated predicates, queries and DML, each statement run on
//! an in-process Domicile node and on PostgreSQL 15, their answers compared (as
//! multisets, or in order where the query orders). Queries are also checked by ternary
//! logic partitioning: the rows where `p`, `NOT p` and `p IS NULL` hold partition the
//! table. After every DML statement both tables are compared whole.
//!
//! Seeded: `DIFF_SEEDS` (default "1 2 3"), `DIFF_ROUNDS` rounds per seed (default 60;
//! each round is one predicate and five queries, or one DML statement). A failure
//! prints its seed, the statement and both answers; rerun with `DIFF_SEEDS=<seed>`.

use std::fmt::Write as _;

use domicile_tests::postgres::Postgres;
use domicile_tests::sql_engines::{DbError, Domicile, Reference, domicile_node};
use domicile_tests::sql_gen::{
    B_VALUES, D_VALUES, F_VALUES, I_VALUES, Rng, S_VALUES, count_from_env, predicate, row,
    seeds_from_env,
};
use sqllogictest::{AsyncDB, DBOutput, DefaultColumnType};

const SCHEMA: &str =
    "CREATE TABLE t (id BIGINT PRIMARY KEY, i INT, b BIGINT, d DECIMAL(12,2), s TEXT, f BOOLEAN)";
const ALL: &str = "SELECT id, i, b, d, s, f FROM t";

/// A statement's answer, comparable across the engines. Error texts differ between
/// engines, so only the fact of an error is compared.
#[derive(Debug, PartialEq)]
enum Answer {
    Rows(Vec<Vec<String>>),
    Count(u64),
    Error,
}

async fn answer<D>(db: &mut D, sql: &str, ordered: bool) -> (Answer, Option<String>)
where
    D: AsyncDB<ColumnType = DefaultColumnType, Error = DbError>,
{
    match db.run(sql).await {
        Ok(DBOutput::Rows { mut rows, .. }) => {
            if !ordered {
                rows.sort();
            }
            (Answer::Rows(rows), None)
        }
        Ok(DBOutput::StatementComplete(n)) => (Answer::Count(n), None),
        // DBOutput is non-exhaustive; neither engine answers anything else.
        Ok(_) => (Answer::Error, Some("an answer of another kind".into())),
        Err(error) => (Answer::Error, Some(error.to_string())),
    }
}

struct Comparison<'a> {
    seed: u64,
    domicile: &'a mut Domicile,
    reference: &'a mut Reference,
    statements: usize,
    log: String,
}

impl Comparison<'_> {
    /// Runs `sql` on both engines; panics with a replayable report if they differ.
    async fn same(&mut self, sql: &str, ordered: bool) -> Answer {
        self.statements += 1;
        let _ = writeln!(self.log, "{sql};");
        let (ours, our_error) = answer(self.domicile, sql, ordered).await;
        let (theirs, their_error) = answer(self.reference, sql, ordered).await;
        if ours != theirs {
            let tail: Vec<&str> = self.log.lines().rev().take(12).collect();
            panic!(
                "differential seed {seed}, statement {n} differs\n  {sql}\n  domicile:   {ours:?} {our_error:?}\n  postgresql: {theirs:?} {their_error:?}\n\
                 last statements (newest first):\n    {log}\n\
                 replay: DIFF_SEEDS={seed} cargo nextest run -p domicile-tests --test e2e -E 'test(/^differential::/)' --no-capture",
                seed = self.seed,
                n = self.statements,
                log = tail.join("\n    "),
            );
        }
        ours
    }
}

fn rows(answer: &Answer) -> Vec<Vec<String>> {
    match answer {
        Answer::Rows(rows) => rows.clone(),
        _ => Vec::new(),
    }
}

async fn run_seed(postgres: &Postgres, seed: u64, rounds: usize) -> usize {
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let dir = tempfile::tempdir().expect("dir");
    let node = domicile_node(dir.path()).await;
    let mut domicile = Domicile::of(&node);
    let database = format!("differential_{seed}");
    let mut reference = Reference::fresh_database(postgres, &database)
        .await
        .expect("a fresh PostgreSQL database");
    let mut compare = Comparison {
        seed,
        domicile: &mut domicile,
        reference: &mut reference,
        statements: 0,
        log: String::new(),
    };
    compare.same(SCHEMA, false).await;
    let mut next_id = 1u64;
    for _ in 0..24 {
        let insert = format!("INSERT INTO t VALUES {}", row(&mut rng, next_id));
        next_id += 1;
        compare.same(&insert, false).await;
    }

    for _ in 0..rounds {
        let p = predicate(&mut rng, 2);
        if rng.chance(70) {
            // Queries, and the ternary logic partitioning of the table by `p`.
            let all = compare.same(ALL, false).await;
            let mut parts = Vec::new();
            for filter in [p.clone(), format!("NOT ({p})"), format!("({p}) IS NULL")] {
                let answer = compare.same(&format!("{ALL} WHERE {filter}"), false).await;
                parts.extend(rows(&answer));
            }
            if matches!(all, Answer::Rows(_)) && !parts.is_empty() {
                parts.sort();
                assert_eq!(
                    parts,
                    rows(&all),
                    "differential seed {seed}: p, NOT p and p IS NULL do not partition the table\n  p = {p}"
                );
            }
            let shaped = match rng.below(5) {
                0 => format!(
                    "SELECT count(*), count(i), sum(b), min(s), max(d), sum(i) FROM t WHERE {p}"
                ),
                1 => format!("SELECT f, count(*), max(i), min(d) FROM t WHERE {p} GROUP BY f"),
                2 => format!("SELECT DISTINCT s FROM t WHERE {p}"),
                // Integer overflow is an error in both (not `i + 1`: the literal is a
                // BIGINT here, an INT there; see tests/slt/numbers.slt).
                4 => format!("SELECT id, -i, b + 1, b * b, i * i FROM t WHERE {p}"),
                _ => format!("SELECT id FROM t WHERE {p} ORDER BY i, id LIMIT 5"),
            };
            let ordered = shaped.contains("ORDER BY");
            compare.same(&shaped, ordered).await;
        } else {
            let statement = match rng.below(6) {
                0 => format!(
                    "UPDATE t SET {} WHERE {p}",
                    match rng.below(5) {
                        0 => format!("i = {}", rng.pick(I_VALUES)),
                        1 => format!("b = {}", rng.pick(B_VALUES)),
                        2 => format!("d = {}", rng.pick(D_VALUES)),
                        3 => format!("s = {}", rng.pick(S_VALUES)),
                        _ => format!("f = {}", rng.pick(F_VALUES)),
                    }
                ),
                1 => format!("UPDATE t SET i = i + 1 WHERE {p}"),
                2 => format!(
                    "UPDATE t SET {} WHERE {p}",
                    rng.pick(&[
                        "d = d * 1.5, b = b - 1",
                        "d = d / 3",
                        "s = upper(s) || 'x'",
                        "b = b * 2",
                        "d = COALESCE(d, 0) - 0.005",
                        "i = -i",
                        "b = -b",
                        "b = b * b",
                    ])
                ),
                3 => format!(
                    "UPDATE t SET i = {} WHERE {p}",
                    rng.pick(&["2.5", "-2.5", "7.9", "d"])
                ),
                4 => {
                    let count = 1 + rng.below(3);
                    let mut rows = Vec::new();
                    for _ in 0..count {
                        // Now and then a key that exists: the whole statement fails.
                        let id = if rng.chance(15) {
                            1 + rng.below(next_id as usize - 1) as u64
                        } else {
                            next_id += 1;
                            next_id - 1
                        };
                        rows.push(row(&mut rng, id));
                    }
                    format!("INSERT INTO t VALUES {}", rows.join(", "))
                }
                _ => format!("DELETE FROM t WHERE {p}"),
            };
            compare.same(&statement, false).await;
            compare.same(ALL, false).await;
        }
    }
    let statements = compare.statements;
    node.stop().await.expect("node stops");
    statements
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_statements_answer_as_on_postgresql() {
    let seeds = seeds_from_env("DIFF_SEEDS", "1 2 3");
    let rounds = count_from_env("DIFF_ROUNDS", 60);
    let postgres = Postgres::start().expect("PostgreSQL starts");
    let mut total = 0;
    for seed in &seeds {
        let statements = run_seed(&postgres, *seed, rounds).await;
        println!(
            "differential seed {seed}: {statements} statements, same answers on Domicile and PostgreSQL"
        );
        total += statements;
    }
    println!(
        "differential: {} seeds, {total} statements compared",
        seeds.len()
    );
}
