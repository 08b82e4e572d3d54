//! The `domicile` binary: wiring only.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Parser, Subcommand};
use domicile::bounded_file;
use domicile::cli::admin_client::{AdminSession, describe};
use domicile::cli::endpoint::Target;
use domicile::cli::sql_shell::{SqlShell, interactive, read_password, split_statements};
use domicile::config::{LogFormat, NodeConfig};
use domicile::server::Node;
use tracing_subscriber::EnvFilter;

/// glibc's malloc took a sixth of a loaded node's CPU (fragmentation, consolidation of
/// the page-sized buffers storage and gRPC allocate and free on different threads);
/// mimalloc's per-thread free lists do not.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "domicile",
    version,
    about = "A data mesh node that keeps personal data at home"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one regional node.
    Node {
        /// TOML config file (see README "Configuration").
        #[arg(long)]
        config: PathBuf,
        /// Overrides `data_dir`.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Overrides `listen.flight_sql`.
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Run SQL against a node over Flight SQL.
    Sql {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        user: String,
        /// File holding the password; else DOMICILE_PASSWORD.
        #[arg(long)]
        password_file: Option<PathBuf>,
        /// Run this statement and exit.
        #[arg(short = 'e', long = "execute", conflicts_with = "file")]
        execute: Option<String>,
        /// Run the statements in this file and exit.
        #[arg(short = 'f', long = "file")]
        file: Option<PathBuf>,
    },
    /// Run the payment example as a three-region mesh on loopback (us-east, eu-central,
    /// ap-southeast) until Ctrl-C.
    Demo {
        /// Where the nodes keep their data, keys and `mesh.json`; an existing demo there
        /// is started again as it is.
        #[arg(long, default_value = "domicile-demo")]
        data_dir: PathBuf,
        /// The bundled plugin components. Default: built from `plugins/` when run in a
        /// checkout, then the first of $DOMICILE_PLUGINS_DIR, $CARGO_TARGET_DIR,
        /// plugins/target, target (each /wasm32-wasip2/release) that holds them.
        #[arg(long)]
        plugins_dir: Option<PathBuf>,
        /// Carry change events through these Kafka brokers (`host:port,...`) instead of
        /// streaming them between the nodes over the mesh.
        #[arg(long)]
        kafka: Option<String>,
    },
    /// Print an argon2 hash of the password read from stdin, for the `users` config.
    HashPassword,
    /// Plugin signing keys and signatures.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
    /// Mesh certificates: a cluster CA, and one certificate per node naming its region.
    Certs {
        #[command(subcommand)]
        command: CertsCommand,
    },
    /// The node's hash-chained audit log (run against a stopped node's data).
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Sagas of a node, through its admin API.
    Saga {
        #[command(flatten)]
        admin: AdminArgs,
        #[command(subcommand)]
        command: domicile::cli::saga_cli::SagaCommand,
    },
}

