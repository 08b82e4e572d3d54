//! Finding (and, in a source checkout, building) the bundled plugin components the demo
//! uploads.
//!
//! `plugins/` is a Cargo workspace of its own, so `cargo build --target wasm32-wasip2
//! --manifest-path plugins/Cargo.toml` puts its components in `plugins/target/` unless
//! `CARGO_TARGET_DIR` says otherwise, while the node's own build lands in `target/`. The
//! demo must find them wherever the README's commands (or a shared target directory) put
//! them, and must not make a new user build them by hand first.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;

/// The components the demo uploads to every region, by file stem.
pub const DEMO_COMPONENTS: [&str; 5] = [
    "us_ccpa",
    "eu_gdpr",
    "sg_pdpa",
    "pii_redactor",
    "transfer_saga",
];

/// The folder below a target directory that holds release components.
const COMPONENT_SUBDIR: [&str; 2] = ["wasm32-wasip2", "release"];

/// Where the bundled components are: `explicit` if given (it must hold them all), else
/// the first of the places a build puts them that holds them all. In a source checkout
/// (`plugins/Cargo.toml` under the working directory) the components are built first
/// with the same cargo that runs this process, so they match the checked-out source;
/// when they are current that build takes about a second.
///
/// # Errors
/// The components are missing from `explicit`, the build failed, or no place holds them
/// (the message lists where it looked and the command that builds them).
pub fn locate(explicit: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(dir) = explicit {
        check_complete(&dir)?;
        return Ok(dir);
    }
    let workspace = Path::new("plugins/Cargo.toml");
    if workspace.is_file() {
        build(workspace)?;
    }
    let candidates = candidates();
    if let Some(found) = candidates.iter().find(|dir| check_complete(dir).is_ok()) {
        return Ok(found.clone());
    }
    let looked: Vec<String> = candidates
        .iter()
        .map(|dir| format!("  {}", dir.display()))
        .collect();
    anyhow::bail!(
        "the bundled plugin components ({}.wasm) are in none of:\n{}\nbuild them from a \
         checkout with\n  cargo build --release --target wasm32-wasip2 --manifest-path \
         plugins/Cargo.toml\nor pass --plugins-dir",
        DEMO_COMPONENTS.join(".wasm, "),
        looked.join("\n")
    )
}

/// Every folder a build of `plugins/` may have left its components in, most specific
/// first: `$DOMICILE_PLUGINS_DIR`, `$CARGO_TARGET_DIR`, the plugins workspace's own
/// target, the node workspace's target, and the target directory this binary was built
/// in (`<target>/<profile>/domicile`).
fn candidates() -> Vec<PathBuf> {
    let below = |target: PathBuf| COMPONENT_SUBDIR.iter().fold(target, |p, part| p.join(part));
    let mut dirs = Vec::new();
    if let Some(dir) = std::env::var_os("DOMICILE_PLUGINS_DIR") {
        dirs.push(PathBuf::from(dir));
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        dirs.push(below(PathBuf::from(target)));
    }
    dirs.push(below(PathBuf::from("plugins/target")));
    dirs.push(below(PathBuf::from("target")));
    if let Some(target) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent()?.parent().map(Path::to_path_buf))
    {
        dirs.push(below(target));
    }
    dirs.dedup();
    dirs
}

fn check_complete(dir: &Path) -> anyhow::Result<()> {
    for name in DEMO_COMPONENTS {
        let path = dir.join(format!("{name}.wasm"));
        anyhow::ensure!(
            path.is_file(),
            "{} is missing: build the bundled plugins with\n  cargo build --release --target \
             wasm32-wasip2 --manifest-path plugins/Cargo.toml\n(or pass --plugins-dir)",
            path.display()
        );
    }
    Ok(())
}

/// Builds the plugins workspace for `wasm32-wasip2` with the cargo that runs us (`$CARGO`
/// under `cargo run`), else the one on `PATH`. Its progress goes to the terminal.
fn build(manifest: &Path) -> anyhow::Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!("building the bundled plugins (wasm32-wasip2; a minute the first time) ...");
    let status = Command::new(&cargo)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--manifest-path",
        ])
        .arg(manifest)
        .status()
        .with_context(|| {
            format!(
                "cannot run {} to build the bundled plugins (pass --plugins-dir to use \
                 components built elsewhere)",
                Path::new(&cargo).display()
            )
        })?;
    anyhow::ensure!(
        status.success(),
        "building the bundled plugins failed ({status}); is the wasm32-wasip2 target \
         installed? (`rustup target add wasm32-wasip2`)"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_explicit_folder_must_hold_every_component() {
        let dir = tempfile::tempdir().expect("dir");
        let error = locate(Some(dir.path().to_path_buf())).expect_err("empty folder");
        assert!(
            format!("{error:#}").contains("us_ccpa.wasm is missing"),
            "{error:#}"
        );
        for name in DEMO_COMPONENTS {
            std::fs::write(dir.path().join(format!("{name}.wasm")), b"").expect("write");
        }
        assert_eq!(
            locate(Some(dir.path().to_path_buf())).expect("complete"),
            dir.path()
        );
    }

    #[test]
    fn the_plugins_workspace_target_is_searched() {
        let dirs = candidates();
        let own = Path::new("plugins/target/wasm32-wasip2/release");
        assert!(dirs.iter().any(|d| d == own), "{dirs:?}");
    }
}
