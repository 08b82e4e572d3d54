//! `mesh.<table>` against the union of the regions, seeded: a three-region mesh holds
//! generated rows (edge values, NULLs) in a REGIONAL BY ROW table of public columns;
//! PostgreSQL holds the union of all regions' rows. Generated queries over `mesh.t`
//! (filters, aggregates pushed down to the regions, grouping by `mesh_region` and by
//! columns, DISTINCT, ORDER BY with LIMIT), asked on a node drawn at random, must give
//! PostgreSQL's answer over the union. A failing seed prints itself.
//!
//! `MESH_DIFF_SEEDS` (default "1"), `MESH_DIFF_ROUNDS` (default 25 predicates, six
//! queries each).

use domicile_tests::postgres::Postgres;
use domicile_tests::sql_engines::{Domicile, Reference};
use domicile_tests::sql_gen::{Rng, count_from_env, predicate, row, seeds_from_env};
use domicile_tests::{Client, Mesh};
use sqllogictest::{AsyncDB, DBOutput};

const REGIONS: [&str; 3] = ["us-east", "eu-central", "ap-southeast"];
const COLUMNS: &str = "id BIGINT PRIMARY KEY, i INT, b BIGINT, d DECIMAL(12,2), s TEXT, f BOOLEAN, region TEXT NOT NULL";

/// Rows of `generated` ("(id, i, b, d, s, f)") with `region` appended.
fn in_region(generated: &str, region: &str) -> String {
    format!("{}, '{region}')", generated.trim_end_matches(')'))
}

async fn ours(client: &mut Client, sql: &str) -> Result<Vec<Vec<String>>, String> {
    let batches = client
        .query(sql)
        .await
        .map_err(|s| s.message().to_string())?;
    Domicile::rows(&batches).map_err(|e| e.to_string())
}

async fn theirs(reference: &mut Reference, sql: &str) -> Result<Vec<Vec<String>>, String> {
    match reference.run(sql).await {
        Ok(DBOutput::Rows { rows, .. }) => Ok(rows),
        Ok(_) => Ok(Vec::new()),
        Err(error) => Err(error.to_string()),
    }
}

async fn run_seed(postgres: &Postgres, seed: u64, rounds: usize) -> usize {
    let mut rng = Rng(seed.wrapping_mul(0x2545_f491_4f6c_dd1d) | 1);
    let mesh = Mesh::start(&REGIONS).expect("mesh");
    let database = format!("mesh_differential_{seed}");
    let mut reference = Reference::fresh_database(postgres, &database)
        .await
        .expect("a fresh PostgreSQL database");
    reference
        .run(&format!("CREATE TABLE t ({COLUMNS})"))
        .await
        .expect("reference table");
    let mut id = 1;
    for node in &mesh.nodes {
        let mut client = node.client("admin").await.expect("login");
        client
            .update(&format!(
                "CREATE TABLE t ({COLUMNS}) WITH (locality = 'regional by row', region_column = 'region')"
            ))
            .await
            .expect("create t");
        let rows: Vec<String> = (0..12)
            .map(|_| {
                id += 1;
                in_region(&row(&mut rng, id), &node.region)
            })
            .collect();
        let insert = format!(
            "INSERT INTO t (id, i, b, d, s, f, region) VALUES {}",
            rows.join(", ")
        );
        client.update(&insert).await.expect("rows");
        reference.run(&insert).await.expect("reference rows");
    }

    let mut compared = 0;
    for _ in 0..rounds {
        let p = predicate(&mut rng, 2);
        let node = &mesh.nodes[rng.below(REGIONS.len())];
        let mut client = node.client("reader").await.expect("login");
        let cases = [
            (
                format!("SELECT id, i, b, d, s, f FROM mesh.t WHERE {p}"),
                None,
                false,
            ),
            (
                format!("SELECT count(*), count(i), sum(b), min(s), max(d) FROM mesh.t WHERE {p}"),
                None,
                false,
            ),
            (
                format!(
                    "SELECT mesh_region, count(*), max(i), sum(d) FROM mesh.t WHERE {p} GROUP BY mesh_region"
                ),
                Some(format!(
                    "SELECT region, count(*), max(i), sum(d) FROM t WHERE {p} GROUP BY region"
                )),
                false,
            ),
            (
                format!("SELECT f, count(*), sum(i) FROM mesh.t WHERE {p} GROUP BY f"),
                None,
                false,
            ),
            (
                format!("SELECT DISTINCT s FROM mesh.t WHERE {p}"),
                None,
                false,
            ),
            (
                format!("SELECT id FROM mesh.t WHERE {p} ORDER BY id LIMIT 5"),
                None,
                true,
            ),
        ];
        for (sql, reference_sql, ordered) in cases {
            let reference_sql = reference_sql.unwrap_or_else(|| sql.replace("mesh.t", "t"));
            let mut a = ours(&mut client, &sql).await;
            let mut b = theirs(&mut reference, &reference_sql).await;
            if !ordered {
                if let Ok(rows) = &mut a {
                    rows.sort();
                }
                if let Ok(rows) = &mut b {
                    rows.sort();
                }
            }
            let same = match (&a, &b) {
                (Ok(a), Ok(b)) => a == b,
                (Err(_), Err(_)) => true,
                _ => false,
            };
            assert!(
                same,
                "mesh differential seed {seed}: asked on {}\n  {sql}\n  mesh:  {a:?}\n  union: {b:?}\n\
                 replay: MESH_DIFF_SEEDS={seed} cargo nextest run -p domicile-tests --test e2e -E 'test(/^mesh_differential::/)' --no-capture",
                node.region
            );
            compared += 1;
        }
    }
    compared
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mesh_queries_answer_as_the_union_of_the_regions() {
    let seeds = seeds_from_env("MESH_DIFF_SEEDS", "1");
    let rounds = count_from_env("MESH_DIFF_ROUNDS", 25);
    let postgres = Postgres::start().expect("PostgreSQL starts");
    let mut total = 0;
    for seed in &seeds {
        let compared = run_seed(&postgres, *seed, rounds).await;
        println!("mesh differential seed {seed}: {compared} mesh queries equal the union");
        total += compared;
    }
    println!("mesh differential: {} seeds, {total} queries", seeds.len());
}
