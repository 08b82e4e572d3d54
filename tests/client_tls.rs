//! Issue 21, item 3: the client listeners (Flight SQL, admin) speak TLS with
//! `[listen.tls]`, plaintext is refused on them, a certificate from another CA is
//! refused by the client, `client_ca` adds mutual TLS, and a node never serves a
//! well-known demo password on an address other hosts can reach, on any client listener,
//! for any demo user.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use arrow_flight::sql::client::FlightSqlServiceClient;
use domicile_tests::{TestNode, column_strings, domicile_binary, to_status};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

fn domicile(args: &[&str]) -> Output {
    Command::new(domicile_binary())
        .args(args)
        .env_remove("DOMICILE_TLS_CA")
        .output()
        .expect("run domicile")
}

fn ok(args: &[&str]) {
    let out = domicile(args);
    assert!(
        out.status.success(),
        "domicile {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA in `dir/name/` (ca.pem, ca.key) and, with `server_names`, a server certificate
/// for them (server.pem, server.key), made with the CLI as an operator would.
fn make_ca(dir: &Path, name: &str, server_names: &[&str]) -> PathBuf {
    let folder = dir.join(name);
    let text = folder.to_str().expect("utf-8");
    ok(&["certs", "ca", "--out", text]);
    if !server_names.is_empty() {
        let mut args = vec!["certs", "server", "--ca-dir", text, "--out", text];
        for host in server_names {
            args.extend(["--name", host]);
        }
        ok(&args);
    }
    folder
}

fn tls_toml(server: &Path, client_ca: Option<&Path>) -> String {
    let mut text = format!(
        "\n[listen.tls]\ncert = \"{}\"\nkey = \"{}\"\n",
        server.join("server.pem").display(),
        server.join("server.key").display()
    );
    if let Some(ca) = client_ca {
        text.push_str(&format!(
            "client_ca = \"{}\"\n",
            ca.join("ca.pem").display()
        ));
    }
    text
}

/// Logs in over `url` with the stock Flight SQL client and runs `SELECT 1`.
async fn select_one(url: &str, tls: Option<ClientTlsConfig>) -> Result<String, String> {
    let mut endpoint = Endpoint::from_shared(url.to_string()).map_err(|e| e.to_string())?;
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls).map_err(|e| e.to_string())?;
    }
    let channel = endpoint.connect().await.map_err(|e| format!("{e:?}"))?;
    let mut client = FlightSqlServiceClient::new(channel);
    client
        .handshake("admin", "admin-pw")
        .await
        .map_err(|e| format!("{e:?}"))?;
    let info = client
        .execute("SELECT 1 AS one".into(), None)
        .await
        .map_err(|e| format!("{:?}", to_status(e)))?;
    let ticket = info.endpoint[0].ticket.clone().ok_or("no ticket")?;
    let batches: Vec<_> = futures::TryStreamExt::try_collect(
        client.do_get(ticket).await.map_err(|e| format!("{e:?}"))?,
    )
    .await
    .map_err(|e| format!("{e:?}"))?;
    Ok(column_strings(&batches, "one").join(","))
}

fn trusting(ca: &Path) -> ClientTlsConfig {
    ClientTlsConfig::new().ca_certificate(Certificate::from_pem(
        std::fs::read(ca.join("ca.pem")).expect("ca.pem"),
    ))
}

