//! `examples/single-node/node.toml` works as shipped, and its well-known `admin` / `admin`
//! credentials are refused on a non-loopback address.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use domicile_tests::{Client, column_strings, domicile_binary};

fn example_config() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/single-node/node.toml")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_example_config_starts_and_admin_can_log_in() {
    let data = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(domicile_binary())
        .args(["node", "--config"])
        .arg(example_config())
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut first = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut first)
        .expect("line");
    let address = first
        .split_whitespace()
        .find_map(|p| p.strip_prefix("flight_sql="))
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
        .to_string();
    let mut admin = Client::connect(&format!("http://{address}"), "admin", "admin")
        .await
        .expect("admin/admin");
    let batches = admin
        .query("SELECT region, jurisdiction FROM system.node")
        .await
        .expect("query");
    assert_eq!(column_strings(&batches, "region"), vec!["eu-central"]);
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn demo_credentials_are_refused_off_loopback() {
    let data = tempfile::tempdir().expect("tempdir");
    let output = Command::new(domicile_binary())
        .args(["node", "--config"])
        .arg(example_config())
        .args(["--listen", "0.0.0.0:0", "--data-dir"])
        .arg(data.path())
        .output()
        .expect("run");
    assert!(!output.status.success(), "must refuse to start");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("well-known demo password"),
        "stderr: {stderr}"
    );
}

#[test]
fn a_bad_config_names_the_key_and_exits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("bad.toml");
    let text = std::fs::read_to_string(example_config())
        .expect("example")
        .replace("jurisdiction", "jurisdicton");
    std::fs::write(&config, text).expect("write");
    let output = Command::new(domicile_binary())
        .args(["node", "--config"])
        .arg(&config)
        .output()
        .expect("run");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("jurisdicton"), "stderr: {stderr}");
}
