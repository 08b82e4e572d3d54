//! Several nodes as one mesh: a cluster CA and node certificates made by
//! `domicile certs` (as an operator would), a peer port per node chosen by the OS, and
//! every node configured with every other as a peer.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};

use crate::{LinkProxy, TestNode, domicile_binary};

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
    /// (from, to) → the proxy `from` dials to reach `to`'s peer port.
    links: Vec<((String, String), LinkProxy)>,
}

impl Mesh {
    /// Starts one node per region, each with its jurisdiction's policy, all peers of
    /// each other over mutual TLS.
    pub fn start(regions: &[&str]) -> anyhow::Result<Mesh> {
        Self::start_with(regions, "")
    }

    /// [`Mesh::start`] with `extra_toml` appended to every node's config.
    pub fn start_with(regions: &[&str], extra_toml: &str) -> anyhow::Result<Mesh> {
        let certs = tempfile::tempdir()?;
        make_certs(certs.path(), regions)?;
        // Proxies first (peers name them in their configs); each learns where its
        // node listens once that node has started on a port of its own choosing.
        let mut links: Vec<((String, String), LinkProxy)> = Vec::new();
        for from in regions {
            for to in regions {
                if from != to {
                    links.push((
                        ((*from).to_string(), (*to).to_string()),
                        LinkProxy::start(None)?,
                    ));
                }
            }
        }
        let mut nodes = Vec::new();
        for region in regions {
            let mut extra = format!(
                "{extra_toml}\n[mesh]\nca_cert = \"{ca}\"\ncert = \"{dir}/{region}.pem\"\nkey = \"{dir}/{region}.key\"\nping_interval_ms = 200\npeer_timeout_ms = 2000\n",
                ca = certs.path().join("ca.pem").display(),
                dir = certs.path().display(),
            );
            for ((from, to), proxy) in &links {
                if from == region {
                    extra.push_str(&format!(
                        "\n[[peers]]\nregion = \"{to}\"\naddress = \"{}\"\n",
                        proxy.listen
                    ));
                }
            }
            let node = TestNode::start_with_policy(region, &extra, Some("127.0.0.1:0".parse()?))?;
            let peer = node.peer.context("node reports no peer address")?;
            for ((_, to), proxy) in &links {
                if to == region {
                    proxy.set_upstream(peer);
                }
            }
            nodes.push(node);
        }
        Ok(Mesh {
            nodes,
            certs,
            links,
        })
    }

    fn proxies<'a>(&'a self, a: &'a str, b: &'a str) -> impl Iterator<Item = &'a LinkProxy> {
        self.links
            .iter()
            .filter(move |((from, to), _)| (from == a && to == b) || (from == b && to == a))
            .map(|(_, proxy)| proxy)
    }

    /// SIGTERM of `region`'s node: a clean stop; its exit status.
    pub fn stop(&mut self, region: &str) -> anyhow::Result<std::process::ExitStatus> {
        self.node_mut(region).stop()
    }

    /// SIGKILL of `region`'s node: a crash.
    pub fn kill9(&mut self, region: &str) {
        self.node_mut(region).kill9();
    }

    /// Starts `region`'s node again (on a peer port of its own choosing) and points
    /// the links to it there.
    pub fn restart(&mut self, region: &str) -> anyhow::Result<()> {
        self.node_mut(region).restart()?;
        let peer = self
            .node(region)
            .peer
            .context("node reports no peer address")?;
        for ((_, to), proxy) in &self.links {
            if to == region {
                proxy.set_upstream(peer);
            }
        }
        Ok(())
    }

    fn node_mut(&mut self, region: &str) -> &mut TestNode {
        self.nodes
            .iter_mut()
            .find(|n| n.region == region)
            .unwrap_or_else(|| panic!("no node for {region}"))
    }

    /// Cuts the link between regions `a` and `b`, both directions.
    pub fn cut(&self, a: &str, b: &str) {
        self.proxies(a, b).for_each(LinkProxy::cut);
    }

    pub fn heal(&self, a: &str, b: &str) {
        self.proxies(a, b).for_each(LinkProxy::heal);
    }

    /// Sends what `from`'s node dials to reach `to` to `address` instead (a test that
    /// plays `to`'s node, compromised), dropping the connections open now.
    pub fn redirect(&self, from: &str, to: &str, address: std::net::SocketAddr) {
        for ((a, b), proxy) in &self.links {
            if a == from && b == to {
                proxy.set_upstream(address);
                proxy.cut();
                proxy.heal();
            }
        }
    }

    /// The paths of `region`'s certificate and key, and of the cluster CA's certificate.
    pub fn cert_files(
        &self,
        region: &str,
    ) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
        let dir = self.certs.path();
        (
            dir.join(format!("{region}.pem")),
            dir.join(format!("{region}.key")),
            dir.join("ca.pem"),
        )
    }

    /// Simulated WAN between `a` and `b`: `rtt` round trip.
    pub fn set_rtt(&self, a: &str, b: &str, rtt: std::time::Duration) {
        self.proxies(a, b)
            .for_each(|proxy| proxy.set_one_way_latency(rtt / 2));
    }

    /// A raw gRPC channel to `server_region`'s peer listener holding the certificate of
    /// `cert_region`, for tests that play a dishonest peer: everything such a client
    /// sends is what any holder of that certificate could send.
    pub async fn peer_channel(
        &self,
        cert_region: &str,
        server_region: &str,
    ) -> anyhow::Result<tonic::transport::Channel> {
        use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
        let dir = self.certs.path();
        let read = |name: String| std::fs::read(dir.join(&name)).with_context(|| name);
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(read("ca.pem".into())?))
            .identity(Identity::from_pem(
                read(format!("{cert_region}.pem"))?,
                read(format!("{cert_region}.key"))?,
            ))
            .domain_name(domicile::peers::certs::dns_name(server_region));
        let address = self
            .node(server_region)
            .peer
            .with_context(|| format!("{server_region} has no peer listener"))?;
        Ok(Endpoint::from_shared(format!("https://{address}"))?
            .tls_config(tls)?
            .connect_timeout(std::time::Duration::from_secs(5))
            .connect()
            .await?)
    }

    pub fn node(&self, region: &str) -> &TestNode {
        self.nodes
            .iter()
            .find(|n| n.region == region)
            .unwrap_or_else(|| panic!("no node for {region}"))
    }
}
