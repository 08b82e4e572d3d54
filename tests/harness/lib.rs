//! Test harness: starts real `domicile` processes on OS-chosen ports and talks to them
//! with the stock Rust Flight SQL client. Every node's stderr goes to a log file that is
//! printed when the owning test fails (the `Drop` of a panicking thread).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use arrow::array::RecordBatch;
use arrow_flight::sql::client::FlightSqlServiceClient;
use futures::TryStreamExt;
use tonic::transport::{Channel, Endpoint};

pub use arrow;

pub mod bank;
mod kafka_broker;
mod link_proxy;
mod mesh;
pub mod otlp;
pub mod overload;
pub mod postgres;
pub mod sql_engines;
pub mod sql_gen;
pub use arrow_flight;
pub use kafka_broker::KafkaBroker;
pub use link_proxy::LinkProxy;
pub use mesh::{Mesh, free_port, make_certs};

/// Users every test node has: name, password, role. All are homed in the node's region
/// except `apac`, a reader homed in `ap-southeast`, and `visitor`, a writer homed in
/// `us-east`, wherever they connect.
pub const USERS: &[(&str, &str, &str)] = &[
    ("admin", "admin-pw", "admin"),
    ("writer", "writer-pw", "writer"),
    ("reader", "reader-pw", "reader"),
    ("apac", "apac-pw", "reader"),
    ("visitor", "visitor-pw", "writer"),
];

/// Where a harness user's data lives when it connects to a node of `region`.
fn home_of<'a>(user: &str, region: &'a str) -> &'a str {
    match user {
        "apac" => "ap-southeast",
        "visitor" => "us-east",
        _ => region,
    }
}

/// The jurisdiction of a test region, and its bundled residency policy.
pub fn jurisdiction_of(region: &str) -> (&'static str, &'static str) {
    match region.split('-').next() {
        Some("us") => ("US", "us_ccpa"),
        Some("ap") => ("SG", "sg_pdpa"),
        _ => ("EU", "eu_gdpr"),
    }
}

/// The `domicile` binary built next to this test binary (`cargo build -p domicile` first),
/// or `DOMICILE_BIN`.
pub fn domicile_binary() -> PathBuf {
    if let Ok(path) = std::env::var("DOMICILE_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<test>");
    let binary = profile_dir.join("domicile");
    assert!(
        binary.exists(),
        "{} is missing: run `cargo build -p domicile` first",
        binary.display()
    );
    binary
}

/// The folder holding the `.wasm` components built for the tests: plugins and hostile
/// guests (`cargo build --release --target wasm32-wasip2`) in the target directory of
/// the running binary (a test's or a bench's), or `DOMICILE_WASM_DIR`.
pub fn wasm_dir() -> PathBuf {
    if let Ok(path) = std::env::var("DOMICILE_WASM_DIR") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("test binary path");
    // A test runs from target/<profile>/deps, a bench binary from target/<profile>.
    let profile = exe
        .parent()
        .map(|dir| match dir.file_name() {
            Some(name) if name == "deps" => dir.parent().unwrap_or(dir),
            _ => dir,
        })
        .expect("target/<profile>");
    let target = profile.parent().expect("target");
    target.join("wasm32-wasip2").join("release")
}

/// The bytes of component `name` (e.g. `eu_gdpr`), built by tests/run.sh.
pub fn wasm(name: &str) -> Vec<u8> {
    let path = wasm_dir().join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; build the components first (tests/run.sh does)",
            path.display()
        )
    })
}

/// The key the harness signs test policies with, made once per test process.
struct PolicyKey {
    public: String,
    file: PathBuf,
    _dir: tempfile::TempDir,
}

impl PolicyKey {
    fn get() -> anyhow::Result<&'static PolicyKey> {
        static KEY: OnceLock<Result<PolicyKey, String>> = OnceLock::new();
        KEY.get_or_init(|| {
            let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
            let (secret, public) = domicile::plugins::signing::generate_key_pair();
            let file = dir.path().join("eu-test.key");
            std::fs::write(&file, secret).map_err(|e| e.to_string())?;
            Ok(PolicyKey {
                public,
                file,
                _dir: dir,
            })
        })
        .as_ref()
        .map_err(|e| anyhow::anyhow!("cannot make the harness signing key: {e}"))
    }

    fn trusted_entry(&self, jurisdiction: &str) -> String {
        format!(
            "\n[[trusted_keys]]\njurisdiction = \"{jurisdiction}\"\npublic_key = \"{}\"\n",
            self.public
        )
    }
}

