//! The `domicile` binary: wiring only. Each subcommand's arguments and body live in
//! `domicile::cli::commands::<subcommand>`.

use clap::{Parser, Subcommand};
use domicile::cli::commands::{audit, certs, demo, hash_password, mesh, node, plugin, saga, sql};

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
    Node(node::NodeArgs),
    /// Run SQL against a node over Flight SQL.
    Sql(sql::SqlArgs),
    /// Run the payment example as a three-region mesh on loopback (us-east, eu-central,
    /// ap-southeast) until Ctrl-C.
    Demo(demo::DemoArgs),
    /// Print an argon2 hash of the password read from stdin, for the `users` config.
    HashPassword,
    /// Plugin signing keys and signatures.
    Plugin {
        #[command(subcommand)]
        command: plugin::PluginCommand,
    },
    /// Mesh certificates: a cluster CA, and one certificate per node naming its region.
    Certs {
        #[command(subcommand)]
        command: certs::CertsCommand,
    },
    /// The node's hash-chained audit log (run against a stopped node's data).
    Audit {
        #[command(subcommand)]
        command: audit::AuditCommand,
    },
    /// Sagas of a node, through its admin API.
    Saga(saga::SagaArgs),
    /// The mesh as a node sees it.
    Mesh {
        #[command(subcommand)]
        command: mesh::MeshCommand,
    },
}

fn main() {
    match run() {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::exit(2);
        }
    }
}

/// Runs the command; whether it succeeded (exit status 0, else 1; an error is 2).
fn run() -> anyhow::Result<bool> {
    let cli = Cli::parse();
    domicile::peers::install_panic_hook();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(domicile::limits::WORKER_STACK_BYTES)
        .build()?;
    let done = |result: anyhow::Result<()>| result.map(|()| true);
    match cli.command {
        Command::Node(args) => done(runtime.block_on(node::run(args))),
        Command::Sql(args) => runtime.block_on(sql::run(args)),
        Command::Demo(args) => done(demo::run(args, &runtime)),
        Command::HashPassword => done(hash_password::run()),
        Command::Plugin { command } => done(runtime.block_on(plugin::run(command))),
        Command::Certs { command } => done(certs::run(command)),
        Command::Audit { command } => audit::run(command, &runtime),
        Command::Saga(args) => done(runtime.block_on(saga::run(args))),
        Command::Mesh { command } => done(runtime.block_on(mesh::run(command))),
    }
}
