//! Several nodes as one mesh: a cluster CA and node certificates made by
//! `domicile certs` (as an operator would), a peer port per node chosen by the OS, and
//! every node configured with every other as a peer.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};

use crate::{TestNode, domicile_binary};

/// A port the OS considers free right now (bound to 0, then released), for addresses
/// that must be known before a node starts — peers name each other in their configs.
pub fn free_port() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?)
}

/// Runs `domicile certs ca` into `dir` (if it holds no CA yet) and `domicile certs node`
/// for each region.
pub fn make_certs(dir: &Path, regions: &[&str]) -> anyhow::Result<()> {
    let run = |args: &[&str]| -> anyhow::Result<()> {
        let out = Command::new(domicile_binary()).args(args).output()?;
        if !out.status.success() {
            bail!(
                "domicile {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    };
    let dir_text = dir.to_str().context("utf-8 path")?;
    if !dir.join("ca.key").exists() {
        run(&["certs", "ca", "--out", dir_text])?;
    }
    for region in regions {
        run(&[
            "certs", "node", "--ca-dir", dir_text, "--region", region, "--out", dir_text,
        ])?;
    }
    Ok(())
}

pub struct Mesh {
    pub nodes: Vec<TestNode>,
    pub certs: tempfile::TempDir,
}

impl Mesh {
    /// Starts one node per region, each with its jurisdiction's policy, all peers of
    /// each other over mutual TLS.
    pub fn start(regions: &[&str]) -> anyhow::Result<Mesh> {
        let certs = tempfile::tempdir()?;
        make_certs(certs.path(), regions)?;
        let ports: Vec<SocketAddr> = regions
            .iter()
            .map(|_| free_port())
            .collect::<anyhow::Result<_>>()?;
        let mut nodes = Vec::new();
        for (index, region) in regions.iter().enumerate() {
            let mut extra = format!(
                "\n[mesh]\nca_cert = \"{ca}\"\ncert = \"{dir}/{region}.pem\"\nkey = \"{dir}/{region}.key\"\nping_interval_ms = 200\npeer_timeout_ms = 2000\n",
                ca = certs.path().join("ca.pem").display(),
                dir = certs.path().display(),
            );
            for (other, port) in regions.iter().zip(&ports) {
                if other != region {
                    extra.push_str(&format!(
                        "\n[[peers]]\nregion = \"{other}\"\naddress = \"{port}\"\n"
                    ));
                }
            }
            nodes.push(TestNode::start_with_policy(
                region,
                &extra,
                Some(ports[index]),
            )?);
        }
        Ok(Mesh { nodes, certs })
    }

    pub fn node(&self, region: &str) -> &TestNode {
        self.nodes
            .iter()
            .find(|n| n.region == region)
            .unwrap_or_else(|| panic!("no node for {region}"))
    }
}
