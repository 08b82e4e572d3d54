//! `domicile demo`: the payment example as a three-region mesh on loopback.

use std::path::PathBuf;

use crate::cli::logging::init_demo_logging;
use crate::cli::{bundled_plugins, demo};

#[derive(clap::Args)]
pub struct DemoArgs {
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
}

/// Starts the three nodes (logging to `DATA_DIR/demo.log`) and runs until Ctrl-C.
pub fn run(args: DemoArgs, runtime: &tokio::runtime::Runtime) -> anyhow::Result<()> {
    let DemoArgs {
        data_dir,
        plugins_dir,
        kafka,
    } = args;
    let plugins_dir = bundled_plugins::locate(plugins_dir)?;
    std::fs::create_dir_all(&data_dir)?;
    let log = std::fs::File::create(data_dir.join("demo.log"))?;
    println!(
        "starting us-east, eu-central and ap-southeast (log: {}) ...",
        data_dir.join("demo.log").display()
    );
    init_demo_logging(log)?;
    runtime.block_on(demo::run(data_dir, plugins_dir, kafka))
}