fn password_hashes() -> &'static Vec<String> {
    static HASHES: OnceLock<Vec<String>> = OnceLock::new();
    HASHES.get_or_init(|| {
        USERS
            .iter()
            .map(|(_, password, _)| {
                let mut child = Command::new(domicile_binary())
                    .arg("hash-password")
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .spawn()
                    .expect("run domicile hash-password");
                use std::io::Write;
                child
                    .stdin
                    .take()
                    .expect("stdin")
                    .write_all(password.as_bytes())
                    .expect("write password");
                let output = child.wait_with_output().expect("hash-password finishes");
                String::from_utf8(output.stdout)
                    .expect("utf8")
                    .trim()
                    .to_string()
            })
            .collect()
    })
}

/// One node process with its own data directory.
pub struct TestNode {
    pub region: String,
    pub dir: tempfile::TempDir,
    pub flight_sql: SocketAddr,
    /// The admin gRPC API.
    pub admin: Option<SocketAddr>,
    /// The peer API, for mesh members.
    pub peer: Option<SocketAddr>,
    /// `/metrics`, `/healthz` and `/readyz` (HTTP).
    pub metrics: Option<SocketAddr>,
    child: Option<Child>,
    starts: usize,
    extra_toml: String,
    /// `listen.peer`, for mesh members.
    peer_listen: Option<SocketAddr>,
}

impl TestNode {
    /// Starts a node with its jurisdiction's bundled residency policy active (see
    /// [`jurisdiction_of`]): a node refuses to store or release regional data without
    /// one, as a production node does.
    pub fn start(region: &str) -> anyhow::Result<Self> {
        Self::start_with_policy(region, "", None)
    }

    /// [`TestNode::start`] with extra config and, for mesh members, a peer listener.
    pub fn start_with_policy(
        region: &str,
        extra_toml: &str,
        peer_listen: Option<SocketAddr>,
    ) -> anyhow::Result<Self> {
        let key = PolicyKey::get()?;
        let (jurisdiction, policy) = jurisdiction_of(region);
        let extra = format!("{}{extra_toml}", key.trusted_entry(jurisdiction));
        let node = Self::start_full(region, &extra, peer_listen, |_| Ok(()))?;
        node.upload_policy(policy, 1)?;
        Ok(node)
    }

    /// A node that trusts the harness key but has no plugin active yet (as a fresh
    /// node before its operator uploads one).
    pub fn start_without_policy(region: &str) -> anyhow::Result<Self> {
        let key = PolicyKey::get()?;
        let (jurisdiction, _) = jurisdiction_of(region);
        Self::start_full(region, &key.trusted_entry(jurisdiction), None, |_| Ok(()))
    }

    /// Signs the component `wasm_name` with the harness key (trusted by nodes from
    /// `start`) and uploads it as residency policy `version` of the node's jurisdiction
    /// through the admin API.
    pub fn upload_policy(&self, wasm_name: &str, version: u64) -> anyhow::Result<()> {
        self.upload_plugin("residency-policy", wasm_name, version)
    }

