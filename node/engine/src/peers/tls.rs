//! This node's mesh TLS material, loaded once at start.

use std::path::Path;

use anyhow::Context;
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

use super::MeshConfig;
use super::certs;

#[derive(Clone)]
pub struct MeshTls {
    ca: Certificate,
    identity: Identity,
}

impl std::fmt::Debug for MeshTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MeshTls")
    }
}

fn read(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    crate::bounded_file::read(path, crate::limits::PEM_FILE_SIZE_MAX_BYTES)
        .with_context(|| format!("mesh.{what}"))
}

impl MeshTls {
    /// Loads the CA and this node's certificate and key, and checks that the
    /// certificate names `region` (a node configured for one region with another
    /// region's certificate would be refused by every peer).
    pub fn load(config: &MeshConfig, region: &str) -> anyhow::Result<Self> {
        let ca = read(&config.ca_cert, "ca_cert")?;
        let cert = read(&config.cert, "cert")?;
        let key = read(&config.key, "key")?;
        let der = pem_der(&cert).context("mesh.cert is not a PEM certificate")?;
        let named = certs::region_of(&der);
        anyhow::ensure!(
            named.as_deref() == Some(region),
            "mesh.cert names region {}, but this node is {region}",
            named.as_deref().unwrap_or("none")
        );
        Ok(Self {
            ca: Certificate::from_pem(ca),
            identity: Identity::from_pem(cert, key),
        })
    }

    /// Serving: present our certificate, require a client certificate of the CA.
    pub fn server(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(self.identity.clone())
            .client_ca_root(self.ca.clone())
            .timeout(std::time::Duration::from_millis(
                crate::limits::CONNECTION_HANDSHAKE_MAX_MS,
            ))
    }

    /// Calling the node of `region`: its certificate must name that region.
    pub fn client(&self, region: &str) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(self.ca.clone())
            .identity(self.identity.clone())
            .domain_name(certs::dns_name(region))
    }
}

/// The DER bytes of the first certificate in PEM text.
fn pem_der(pem: &[u8]) -> Option<Vec<u8>> {
    use base64::Engine;
    let text = std::str::from_utf8(pem).ok()?;
    let body: String = text
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN CERTIFICATE"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    base64::engine::general_purpose::STANDARD.decode(body).ok()
}
