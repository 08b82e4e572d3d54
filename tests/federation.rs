//! Federated metadata queries on a three-region mesh: `mesh.<table>` on any node answers
//! from every region's node, each row tagged with its region; projection, filters and
//! limit reach the regions as SQL; each region's policy decides what leaves for the
//! asking region; an unreachable region fails the query by name, or, with the session
//! option, the answer comes from the others with a warning.

use domicile_tests::{Client, Mesh, column_strings};

const REGIONS: [&str; 3] = ["us-east", "eu-central", "ap-southeast"];

const MERCHANTS: &str = "CREATE TABLE merchants (
    id BIGINT PRIMARY KEY, region TEXT NOT NULL, name TEXT NOT NULL,
    category TEXT NOT NULL, volume BIGINT NOT NULL
) WITH (locality = 'regional by row', region_column = 'region', pii = 'name')";

/// (region, id, name, category, volume)
const ROWS: [(&str, i64, &str, &str, i64); 6] = [
    ("us-east", 1, "Acme Hardware", "retail", 100),
    ("us-east", 2, "Bayside Books", "retail", 250),
    ("us-east", 3, "Cobalt Travel", "travel", 40),
    ("eu-central", 11, "Dorfladen Meier", "retail", 700),
    ("eu-central", 12, "Elbe Reisen", "travel", 300),
    ("ap-southeast", 21, "Fajar Kopi", "food", 55),
];

async fn merchants_mesh() -> Mesh {
    let mesh = Mesh::start(&REGIONS).expect("mesh");
    for node in &mesh.nodes {
        let mut admin = node.client("admin").await.expect("login");
        admin.update(MERCHANTS).await.expect("merchants");
        for (region, id, name, category, volume) in ROWS {
            if region == node.region {
                admin
                    .update(&format!(
                        "INSERT INTO merchants VALUES ({id}, '{region}', '{name}', '{category}', {volume})"
                    ))
                    .await
                    .expect("row");
            }
        }
    }
    mesh
}

