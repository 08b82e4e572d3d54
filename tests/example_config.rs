//! `examples/single-node/` works as its README says: the README's own commands (keygen,
//! node, plugin upload, SQL), run as written with only ports and folders swapped for
//! fresh ones, store a regional row and read it back; the example's well-known `admin` /
//! `admin` credentials are refused on a non-loopback address; a bad config names its key.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use domicile_tests::{Client, column_strings, domicile_binary, wasm_dir};

fn example_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/single-node")
}

/// The example config in a fresh folder, its fixed ports replaced by OS-chosen ones.
fn example_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = std::fs::read_to_string(example_dir().join("node.toml")).expect("node.toml");
    let text = ["127.0.0.1:50051", "127.0.0.1:50052", "127.0.0.1:9464"]
        .iter()
        .fold(text, |t, fixed| t.replace(fixed, "127.0.0.1:0"));
    std::fs::write(dir.path().join("node.toml"), text).expect("write");
    dir
}

fn keygen(dir: &Path) {
    let status = Command::new(domicile_binary())
        .args(["plugin", "keygen", "--jurisdiction", "EU", "--out"])
        .arg(dir.join("eu.key"))
        .stdout(Stdio::null())
        .status()
        .expect("keygen");
    assert!(status.success());
}

/// Starts a node; returns it and its first line's `key=address` pairs.
fn start_node(args: &[&str], config: &Path) -> (Child, String) {
    let mut child = Command::new(domicile_binary())
        .args(["node", "--config"])
        .arg(config)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut reader = BufReader::new(child.stdout.take().expect("stdout"));
    let mut first = String::new();
    reader.read_line(&mut first).expect("line");
    // The node's stdout stays open, as a terminal's would.
    std::thread::spawn(move || for _ in reader.lines() {});
    (child, first)
}

fn address(line: &str, key: &str) -> String {
    line.split_whitespace()
        .find_map(|p| p.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key}= in first line {line:?}"))
        .to_string()
}

/// The commands of the README's first `sh` block, continuation lines joined, comments
/// dropped.
fn readme_commands() -> Vec<String> {
    let readme = std::fs::read_to_string(example_dir().join("README.md")).expect("README.md");
    let block = readme
        .split("```sh\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a ```sh block");
    let mut commands = Vec::new();
    let mut current = String::new();
    for line in block.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(head) => current.push_str(head),
            None => {
                current.push_str(line);
                commands.push(std::mem::take(&mut current));
            }
        }
    }
    commands
}

#[tokio::test(flavor = "multi_thread")]
async fn the_readme_steps_store_and_answer_a_regional_row() {
    let dir = example_copy();
    let folder = format!("{}/", dir.path().display());
    let binary = domicile_binary().display().to_string();
    let mut node: Option<(Child, String)> = None;
    let mut last_output = String::new();
    let commands = readme_commands();
    assert!(commands.len() >= 5, "README steps: {commands:?}");
    for command in commands {
        if command.starts_with("cargo build") {
            continue; // tests/run.sh built the components into wasm_dir()
        }
        let mut command = command
            .replace("cargo run -p domicile --", &binary)
            .replace("examples/single-node/", &folder)
            .replace(
                "plugins/target/wasm32-wasip2/release",
                &wasm_dir().display().to_string(),
            );
        if command.contains(" node --config ") {
            let (child, line) = start_node(&[], &dir.path().join("node.toml"));
            node = Some((child, line));
            continue;
        }
        if let Some((_, line)) = node.as_ref() {
            command = command
                .replace("127.0.0.1:50051", &address(line, "flight_sql"))
                .replace("127.0.0.1:50052", &address(line, "admin"));
        }
        let output = Command::new("bash")
            .args(["-c", &command])
            .output()
            .expect("bash");
        assert!(
            output.status.success(),
            "README step failed: {command}\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        last_output = String::from_utf8_lossy(&output.stdout).into_owned();
    }
    assert!(
        last_output.contains("ana@example.eu"),
        "the last step reads the row back: {last_output}"
    );
    let (mut child, _) = node.expect("node");
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_example_config_starts_and_admin_can_log_in() {
    let dir = example_copy();
    keygen(dir.path());
    let (mut child, first) = start_node(&[], &dir.path().join("node.toml"));
    let flight = address(&first, "flight_sql");
    let mut admin = Client::connect(&format!("grpc://{flight}"), "admin", "admin")
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
fn without_its_key_file_the_node_says_how_to_make_it() {
    let dir = example_copy();
    let output = Command::new(domicile_binary())
        .args(["node", "--config"])
        .arg(dir.path().join("node.toml"))
        .output()
        .expect("run");
    assert!(!output.status.success(), "must refuse to start");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("trusted_keys[0].public_key_file") && stderr.contains("plugin keygen"),
        "stderr: {stderr}"
    );
}

#[test]
fn demo_credentials_are_refused_off_loopback() {
    let dir = example_copy();
    keygen(dir.path());
    let start = |config: &str| {
        let output = Command::new(domicile_binary())
            .args(["node", "--config"])
            .arg(dir.path().join(config))
            .args(["--listen", "0.0.0.0:0"])
            .output()
            .expect("run");
        assert!(!output.status.success(), "must refuse to start");
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    // Off loopback without [listen.tls]: the password would travel in clear.
    let stderr = start("node.toml");
    assert!(
        stderr.contains("listen.flight_sql") && stderr.contains("[listen.tls]"),
        "stderr: {stderr}"
    );
    // Even when the operator accepts plaintext, the published password is refused.
    let text = std::fs::read_to_string(dir.path().join("node.toml")).expect("config");
    std::fs::write(
        dir.path().join("insecure.toml"),
        text.replacen("[listen]", "[listen]\ninsecure = true", 1),
    )
    .expect("write");
    let stderr = start("insecure.toml");
    assert!(
        stderr.contains("well-known demo password"),
        "stderr: {stderr}"
    );
}

#[test]
fn a_bad_config_names_the_key_and_exits() {
    let dir = example_copy();
    let config = dir.path().join("bad.toml");
    let text = std::fs::read_to_string(dir.path().join("node.toml"))
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

#[tokio::test(flavor = "multi_thread")]
async fn a_node_whose_stdout_is_closed_keeps_serving() {
    let dir = example_copy();
    keygen(dir.path());
    let mut child = Command::new(domicile_binary())
        .args(["node", "--config"])
        .arg(dir.path().join("node.toml"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut first = String::new();
    // A supervisor that reads the address line and closes the pipe.
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut first)
        .expect("line");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let flight = address(&first, "flight_sql");
    let mut admin = Client::connect(&format!("grpc://{flight}"), "admin", "admin")
        .await
        .expect("still serving");
    admin.query("SELECT 1").await.expect("query");
    assert!(
        child.try_wait().expect("status").is_none(),
        "the node exited"
    );
    let _ = child.kill();
    let _ = child.wait();
}
