//! The seeded leak hunt: a three-region mesh whose `accounts` hold canary personal data
//! in every region, and users homed in each region on every node, who run generated
//! statements over every read path — local, routed (`WHERE region = ...`), point
//! lookups, `mesh.*` scans, aggregates and joins, replicas (`global.*`), EXPLAIN and
//! EXPLAIN ANALYZE, system tables, DML whose expressions fail on stored values, filters
//! on canary literals, cached repeats, and saga starts (transfers between canary
//! accounts of any two regions, started on any node, some refused and compensated).
//!
//! The oracle, for every cell and every error text a client receives: a canary of home
//! region H appears in clear only if H's policy releases that column in clear to every
//! region it reached (the node the client is connected to and the user's home region;
//! of the bundled policies only CCPA keeps `pii` for query results). A routed read of
//! another region's rows leaves a `query-result` audit entry on the home node. After
//! the hunt, every saga it started has settled (committed or compensated, none stuck),
//! no node's log holds any canary, and `domicile audit scan` over every
//! node's files (database, cache, logs) finds no EU or Singapore canary outside its
//! home.
//!
//! Seeds: `LEAK_SEEDS` (comma-separated; default 1 and 2), statements per seed:
//! `LEAK_STATEMENTS` (default 60); `LEAK_STATEMENTS=2000` is the soak mode. A failure
//! names its seed, statement number, node, user and SQL for replay.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use domicile_tests::arrow::array::RecordBatch;
use domicile_tests::arrow::util::display::array_value_to_string;
use domicile_tests::{Client, Mesh, TestNode, column_strings, domicile_binary};

const REGIONS: [&str; 3] = ["us-east", "eu-central", "ap-southeast"];
const ROWS_PER_REGION: i64 = 3;
const HUNTER_PASSWORD: &str = "hunter-pw";

const ACCOUNTS: &str = "CREATE TABLE accounts (id BIGINT PRIMARY KEY, region TEXT NOT NULL, \
     name TEXT, email TEXT, iban TEXT, balance DECIMAL(18,2) NOT NULL, currency TEXT NOT NULL) \
     WITH (locality = 'regional by row', region_column = 'region', \
     pii = 'name, email, iban', sensitive = 'balance', cdc = 'on')";

/// xorshift64: seeded, no dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

fn short(region: &str) -> &'static str {
    match region {
        "us-east" => "US",
        "eu-central" => "EU",
        _ => "AP",
    }
}

/// The canary values of one row: name, e-mail, IBAN. Each names its home region.
fn canaries(region: &str, i: i64) -> [String; 3] {
    let r = short(region);
    [
        format!("canary{r}name{i}q"),
        format!("canary{r}mail{i}q@example.test"),
        format!("canary{r}iban{i}q00112233"),
    ]
}

fn id_of(region: &str, i: i64) -> i64 {
    let index = REGIONS.iter().position(|r| *r == region).unwrap_or(0) as i64;
    (index + 1) * 100 + i
}

/// Every canary, with its home region.
fn all_canaries() -> Vec<(String, &'static str)> {
    REGIONS
        .iter()
        .flat_map(|region| {
            (1..=ROWS_PER_REGION).flat_map(move |i| canaries(region, i).map(|c| (c, *region)))
        })
        .collect()
}

/// Whether a `pii` canary of `home` may reach a client through `node` for a user homed
/// in `user_home`, in clear: no other region reached, or the home policy keeps `pii`
/// (CCPA, for query results).
fn clear_allowed(home: &str, node: &str, user_home: &str) -> bool {
    (node == home && user_home == home) || home == "us-east"
}

fn hunters() -> [(&'static str, &'static str); 3] {
    [
        ("hunter-us", "us-east"),
        ("hunter-eu", "eu-central"),
        ("hunter-ap", "ap-southeast"),
    ]
}

fn hunters_toml() -> String {
    let output = Command::new(domicile_binary())
        .arg("hash-password")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(HUNTER_PASSWORD.as_bytes())?;
            child.wait_with_output()
        })
        .expect("hash-password");
    let hash = String::from_utf8_lossy(&output.stdout).trim().to_string();
    hunters()
        .iter()
        .map(|(name, home)| {
            format!(
                "\n[[users]]\nname = \"{name}\"\npassword_hash = \"{hash}\"\nroles = [\"reader\"]\nhome_region = \"{home}\"\n"
            )
        })
        .collect()
}

