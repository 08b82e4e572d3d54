//! `domicile demo` as a user runs it: three regions come up with their plugins and the
//! payment example, peers over mutual TLS, every region answers, a reader from ap-southeast sees EU accounts
//! as the EU policy allows, every region answers the global account directory from its
//! replicas (redacted), SIGTERM stops every node cleanly, and a second start on the
//! same directory finds everything as it was (nothing loaded or replicated twice).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use domicile_tests::{Client, column_strings, domicile_binary, wasm_dir};

struct Demo {
    child: Child,
    output: std::sync::mpsc::Receiver<String>,
    /// What it printed before "ready;".
    startup: Vec<String>,
}

impl Demo {
    fn start(dir: &std::path::Path) -> Demo {
        let mut child = Command::new(domicile_binary())
            .args(["demo", "--data-dir"])
            .arg(dir)
            .arg("--plugins-dir")
            .arg(wasm_dir())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn demo");
        let stdout = child.stdout.take().expect("stdout");
        let (sender, output) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = sender.send(line);
            }
        });
        let mut demo = Demo {
            child,
            output,
            startup: Vec::new(),
        };
        demo.startup = demo.wait_for("ready;", Duration::from_secs(120));
        // The first line says what is happening before the slow part starts, and each
        // region reports its progress.
        assert!(
            demo.startup
                .first()
                .is_some_and(|l| l.starts_with("starting us-east, eu-central and ap-southeast")),
            "{:?}",
            demo.startup
        );
        for region in ["us-east", "eu-central", "ap-southeast"] {
            let started = format!("  {region}: node started");
            assert!(demo.startup.contains(&started), "{:?}", demo.startup);
        }
        demo
    }

    fn wait_for(&self, needle: &str, timeout: Duration) -> Vec<String> {
        let mut seen = Vec::new();
        let deadline = std::time::Instant::now() + timeout;
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            match self.output.recv_timeout(left) {
                Ok(line) => {
                    let done = line.contains(needle);
                    seen.push(line);
                    if done {
                        return seen;
                    }
                }
                Err(_) => break,
            }
        }
        panic!(
            "demo never printed {needle:?}; it printed:\n{}",
            seen.join("\n")
        );
    }

    /// SIGTERM, then the exit status and what was printed meanwhile.
    fn stop(mut self) -> (std::process::ExitStatus, Vec<String>) {
        Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .expect("kill");
        let printed = self.wait_for("stopped cleanly", Duration::from_secs(60));
        (self.child.wait().expect("wait"), printed)
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

fn endpoints(dir: &std::path::Path) -> Vec<(String, String)> {
    let mesh: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("mesh.json")).expect("mesh.json"))
            .expect("json");
    mesh["regions"]
        .as_array()
        .expect("regions")
        .iter()
        .map(|r| {
            (
                r["region"].as_str().expect("region").to_string(),
                r["flight_sql"].as_str().expect("endpoint").to_string(),
            )
        })
        .collect()
}

async fn count(endpoint: &str, user: &str, password: &str, sql: &str) -> Vec<String> {
    let mut client = Client::connect(endpoint, user, password)
        .await
        .expect("login");
    let batches = client.query(sql).await.expect("query");
    column_strings(&batches, "n")
}

/// Accounts each region's example data holds (us-east has a euro account too).
fn accounts_of(region: &str) -> &'static str {
    if region == "us-east" { "5" } else { "4" }
}

/// Accounts of the other two regions, as a region's directory replicates them.
fn others_of(region: &str) -> &'static str {
    if region == "us-east" { "8" } else { "9" }
}

