//! How the binary logs: to stderr for a node (`[logging]`), to a file for the demo.

use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, NodeConfig};

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

/// A node's logging, as `[logging]` configures it.
pub fn init_node_logging(config: &NodeConfig) -> anyhow::Result<()> {
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

/// The demo's logging: every node's lines into `log`, without colour codes.
pub fn init_demo_logging(log: std::fs::File) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(log_filter(DEFAULT_LOG_LEVEL)?)
        .with_ansi(false)
        .with_writer(std::sync::Mutex::new(log))
        .try_init()
        .map_err(|e| anyhow::anyhow!("cannot start logging: {e}"))
}