async fn setup() -> Mesh {
    let mesh = Mesh::start_with(&REGIONS, &hunters_toml()).expect("mesh");
    for node in &mesh.nodes {
        node.upload_plugin("cdc-redactor", "pii_redactor", 1)
            .expect("redactor");
        node.upload_plugin("saga-step", "transfer_saga", 1)
            .expect("saga plugin");
        let mut admin = node.client("admin").await.expect("login");
        admin.update(ACCOUNTS).await.expect("accounts");
    }
    for node in &mesh.nodes {
        let mut writer = node.client("writer").await.expect("login");
        for i in 1..=ROWS_PER_REGION {
            let [name, email, iban] = canaries(&node.region, i);
            writer
                .update(&format!(
                    "INSERT INTO accounts VALUES ({id}, '{region}', '{name}', '{email}', '{iban}', {i}7.25, 'EUR')",
                    id = id_of(&node.region, i),
                    region = node.region,
                ))
                .await
                .expect("canary row at home");
        }
    }
    // Every node sees its peers and the others' (redacted) replicas before the hunt.
    for node in &mesh.nodes {
        let mut admin = node.client("admin").await.expect("login");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let peers = admin
                .query("SELECT count(*) AS n FROM system.regions WHERE reachable")
                .await
                .expect("system.regions");
            let replicated = admin
                .query("SELECT count(*) AS n FROM global.accounts")
                .await
                .map(|b| column_strings(&b, "n"))
                .unwrap_or_default();
            if column_strings(&peers, "n") == ["3"]
                && replicated == [(2 * ROWS_PER_REGION).to_string()]
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{}: mesh or replicas not ready",
                node.region
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    mesh
}

/// One generated statement: its SQL, and for a routed read the region whose node must
/// audit the release.
struct Statement {
    sql: String,
    routed_from: Option<&'static str>,
    writes: bool,
    /// A saga start: a query that needs the writer role.
    starts_saga: bool,
}

fn generate(rng: &mut Rng, node: &str, key: &str) -> Statement {
    let region = *rng.pick(&REGIONS);
    let i = 1 + rng.below(ROWS_PER_REGION as usize) as i64;
    let id = id_of(region, i);
    let [name, email, _] = canaries(region, i);
    let routed = (region != node).then_some(region);
    let read = |sql: String| Statement {
        sql,
        routed_from: None,
        writes: false,
        starts_saga: false,
    };
    match rng.below(18) {
        0 | 1 => Statement {
            sql: format!(
                "SELECT id, region, name, email, iban, balance FROM accounts \
                 WHERE region = '{region}' ORDER BY id"
            ),
            routed_from: routed,
            writes: false,
            starts_saga: false,
        },
        2 => Statement {
            sql: format!(
                "SELECT name, email, iban FROM accounts WHERE region = '{region}' AND id = {id}"
            ),
            routed_from: routed,
            writes: false,
            starts_saga: false,
        },
        3 => read("SELECT * FROM accounts ORDER BY id".into()),
        4 => read(format!(
            "SELECT id, mesh_region, name, email, iban, balance FROM mesh.accounts \
             WHERE mesh_region = '{region}' ORDER BY id"
        )),
        5 => read("SELECT * FROM mesh.accounts ORDER BY id".into()),
        6 => read(
            "SELECT mesh_region, count(*) AS n, max(name) AS top_name, min(email) AS low_email, \
             sum(balance) AS total FROM mesh.accounts GROUP BY mesh_region ORDER BY mesh_region"
                .into(),
        ),
        7 => read(
            "SELECT m.id, m.name, m.email, g.source_region FROM mesh.accounts m \
             JOIN global.accounts g ON m.id = g.id ORDER BY m.id"
                .into(),
        ),
        8 => read("SELECT * FROM global.accounts ORDER BY id".into()),
        9 => read(format!(
            "SELECT id, mesh_region FROM mesh.accounts WHERE email = '{email}' OR name = '{name}'"
        )),
        10 => read(format!(
            "EXPLAIN SELECT name, email FROM mesh.accounts WHERE mesh_region = '{region}'"
        )),
        11 => read(format!(
            "EXPLAIN ANALYZE SELECT name, email, iban FROM accounts WHERE region = '{region}'"
        )),
        12 => read(
            (*rng.pick(&[
                "SELECT * FROM system.sagas",
                "SELECT * FROM system.audit ORDER BY seq",
                "SELECT * FROM system.cdc",
                "SELECT * FROM system.regions",
            ]))
            .into(),
        ),
        13 => Statement {
            sql: format!(
                "UPDATE accounts SET balance = CAST(email AS DECIMAL(18,2)) WHERE id = {}",
                id_of(node, i)
            ),
            routed_from: None,
            writes: true,
            starts_saga: false,
        },
        14 => Statement {
            sql: format!(
                "DELETE FROM accounts WHERE id = {} AND CAST(iban AS BIGINT) = 0",
                id_of(node, i)
            ),
            routed_from: None,
            writes: true,
            starts_saga: false,
        },
        // A transfer between two canary accounts (possibly across regions, possibly in
        // a currency they do not hold: refused and compensated), started on any node.
        16 | 17 => {
            let to_region = *rng.pick(&REGIONS);
            let to = id_of(to_region, 1 + rng.below(ROWS_PER_REGION as usize) as i64);
            let currency = *rng.pick(&["EUR", "EUR", "USD"]);
            Statement {
                sql: format!(
                    "SELECT id, state, last_error FROM start_saga('transfer', '{key}', {{\
                     'from_account': {id}, 'to_account': {to}, 'amount': 0.01, \
                     'currency': '{currency}', 'from_region': '{region}', \
                     'to_region': '{to_region}'}})"
                ),
                routed_from: None,
                writes: false,
                starts_saga: true,
            }
        }
        _ => read(format!(
            "SELECT id FROM accounts WHERE region = '{region}' AND CAST(name AS INT) = 1"
        )),
    }
}

/// Every cell of `batches` as text.
fn cells(batches: &[RecordBatch]) -> Vec<String> {
    let mut out = Vec::new();
    for batch in batches {
        for column in batch.columns() {
            for row in 0..batch.num_rows() {
                if let Ok(text) = array_value_to_string(column, row) {
                    out.push(text);
                }
            }
        }
    }
    out
}

async fn query_result_audits(node: &TestNode) -> usize {
    let mut admin = node.client("admin").await.expect("login");
    let batches = admin
        .query("SELECT count(*) AS n FROM system.audit WHERE path = 'query-result'")
        .await
        .expect("audit");
    column_strings(&batches, "n")
        .first()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

async fn hunt(mesh: &Mesh, seed: u64, statements: usize) -> BTreeMap<&'static str, usize> {
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let canaries = all_canaries();
    let mut clients: BTreeMap<(String, String), Client> = BTreeMap::new();
    let mut kinds: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut previous: Option<(usize, usize, String)> = None;
    for n in 0..statements {
        // A third of the time, the previous statement again (cache hits).
        let (node_index, hunter_index, statement) = match previous.take() {
            Some((node_index, hunter_index, sql)) if rng.below(3) == 0 => (
                node_index,
                hunter_index,
                Statement {
                    sql,
                    routed_from: None,
                    writes: false,
                    starts_saga: false,
                },
            ),
            _ => {
                let node_index = rng.below(REGIONS.len());
                let hunter_index = rng.below(3);
                let statement =
                    generate(&mut rng, REGIONS[node_index], &format!("hunt-{seed}-{n}"));
                (node_index, hunter_index, statement)
            }
        };
        let node = &mesh.nodes[node_index];
        let (user, user_home, password) = if statement.writes || statement.starts_saga {
            ("writer", REGIONS[node_index], "writer-pw")
        } else {
            let (name, home) = hunters()[hunter_index];
            (name, home, HUNTER_PASSWORD)
        };
        let replay = format!(
            "seed {seed} (replay: LEAK_SEEDS={seed} LEAK_STATEMENTS={statements}), statement {n}, \
             on {} as {user} (homed {user_home}): {}",
            node.region, statement.sql
        );
        let audits_before = match statement.routed_from {
            Some(home) => Some(query_result_audits(mesh.node(home)).await),
            None => None,
        };
        let key = (node.region.clone(), user.to_string());
        if !clients.contains_key(&key) {
            let client = Client::connect(&node.endpoint(), user, password)
                .await
                .expect("login");
            clients.insert(key.clone(), client);
        }
        let client = clients.get_mut(&key).expect("client");
        let (texts, kind) = if statement.writes {
            match client.update(&statement.sql).await {
                Ok(count) => (vec![count.to_string()], "dml-changed"),
                Err(error) => (vec![error.message().to_string()], "dml-error"),
            }
        } else if statement.starts_saga {
            match client.query(&statement.sql).await {
                Ok(batches) => (cells(&batches), "saga-started"),
                Err(error) => (vec![error.message().to_string()], "saga-error"),
            }
        } else {
            match client.query(&statement.sql).await {
                Ok(batches) => (cells(&batches), "rows"),
                Err(error) => (vec![error.message().to_string()], "error"),
            }
        };
        *kinds.entry(kind).or_default() += 1;
        for text in &texts {
            for (canary, home) in &canaries {
                if text.contains(canary.as_str()) {
                    assert!(
                        kind == "rows" && clear_allowed(home, &node.region, user_home),
                        "LEAK: {canary} (home {home}) in clear in a {kind}: {text}\n  {replay}"
                    );
                }
            }
        }
        if let (Some(before), Some(home)) = (audits_before, statement.routed_from)
            && kind == "rows"
        {
            let after = query_result_audits(mesh.node(home)).await;
            assert!(
                after > before,
                "{home} released rows with no audit entry\n  {replay}"
            );
        }
        if !statement.writes && !statement.starts_saga {
            previous = Some((node_index, hunter_index, statement.sql));
        }
    }
    kinds
}

/// Waits until every saga `node` orchestrates has ended; none may be stuck.
async fn sagas_settle(node: &TestNode) {
    let mut admin = node.client("admin").await.expect("login");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let batches = admin
            .query("SELECT id, state, last_error FROM system.sagas ORDER BY id")
            .await
            .expect("system.sagas");
        let states = column_strings(&batches, "state");
        assert!(
            !states.iter().any(|s| s == "stuck"),
            "{}: a saga is stuck: {:?}",
            node.region,
            cells(&batches)
        );
        if states
            .iter()
            .all(|s| s == "committed" || s == "compensated")
        {
            let committed = states.iter().filter(|s| *s == "committed").count();
            println!(
                "{}: {} sagas settled, {committed} committed, {} compensated",
                node.region,
                states.len(),
                states.len() - committed
            );
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{}: sagas not settled: {:?}",
            node.region,
            cells(&batches)
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// `domicile audit scan` over `node`'s folder (database, cache, logs) with the canaries
/// of the regions whose policies forbid their `pii` to rest elsewhere (EU, Singapore).
fn scan_files(node: &TestNode, canary_file: &std::path::Path) -> String {
    let out = Command::new(domicile_binary())
        .args(["audit", "scan", "--region", &node.region, "--canaries"])
        .arg(canary_file)
        .arg(node.dir.path())
        .output()
        .expect("audit scan");
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(0), "{}: {said}", node.region);
    said
}

#[tokio::test(flavor = "multi_thread")]
async fn no_canary_leaves_its_region_unless_its_policy_releases_it() {
    let seeds: Vec<u64> = std::env::var("LEAK_SEEDS")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 2]);
    let statements: usize = std::env::var("LEAK_STATEMENTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let mut mesh = setup().await;
    for seed in seeds {
        let kinds = hunt(&mesh, seed, statements).await;
        println!("leak hunt seed {seed}: {statements} statements, outcomes {kinds:?}");
        assert!(
            kinds.get("rows").copied().unwrap_or(0) > statements / 3,
            "most statements must answer, or the hunt proves little: {kinds:?}"
        );
    }
    for node in &mesh.nodes {
        sagas_settle(node).await;
    }
    for node in &mesh.nodes {
        let logs = node.logs();
        for (canary, home) in all_canaries() {
            assert!(
                !logs.contains(&canary),
                "{}'s log holds {canary} (home {home})",
                node.region
            );
        }
    }
    let dir = tempfile::tempdir().expect("dir");
    let canary_file = dir.path().join("canaries.toml");
    let listed: String = all_canaries()
        .iter()
        .filter(|(_, home)| *home != "us-east")
        .map(|(value, home)| format!("[[canary]]\nregion = \"{home}\"\nvalue = \"{value}\"\n\n"))
        .collect();
    std::fs::write(&canary_file, listed).expect("canary file");
    for region in REGIONS {
        mesh.stop(region).expect("clean stop");
    }
    for node in &mesh.nodes {
        let said = scan_files(node, &canary_file);
        assert!(said.contains(": 0 found"), "{}: {said}", node.region);
    }
}