#[derive(Subcommand)]
enum CertsCommand {
    /// Make the cluster CA: DIR/ca.pem (give it to every node) and DIR/ca.key (keep it
    /// offline; it signs node certificates).
    Ca {
        #[arg(long)]
        out: PathBuf,
    },
    /// Make a node certificate for REGION signed by the CA in --ca-dir: OUT/REGION.pem
    /// and OUT/REGION.key.
    Node {
        #[arg(long)]
        ca_dir: PathBuf,
        #[arg(long)]
        region: String,
        #[arg(long)]
        out: PathBuf,
    },
    /// Make a server certificate for the client listeners ([listen.tls]) signed by the
    /// CA in --ca-dir, naming each --name (host names or IP addresses clients dial):
    /// OUT/server.pem and OUT/server.key. Clients trust the CA's ca.pem (--tls-ca, or
    /// ADBC's tls_root_certs). A separate CA from the mesh's keeps client and mesh trust
    /// apart.
    Server {
        #[arg(long)]
        ca_dir: PathBuf,
        #[arg(long = "name", required = true)]
        names: Vec<String>,
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Walk the chain from the first entry to the tip; name the first broken link.
    /// Exit status 0: intact; 1: broken.
    Verify {
        /// The node's config (its `data_dir` is read).
        #[arg(long, required_unless_present = "data_dir")]
        config: Option<PathBuf>,
        /// The node's data directory (instead of --config).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Search a node's files for PII canaries of other regions (see README "Leak
    /// scan"). Exit status 0: none found; 1: leaks found.
    Scan {
        /// The region of the node whose files are scanned: its own canaries may be there.
        #[arg(long, required_unless_present = "kafka")]
        region: Option<String>,
        /// TOML file of `[[canary]]` entries (`region`, `value`).
        #[arg(long)]
        canaries: PathBuf,
        /// Also read every message of every `domicile.cdc.*` topic on these brokers
        /// (`host:port,...`): no canary of any region may be in a key, value or header.
        #[arg(long)]
        kafka: Option<String>,
        /// Files and folders to scan: the node's data dir (database and cache), its logs.
        #[arg(required_unless_present = "kafka", requires = "region")]
        paths: Vec<PathBuf>,
    },
}

/// Where and as whom to reach a node's admin API.
#[derive(clap::Args)]
struct AdminArgs {
    // The admin listener (listen.admin), e.g. grpc://127.0.0.1:50052.
    #[command(flatten)]
    target: Target,
    #[arg(long)]
    user: String,
    /// File holding the password; else DOMICILE_PASSWORD.
    #[arg(long)]
    password_file: Option<PathBuf>,
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Make an ed25519 key pair: the secret goes to FILE (mode 0600), the public key to
    /// FILE.pub (for `trusted_keys.public_key_file`) and is printed as a `trusted_keys`
    /// config entry.
    Keygen {
        #[arg(long)]
        jurisdiction: String,
        #[arg(long)]
        out: PathBuf,
    },
    /// Sign a component with KEY and upload it to a node's admin API; it becomes active.
    Upload {
        #[command(flatten)]
        admin: AdminArgs,
        #[arg(long)]
        jurisdiction: String,
        /// residency-policy, cdc-redactor or saga-step
        #[arg(long)]
        kind: String,
        #[arg(long)]
        version: u64,
        /// Secret key file from `domicile plugin keygen`.
        #[arg(long)]
        key: PathBuf,
        /// The component (.wasm).
        file: PathBuf,
    },
    /// List every stored plugin version of a node.
    List {
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Make a stored version active again.
    Activate {
        #[command(flatten)]
        admin: AdminArgs,
        #[arg(long)]
        jurisdiction: String,
        #[arg(long)]
        kind: String,
        #[arg(long)]
        version: u64,
    },
    /// Activate the newest version older than the active one.
    Rollback {
        #[command(flatten)]
        admin: AdminArgs,
        #[arg(long)]
        jurisdiction: String,
        #[arg(long)]
        kind: String,
    },
    /// Print the signature of a plugin component for upload.
    Sign {
        #[arg(long)]
        jurisdiction: String,
        /// residency-policy, cdc-redactor or saga-step
        #[arg(long)]
        kind: String,
        #[arg(long)]
        version: u64,
        /// Secret key file from `domicile plugin keygen`.
        #[arg(long)]
        key: PathBuf,
        /// The component (.wasm).
        file: PathBuf,
    },
}

fn main() {
    if let Err(error) = run() {
        eprintln!("error: {error:#}");
        std::process::exit(2);
    }
}

fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    domicile::peers::install_panic_hook();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(domicile::limits::WORKER_STACK_BYTES)
        .build()?;
    match cli.command {
        Command::Node {
            config,
            data_dir,
            listen,
        } => runtime.block_on(run_node(config, data_dir, listen)),
        Command::Sql {
            target,
            user,
            password_file,
            execute,
            file,
        } => {
            let ok = runtime.block_on(run_sql(target, user, password_file, execute, file))?;
            std::process::exit(if ok { 0 } else { 1 });
        }
        Command::Plugin { command } => runtime.block_on(run_plugin_command(command)),
        Command::Saga { admin, command } => runtime.block_on(async {
            let mut session = admin_client(&admin).await?;
            domicile::cli::saga_cli::run(&mut session, command).await
        }),
        Command::Demo {
            data_dir,
            plugins_dir,
            kafka,
        } => {
            let plugins_dir = domicile::cli::bundled_plugins::locate(plugins_dir)?;
            std::fs::create_dir_all(&data_dir)?;
            let log = std::fs::File::create(data_dir.join("demo.log"))?;
            println!(
                "starting us-east, eu-central and ap-southeast (log: {}) ...",
                data_dir.join("demo.log").display()
            );
            tracing_subscriber::fmt()
                .with_env_filter(log_filter(DEFAULT_LOG_LEVEL)?)
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(log))
                .try_init()
                .map_err(|e| anyhow::anyhow!("cannot start logging: {e}"))?;
            runtime.block_on(domicile::cli::demo::run(data_dir, plugins_dir, kafka))
        }
        Command::Certs { command } => make_certs(command),
        Command::Audit {
            command: AuditCommand::Verify { config, data_dir },
        } => {
            let intact = verify_audit(config, data_dir)?;
            std::process::exit(if intact { 0 } else { 1 });
        }
        Command::Audit {
            command:
                AuditCommand::Scan {
                    region,
                    canaries,
                    kafka,
                    paths,
                },
        } => {
            let canaries = read_canaries(&canaries)?;
            let mut clean = true;
            if let Some(region) = region
                && !paths.is_empty()
            {
                clean &= scan_for_leaks(&region, &canaries, &paths)?;
            }
            if let Some(brokers) = kafka {
                clean &= runtime.block_on(scan_topics_for_leaks(&brokers, &canaries))?;
            }
            std::process::exit(if clean { 0 } else { 1 });
        }
        Command::HashPassword => {
            let password = bounded_file::read_text_from(
                std::io::stdin(),
                domicile::limits::PASSWORD_SIZE_MAX_BYTES,
                "standard input",
            )?;
            let hash = domicile::auth::hash_password(password.trim_end_matches(['\r', '\n']))
                .map_err(|e| anyhow::anyhow!(e))?;
            println!("{hash}");
            Ok(())
        }
    }
}

fn make_certs(command: CertsCommand) -> anyhow::Result<()> {
    use domicile::peers::certs;
    let write = |path: PathBuf, text: &str, private: bool| -> anyhow::Result<()> {
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        #[cfg(unix)]
        if private {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        }
        println!("wrote {}", path.display());
        Ok(())
    };
    match command {
        CertsCommand::Ca { out } => {
            std::fs::create_dir_all(&out)?;
            anyhow::ensure!(
                !out.join("ca.key").exists(),
                "{} already holds a CA; refusing to replace it",
                out.display()
            );
            let ca = certs::new_ca()?;
            write(out.join("ca.pem"), &ca.cert_pem, false)?;
            write(out.join("ca.key"), &ca.key_pem, true)?;
        }
        CertsCommand::Node {
            ca_dir,
            region,
            out,
        } => {
            let ca = certs::Issued {
                cert_pem: read_text(&ca_dir.join("ca.pem"))?,
                key_pem: read_text(&ca_dir.join("ca.key"))?,
            };
            let node = certs::new_node_cert(&ca, &region)?;
            std::fs::create_dir_all(&out)?;
            write(out.join(format!("{region}.pem")), &node.cert_pem, false)?;
            write(out.join(format!("{region}.key")), &node.key_pem, true)?;
        }
        CertsCommand::Server { ca_dir, names, out } => {
            let ca = certs::Issued {
                cert_pem: read_text(&ca_dir.join("ca.pem"))?,
                key_pem: read_text(&ca_dir.join("ca.key"))?,
            };
            let server = certs::new_server_cert(&ca, &names)
                .with_context(|| format!("cannot make a certificate for {names:?}"))?;
            std::fs::create_dir_all(&out)?;
            write(out.join("server.pem"), &server.cert_pem, false)?;
            write(out.join("server.key"), &server.key_pem, true)?;
        }
    }
    Ok(())
}

/// A PEM file's text, bounded (`limits::PEM_FILE_SIZE_MAX_BYTES`).
fn read_text(path: &Path) -> anyhow::Result<String> {
    Ok(bounded_file::read_to_string(
        path,
        domicile::limits::PEM_FILE_SIZE_MAX_BYTES,
    )?)
}

fn read_canaries(path: &Path) -> anyhow::Result<Vec<domicile::residency::leak_scan::Canary>> {
    let text = bounded_file::read_to_string(path, domicile::limits::CONFIG_FILE_SIZE_MAX_BYTES)?;
    let file: domicile::residency::leak_scan::CanaryFile =
        toml::from_str(&text).with_context(|| format!("invalid canary file {}", path.display()))?;
    anyhow::ensure!(
        !file.canaries.is_empty(),
        "{} lists no canaries",
        path.display()
    );
    Ok(file.canaries)
}

fn scan_for_leaks(
    region: &str,
    canaries: &[domicile::residency::leak_scan::Canary],
    paths: &[PathBuf],
) -> anyhow::Result<bool> {
    let report = domicile::residency::leak_scan::scan(region, canaries, paths)?;
    for finding in &report.findings {
        println!("LEAK {finding}");
    }
    println!(
        "scanned {} files ({} bytes) for {} canaries of other regions: {} found",
        report.files,
        report.bytes,
        canaries.iter().filter(|c| c.region != region).count(),
        report.findings.len()
    );
    Ok(report.findings.is_empty())
}

/// Every message of every CDC topic: keys, values and headers.
async fn scan_topics_for_leaks(
    brokers: &str,
    canaries: &[domicile::residency::leak_scan::Canary],
) -> anyhow::Result<bool> {
    use std::time::Duration;
    let records =
        domicile::cdc::read_all_topics(brokers, Duration::from_secs(10), Duration::from_secs(2))
            .await
            .with_context(|| format!("cannot read the CDC topics on {brokers}"))?;
    let place = |r: &domicile::cdc::TopicRecord, part: &str| {
        format!("kafka:{}[{}]@{}/{part}", r.topic, r.partition, r.offset)
    };
    let parts = records.iter().flat_map(|r| {
        [
            (place(r, "key"), r.key.as_slice()),
            (place(r, "value"), r.value.as_slice()),
        ]
        .into_iter()
        .chain(
            r.headers
                .iter()
                .map(move |(name, value)| (place(r, &format!("header:{name}")), value.as_slice())),
        )
    });
    let report = domicile::residency::leak_scan::scan_records(canaries, parts);
    for finding in &report.findings {
        println!("LEAK {finding}");
    }
    let topics: std::collections::BTreeSet<&str> =
        records.iter().map(|r| r.topic.as_str()).collect();
    println!(
        "scanned {} messages in {} topics ({} bytes) for {} canaries: {} found",
        records.len(),
        topics.len(),
        report.bytes,
        canaries.len(),
        report.findings.len()
    );
    Ok(report.findings.is_empty())
}

/// Opens the node's database (refused while the node runs: redb locks the file) and
/// walks the audit chain.
fn verify_audit(config: Option<PathBuf>, data_dir: Option<PathBuf>) -> anyhow::Result<bool> {
    let data_dir = match (data_dir, config) {
        (Some(dir), _) => dir,
        (None, Some(path)) => NodeConfig::load(&path)?.data_dir,
        (None, None) => anyhow::bail!("give --config or --data-dir"),
    };
    let path = data_dir.join("domicile.redb");
    anyhow::ensure!(path.exists(), "no database at {}", path.display());
    let store = domicile::storage::Store::open(&path)
        .with_context(|| format!("cannot open {} (stop the node first)", path.display()))?;
    let verdict = store.verify_audit()?;
    // Close the file cleanly before the process exits, so the node's next start does
    // not take it for a crash.
    let closed = store.close_watch();
    drop(store);
    if !closed.wait(std::time::Duration::from_secs(10)) {
        eprintln!("warning: the database did not close cleanly");
    }
    match verdict {
        Ok(verified) => {
            println!(
                "audit chain intact: {} entries, tip {}",
                verified.entries,
                hex::encode(verified.tip)
            );
            Ok(true)
        }
        Err(broken) => {
            println!("{broken}");
            Ok(false)
        }
    }
}

async fn run_node(
    path: PathBuf,
    data_dir: Option<PathBuf>,
    listen: Option<SocketAddr>,
) -> anyhow::Result<()> {
    let mut config = NodeConfig::load(&path)?;
    if let Some(data_dir) = data_dir {
        config.data_dir = data_dir;
    }
    if let Some(listen) = listen {
        config.listen.flight_sql = listen;
    }
    config.validate()?;
    init_logging(&config)?;
    let node = Node::start(&config).await.context("node failed to start")?;
    // Machine-readable first line (tests and scripts parse it), then a human summary.
    let off = || "off".to_string();
    let metrics = node.listening.metrics.map_or_else(off, |a| a.to_string());
    let admin = node.listening.admin.map_or_else(off, |a| a.to_string());
    let peer = node.listening.peer.map_or_else(off, |a| a.to_string());
    // Written, not `println!`: a supervisor that reads the first line and closes the
    // pipe must not make the node panic on the lines after it (EPIPE).
    let mut banner = format!(
        "listening flight_sql={} admin={admin} metrics={metrics} peer={peer}\n\
         domicile node {} ({})\n  flight sql  {}\n",
        node.listening.flight_sql,
        config.region,
        config.jurisdiction,
        node.listening.client_url(node.listening.flight_sql)
    );
    if let Some(address) = node.listening.admin {
        banner.push_str(&format!(
            "  admin       {}\n",
            node.listening.client_url(address)
        ));
    }
    if let Some(address) = node.listening.metrics {
        banner.push_str(&format!("  metrics     http://{address}/metrics\n"));
    }
    banner.push_str(&format!("  data dir    {}\n", config.data_dir.display()));
    {
        use std::io::Write;
        let mut stdout = std::io::stdout().lock();
        if stdout
            .write_all(banner.as_bytes())
            .and_then(|()| stdout.flush())
            .is_err()
        {
            tracing::warn!("stdout is closed; the node goes on without its banner");
        }
    }
    tracing::info!(region = %config.region, flight_sql = %node.listening.flight_sql, "node started");
    node.run_until_signal().await
}

/// The demo's log level; a node's comes from `logging.level`.
const DEFAULT_LOG_LEVEL: &str = "info";

/// Libraries whose INFO lines are about their own internals (foyer reports every
/// engine it opens and recovers; wasmtime and cranelift their compilations): at `info`
/// they would outnumber the node's own lines, so they start at `warn`. A level that
/// names them (`foyer=info`) or `RUST_LOG` overrides this.
const QUIET_LIBRARIES: [&str; 6] = [
    "foyer",
    "foyer_memory",
    "foyer_storage",
    "wasmtime",
    "cranelift_codegen",
    "h2",
];

/// `RUST_LOG` if set, else `level` with the noisy libraries at `warn` unless `level`
/// names them itself.
fn log_filter(level: &str) -> anyhow::Result<EnvFilter> {
    if let Ok(filter) = EnvFilter::try_from_default_env() {
        return Ok(filter);
    }
    let mut directives = level.to_string();
    for library in QUIET_LIBRARIES {
        if !level.contains(library) {
            directives.push_str(&format!(",{library}=warn"));
        }
    }
    Ok(EnvFilter::try_new(directives)?)
}

/// Where `plugin keygen --out KEY` writes the public key: `KEY.pub`.
fn public_key_path(secret: &Path) -> PathBuf {
    let mut name = secret.as_os_str().to_owned();
    name.push(".pub");
    PathBuf::from(name)
}

fn init_logging(config: &NodeConfig) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(log_filter(&config.logging.level)?)
        // Colour codes only for a person watching a terminal, never in a redirected log.
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match config.logging.format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    Ok(())
}