async fn reader(mesh: &Mesh, region: &str) -> Client {
    mesh.node(region).client("reader").await.expect("login")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mesh_tables_answer_from_every_region_through_each_regions_policy() {
    let mesh = merchants_mesh().await;
    let mut ap = reader(&mesh, "ap-southeast").await;

    // Per-region counts and sums, from any node.
    let sql = "SELECT mesh_region, count(*) AS n, sum(volume) AS total \
               FROM mesh.merchants GROUP BY mesh_region ORDER BY mesh_region";
    for region in REGIONS {
        let rows = reader(&mesh, region).await.query(sql).await.expect(region);
        assert_eq!(
            column_strings(&rows, "mesh_region"),
            ["ap-southeast", "eu-central", "us-east"],
            "asked on {region}"
        );
        assert_eq!(column_strings(&rows, "n"), ["1", "2", "3"]);
        assert_eq!(column_strings(&rows, "total"), ["55", "1000", "390"]);
    }

    // The counts and sums are computed by each region (partial aggregates), combined
    // here.
    let plan = ap.query(&format!("EXPLAIN {sql}")).await.expect("explain");
    let plan = column_strings(&plan, "plan").join("\n");
    assert!(
        plan.contains(
            r#"leg=SELECT count(1) AS p0, sum(CAST(merchants."volume" AS DECIMAL(38,0))) AS p1, count(1) AS leg_rows FROM merchants"#
        ),
        "{plan}"
    );
    let rows = ap
        .query(
            "SELECT category, count(*) AS n, min(volume) AS low, max(volume) AS high \
             FROM mesh.merchants WHERE volume > 50 GROUP BY category ORDER BY category",
        )
        .await
        .expect("grouped across regions");
    assert_eq!(
        column_strings(&rows, "category"),
        ["food", "retail", "travel"]
    );
    assert_eq!(column_strings(&rows, "n"), ["1", "3", "1"]);
    assert_eq!(column_strings(&rows, "low"), ["55", "100", "300"]);
    assert_eq!(column_strings(&rows, "high"), ["55", "700", "300"]);
    let empty = ap
        .query("SELECT count(*) AS n, sum(volume) AS total FROM mesh.merchants WHERE volume < 0")
        .await
        .expect("nothing matches");
    assert_eq!(column_strings(&empty, "n"), ["0"]);
    assert_eq!(column_strings(&empty, "total"), [""]);
    // Grouped by region, a region none of whose rows match is no group (issue 20): the
    // answer equals the union of each region's own answer.
    for bound in [0, 60, 350, 2000] {
        let rows = ap
            .query(&format!(
                "SELECT mesh_region, count(*) AS n, max(volume) AS high FROM mesh.merchants \
                 WHERE volume < {bound} GROUP BY mesh_region ORDER BY mesh_region"
            ))
            .await
            .expect("grouped by region");
        let mut expected = Vec::new();
        for region in ["ap-southeast", "eu-central", "us-east"] {
            let local = reader(&mesh, region)
                .await
                .query(&format!(
                    "SELECT count(*) AS n, max(volume) AS high FROM merchants WHERE volume < {bound}"
                ))
                .await
                .expect("local");
            let n = column_strings(&local, "n").join("");
            if n != "0" {
                expected.push((
                    region.to_string(),
                    n,
                    column_strings(&local, "high").join(""),
                ));
            }
        }
        let answered: Vec<_> = column_strings(&rows, "mesh_region")
            .into_iter()
            .zip(column_strings(&rows, "n"))
            .zip(column_strings(&rows, "high"))
            .map(|((region, n), high)| (region, n, high))
            .collect();
        assert_eq!(answered, expected, "volume < {bound}");
    }

    // Filters and the limit travel to the regions as SQL; a region filter picks the
    // regions asked.
    let plan = ap
        .query(
            "EXPLAIN SELECT id FROM mesh.merchants \
             WHERE category = 'retail' AND mesh_region IN ('us-east', 'eu-central')",
        )
        .await
        .expect("explain");
    let plan = column_strings(&plan, "plan").join("\n");
    assert!(plan.contains("regions=[eu-central, us-east]"), "{plan}");
    let leg = r#"leg=SELECT merchants.id FROM merchants WHERE (merchants."category" = 'retail')"#;
    assert!(plan.contains(leg), "{plan}");
    let plan = ap
        .query("EXPLAIN SELECT id, name FROM mesh.merchants WHERE volume > 10 LIMIT 2")
        .await
        .expect("explain");
    let plan = column_strings(&plan, "plan").join("\n");
    assert!(
        plan.contains("regions=[ap-southeast, eu-central, us-east]"),
        "{plan}"
    );
    assert!(plan.contains("LIMIT 2"), "{plan}");
    let rows = ap
        .query(
            "SELECT id, mesh_region FROM mesh.merchants \
             WHERE category = 'retail' AND volume >= 250 ORDER BY id",
        )
        .await
        .expect("filtered");
    assert_eq!(column_strings(&rows, "id"), ["2", "11"]);
    assert_eq!(
        column_strings(&rows, "mesh_region"),
        ["us-east", "eu-central"]
    );

    // The EU's pii column leaves for ap-southeast only as the EU policy allows
    // (masked: last four characters); at home it is whole.
    let away = ap
        .query("SELECT name FROM mesh.merchants WHERE mesh_region = 'eu-central' ORDER BY id")
        .await
        .expect("pii from ap-southeast");
    assert_eq!(
        column_strings(&away, "name"),
        ["***********eier", "*******isen"]
    );
    let mut eu = reader(&mesh, "eu-central").await;
    let home = eu
        .query("SELECT name FROM mesh.merchants WHERE mesh_region = 'eu-central' ORDER BY id")
        .await
        .expect("pii at home");
    assert_eq!(
        column_strings(&home, "name"),
        ["Dorfladen Meier", "Elbe Reisen"]
    );
    // The EU node audited what it released to ap-southeast.
    let mut eu_admin = mesh
        .node("eu-central")
        .client("admin")
        .await
        .expect("login");
    let audit = eu_admin
        .query(
            "SELECT decision FROM system.audit \
             WHERE path = 'query-result' AND destination_region = 'ap-southeast'",
        )
        .await
        .expect("audit");
    assert!(
        column_strings(&audit, "decision").contains(&"allow-with".to_string()),
        "{audit:?}"
    );

    // Mesh tables are read-only and legs only read.
    let refused = ap
        .update(
            "INSERT INTO mesh.merchants VALUES (99, 'ap-southeast', 'x', 'y', 1, 'ap-southeast')",
        )
        .await
        .expect_err("mesh tables are read-only");
    assert!(!refused.message().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_region_fails_the_query_by_name_unless_partial_results_are_asked_for() {
    let mesh = merchants_mesh().await;
    let mut ap = reader(&mesh, "ap-southeast").await;
    let sql = "SELECT mesh_region, count(*) AS n FROM mesh.merchants \
               GROUP BY mesh_region ORDER BY mesh_region";
    mesh.cut("ap-southeast", "eu-central");

    let error = ap.query(sql).await.expect_err("eu-central is cut off");
    assert!(error.message().contains("eu-central"), "{error}");
    assert!(
        error.message().contains("domicile.mesh_partial_results"),
        "{error}"
    );

    ap.update("SET domicile.mesh_partial_results = true")
        .await
        .expect("session option");
    let (rows, warnings) = ap.query_with_warnings(sql).await.expect("partial answer");
    assert_eq!(
        column_strings(&rows, "mesh_region"),
        ["ap-southeast", "us-east"]
    );
    assert_eq!(column_strings(&rows, "n"), ["1", "3"]);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("eu-central"), "{warnings:?}");
    // Another session of the same user still gets the default.
    let mut other = reader(&mesh, "ap-southeast").await;
    other
        .query(sql)
        .await
        .expect_err("the option is per session");
    let bad = ap
        .update("SET domicile.mesh_partial_results = maybe")
        .await
        .expect_err("not a boolean");
    assert!(bad.message().contains("true or false"), "{bad}");

    // Healed: whole answers again, no warnings.
    mesh.heal("ap-southeast", "eu-central");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (rows, warnings) = ap.query_with_warnings(sql).await.expect("answer");
        if warnings.is_empty() {
            assert_eq!(column_strings(&rows, "n"), ["1", "2", "3"]);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{warnings:?}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}
