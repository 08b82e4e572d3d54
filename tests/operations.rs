//! What an operator's tools read from a node, read with those tools: `/metrics` checked
//! by Prometheus' own `promtool`, in both exposition formats; `/healthz`, `/readyz`;
//! `grpc.health.v1` on every gRPC listener, asked with the stock health client; and
//! the shipped Grafana dashboard, whose every query must name a metric nodes serve.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use domicile_tests::{HttpResponse, Mesh, TestNode, http_get};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

const OPENMETRICS: &str = "application/openmetrics-text;version=1.0.0,text/plain;q=0.5";

async fn get(node: &TestNode, path: &str, accept: Option<&str>) -> HttpResponse {
    let address = node.metrics.expect("the test node serves metrics");
    http_get(address, path, accept).await.expect(path)
}

/// `promtool check metrics` on `exposition`: its complaints, empty when it has none.
/// Promtool is Prometheus' own linter (Debian's `prometheus` package; tests/run.sh
/// installs it); without it this test cannot check anything, so it fails.
fn promtool_complaints(exposition: &str) -> String {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs (Debian: apt-get install prometheus; tests/run.sh does)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(exposition.as_bytes())
        .expect("promtool reads");
    let out = child.wait_with_output().expect("promtool ends");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() && said.trim().is_empty() {
        String::new()
    } else {
        format!("{}: {said}", out.status)
    }
}

/// The value of the sample written exactly `name_and_labels` (e.g.
/// `domicile_peer_up{region="us-east"}`), if the exposition has it.
fn sample(exposition: &str, name_and_labels: &str) -> Option<f64> {
    exposition.lines().find_map(|line| {
        let value = line.strip_prefix(name_and_labels)?.strip_prefix(' ')?;
        value.split(' ').next()?.parse().ok()
    })
}

/// The metric families an exposition declares (`# TYPE name kind`), with their kinds.
fn families(exposition: &str) -> Vec<(String, String)> {
    exposition
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split_once(' '))
        .map(|(name, kind)| (name.to_string(), kind.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_follow_prometheus_conventions_and_promtool_accepts_them() {
    let node = TestNode::start("eu-central").expect("node");
    let mut admin = node.client("admin").await.expect("admin");
    admin
        .update(
            "CREATE TABLE accounts (id BIGINT PRIMARY KEY, region TEXT NOT NULL, name TEXT) \
             WITH (locality = 'regional by row', region_column = 'region', pii = 'name')",
        )
        .await
        .expect("create");
    admin
        .update("INSERT INTO accounts VALUES (1, 'eu-central', 'Ada')")
        .await
        .expect("insert");
    admin.query("SELECT * FROM accounts").await.expect("select");

    let classic = get(&node, "/metrics", None).await;
    assert_eq!(classic.status, 200);
    assert_eq!(
        classic.content_type,
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let complaints = promtool_complaints(&classic.body);
    assert!(
        complaints.is_empty(),
        "promtool check metrics: {complaints}\n{}",
        classic.body
    );

    // Counters are counters, named `_total`; nothing else is.
    for (name, kind) in families(&classic.body) {
        assert_eq!(
            name.ends_with("_total"),
            kind == "counter",
            "{name} is a {kind}"
        );
        // Base units only (seconds, bytes), never a scaled one.
        for scaled in [
            "_ms",
            "_us",
            "_micros",
            "_microseconds",
            "_milliseconds",
            "_kib",
        ] {
            assert!(
                !name.contains(&format!("{scaled}_")) && !name.ends_with(scaled),
                "{name} is not in a base unit"
            );
        }
    }
    let body = &classic.body;
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        sample(
            body,
            &format!("domicile_build_info{{version=\"{version}\",region=\"eu-central\"}}")
        ),
        Some(1.0),
        "{body}"
    );
    for present in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
    ] {
        assert!(
            sample(body, present).is_some(),
            "{present} missing:\n{body}"
        );
    }
    assert!(sample(body, "process_resident_memory_bytes").unwrap_or(0.0) > 1e6);
    // The statements counted, the insert's decision and its durable commit.
    assert!(
        sample(
            body,
            "domicile_statements_total{kind=\"dml\",outcome=\"ok\"}"
        ) >= Some(1.0),
        "{body}"
    );
    assert!(
        sample(
            body,
            "domicile_residency_decisions_total{path=\"store\",decision=\"allow\"}"
        ) >= Some(1.0),
        "{body}"
    );
    let commits = sample(body, "domicile_storage_commits_total").expect("commits");
    assert!(commits >= 2.0, "{commits}");
    let plugin_calls = body
        .lines()
        .find(|l| l.starts_with("domicile_plugin_calls_total{jurisdiction=\"EU\""))
        .unwrap_or_else(|| panic!("EU policy calls missing:\n{body}"));
    assert!(!plugin_calls.ends_with(" 0"), "{plugin_calls}");

    // Monotonic: more work, higher counts.
    admin
        .update("INSERT INTO accounts VALUES (2, 'eu-central', 'Grace')")
        .await
        .expect("insert");
    let later = get(&node, "/metrics", None).await.body;
    assert!(sample(&later, "domicile_storage_commits_total").expect("commits") > commits);

    // OpenMetrics for a scraper that asks for it, as Prometheus does.
    let open = get(&node, "/metrics", Some(OPENMETRICS)).await;
    assert_eq!(
        open.content_type,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(open.body.ends_with("# EOF\n"), "{}", open.body);
    assert!(
        open.body
            .contains("# TYPE domicile_storage_commits counter")
    );
    assert!(
        open.body
            .contains("# UNIT domicile_storage_writer_busy_seconds seconds")
    );
    // The same samples in both.
    let samples = |text: &str| -> BTreeSet<String> {
        text.lines()
            .filter(|l| l.starts_with("domicile_storage_commits_total"))
            .map(|l| l.split(' ').next().unwrap_or_default().to_string())
            .collect()
    };
    assert_eq!(samples(&open.body), samples(&later));
    // No value of a row reaches the metrics.
    assert!(!open.body.contains("Ada") && !open.body.contains("Grace"));
}

/// The stock gRPC health client on `endpoint`: the status of `service`, or the gRPC
/// code of the refusal.
async fn health_of(
    channel: tonic::transport::Channel,
    service: &str,
) -> Result<ServingStatus, tonic::Code> {
    HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: service.to_string(),
        })
        .await
        .map(|r| r.into_inner().status())
        .map_err(|s| s.code())
}

