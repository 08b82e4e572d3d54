//! Endpoint URLs as users and stock clients write them.
//!
//! Stock Flight SQL clients (Python ADBC, JDBC, the Go and C++ drivers) name a server as
//! `grpc://host:port` (plaintext) or `grpc+tls://host:port`; tonic wants `http://` or
//! `https://`. Every CLI command accepts either spelling, and everything the node and the
//! demo print uses the `grpc` scheme so that it can be pasted into any of them.

use anyhow::bail;

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
