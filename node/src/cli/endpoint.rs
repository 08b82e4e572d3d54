//! Endpoint URLs as users and stock clients write them.
//!
//! Stock Flight SQL clients (Python ADBC, JDBC, the Go and C++ drivers) name a server as
//! `grpc://host:port` (plaintext) or `grpc+tls://host:port`; tonic wants `http://` or
//! `https://`. Every CLI command accepts either spelling, and everything the node and the
//! demo print uses the `grpc` scheme so that it can be pasted into any of them.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

/// Where a CLI command reaches a node and how it trusts it (the `--endpoint`,
/// `--tls-ca` and `--insecure` flags of `domicile sql` and the admin commands).
#[derive(Clone, Debug, clap::Args)]
pub struct Target {
    /// e.g. grpc://127.0.0.1:50051, or grpc+tls://HOST:PORT for a node with
    /// [listen.tls] (http:// and https:// work too)
    #[arg(long)]
    pub endpoint: String,
    /// PEM CA that a grpc+tls:// node's certificate must chain to (default: the
    /// system's trusted roots).
    #[arg(long, env = "DOMICILE_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// Allow a plaintext endpoint (grpc://) on another host: the password, the session
    /// token and every row then cross the network in clear.
    #[arg(long)]
    pub insecure: bool,
}

impl Target {
    /// A target at `endpoint` with the system's roots for TLS and plaintext allowed only
    /// to loopback.
    pub fn new(endpoint: &str) -> Self {
        Self {
            endpoint: endpoint.to_string(),
            tls_ca: None,
            insecure: false,
        }
    }

    /// Connects: see [`connect`]; first refuses a plaintext endpoint off loopback unless
    /// `insecure` (see [`refuse_plaintext_off_loopback`]).
    ///
    /// # Errors
    /// As [`connect`], and that refusal.
    pub async fn connect(&self) -> anyhow::Result<Channel> {
        if !self.insecure {
            refuse_plaintext_off_loopback(&self.endpoint)?;
        }
        connect(&self.endpoint, self.tls_ca.as_deref()).await
    }
}

/// Refuses a plaintext endpoint whose host is not loopback (`localhost`, 127.0.0.0/8,
/// `::1`): a CLI sends the user's password on its first call, so a typo of
/// `grpc://` for `grpc+tls://` would publish it. `--insecure` allows it.
///
/// # Errors
/// The endpoint is plaintext and names another host, or is not a valid URL.
pub fn refuse_plaintext_off_loopback(endpoint: &str) -> anyhow::Result<()> {
    let uri = channel_uri(endpoint)?;
    if uri.starts_with("https://") {
        return Ok(());
    }
    let parsed: tonic::codegen::http::Uri = uri
        .parse()
        .with_context(|| format!("invalid endpoint {endpoint}"))?;
    let host = parsed.host().unwrap_or_default();
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        // The host only: the URL may carry user information (a password) before it.
        bail!(
            "the plaintext endpoint on {host} is not on this machine: the password and \
             every row would cross the network in clear. Use grpc+tls://{host}:PORT for a \
             node with [listen.tls], or pass --insecure to send them in clear anyway"
        );
    }
    Ok(())
}

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
    crate::bounded_file::read(path, crate::limits::PEM_FILE_SIZE_MAX_BYTES).context("TLS CA file")
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

    #[test]
    fn plaintext_is_refused_off_loopback_and_allowed_on_it() {
        for local in [
            "grpc://127.0.0.1:1",
            "grpc://127.3.4.5:1",
            "http://localhost:1",
            "grpc://LOCALHOST:1",
            "grpc://[::1]:1",
            "127.0.0.1:1",
            "grpc+tls://db.example.com:1",
            "https://10.0.0.1:1",
        ] {
            refuse_plaintext_off_loopback(local).unwrap_or_else(|e| panic!("{local}: {e}"));
        }
        for remote in [
            "grpc://10.0.0.1:1",
            "grpc://db.example.com:1",
            "http://[2001:db8::1]:1",
            "db.example.com:1",
            "grpc://localhost.evil.example:1",
            "grpc://127.0.0.1.nip.io:1",
        ] {
            let refused = refuse_plaintext_off_loopback(remote)
                .err()
                .unwrap_or_else(|| panic!("{remote} was allowed"));
            assert!(refused.to_string().contains("--insecure"), "{refused}");
        }
        let refused = refuse_plaintext_off_loopback("grpc://user:s3cret@10.0.0.1:1")
            .expect_err("off loopback");
        assert!(!refused.to_string().contains("s3cret"), "{refused}");
    }
}