#[tokio::test]
async fn client_listeners_speak_tls_and_refuse_plaintext_and_strangers() {
    let certs = tempfile::tempdir().expect("tempdir");
    let ca = make_ca(certs.path(), "clients", &["127.0.0.1", "localhost"]);
    let stranger = make_ca(certs.path(), "stranger", &["127.0.0.1"]);
    let node = TestNode::start_with("eu-central", &tls_toml(&ca, None), |_| Ok(()))
        .expect("node with [listen.tls]");
    let port = node.flight_sql.port();

    // The stock client, trusting the CA, by IP and by host name.
    for host in ["127.0.0.1", "localhost"] {
        let url = format!("https://{host}:{port}");
        assert_eq!(
            select_one(&url, Some(trusting(&ca))).await.as_deref(),
            Ok("1"),
            "{url}"
        );
    }
    // Plaintext gRPC to a TLS listener gets no answer.
    let plain = select_one(&format!("http://127.0.0.1:{port}"), None).await;
    assert!(plain.is_err(), "plaintext must fail: {plain:?}");
    // A client that trusts another CA refuses the node's certificate.
    let refused = select_one(
        &format!("https://127.0.0.1:{port}"),
        Some(trusting(&stranger)),
    )
    .await
    .expect_err("certificate of an unknown CA");
    assert!(
        refused.to_lowercase().contains("certificate") || refused.contains("UnknownIssuer"),
        "{refused}"
    );

    // The CLI: grpc+tls:// and --tls-ca, on the Flight SQL and the admin listener.
    let ca_pem = ca.join("ca.pem");
    let ca_text = ca_pem.to_str().expect("utf-8");
    let sql = Command::new(domicile_binary())
        .args(["sql", "--endpoint", &format!("grpc+tls://localhost:{port}")])
        .args([
            "--tls-ca",
            ca_text,
            "--user",
            "admin",
            "-e",
            "SELECT 41 + 1 AS answer",
        ])
        .env("DOMICILE_PASSWORD", "admin-pw")
        .output()
        .expect("domicile sql");
    let stdout = String::from_utf8_lossy(&sql.stdout);
    assert!(
        sql.status.success() && stdout.contains("42"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&sql.stderr)
    );
    let admin = node.admin.expect("admin listener").port();
    let list = Command::new(domicile_binary())
        .args([
            "plugin",
            "list",
            "--endpoint",
            &format!("grpc+tls://127.0.0.1:{admin}"),
        ])
        .args(["--tls-ca", ca_text, "--user", "admin"])
        .env("DOMICILE_PASSWORD", "admin-pw")
        .output()
        .expect("domicile plugin list");
    assert!(
        list.status.success(),
        "{}",
        String::from_utf8_lossy(&list.stderr)
    );
    // Without the CA, the CLI checks the system's roots, which do not hold this CA.
    let untrusted = Command::new(domicile_binary())
        .args(["sql", "--endpoint", &format!("grpc+tls://127.0.0.1:{port}")])
        .args(["--user", "admin", "-e", "SELECT 1"])
        .env("DOMICILE_PASSWORD", "admin-pw")
        .env_remove("DOMICILE_TLS_CA")
        .output()
        .expect("domicile sql");
    assert!(
        !untrusted.status.success(),
        "a CA nobody trusts was accepted"
    );
    // A CA with a plaintext endpoint is a mistake, said as such.
    let mixed = Command::new(domicile_binary())
        .args(["sql", "--endpoint", &format!("grpc://127.0.0.1:{port}")])
        .args(["--tls-ca", ca_text, "--user", "admin", "-e", "SELECT 1"])
        .env("DOMICILE_PASSWORD", "admin-pw")
        .output()
        .expect("domicile sql");
    assert!(
        String::from_utf8_lossy(&mixed.stderr).contains("is plaintext"),
        "{}",
        String::from_utf8_lossy(&mixed.stderr)
    );
}

