//! `domicile node --config FILE`: run one regional node.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;

use crate::cli::logging::init_node_logging;
use crate::config::NodeConfig;
use crate::server::Node;

#[derive(clap::Args)]
pub struct NodeArgs {
    /// TOML config file (see README "Configuration").
    #[arg(long)]
    config: PathBuf,
    /// Overrides `data_dir`.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Overrides `listen.flight_sql`.
    #[arg(long)]
    listen: Option<SocketAddr>,
}

/// Starts the node `args` configures, prints where it listens, and serves until
/// SIGINT or SIGTERM.
pub async fn run(args: NodeArgs) -> anyhow::Result<()> {
    let NodeArgs {
        config: path,
        data_dir,
        listen,
    } = args;
    let mut config = NodeConfig::load(&path)?;
    if let Some(data_dir) = data_dir {
        config.data_dir = data_dir;
    }
    if let Some(listen) = listen {
        config.listen.flight_sql = listen;
    }
    config.validate()?;
    let telemetry = init_node_logging(&config)?;
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
    let served = node.run_until_signal().await;
    telemetry.shutdown().await;
    served
}
