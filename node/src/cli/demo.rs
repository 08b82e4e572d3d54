//! `domicile demo`: the payment processor of the seed scenario on one machine. Three
//! nodes (`us-east`, `eu-central`, `ap-southeast`) in this process, each with its own
//! data directory, its jurisdiction's signing key, the bundled plugins uploaded through
//! its admin API, and the payment example loaded through Flight SQL — the same paths an
//! operator and a client use. Runs until Ctrl-C / SIGTERM, then stops every node cleanly.
//!
//! A data directory that already holds a demo (its `mesh.json`) is started again as it
//! is: keys, plugins and rows persist; nothing is loaded twice.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Serialize;

use super::admin_client::AdminSession;
use super::endpoint::grpc_url;
use super::sql_shell::SqlShell;
use super::statements::split_statements;
use crate::config::NodeConfig;
use crate::plugins::signing;
use crate::saga::fields::{Field, Fields};
use crate::server::Node;

/// The demo's regions: (region, jurisdiction, residency policy component).
pub const REGIONS: [(&str, &str, &str); 3] = [
    ("us-east", "US", "us_ccpa"),
    ("eu-central", "EU", "eu_gdpr"),
    ("ap-southeast", "SG", "sg_pdpa"),
];

/// Demo credentials. Loopback only: a node refuses every well-known demo password on
/// other addresses.
const ADMIN: (&str, &str) = ("admin", crate::auth::DEMO_ADMIN_PASSWORD);
/// A reader homed in ap-southeast, present on every node: what a region may see of
/// another region's data is what this user gets.
const ANALYST: (&str, &str) = ("analyst-apac", crate::auth::DEMO_ANALYST_PASSWORD);
const ANALYST_HOME: &str = "ap-southeast";

const SCHEMA: &str = include_str!("../../../examples/payments/schema.sql");
const DATA: [(&str, &str); 3] = [
    (
        "us-east",
        include_str!("../../../examples/payments/data/us-east.sql"),
    ),
    (
        "eu-central",
        include_str!("../../../examples/payments/data/eu-central.sql"),
    ),
    (
        "ap-southeast",
        include_str!("../../../examples/payments/data/ap-southeast.sql"),
    ),
];

/// What scripts need to reach the demo: written to `DIR/mesh.json`. Everything a
/// script needs is in each region's entry, so it never has to combine two parts.
#[derive(Serialize)]
pub struct MeshFile {
    pub regions: Vec<RegionEntry>,
}

/// One region's node as a client reaches it.
#[derive(Serialize)]
pub struct RegionEntry {
    pub region: String,
    pub jurisdiction: String,
    /// Flight SQL endpoint as stock clients take it (`grpc://127.0.0.1:PORT`).
    pub flight_sql: String,
    /// Admin gRPC endpoint (`grpc://...`) for `domicile plugin|saga --endpoint`.
    pub admin: String,
    /// Prometheus metrics (`http://127.0.0.1:PORT/metrics`); `/healthz` and `/readyz`
    /// beside it.
    pub metrics: String,
    pub data_dir: PathBuf,
    /// The users this node knows, as it sees them.
    pub users: Vec<UserEntry>,
}

/// A login valid on one node (demo credentials: loopback only).
#[derive(Serialize)]
pub struct UserEntry {
    pub name: String,
    pub password: String,
    pub role: String,
    /// The region of the user's own data as this node sees it: which rows are "theirs"
    /// and which policy decides what other regions' rows they see.
    pub home_region: String,
}

fn users_of(region: &str) -> Vec<UserEntry> {
    vec![
        UserEntry {
            name: ADMIN.0.into(),
            password: ADMIN.1.into(),
            role: "admin".into(),
            home_region: region.into(),
        },
        UserEntry {
            name: ANALYST.0.into(),
            password: ANALYST.1.into(),
            role: "reader".into(),
            home_region: ANALYST_HOME.into(),
        },
    ]
}

fn component(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.wasm"))
}

struct RegionSetup<'a> {
    dir: &'a Path,
    region: &'a str,
    jurisdiction: &'a str,
    public_key: &'a str,
    peer_port: SocketAddr,
    peers: String,
    certs: &'a Path,
}

