//! Endpoint URLs as users and stock clients write them.
//!
//! Stock Flight SQL clients (Python ADBC, JDBC, the Go and C++ drivers) name a server as
//! `grpc://host:port` (plaintext) or `grpc+tls://host:port`; tonic wants `http://` or
//! `https://`. Every CLI command accepts either spelling, and everything the node and the
//! demo print uses the `grpc` scheme so that it can be pasted into any of them.

use std::path::Path;

use anyhow::{Context, bail};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

/// A CA file holds a few certificates; anything above this is not one.
const CA_FILE_SIZE_MAX_BYTES: u64 = 1 << 20;

/// Connects to `endpoint` (any spelling [`channel_uri`] takes). A `grpc+tls://` (or
/// `https://`) endpoint's certificate must chain to `tls_ca` (a PEM file) when given,
/// else to the system's trusted roots; its names must match the host in the URL.
///
/// # Errors
/// A bad URL or scheme, `tls_ca` with a plaintext endpoint (the CA would silently go
/// unused), an unreadable CA file, or a failed connection or TLS handshake.
pub async fn connect(endpoint: &str, tls_ca: Option<&Path>) -> anyhow::Result<Channel> {
    let uri = channel_uri(endpoint)?;
    let mut target = Endpoint::from_shared(uri.clone())
        .with_context(|| format!("invalid endpoint {endpoint}"))?;
    if uri.starts_with("https://") {
        let mut tls = ClientTlsConfig::new().with_enabled_roots();
        if let Some(path) = tls_ca {
            tls = tls.ca_certificate(Certificate::from_pem(read_ca(path)?));
        }
        target = target
            .tls_config(tls)
            .with_context(|| format!("TLS settings for {endpoint}"))?;
    } else if let Some(path) = tls_ca {
        bail!(
            "a TLS CA ({}) was given but {endpoint} is plaintext: use grpc+tls://",
            path.display()
        );
    }
    target
        .connect()
        .await
        .with_context(|| format!("cannot connect to {endpoint}"))
}

fn read_ca(path: &Path) -> anyhow::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|file| {
            file.take(CA_FILE_SIZE_MAX_BYTES + 1)
                .read_to_end(&mut bytes)
        })
        .with_context(|| format!("cannot read TLS CA file {}", path.display()))?;
    if bytes.len() as u64 > CA_FILE_SIZE_MAX_BYTES {
        bail!(
            "TLS CA file {} is larger than {CA_FILE_SIZE_MAX_BYTES} bytes",
            path.display()
        );
    }
    Ok(bytes)
}

/// The `http(s)://` URI tonic dials for `endpoint`.
///
/// Accepts `grpc://`, `grpc+tcp://` (plaintext), `grpc+tls://` (TLS), `http://`,
/// `https://`, or a bare `host:port` (plaintext).
///
/// # Errors
/// Any other scheme (e.g. `grpc+unix://`, which Domicile does not listen on).
pub fn channel_uri(endpoint: &str) -> anyhow::Result<String> {
    let endpoint = endpoint.trim();
    let Some((scheme, rest)) = endpoint.split_once("://") else {
        return Ok(format!("http://{endpoint}"));
    };
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "grpc" | "grpc+tcp" | "http" => "http",
        "grpc+tls" | "https" => "https",
        other => bail!(
            "unsupported endpoint scheme {other:?} in {endpoint}: use grpc://HOST:PORT \
             (or grpc+tls://, http://, https://)"
        ),
    };
    Ok(format!("{scheme}://{rest}"))
}

/// The URL to print for a plaintext gRPC listener at `address`.
pub fn grpc_url(address: impl std::fmt::Display) -> String {
    format!("grpc://{address}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: Option<&str>) {
        let got = channel_uri(input).ok();
        assert_eq!(got.as_deref(), expected, "{input}");
    }

    #[test]
    fn schemes_stock_clients_use_are_accepted() {
        check("grpc://127.0.0.1:50051", Some("http://127.0.0.1:50051"));
        check("GRPC+TCP://h:1", Some("http://h:1"));
        check("grpc+tls://h:1", Some("https://h:1"));
        check("http://h:1", Some("http://h:1"));
        check("https://h:1", Some("https://h:1"));
        check("  h:1 ", Some("http://h:1"));
        check("grpc+unix:///tmp/s", None);
        check("ftp://h:1", None);
        assert_eq!(grpc_url("127.0.0.1:7"), "grpc://127.0.0.1:7");
    }
}