    /// [`TestNode::upload_policy`] for a plugin of any `kind` (`residency-policy`,
    /// `cdc-redactor`, `saga-step`).
    pub fn upload_plugin(&self, kind: &str, wasm_name: &str, version: u64) -> anyhow::Result<()> {
        let key = PolicyKey::get()?;
        let kind = kind.to_string();
        let (jurisdiction, _) = jurisdiction_of(&self.region);
        let endpoint = format!("http://{}", self.admin.context("admin API not listening")?);
        let file = wasm_dir().join(format!("{wasm_name}.wasm"));
        let key_file = key.file.clone();
        // Callers may be inside a Tokio runtime; the upload gets one of its own.
        std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(async {
                    let mut admin = domicile::cli::admin_client::AdminSession::connect(
                        &endpoint, "admin", "admin-pw",
                    )
                    .await?;
                    admin
                        .upload(jurisdiction, &kind, version, &key_file, &file)
                        .await
                })
        })
        .join()
        .map_err(|_| anyhow::anyhow!("plugin upload thread panicked"))?
        .with_context(|| format!("upload {wasm_name} v{version}"))?;
        Ok(())
    }

    /// Starts a node whose config gets `extra_toml` appended, after `setup` prepared its
    /// (empty) data directory.
    pub fn start_with(
        region: &str,
        extra_toml: &str,
        setup: impl FnOnce(&Path) -> anyhow::Result<()>,
    ) -> anyhow::Result<Self> {
        Self::start_full(region, extra_toml, None, setup)
    }

    /// [`TestNode::start_with`], also serving the peer API on `peer_listen`.
    pub fn start_full(
        region: &str,
        extra_toml: &str,
        peer_listen: Option<SocketAddr>,
        setup: impl FnOnce(&Path) -> anyhow::Result<()>,
    ) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let mut node = Self {
            region: region.to_string(),
            dir,
            flight_sql: "127.0.0.1:0".parse()?,
            admin: None,
            peer: None,
            metrics: None,
            child: None,
            starts: 0,
            extra_toml: extra_toml.to_string(),
            peer_listen,
        };
        std::fs::create_dir_all(node.data_dir())?;
        setup(&node.data_dir())?;
        node.write_config()?;
        node.spawn()?;
        Ok(node)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("node.toml")
    }

    /// Appends `toml` to the node's config file; it applies from the next (re)start.
    pub fn append_config(&self, toml: &str) -> anyhow::Result<()> {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(self.config_path())?;
        file.write_all(toml.as_bytes())?;
        Ok(())
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join(format!("node-{}.log", self.starts))
    }

    fn write_config(&self) -> anyhow::Result<()> {
        let (jurisdiction, _) = jurisdiction_of(&self.region);
        let mut text = format!(
            "region = \"{region}\"\njurisdiction = \"{jurisdiction}\"\ndata_dir = \"data\"\n\n[listen]\nflight_sql = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\nmetrics = \"127.0.0.1:0\"\n{peer}\n[logging]\nlevel = \"info\"\n\n# Debug builds on a loaded 2-core machine: generous, so tests fail on logic, not on\n# timing. The deadline itself is tested with its default in plugin_host.\n[plugins]\ncall_deadline_ms = 2000\n",
            region = self.region,
            peer = self
                .peer_listen
                .map(|a| format!("peer = \"{a}\"\n"))
                .unwrap_or_default(),
        );
        for ((name, _, role), hash) in USERS.iter().zip(password_hashes()) {
            text.push_str(&format!(
                "\n[[users]]\nname = \"{name}\"\npassword_hash = \"{hash}\"\nroles = [\"{role}\"]\nhome_region = \"{}\"\ncompliance = [{}]\n",
                home_of(name, &self.region),
                // The admin user is the compliance officer of the node's jurisdiction.
                if *name == "admin" { format!("\"{jurisdiction}\"") } else { String::new() }
            ));
        }
        text.push_str(&self.extra_toml);
        std::fs::write(self.config_path(), text)?;
        Ok(())
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        self.starts += 1;
        let log = std::fs::File::create(self.log_path())?;
        let mut child = Command::new(domicile_binary())
            .args(["node", "--config"])
            .arg(self.config_path())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .context("spawn domicile node")?;
        let stdout = child.stdout.take().context("node stdout")?;
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = sender.send(line);
            }
            // Keep draining so the node never blocks on a full pipe.
            for _ in lines {}
        });
        let line = match receiver.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                bail!("node did not start; log:\n{}", self.logs());
            }
        };
        let address = line
            .split_whitespace()
            .find_map(|part| part.strip_prefix("flight_sql="))
            .with_context(|| format!("unexpected first line {line:?}"))?;
        self.flight_sql = address.parse()?;
        self.admin = line
            .split_whitespace()
            .find_map(|part| part.strip_prefix("admin="))
            .and_then(|a| a.parse().ok());
        self.peer = line
            .split_whitespace()
            .find_map(|part| part.strip_prefix("peer="))
            .and_then(|a| a.parse().ok());
        self.metrics = line
            .split_whitespace()
            .find_map(|part| part.strip_prefix("metrics="))
            .and_then(|a| a.parse().ok());
        self.child = Some(child);
        Ok(())
    }

    /// SIGKILL: no shutdown code runs, exactly like a power cut for the process.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill9();
        self.spawn()
    }

    /// SIGTERM and wait; returns the exit status.
    pub fn stop(&mut self) -> anyhow::Result<std::process::ExitStatus> {
        let mut child = self.child.take().context("node not running")?;
        Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!("node did not stop within 30 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.flight_sql)
    }

    /// CPU time (user + system, all threads) the running node process has used, from
    /// `/proc` (Linux; `None` elsewhere or when it is not running). Benchmarks divide it
    /// by the work done: unlike throughput, it does not move with the disk's latency.
    pub fn cpu_seconds(&self) -> Option<f64> {
        let pid = self.child.as_ref()?.id();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the parenthesised command name; utime and stime are fields 14
        // and 15 of the line, in clock ticks (USER_HZ, 100 on Linux).
        let rest = stat.rsplit_once(')')?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| fields.get(i)?.parse::<u64>().ok();
        Some((ticks(11)? + ticks(12)?) as f64 / 100.0)
    }

    /// The running node process's id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The running node's resident memory now and its high-water mark (`VmRSS`,
    /// `VmHWM` of `/proc/<pid>/status`), in KiB; `None` off Linux or when not running.
    pub fn memory_kib(&self) -> Option<(u64, u64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))?
                .split_whitespace()
                .next()?
                .parse::<u64>()
                .ok()
        };
        Some((field("VmRSS:")?, field("VmHWM:")?))
    }

    /// All log output of every start of this node.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for start in 1..=self.starts {
            let path = self.dir.path().join(format!("node-{start}.log"));
            out.push_str(&format!("--- {} start {start} ---\n", self.region));
            out.push_str(&std::fs::read_to_string(path).unwrap_or_default());
        }
        out
    }

    /// Runs `sql` as `reader` until `done` accepts the answer; panics after `timeout`
    /// with the last answer. For state that arrives asynchronously (replicas, peers).
    pub async fn wait_for(
        &self,
        sql: &str,
        timeout: Duration,
        done: impl Fn(&[RecordBatch]) -> bool,
    ) -> Vec<RecordBatch> {
        let mut client = self.client("reader").await.expect("login as reader");
        let deadline = Instant::now() + timeout;
        loop {
            let result = client.query(sql).await;
            if let Ok(batches) = &result
                && done(batches)
            {
                return batches.clone();
            }
            assert!(
                Instant::now() < deadline,
                "{}: `{sql}` never matched; last answer {result:?}",
                self.region
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn client(&self, user: &str) -> anyhow::Result<Client> {
        let password = USERS
            .iter()
            .find(|(name, _, _)| *name == user)
            .context("unknown test user")?
            .1;
        Client::connect(&self.endpoint(), user, password).await
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
        self.kill9();
    }
}

/// A logged-in Flight SQL client.
pub struct Client {
    pub inner: FlightSqlServiceClient<Channel>,
}

impl Client {
    pub async fn connect(endpoint: &str, user: &str, password: &str) -> anyhow::Result<Self> {
        // Stock clients' spelling (`grpc://`, as the node and the demo print it) is
        // accepted too.
        let endpoint = domicile::cli::endpoint::channel_uri(endpoint)?;
        let channel = Endpoint::from_shared(endpoint)?.connect().await?;
        let mut inner = FlightSqlServiceClient::new(channel);
        inner.handshake(user, password).await?;
        Ok(Self { inner })
    }

    /// [`Client::connect`] over a connection whose local end is bound to `source` (any
    /// of 127.0.0.0/8 reaches a loopback listener on Linux): tests that need clients
    /// at several addresses, as the node's per-address bounds see them.
    pub async fn connect_from(
        endpoint: &str,
        source: std::net::IpAddr,
        user: &str,
        password: &str,
    ) -> anyhow::Result<Self> {
        let mut inner = FlightSqlServiceClient::new(channel_from(endpoint, source).await?);
        inner.handshake(user, password).await?;
        Ok(Self { inner })
    }

    /// Runs a query (or any statement) through GetFlightInfo + DoGet.
    pub async fn query(&mut self, sql: &str) -> Result<Vec<RecordBatch>, tonic::Status> {
        let info = self
            .inner
            .execute(sql.to_string(), None)
            .await
            .map_err(to_status)?;
        self.fetch(info).await
    }

    /// Runs a query and returns its rows and the warnings the node sent with them
    /// (`app_metadata` `{"warnings": [...]}` on the last message).
    pub async fn query_with_warnings(
        &mut self,
        sql: &str,
    ) -> Result<(Vec<RecordBatch>, Vec<String>), tonic::Status> {
        use arrow_flight::decode::DecodedPayload;
        use futures::StreamExt;
        let info = self
            .inner
            .execute(sql.to_string(), None)
            .await
            .map_err(to_status)?;
        let (mut batches, mut warnings) = (Vec::new(), Vec::new());
        for endpoint in info.endpoint {
            let ticket = endpoint
                .ticket
                .ok_or_else(|| tonic::Status::internal("no ticket"))?;
            let mut decoder = self
                .inner
                .do_get(ticket)
                .await
                .map_err(to_status)?
                .into_inner();
            while let Some(data) = decoder.next().await {
                let data = data.map_err(to_status)?;
                let metadata = data.app_metadata();
                if !metadata.is_empty() {
                    let body: serde_json::Value = serde_json::from_slice(&metadata)
                        .map_err(|e| tonic::Status::internal(e.to_string()))?;
                    warnings.extend(
                        body["warnings"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|w| w.as_str().map(str::to_string)),
                    );
                }
                if let DecodedPayload::RecordBatch(batch) = data.payload {
                    batches.push(batch);
                }
            }
        }
        Ok((batches, warnings))
    }

    /// Reads every endpoint of a FlightInfo with DoGet.
    pub async fn fetch(
        &mut self,
        info: arrow_flight::FlightInfo,
    ) -> Result<Vec<RecordBatch>, tonic::Status> {
        let mut batches = Vec::new();
        for endpoint in info.endpoint {
            let ticket = endpoint
                .ticket
                .ok_or_else(|| tonic::Status::internal("no ticket"))?;
            let stream = self.inner.do_get(ticket).await.map_err(to_status)?;
            let mut part: Vec<RecordBatch> = stream.try_collect().await.map_err(to_status)?;
            batches.append(&mut part);
        }
        Ok(batches)
    }

    /// Runs a statement through DoPut CommandStatementUpdate; returns affected rows.
    pub async fn update(&mut self, sql: &str) -> Result<i64, tonic::Status> {
        self.inner
            .execute_update(sql.to_string(), None)
            .await
            .map_err(to_status)
    }

    /// Flight SQL BeginTransaction: the new transaction's id.
    pub async fn begin(&mut self) -> Result<prost::bytes::Bytes, tonic::Status> {
        self.inner.begin_transaction().await.map_err(to_status)
    }

    /// Flight SQL EndTransaction COMMIT.
    pub async fn commit(&mut self, transaction: &prost::bytes::Bytes) -> Result<(), tonic::Status> {
        self.inner
            .end_transaction(
                transaction.clone(),
                arrow_flight::sql::EndTransaction::Commit,
            )
            .await
            .map_err(to_status)
    }

    /// Flight SQL EndTransaction ROLLBACK.
    pub async fn rollback(
        &mut self,
        transaction: &prost::bytes::Bytes,
    ) -> Result<(), tonic::Status> {
        self.inner
            .end_transaction(
                transaction.clone(),
                arrow_flight::sql::EndTransaction::Rollback,
            )
            .await
            .map_err(to_status)
    }

    /// [`Client::query`] inside `transaction`.
    pub async fn query_in(
        &mut self,
        transaction: &prost::bytes::Bytes,
        sql: &str,
    ) -> Result<Vec<RecordBatch>, tonic::Status> {
        let info = self
            .inner
            .execute(sql.to_string(), Some(transaction.clone()))
            .await
            .map_err(to_status)?;
        self.fetch(info).await
    }

    /// [`Client::update`] inside `transaction`.
    pub async fn update_in(
        &mut self,
        transaction: &prost::bytes::Bytes,
        sql: &str,
    ) -> Result<i64, tonic::Status> {
        self.inner
            .execute_update(sql.to_string(), Some(transaction.clone()))
            .await
            .map_err(to_status)
    }

    /// Flight SQL bulk ingest (CommandStatementIngest) of `batches` into `table`:
    /// `create` / `append` / `replace` / `create_append` as ADBC names the modes,
    /// `options` sent as the command's options, inside `transaction` if given. Returns
    /// the rows the server reports.
    pub async fn ingest(
        &mut self,
        table: &str,
        mode: &str,
        options: &[(&str, &str)],
        transaction: Option<&prost::bytes::Bytes>,
        batches: Vec<RecordBatch>,
    ) -> Result<i64, tonic::Status> {
        use arrow_flight::sql::{TableDefinitionOptions, TableExistsOption, TableNotExistOption};
        let (if_not_exist, if_exists) = match mode {
            "create" => (TableNotExistOption::Create, TableExistsOption::Fail),
            "append" => (TableNotExistOption::Fail, TableExistsOption::Append),
            "replace" => (TableNotExistOption::Create, TableExistsOption::Replace),
            "create_append" => (TableNotExistOption::Create, TableExistsOption::Append),
            other => panic!("unknown ingest mode {other}"),
        };
        let command = arrow_flight::sql::CommandStatementIngest {
            table_definition_options: Some(TableDefinitionOptions {
                if_not_exist: if_not_exist as i32,
                if_exists: if_exists as i32,
            }),
            table: table.to_string(),
            transaction_id: transaction.cloned(),
            options: options
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        };
        self.inner
            .execute_ingest(command, futures::stream::iter(batches.into_iter().map(Ok)))
            .await
            .map_err(to_status)
    }
}

/// A batch of `columns` NULL columns (named `$1`, `$2`, ...) and `rows` rows: a few
/// hundred bytes on the wire whatever it would cost once every cell is a value.
/// An HTTP/1.1 response as a test reads it.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub content_type: String,
    pub body: String,
}

/// `GET http://{address}{path}`, with `accept` as the `Accept` header if given.
pub async fn http_get(
    address: SocketAddr,
    path: &str,
    accept: Option<&str>,
) -> anyhow::Result<HttpResponse> {
    use http_body_util::BodyExt;
    let stream = tokio::net::TcpStream::connect(address).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let mut request = hyper::Request::get(path).header("host", address.to_string());
    if let Some(accept) = accept {
        request = request.header("accept", accept);
    }
    let response = sender
        .send_request(request.body(http_body_util::Empty::<hyper::body::Bytes>::new())?)
        .await?;
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = response.into_body().collect().await?.to_bytes();
    Ok(HttpResponse {
        status,
        content_type,
        body: String::from_utf8(body.to_vec())?,
    })
}

pub fn null_batch(columns: usize, rows: usize) -> RecordBatch {
    use std::sync::Arc;
    let fields: Vec<arrow::datatypes::Field> = (1..=columns)
        .map(|i| {
            arrow::datatypes::Field::new(format!("${i}"), arrow::datatypes::DataType::Null, true)
        })
        .collect();
    let arrays: Vec<arrow::array::ArrayRef> = (0..columns)
        .map(|_| Arc::new(arrow::array::NullArray::new(rows)) as arrow::array::ArrayRef)
        .collect();
    RecordBatch::try_new(Arc::new(arrow::datatypes::Schema::new(fields)), arrays)
        .expect("a batch of NULL columns")
}

/// A gRPC channel to `endpoint` whose TCP connections leave from `source`.
pub async fn channel_from(endpoint: &str, source: std::net::IpAddr) -> anyhow::Result<Channel> {
    let endpoint = domicile::cli::endpoint::channel_uri(endpoint)?;
    let connector = tower::service_fn(move |uri: tonic::codegen::http::Uri| async move {
        let host = uri.host().unwrap_or("127.0.0.1").to_string();
        let port = uri.port_u16().unwrap_or(80);
        let target: SocketAddr = format!("{host}:{port}")
            .parse()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let stream = bound_tcp(source, target).await?;
        Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
    });
    Ok(Endpoint::from_shared(endpoint)?
        .connect_with_connector(connector)
        .await?)
}

/// A TCP connection to `target` whose local end is bound to `source`.
pub async fn bound_tcp(
    source: std::net::IpAddr,
    target: SocketAddr,
) -> std::io::Result<tokio::net::TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source, 0))?;
    let stream = socket.connect(target).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Recovers the gRPC status from the client's error wrappers.
