//! `domicile saga ...`: a node's sagas through its admin API.

use crate::cli::admin_client::AdminArgs;
use crate::cli::saga_cli::{self, SagaCommand};

#[derive(clap::Args)]
pub struct SagaArgs {
    #[command(flatten)]
    admin: AdminArgs,
    #[command(subcommand)]
    command: SagaCommand,
}

pub async fn run(args: SagaArgs) -> anyhow::Result<()> {
    let mut session = args.admin.connect().await?;
    saga_cli::run(&mut session, args.command).await
}