fn node_config(setup: &RegionSetup<'_>) -> String {
    let RegionSetup {
        dir,
        region,
        jurisdiction,
        public_key,
        peer_port,
        peers,
        certs,
    } = setup;
    let hash = |password: &str| crate::auth::hash_password(password).unwrap_or_default();
    format!(
        "# Written by `domicile demo`.\n\
         region = \"{region}\"\njurisdiction = \"{jurisdiction}\"\ndata_dir = \"{data}\"\n\n\
         [listen]\nflight_sql = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\npeer = \"{peer_port}\"\n\n\
         [mesh]\nca_cert = \"{ca}\"\ncert = \"{cert}\"\nkey = \"{key}\"\n\n{peers}\n\
         [[users]]\nname = \"{admin}\"\npassword_hash = \"{admin_hash}\"\nroles = [\"admin\"]\n\
         home_region = \"{region}\"\ncompliance = [\"{jurisdiction}\"]\n\n\
         [[users]]\nname = \"{analyst}\"\npassword_hash = \"{analyst_hash}\"\nroles = [\"reader\"]\n\
         home_region = \"{analyst_home}\"\n\n\
         [[trusted_keys]]\njurisdiction = \"{jurisdiction}\"\npublic_key = \"{public_key}\"\n",
        data = dir.join("data").display(),
        ca = certs.join("ca.pem").display(),
        cert = certs.join(format!("{region}.pem")).display(),
        key = certs.join(format!("{region}.key")).display(),
        admin = ADMIN.0,
        admin_hash = hash(ADMIN.1),
        analyst = ANALYST.0,
        analyst_hash = hash(ANALYST.1),
        analyst_home = ANALYST_HOME,
    )
}

fn config_path(dir: &Path, region: &str) -> PathBuf {
    dir.join(region).join("node.toml")
}

fn key_path(dir: &Path, jurisdiction: &str) -> PathBuf {
    dir.join("keys").join(format!("{jurisdiction}.key"))
}

/// On first run: the mesh CA and node certificates, a peer port per region (chosen by
/// the OS now and kept in the configs), each jurisdiction's signing key, and every
/// region's config. Returns the peer listeners (kept bound, so no other process can
/// take the ports before the nodes start) on the first run, `None` on later runs.
fn prepare(dir: &Path) -> anyhow::Result<Option<Vec<std::net::TcpListener>>> {
    if REGIONS
        .iter()
        .all(|(region, _, _)| config_path(dir, region).exists())
    {
        return Ok(None);
    }
    let certs = dir.join("certs");
    std::fs::create_dir_all(&certs)?;
    std::fs::create_dir_all(dir.join("keys"))?;
    let ca = crate::peers::certs::new_ca()?;
    std::fs::write(certs.join("ca.pem"), &ca.cert_pem)?;
    write_private(&certs.join("ca.key"), &ca.key_pem)?;
    let mut ports = Vec::new();
    let mut listeners = Vec::new();
    for (region, _, _) in REGIONS {
        let node = crate::peers::certs::new_node_cert(&ca, region)?;
        std::fs::write(certs.join(format!("{region}.pem")), &node.cert_pem)?;
        write_private(&certs.join(format!("{region}.key")), &node.key_pem)?;
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        ports.push(listener.local_addr()?);
        listeners.push(listener);
    }
    for (index, (region, jurisdiction, _)) in REGIONS.iter().enumerate() {
        let region_dir = dir.join(region);
        std::fs::create_dir_all(region_dir.join("data"))?;
        let (secret, public) = signing::generate_key_pair();
        write_private(&key_path(dir, jurisdiction), &secret)?;
        let peers: String = REGIONS
            .iter()
            .zip(&ports)
            .filter(|((other, _, _), _)| other != region)
            .map(|((other, _, _), port)| {
                format!("[[peers]]\nregion = \"{other}\"\naddress = \"{port}\"\n\n")
            })
            .collect();
        let setup = RegionSetup {
            dir: &region_dir,
            region,
            jurisdiction,
            public_key: &public,
            peer_port: ports[index],
            peers,
            certs: &certs,
        };
        std::fs::write(config_path(dir, region), node_config(&setup))?;
    }
    Ok(Some(listeners))
}

fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    std::fs::write(path, contents).with_context(|| format!("cannot write {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

/// Uploads the region's residency policy, the PII redactor and the transfer saga,
/// signed with the jurisdiction's demo key, through the admin API.
async fn upload_plugins(
    admin: std::net::SocketAddr,
    jurisdiction: &str,
    policy: &str,
    key: &Path,
    plugins_dir: &Path,
) -> anyhow::Result<()> {
    let mut client = AdminSession::connect(&grpc_url(admin), ADMIN.0, ADMIN.1).await?;
    for (kind, name) in [
        ("residency-policy", policy),
        ("cdc-redactor", "pii_redactor"),
        ("saga-step", "transfer_saga"),
    ] {
        client
            .upload(jurisdiction, kind, 1, key, &component(plugins_dir, name))
            .await
            .with_context(|| format!("upload {name} to {jurisdiction}"))?;
    }
    Ok(())
}

async fn run_script(endpoint: &str, script: &str) -> anyhow::Result<()> {
    let mut shell = SqlShell::connect(endpoint, ADMIN.0, ADMIN.1).await?;
    for statement in split_statements(script)? {
        let mut sink = Vec::new();
        let ok = shell.run(&statement, &mut sink).await?;
        anyhow::ensure!(
            ok,
            "statement failed: {}\n{}",
            statement.lines().next().unwrap_or_default(),
            String::from_utf8_lossy(&sink)
        );
    }
    Ok(())
}

/// Runs the demo until a signal; `ready` is called once everything is loaded.
pub async fn run(
    data_dir: PathBuf,
    plugins_dir: PathBuf,
    kafka: Option<String>,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&data_dir)?;
    let data_dir = data_dir.canonicalize()?;
    let mut nodes = Vec::new();
    let mut entries = Vec::new();
    let mut listeners = prepare(&data_dir)?.map(Vec::into_iter);
    let fresh = listeners.is_some();
    let steps_per_region = if fresh { 2 } else { 1 };
    let progress = super::progress::Progress::new(steps_per_region * REGIONS.len() as u64);
    for (region, jurisdiction, policy) in REGIONS {
        progress.start(&format!("{region}: starting its node"));
        let key = key_path(&data_dir, jurisdiction);
        let mut config = NodeConfig::load(&config_path(&data_dir, region))?;
        // The transport is chosen per run: the same demo may restart with or without it.
        config.cdc.kafka_brokers.clone_from(&kafka);
        // Metrics on a port of the OS's choosing (also for demos set up before they
        // were served).
        config
            .listen
            .metrics
            .get_or_insert_with(|| SocketAddr::from(([127, 0, 0, 1], 0)));
        let peer_listener = listeners.as_mut().and_then(Iterator::next);
        let node = Node::start_with_peer_listener(&config, peer_listener)
            .await
            .with_context(|| format!("{region} failed to start"))?;
        let flight = grpc_url(node.listening.flight_sql);
        let admin = node.listening.admin.context("admin API not listening")?;
        let metrics = node.listening.metrics.context("metrics not served")?;
        progress.done(&format!("{region}: node started"));
        if fresh {
            progress.start(&format!(
                "{region}: uploading plugins, loading schema and sample data"
            ));
            upload_plugins(admin, jurisdiction, policy, &key, &plugins_dir).await?;
            run_script(&flight, SCHEMA).await?;
            let data = DATA
                .iter()
                .find(|(r, _)| *r == region)
                .map(|(_, sql)| *sql)
                .unwrap_or_default();
            run_script(&flight, data).await?;
            progress.done(&format!(
                "{region}: plugins uploaded, schema and sample data loaded"
            ));
        }
        entries.push(RegionEntry {
            region: region.into(),
            jurisdiction: jurisdiction.into(),
            flight_sql: flight,
            admin: grpc_url(admin),
            metrics: format!("http://{metrics}/metrics"),
            data_dir: config.data_dir.clone(),
            users: users_of(region),
        });
        nodes.push(node);
    }
    progress.finish();
    let mesh = MeshFile { regions: entries };
    let mesh_path = data_dir.join("mesh.json");
    std::fs::write(&mesh_path, serde_json::to_vec_pretty(&mesh)?)?;
    print_welcome(&mesh, &mesh_path).await;
    print_directory(&mesh, kafka.as_deref()).await;
    print_federated(&mesh).await;
    run_transfer(&mesh).await;
    println!("\nready; Ctrl-C stops every node cleanly");

    crate::server::wait_for_signal().await;
    println!("stopping the mesh");
    let mut clean = true;
    for (node, region) in nodes.into_iter().zip(REGIONS.map(|(r, _, _)| r)) {
        if let Err(error) = node.stop().await {
            clean = false;
            eprintln!("{region} did not stop cleanly: {error:#}");
        }
    }
    anyhow::ensure!(clean, "some nodes did not stop cleanly");
    println!("stopped cleanly; data kept in {}", data_dir.display());
    Ok(())
}

async fn print_welcome(mesh: &MeshFile, mesh_path: &Path) {
    println!("domicile demo: a payment processor in three regions, on loopback\n");
    for region in &mesh.regions {
        println!(
            "  {:<13} {:<3} flight sql {}   admin {}   metrics {}",
            region.region, region.jurisdiction, region.flight_sql, region.admin, region.metrics
        );
    }
    println!(
        "\nusers: admin / admin (every region, homed where it connects), analyst-apac / analyst (reader homed in ap-southeast)"
    );
    println!(
        "endpoints and credentials for scripts: {}\n",
        mesh_path.display()
    );
    if let Some(eu) = mesh.regions.iter().find(|r| r.region == "eu-central") {
        let query = "SELECT id, name, email, iban, balance, currency FROM accounts ORDER BY id";
        println!(
            "EU accounts as the ap-southeast analyst sees them (EU policy: personal data masked, balance removed):"
        );
        match SqlShell::connect(&eu.flight_sql, ANALYST.0, ANALYST.1).await {
            Ok(mut shell) => {
                let mut out = Vec::new();
                let _ = shell.run(query, &mut out).await;
                println!("{}", String::from_utf8_lossy(&out));
            }
            Err(error) => println!("  (cannot connect: {error:#})"),
        }
        if let Some(us) = mesh.regions.iter().find(|r| r.region == "us-east") {
            println!(
                "the same EU accounts read on the us-east node by its admin (routed to eu-central, EU policy for a US reader):"
            );
            if let Ok(mut shell) = SqlShell::connect(&us.flight_sql, ADMIN.0, ADMIN.1).await {
                let mut out = Vec::new();
                let _ = shell
                    .run(
                        "SELECT id, name, balance FROM accounts WHERE region = 'eu-central' ORDER BY id",
                        &mut out,
                    )
                    .await;
                println!("{}", String::from_utf8_lossy(&out));
            }
        }
        println!("try it:");
        println!(
            "  DOMICILE_PASSWORD=admin cargo run -p domicile -- sql --endpoint {} --user admin -e \"{query}\"",
            eu.flight_sql
        );
        println!(
            "  DOMICILE_PASSWORD=analyst cargo run -p domicile -- sql --endpoint {} --user analyst-apac -e \"{query}\"",
            eu.flight_sql
        );
        println!("\nPython (pip install adbc-driver-flightsql pyarrow):");
        println!("  import adbc_driver_flightsql.dbapi as flightsql");
        println!(
            "  conn = flightsql.connect(\"{}\", db_kwargs={{\"username\": \"admin\", \"password\": \"admin\"}})",
            eu.flight_sql
        );
        println!(
            "  cur = conn.cursor(); cur.execute(\"SELECT region, count(*) FROM accounts GROUP BY region\"); print(cur.fetchall())"
        );
    }
    if let Some(eu) = mesh.regions.iter().find(|r| r.region == "eu-central") {
        println!("\nthe mesh as eu-central sees it (peers over mutual TLS):");
        // Peers ping each other every second; give them one round.
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        if let Ok(mut shell) = SqlShell::connect(&eu.flight_sql, ADMIN.0, ADMIN.1).await {
            let mut out = Vec::new();
            let _ = shell
                .run(
                    "SELECT region, address, reachable, rtt_ms FROM system.regions ORDER BY region",
                    &mut out,
                )
                .await;
            println!("{}", String::from_utf8_lossy(&out));
        }
    }
}

/// The global account directory: every region answers it from its own replica of the
/// others' redacted CDC streams, without asking them.
async fn print_directory(mesh: &MeshFile, kafka: Option<&str>) {
    let transport = match kafka {
        Some(brokers) => format!("through Kafka at {brokers}"),
        None => "streamed between the nodes over the mesh".to_string(),
    };
    println!(
        "\nthe global account directory, answered locally in every region from replicas of the other \
         regions' change streams (redacted by each region's CDC redactor, then its policy; {transport}):"
    );
    let expected = DATA.len().saturating_sub(1);
    for region in &mesh.regions {
        let Ok(mut shell) = SqlShell::connect(&region.flight_sql, ADMIN.0, ADMIN.1).await else {
            continue;
        };
        // Replication takes well under a second on loopback; wait for every source.
        let query = "SELECT source_region, count(*) AS accounts FROM global.accounts \
                     GROUP BY source_region ORDER BY source_region";
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let mut out = Vec::new();
        loop {
            out.clear();
            let ok = shell.run(query, &mut out).await.unwrap_or(false);
            let text = String::from_utf8_lossy(&out);
            let sources = DATA
                .iter()
                .filter(|(r, _)| *r != region.region && text.contains(*r))
                .count();
            if (ok && sources == expected) || std::time::Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        println!("  on {}:\n{}", region.region, String::from_utf8_lossy(&out));
    }
    if let Some(us) = mesh.regions.iter().find(|r| r.region == "us-east")
        && let Ok(mut shell) = SqlShell::connect(&us.flight_sql, ADMIN.0, ADMIN.1).await
    {
        println!(
            "EU customers in the directory on us-east (no name, no balance; email masked, IBAN a token):"
        );
        let mut out = Vec::new();
        let _ = shell
            .run(
                "SELECT id, email, iban, currency, source_commit_time FROM global.accounts \
                 WHERE source_region = 'eu-central' ORDER BY id LIMIT 3",
                &mut out,
            )
            .await;
        println!("{}", String::from_utf8_lossy(&out));
    }
}

/// A federated metadata query: the analyst on ap-southeast asks every region's node at
/// once (`mesh.<table>`); each region's policy decides what leaves for ap-southeast.
async fn print_federated(mesh: &MeshFile) {
    let Some(ap) = mesh.regions.iter().find(|r| r.region == "ap-southeast") else {
        return;
    };
    let Ok(mut shell) = SqlShell::connect(&ap.flight_sql, ANALYST.0, ANALYST.1).await else {
        return;
    };
    println!(
        "\na federated metadata query on ap-southeast ({}): every region's node answers its part, \
         live, as its policy allows:",
        ANALYST.0
    );
    let queries = [
        "SELECT mesh_region, state, count(*) AS transfers FROM mesh.transfers \
         GROUP BY mesh_region, state ORDER BY mesh_region, state",
        "SELECT mesh_region, id, name, currency FROM mesh.accounts \
         WHERE mesh_region <> 'ap-southeast' AND currency = 'EUR' ORDER BY id LIMIT 3",
    ];
    for query in queries {
        println!("  {query}");
        let mut out = Vec::new();
        match shell.run(query, &mut out).await {
            Ok(_) => println!("{}", String::from_utf8_lossy(&out)),
            Err(error) => println!("  (failed: {error:#})"),
        }
    }
}

/// A cross-border transfer as a saga: 25.00 EUR from a US customer's euro account
/// (1005, us-east) to an EU customer (2001, eu-central). The US node orchestrates; each
/// step runs on the node that owns its account; the idempotency key makes a restarted
/// demo find the same saga instead of paying twice.
async fn run_transfer(mesh: &MeshFile) {
    let (Some(us), Some(eu)) = (
        mesh.regions.iter().find(|r| r.region == "us-east"),
        mesh.regions.iter().find(|r| r.region == "eu-central"),
    ) else {
        return;
    };
    println!(
        "\na cross-border transfer as a saga: 25.00 EUR from account 1005 (us-east) to 2001 (eu-central):"
    );
    let fields: Fields = vec![
        ("from_account".into(), Field::Bigint(1005)),
        ("to_account".into(), Field::Bigint(2001)),
        ("amount".into(), Field::Decimal("2500".into(), 2)),
        ("currency".into(), Field::Text("EUR".into())),
        ("from_region".into(), Field::Text("us-east".into())),
        ("to_region".into(), Field::Text("eu-central".into())),
    ];
    let outcome = async {
        let mut session = AdminSession::connect(&us.admin, ADMIN.0, ADMIN.1).await?;
        session
            .start_saga_settled(
                "transfer",
                &fields,
                "demo-transfer-1005-2001",
                std::time::Duration::from_secs(30),
            )
            .await
    }
    .await;
    match outcome {
        Ok(saga) => println!("  {}", super::saga_cli::summary(&saga)),
        Err(error) => println!("  (transfer failed: {error:#})"),
    }
    for (region, query) in [
        (
            us,
            "SELECT id, saga_type, state, attempts, idempotency_key FROM system.sagas",
        ),
        (
            us,
            "SELECT id, balance, currency FROM accounts WHERE id = 1005",
        ),
        (
            eu,
            "SELECT id, balance, currency FROM accounts WHERE id = 2001",
        ),
    ] {
        if let Ok(mut shell) = SqlShell::connect(&region.flight_sql, ADMIN.0, ADMIN.1).await {
            let mut out = Vec::new();
            let _ = shell.run(query, &mut out).await;
            println!(
                "  on {}: {query}\n{}",
                region.region,
                String::from_utf8_lossy(&out)
            );
        }
    }
    println!(
        "  try: DOMICILE_PASSWORD=admin cargo run -p domicile -- saga --endpoint {} --user admin list",
        us.admin
    );
}