async fn run_sql(
    target: Target,
    user: String,
    password_file: Option<PathBuf>,
    execute: Option<String>,
    file: Option<PathBuf>,
) -> anyhow::Result<bool> {
    let password = read_password(password_file.as_deref())?;
    let mut shell = SqlShell::connect_to(&target, &user, &password).await?;
    let mut stdout = std::io::stdout();
    match (execute, file) {
        (Some(sql), _) => shell.run(&sql, &mut stdout).await,
        (None, Some(path)) => {
            let script = bounded_file::read_to_string(
                &path,
                domicile::limits::SQL_SCRIPT_FILE_SIZE_MAX_BYTES,
            )?;
            let mut all_ok = true;
            for statement in split_statements(&script) {
                all_ok &= shell.run(&statement, &mut stdout).await?;
            }
            Ok(all_ok)
        }
        (None, None) => interactive(&mut shell).await,
    }
}

async fn admin_client(args: &AdminArgs) -> anyhow::Result<AdminSession> {
    let password = read_password(args.password_file.as_deref())?;
    AdminSession::connect_to(&args.target, &args.user, &password).await
}

async fn run_plugin_command(command: PluginCommand) -> anyhow::Result<()> {
    use domicile::plugins::signing;
    match command {
        PluginCommand::Upload {
            admin,
            jurisdiction,
            kind,
            version,
            key,
            file,
        } => {
            let info = admin_client(&admin)
                .await?
                .upload(&jurisdiction, &kind, version, &key, &file)
                .await?;
            println!("uploaded {}", describe(&info));
            Ok(())
        }
        PluginCommand::List { admin } => {
            for info in admin_client(&admin).await?.list().await? {
                println!("{}", describe(&info));
            }
            Ok(())
        }
        PluginCommand::Activate {
            admin,
            jurisdiction,
            kind,
            version,
        } => {
            let info = admin_client(&admin)
                .await?
                .activate(&jurisdiction, &kind, version)
                .await?;
            println!("activated {}", describe(&info));
            Ok(())
        }
        PluginCommand::Rollback {
            admin,
            jurisdiction,
            kind,
        } => {
            let info = admin_client(&admin)
                .await?
                .rollback(&jurisdiction, &kind)
                .await?;
            println!("rolled back to {}", describe(&info));
            Ok(())
        }
        PluginCommand::Keygen { jurisdiction, out } => {
            let (secret, public) = signing::generate_key_pair();
            write_secret(&out, &secret)?;
            let public_path = public_key_path(&out);
            std::fs::write(&public_path, format!("{public}\n"))
                .with_context(|| format!("cannot write {}", public_path.display()))?;
            println!(
                "# secret key written to {}, public key to {} (public_key_file)",
                out.display(),
                public_path.display()
            );
            println!(
                "[[trusted_keys]]\njurisdiction = \"{jurisdiction}\"\npublic_key = \"{public}\""
            );
            Ok(())
        }
        PluginCommand::Sign {
            jurisdiction,
            kind,
            version,
            key,
            file,
        } => {
            let secret =
                bounded_file::read_to_string(&key, domicile::limits::KEY_FILE_SIZE_MAX_BYTES)
                    .context("signing key")?;
            let signing_key = signing::parse_signing_key(&secret).map_err(anyhow::Error::msg)?;
            // Uploaded in one message: a larger file could not be sent.
            let bytes =
                bounded_file::read(&file, domicile::limits::GRPC_MESSAGE_SIZE_MAX_BYTES as u64)
                    .context("component")?;
            let message = signing::signed_message(
                &jurisdiction,
                &kind,
                version,
                &signing::sha256_hex(&bytes),
            );
            println!("{}", signing::sign(&signing_key, &message));
            Ok(())
        }
    }
}

/// Writes a secret so only its owner can read it.
fn write_secret(path: &std::path::Path, secret: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot create {} (it must not exist yet)", path.display()))?;
    file.write_all(secret.as_bytes())?;
    Ok(())
}
