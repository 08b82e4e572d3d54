//! Plugin management on a running node through the admin gRPC API, driven by the
//! `domicile plugin` CLI: keygen, signed upload, refusals (untrusted key, missing
//! compliance role, garbage), list, hot swap to v2 and rollback, all visible in
//! `system.plugins` without a restart.

use std::path::Path;
use std::process::{Command, Output};

use domicile_tests::{TestNode, column_strings, domicile_binary, wasm_dir};

fn cli(args: &[&str], password: &str) -> Output {
    Command::new(domicile_binary())
        .args(args)
        .env("DOMICILE_PASSWORD", password)
        .output()
        .expect("run cli")
}

fn keygen(dir: &Path, name: &str) -> (String, String) {
    let path = dir.join(name);
    let output = cli(
        &[
            "plugin",
            "keygen",
            "--jurisdiction",
            "EU",
            "--out",
            path.to_str().expect("utf8"),
        ],
        "",
    );
    assert!(
        output.status.success(),
        "keygen: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    let public = stdout
        .lines()
        .find_map(|l| l.strip_prefix("public_key = \""))
        .and_then(|l| l.strip_suffix('"'))
        .expect("public key line")
        .to_string();
    (path.to_str().expect("utf8").to_string(), public)
}

#[tokio::test(flavor = "multi_thread")]
async fn upload_swap_and_rollback_through_the_cli() {
    let keys = tempfile::tempdir().expect("tempdir");
    let (eu_key, eu_public) = keygen(keys.path(), "eu.key");
    let (rogue_key, _) = keygen(keys.path(), "rogue.key");
    let extra =
        format!("\n[[trusted_keys]]\njurisdiction = \"EU\"\npublic_key = \"{eu_public}\"\n");
    let node = TestNode::start_with("eu-central", &extra, |_| Ok(())).expect("node starts");
    let endpoint = format!("http://{}", node.admin.expect("admin api listening"));
    let gdpr = wasm_dir().join("eu_gdpr.wasm");
    let strict = wasm_dir().join("guest_strict_policy.wasm");
    let upload = |user: &str, password: &str, key: &str, version: &str, file: &Path| {
        cli(
            &[
                "plugin",
                "upload",
                "--endpoint",
                &endpoint,
                "--user",
                user,
                "--jurisdiction",
                "EU",
                "--kind",
                "residency-policy",
                "--version",
                version,
                "--key",
                key,
                file.to_str().expect("utf8"),
            ],
            password,
        )
    };

    let accepted = upload("admin", "admin-pw", &eu_key, "1", &gdpr);
    assert!(
        accepted.status.success(),
        "v1: {}",
        String::from_utf8_lossy(&accepted.stderr)
    );
    assert!(String::from_utf8_lossy(&accepted.stdout).contains("EU/residency-policy v1 (active)"));

    let garbage = keys.path().join("garbage.wasm");
    std::fs::write(&garbage, b"not wasm at all").expect("write");
    let refusals = [
        (
            upload("admin", "admin-pw", &rogue_key, "2", &strict),
            "signature does not verify",
        ),
        (
            upload("writer", "writer-pw", &eu_key, "2", &strict),
            "lacks the compliance role",
        ),
        (
            upload("admin", "wrong", &eu_key, "2", &strict),
            "invalid user name or password",
        ),
        (
            upload("admin", "admin-pw", &eu_key, "2", &garbage),
            "not a valid WASM component",
        ),
        (
            upload("admin", "admin-pw", &eu_key, "1", &strict),
            "not newer",
        ),
    ];
    for (output, needle) in refusals {
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "should be refused: {needle}");
        assert!(
            stderr.contains(needle),
            "stderr {stderr:?} lacks {needle:?}"
        );
    }

    let mut sql = node.client("reader").await.expect("login");
    let active = |batches: &[arrow::array::RecordBatch]| -> Vec<String> {
        let versions = column_strings(batches, "version");
        let flags = column_strings(batches, "active");
        versions
            .into_iter()
            .zip(flags)
            .filter(|(_, a)| a == "true")
            .map(|(v, _)| v)
            .collect()
    };
    let query = "SELECT version, active FROM system.plugins ORDER BY version";
    assert_eq!(
        active(&sql.query(query).await.expect("plugins")),
        vec!["1"],
        "refusals left v1 active"
    );

    let v2 = upload("admin", "admin-pw", &eu_key, "2", &strict);
    assert!(
        v2.status.success(),
        "v2: {}",
        String::from_utf8_lossy(&v2.stderr)
    );
    assert_eq!(active(&sql.query(query).await.expect("plugins")), vec!["2"]);

    let admin_args = ["--endpoint", endpoint.as_str(), "--user", "admin"];
    let rollback = cli(
        &[
            &["plugin", "rollback"][..],
            &admin_args,
            &["--jurisdiction", "EU", "--kind", "residency-policy"],
        ]
        .concat(),
        "admin-pw",
    );
    assert!(
        rollback.status.success(),
        "rollback: {}",
        String::from_utf8_lossy(&rollback.stderr)
    );
    assert_eq!(active(&sql.query(query).await.expect("plugins")), vec!["1"]);

    let list = cli(
        &[&["plugin", "list", "-o", "json"][..], &admin_args].concat(),
        "admin-pw",
    );
    let listed: serde_json::Value =
        serde_json::from_slice(&list.stdout).expect("plugin list -o json");
    let listed = listed.as_array().expect("an array");
    assert_eq!(listed.len(), 2, "{listed:?}");
    let active: Vec<&serde_json::Value> = listed.iter().filter(|p| p["active"] == "true").collect();
    assert_eq!(active.len(), 1, "{listed:?}");
    assert_eq!(active[0]["version"], "1");
    let table = cli(&[&["plugin", "list"][..], &admin_args].concat(), "admin-pw");
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.contains("jurisdiction") && table.contains("sha256"),
        "{table}"
    );
}