/// Balances of account 1005 (us-east) and 2001 (eu-central).
async fn balances(us: &str, eu: &str) -> (String, String) {
    let read = |endpoint: String, id: i64| async move {
        let mut client = Client::connect(&endpoint, "admin", "admin")
            .await
            .expect("login");
        let batches = client
            .query(&format!("SELECT balance FROM accounts WHERE id = {id}"))
            .await
            .expect("balance");
        column_strings(&batches, "balance").join(",")
    };
    (
        read(us.to_string(), 1005).await,
        read(eu.to_string(), 2001).await,
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_demo_serves_three_regions_and_stops_cleanly() {
    let dir = tempfile::tempdir().expect("dir");
    let demo = Demo::start(dir.path());
    let regions = endpoints(dir.path());
    let names: Vec<&str> = regions.iter().map(|(r, _)| r.as_str()).collect();
    assert_eq!(names, ["us-east", "eu-central", "ap-southeast"]);
    for (region, endpoint) in &regions {
        let homed = count(
            endpoint,
            "admin",
            "admin",
            &format!("SELECT count(*) AS n FROM accounts WHERE region = '{region}'"),
        )
        .await;
        assert_eq!(
            homed,
            [accounts_of(region)],
            "{region} holds its own customers"
        );
        let all = count(
            endpoint,
            "admin",
            "admin",
            "SELECT count(*) AS n FROM accounts",
        )
        .await;
        assert_eq!(
            all,
            [accounts_of(region)],
            "{region} holds no other region's customers"
        );
        let currencies = count(
            endpoint,
            "admin",
            "admin",
            "SELECT count(*) AS n FROM currencies",
        )
        .await;
        assert_eq!(currencies, ["3"]);
    }
    // Every region sees the other two over mutual TLS.
    for (region, endpoint) in &regions {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let reachable = count(
                endpoint,
                "admin",
                "admin",
                "SELECT count(*) AS n FROM system.regions WHERE reachable",
            )
            .await;
            if reachable == ["3"] {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{region}: {reachable:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    // The federated query it printed: every region answered, EU names masked.
    let federated: Vec<&String> = demo
        .startup
        .iter()
        .skip_while(|line| !line.contains("a federated metadata query"))
        .take_while(|line| !line.contains("a cross-border transfer"))
        .collect();
    let table = federated
        .iter()
        .map(|l| l.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    for region in ["us-east", "eu-central", "ap-southeast"] {
        assert!(table.contains(&format!("| {region}")), "{table}");
    }
    assert!(table.contains("*****opez"), "{table}");
    assert!(!table.contains("Lopez"), "{table}");

    let (_, eu) = &regions[1];
    let mut analyst = Client::connect(eu, "analyst-apac", "analyst")
        .await
        .expect("login");
    let seen = analyst
        .query("SELECT name, balance FROM accounts WHERE id = 2001")
        .await
        .expect("analyst reads EU accounts");
    assert_eq!(column_strings(&seen, "name"), ["*****opez"]);
    assert_eq!(column_strings(&seen, "balance"), [""]);

    // A read of EU rows on the US node is routed to eu-central and masked for a US reader.
    let (_, us) = &regions[0];
    let mut us_admin = Client::connect(us, "admin", "admin").await.expect("login");
    let routed = us_admin
        .query("SELECT name FROM accounts WHERE region = 'eu-central' AND id = 2001")
        .await
        .expect("routed read");
    assert_eq!(column_strings(&routed, "name"), ["*****opez"]);

    // The global directory: every region answers it locally from the other two
    // regions' redacted change streams.
    for (region, endpoint) in &regions {
        let replicated = count(
            endpoint,
            "admin",
            "admin",
            &format!("SELECT count(*) AS n FROM global.accounts WHERE source_region <> '{region}'"),
        )
        .await;
        assert_eq!(replicated, [others_of(region)], "{region}'s directory");
    }
    // The cross-border transfer the demo ran as a saga: committed, money moved once.
    let (_, eu_endpoint) = &regions[1];
    assert_eq!(
        balances(us, eu_endpoint).await,
        ("475.00".into(), "1225.50".into())
    );
    let directory = us_admin
        .query("SELECT email, iban FROM global.accounts WHERE id = 2001")
        .await
        .expect("directory on us-east");
    assert_eq!(column_strings(&directory, "email"), ["a***@example.eu"]);
    assert!(column_strings(&directory, "iban")[0].starts_with("tok_"));

    let (status, printed) = demo.stop();
    assert!(status.success(), "{status}: {printed:?}");

    // Started again on the same directory: same data, nothing loaded twice.
    let demo = Demo::start(dir.path());
    for (region, endpoint) in endpoints(dir.path()) {
        let all = count(
            &endpoint,
            "admin",
            "admin",
            "SELECT count(*) AS n FROM accounts",
        )
        .await;
        assert_eq!(all, [accounts_of(&region)], "{region} after restart");
        let replicated = count(
            &endpoint,
            "admin",
            "admin",
            "SELECT count(*) AS n FROM global.accounts",
        )
        .await;
        assert_eq!(
            replicated,
            [others_of(&region)],
            "{region}'s directory after restart"
        );
    }
    // The restarted demo found its transfer by its idempotency key: not paid twice.
    let regions = endpoints(dir.path());
    assert_eq!(
        balances(&regions[0].1, &regions[1].1).await,
        ("475.00".into(), "1225.50".into())
    );
    let (status, _) = demo.stop();
    assert!(status.success());
}
