//! `domicile plugin keygen | sign | upload | list | activate | rollback`: signing keys,
//! and a node's plugins through its admin API.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;

use crate::bounded_file;
use crate::cli::admin_client::{AdminArgs, describe};
use crate::cli::output::{OutputFormat, render};

#[derive(Subcommand)]
pub enum PluginCommand {
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
        #[command(flatten)]
        component: SignedComponent,
    },
    /// List every stored plugin version of a node.
    List {
        #[command(flatten)]
        admin: AdminArgs,
        /// `table` (default) or `json`.
        #[arg(short = 'o', long = "output", value_enum, default_value_t)]
        output: OutputFormat,
    },
    /// Make a stored version active again.
    Activate {
        #[command(flatten)]
        admin: AdminArgs,
        #[command(flatten)]
        plugin: PluginVersion,
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
        #[command(flatten)]
        component: SignedComponent,
    },
}

/// One version of one plugin.
#[derive(clap::Args)]
pub struct PluginVersion {
    #[arg(long)]
    jurisdiction: String,
    /// residency-policy, cdc-redactor or saga-step
    #[arg(long)]
    kind: String,
    #[arg(long)]
    version: u64,
}

/// A component to sign, and the key to sign it with.
#[derive(clap::Args)]
pub struct SignedComponent {
    #[command(flatten)]
    plugin: PluginVersion,
    /// Secret key file from `domicile plugin keygen`.
    #[arg(long)]
    key: PathBuf,
    /// The component (.wasm).
    file: PathBuf,
}

pub async fn run(command: PluginCommand) -> anyhow::Result<()> {
    use crate::plugins::signing;
    match command {
        PluginCommand::Upload { admin, component } => {
            let SignedComponent { plugin, key, file } = component;
            let info = admin
                .connect()
                .await?
                .upload(
                    &plugin.jurisdiction,
                    &plugin.kind,
                    plugin.version,
                    &key,
                    &file,
                )
                .await?;
            println!("uploaded {}", describe(&info));
            Ok(())
        }
        PluginCommand::List { admin, output } => {
            let plugins = admin.connect().await?.list().await?;
            let columns = [
                "jurisdiction",
                "kind",
                "version",
                "active",
                "sha256",
                "signer",
                "bytes",
                "refused",
            ];
            let rows: Vec<Vec<String>> = plugins
                .iter()
                .map(|p| {
                    vec![
                        p.jurisdiction.clone(),
                        p.kind.clone(),
                        p.version.to_string(),
                        p.active.to_string(),
                        p.sha256.clone(),
                        p.signer.clone(),
                        p.size_bytes.to_string(),
                        p.refused_reason.clone(),
                    ]
                })
                .collect();
            println!("{}", render(output, &columns, &rows, "no plugins"));
            Ok(())
        }
        PluginCommand::Activate { admin, plugin } => {
            let info = admin
                .connect()
                .await?
                .activate(&plugin.jurisdiction, &plugin.kind, plugin.version)
                .await?;
            println!("activated {}", describe(&info));
            Ok(())
        }
        PluginCommand::Rollback {
            admin,
            jurisdiction,
            kind,
        } => {
            let info = admin
                .connect()
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
        PluginCommand::Sign { component } => {
            let SignedComponent { plugin, key, file } = component;
            let secret = bounded_file::read_to_string(&key, crate::limits::KEY_FILE_SIZE_MAX_BYTES)
                .context("signing key")?;
            let signing_key = signing::parse_signing_key(&secret).map_err(anyhow::Error::msg)?;
            // Uploaded in one message: a larger file could not be sent.
            let bytes =
                bounded_file::read(&file, crate::limits::GRPC_MESSAGE_SIZE_MAX_BYTES as u64)
                    .context("component")?;
            let message = signing::signed_message(
                &plugin.jurisdiction,
                &plugin.kind,
                plugin.version,
                &signing::sha256_hex(&bytes),
            );
            println!("{}", signing::sign(&signing_key, &message));
            Ok(())
        }
    }
}

/// Where `plugin keygen --out KEY` writes the public key: `KEY.pub`.
fn public_key_path(secret: &Path) -> PathBuf {
    let mut name = secret.as_os_str().to_owned();
    name.push(".pub");
    PathBuf::from(name)
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