async fn channel(address: std::net::SocketAddr) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{address}"))
        .expect("endpoint")
        .connect()
        .await
        .expect("connects")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_is_ready_once_its_policy_is_active_and_healthy_on_every_listener() {
    // Started without a residency policy: alive, not ready.
    let node = TestNode::start_without_policy("eu-central").expect("node");
    let alive = get(&node, "/healthz", None).await;
    assert_eq!((alive.status, alive.body.as_str()), (200, "ok\n"));
    let not_ready = get(&node, "/readyz", None).await;
    assert_eq!(not_ready.status, 503, "{}", not_ready.body);
    assert!(
        not_ready.body.contains("[-] residency-policy failed")
            && not_ready.body.contains("[+] storage ok")
            && not_ready.body.contains("[+] peers ok"),
        "{}",
        not_ready.body
    );
    node.upload_policy("eu_gdpr", 1).expect("policy");
    let ready = get(&node, "/readyz", None).await;
    assert_eq!(ready.status, 200, "{}", ready.body);
    assert!(ready.body.ends_with("ready\n"), "{}", ready.body);
    // Anything else on the metrics listener is not found.
    assert_eq!(get(&node, "/nothing", None).await.status, 404);

    // grpc.health.v1 on the Flight SQL and admin listeners: each knows its own service.
    let flight = channel(node.flight_sql).await;
    let flight_name = "arrow.flight.protocol.FlightService";
    let admin_name = domicile::admin::proto::admin_server::SERVICE_NAME;
    assert_eq!(
        health_of(flight.clone(), "").await,
        Ok(ServingStatus::Serving)
    );
    assert_eq!(
        health_of(flight.clone(), flight_name).await,
        Ok(ServingStatus::Serving)
    );
    assert_eq!(
        health_of(flight, admin_name).await,
        Err(tonic::Code::NotFound)
    );
    let admin = channel(node.admin.expect("admin listener")).await;
    assert_eq!(
        health_of(admin.clone(), "").await,
        Ok(ServingStatus::Serving)
    );
    assert_eq!(
        health_of(admin, admin_name).await,
        Ok(ServingStatus::Serving)
    );
}