pub fn to_status(error: impl std::fmt::Display + std::fmt::Debug + 'static) -> tonic::Status {
    let any: &dyn std::any::Any = &error;
    if let Some(arrow_flight::error::FlightError::Tonic(status)) =
        any.downcast_ref::<arrow_flight::error::FlightError>()
    {
        return (**status).clone();
    }
    if let Some(arrow::error::ArrowError::IpcError(text)) =
        any.downcast_ref::<arrow::error::ArrowError>()
    {
        return status_from_text(text);
    }
    status_from_text(&error.to_string())
}

fn status_from_text(text: &str) -> tonic::Status {
    let code = [
        ("Unauthenticated", tonic::Code::Unauthenticated),
        ("PermissionDenied", tonic::Code::PermissionDenied),
        ("InvalidArgument", tonic::Code::InvalidArgument),
        ("AlreadyExists", tonic::Code::AlreadyExists),
        ("FailedPrecondition", tonic::Code::FailedPrecondition),
        ("NotFound", tonic::Code::NotFound),
        ("Unimplemented", tonic::Code::Unimplemented),
        ("ResourceExhausted", tonic::Code::ResourceExhausted),
        ("Aborted", tonic::Code::Aborted),
        ("Cancelled", tonic::Code::Cancelled),
        ("authentication credentials", tonic::Code::Unauthenticated),
    ]
    .into_iter()
    .find(|(needle, _)| text.contains(needle))
    .map_or(tonic::Code::Unknown, |(_, code)| code);
    tonic::Status::new(code, text.to_string())
}

