//! A real Kafka-protocol broker for tests: tansu (installed by `tests/run.sh` when
//! missing), in memory, on a port of its own, stopped when dropped.

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::free_port;

pub struct KafkaBroker {
    pub address: SocketAddr,
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

/// `TANSU_BIN`, else `tansu` on PATH, else cargo's bin folder.
fn tansu_binary() -> anyhow::Result<PathBuf> {
    if let Ok(path) = std::env::var("TANSU_BIN") {
        return Ok(PathBuf::from(path));
    }
    let candidates = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain(std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo/bin")));
    for dir in candidates {
        let path = dir.join("tansu");
        if path.is_file() {
            return Ok(path);
        }
    }
    bail!(
        "tansu (the Kafka-protocol broker the CDC tests run against) is not installed: \
         run tests/run.sh, or `cargo install tansu --features dynostore --locked`"
    )
}

impl KafkaBroker {
    pub fn start() -> anyhow::Result<Self> {
        let address = free_port()?;
        let dir = tempfile::tempdir()?;
        let log = dir.path().join("tansu.log");
        let url = format!("tcp://{address}");
        let child = Command::new(tansu_binary()?)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log)?)
            .stderr(std::fs::File::create(dir.path().join("tansu.err"))?)
            .spawn()
            .context("cannot start tansu")?;
        let mut broker = Self {
            address,
            child,
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_err() {
            if let Ok(Some(status)) = broker.child.try_wait() {
                bail!("tansu exited at start ({status}): {}", broker.logs());
            }
            if Instant::now() > deadline {
                bail!("tansu did not listen on {address}: {}", broker.logs());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(broker)
    }

    /// `host:port` for `bootstrap.servers`.
    pub fn brokers(&self) -> String {
        self.address.to_string()
    }

    pub fn logs(&self) -> String {
        let err = self.log.with_file_name("tansu.err");
        format!(
            "{}{}",
            std::fs::read_to_string(&self.log).unwrap_or_default(),
            std::fs::read_to_string(err).unwrap_or_default()
        )
    }
}

impl Drop for KafkaBroker {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- tansu ---\n{}", self.logs());
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