/// Every metric name a PromQL expression mentions (`domicile_*`, `process_*`).
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(at) = ["domicile_", "process_"]
        .iter()
        .filter_map(|p| rest.find(p))
        .min()
    {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

#[tokio::test(flavor = "multi_thread")]
async fn mesh_nodes_know_their_peers_and_serve_every_metric_the_dashboard_reads() {
    let mesh = Mesh::start(&["eu-central", "us-east"]).expect("mesh");
    // Ready once each has tried the other (pinged in the background).
    let deadline = Instant::now() + Duration::from_secs(30);
    for node in &mesh.nodes {
        loop {
            let ready = get(node, "/readyz", None).await;
            if ready.status == 200 {
                break;
            }
            assert!(Instant::now() < deadline, "never ready: {}", ready.body);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let eu = mesh.node("eu-central");
    // A statement, so its families have samples (a family without any is not shown).
    let mut admin = eu.client("admin").await.expect("admin");
    admin.query("SELECT 1").await.expect("select");
    let mut scrape = String::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while sample(&scrape, "domicile_peer_up{region=\"us-east\"}") != Some(1.0) {
        assert!(Instant::now() < deadline, "us-east never up:\n{scrape}");
        tokio::time::sleep(Duration::from_millis(200)).await;
        scrape = get(eu, "/metrics", None).await.body;
    }
    assert!(sample(&scrape, "domicile_peer_rtt_seconds{region=\"us-east\"}") > Some(0.0));

    // `domicile mesh status` says the same, as JSON for scripts and as a table.
    let status = |format: &str| {
        let out = Command::new(domicile_tests::domicile_binary())
            .args([
                "mesh",
                "status",
                "--endpoint",
                &eu.endpoint(),
                "--user",
                "admin",
            ])
            .args(["-o", format])
            .env("DOMICILE_PASSWORD", "admin-pw")
            .stdin(Stdio::null())
            .output()
            .expect("domicile mesh status");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let regions: serde_json::Value = serde_json::from_str(&status("json")).expect("JSON");
    let regions = regions.as_array().expect("an array");
    assert_eq!(regions.len(), 2, "{regions:?}");
    assert_eq!(regions[0]["region"], "eu-central");
    assert_eq!(regions[0]["is_self"], "true");
    assert_eq!(regions[1]["region"], "us-east");
    assert_eq!(regions[1]["reachable"], "true");
    let table = status("table");
    assert!(
        table.contains("rtt_ms") && table.contains("us-east"),
        "{table}"
    );
    assert_eq!(promtool_complaints(&scrape), "");

    // The peer listener's health, asked with a mesh certificate (the listener is
    // mutual TLS): the peer API is served there.
    let peer = mesh
        .peer_channel("us-east", "eu-central")
        .await
        .expect("peer channel");
    assert_eq!(
        health_of(peer, domicile::peers::proto::peer_server::SERVICE_NAME).await,
        Ok(ServingStatus::Serving)
    );

    // Every metric the shipped dashboard queries is one a node declares.
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/grafana/domicile-dashboard.json"
    );
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("dashboard")).expect("JSON");
    let declared: Vec<(String, String)> = families(&scrape);
    let declares = |name: &str| {
        declared.iter().any(|(family, kind)| {
            family == name
                || (kind == "histogram"
                    && ["_bucket", "_sum", "_count"]
                        .iter()
                        .any(|s| name.strip_suffix(s) == Some(family)))
        })
    };
    let panels = dashboard["panels"].as_array().expect("panels");
    let mut queried = 0;
    for panel in panels {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            for name in metric_names(expr) {
                queried += 1;
                assert!(
                    declares(&name),
                    "panel {:?} queries {name}, which no node serves",
                    panel["title"]
                );
            }
        }
    }
    assert!(queried >= 10, "{queried}");
}