/// Runs `statements` (key, SQL) one by one as `writer` against `endpoint` until one
/// fails (the node died under it); returns the keys of the acknowledged ones. For
/// crash tests: every acknowledged write must survive.
pub fn spawn_acked_writer(
    endpoint: String,
    statements: Vec<(String, String)>,
) -> tokio::task::JoinHandle<std::collections::BTreeSet<String>> {
    tokio::spawn(async move {
        let mut acked = std::collections::BTreeSet::new();
        let Ok(mut client) = Client::connect(&endpoint, "writer", "writer-pw").await else {
            return acked;
        };
        for (key, sql) in statements {
            if client.update(&sql).await.is_err() {
                break;
            }
            acked.insert(key);
        }
        acked
    })
}

/// Waits until `sql` on `node` returns more than `rows` ids (at most `timeout`, then
/// panics): a crash test kills a node once writes are flowing, however slow the machine
/// is that day, instead of after a fixed sleep.
pub async fn wait_for_more_ids(
    node: &TestNode,
    sql: &str,
    rows: usize,
    timeout: std::time::Duration,
) {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let seen = ids(node, sql).await.len();
        if seen > rows {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{}: {seen} rows of {sql} after {timeout:?}",
            node.region
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Column `id` of `sql` on `node` (as `reader`), as a set.
pub async fn ids(node: &TestNode, sql: &str) -> std::collections::BTreeSet<String> {
    let mut client = node.client("reader").await.expect("login as reader");
    let batches = client.query(sql).await.expect("ids");
    column_strings(&batches, "id").into_iter().collect()
}

/// Column `name` of all batches as strings (arrow's display), for assertions.
pub fn column_strings(batches: &[RecordBatch], name: &str) -> Vec<String> {
    let mut out = Vec::new();
    for batch in batches {
        let column = batch
            .column_by_name(name)
            .unwrap_or_else(|| panic!("no column {name}"));
        let formatter =
            arrow::util::display::ArrayFormatter::try_new(column.as_ref(), &Default::default())
                .expect("formatter");
        for row in 0..batch.num_rows() {
            out.push(formatter.value(row).to_string());
        }
    }
    out
}

pub fn row_count(batches: &[RecordBatch]) -> usize {
    batches.iter().map(RecordBatch::num_rows).sum()
}