#[tokio::test]
async fn client_ca_requires_a_client_certificate() {
    let certs = tempfile::tempdir().expect("tempdir");
    let ca = make_ca(certs.path(), "clients", &["127.0.0.1"]);
    let client_ca = make_ca(certs.path(), "client-certs", &[]);
    let text = client_ca.to_str().expect("utf-8");
    // `certs node` makes a certificate valid for client authentication.
    ok(&[
        "certs", "node", "--ca-dir", text, "--region", "app", "--out", text,
    ]);
    let node = TestNode::start_with("eu-central", &tls_toml(&ca, Some(&client_ca)), |_| Ok(()))
        .expect("node with client_ca");
    let url = format!("https://127.0.0.1:{}", node.flight_sql.port());

    let anonymous = select_one(&url, Some(trusting(&ca))).await;
    assert!(anonymous.is_err(), "no client certificate: {anonymous:?}");
    let identity = Identity::from_pem(
        std::fs::read(client_ca.join("app.pem")).expect("cert"),
        std::fs::read(client_ca.join("app.key")).expect("key"),
    );
    assert_eq!(
        select_one(&url, Some(trusting(&ca).identity(identity)))
            .await
            .as_deref(),
        Ok("1")
    );
    // A client certificate of another CA is refused too.
    let other = make_ca(certs.path(), "other", &[]);
    let other_text = other.to_str().expect("utf-8");
    ok(&[
        "certs", "node", "--ca-dir", other_text, "--region", "app", "--out", other_text,
    ]);
    let foreign = Identity::from_pem(
        std::fs::read(other.join("app.pem")).expect("cert"),
        std::fs::read(other.join("app.key")).expect("key"),
    );
    let refused = select_one(&url, Some(trusting(&ca).identity(foreign))).await;
    assert!(
        refused.is_err(),
        "client certificate of another CA: {refused:?}"
    );
}

/// A node config with `listen` lines and one user whose password is `password`.
fn refused_start(listen: &str, password: &str, extra: &str) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let hash = {
        use std::io::Write;
        let mut child = Command::new(domicile_binary())
            .arg("hash-password")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("hash-password");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(password.as_bytes())
            .expect("write");
        String::from_utf8(child.wait_with_output().expect("hash").stdout).expect("utf-8")
    };
    let config = dir.path().join("node.toml");
    std::fs::write(
        &config,
        format!(
            "region = \"eu-central\"\njurisdiction = \"EU\"\ndata_dir = \"data\"\n[listen]\n{listen}\n\
             [[users]]\nname = \"analyst-apac\"\npassword_hash = \"{}\"\nroles = [\"reader\"]\n\
             home_region = \"ap-southeast\"\n{extra}",
            hash.trim()
        ),
    )
    .expect("write config");
    let out = Command::new(domicile_binary())
        .args(["node", "--config"])
        .arg(&config)
        .output()
        .expect("run node");
    assert!(
        !out.status.success(),
        "{listen}: the node must refuse to start"
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn off_loopback_a_node_needs_tls_and_refuses_every_demo_password() {
    let certs = tempfile::tempdir().expect("tempdir");
    let ca = make_ca(certs.path(), "clients", &["127.0.0.1"]);
    let tls = tls_toml(&ca, None);

    // Plaintext on a wildcard address: refused, naming the listener and the way out.
    let error = refused_start("flight_sql = \"0.0.0.0:0\"", "a-real-password", "");
    assert!(
        error.contains("listen.flight_sql") && error.contains("[listen.tls]"),
        "{error}"
    );
    let error = refused_start(
        "flight_sql = \"127.0.0.1:0\"\nadmin = \"0.0.0.0:0\"",
        "a-real-password",
        "",
    );
    assert!(error.contains("listen.admin"), "{error}");

    // With TLS, the demo's analyst password is refused on the admin listener as well.
    let error = refused_start(
        "flight_sql = \"127.0.0.1:0\"\nadmin = \"0.0.0.0:0\"",
        domicile::auth::DEMO_ANALYST_PASSWORD,
        &tls,
    );
    assert!(
        error.contains("well-known demo password")
            && error.contains("listen.admin")
            && error.contains("analyst-apac"),
        "{error}"
    );
    let error = refused_start(
        "flight_sql = \"0.0.0.0:0\"\ninsecure = true",
        domicile::auth::DEMO_ADMIN_PASSWORD,
        "",
    );
    assert!(
        error.contains("well-known demo password") && error.contains("listen.flight_sql"),
        "{error}"
    );
}
