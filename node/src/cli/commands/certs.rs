//! `domicile certs ca | node | server`: the mesh's CA and node certificates, and the
//! client listeners' server certificate.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;

use crate::bounded_file;

#[derive(Subcommand)]
pub enum CertsCommand {
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

pub fn run(command: CertsCommand) -> anyhow::Result<()> {
    use crate::peers::certs;
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
        crate::limits::PEM_FILE_SIZE_MAX_BYTES,
    )?)
}
