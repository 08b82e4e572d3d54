//! The node's modules form floors, and code only looks down (ARCHITECTURE.md, "Layers").
//!
//! Every `crate::<module>` path in the node's crates (comments left out) must name a
//! module on a lower floor than the file's own module; an outside library with a room of
//! its own (redb, wasmtime, rdkafka, foyer, tonic's servers, axum) is named only in that
//! room. A new module must be given a floor here before it builds green. Between crates
//! cargo itself forbids cycles; what a lower crate must not pull in at all (the storage
//! crate: DataFusion, wasmtime, rdkafka, tonic) is checked on its dependency tree.
//!
//! The checker is tested on made-up sources too, so this test cannot pass by finding
//! nothing: an upward import and a library outside its room are both reported.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Floors, lowest first. A module may use modules of lower floors only.
const FLOORS: &[&[&str]] = &[
    &["client_address", "clock", "error_kind", "limits"],
    &[
        "auth",
        "bounded_file",
        "catalog",
        "connection_gate",
        "trace_context",
    ],
    &["storage"],
    &["redact_text"],
    &["plugins", "cache", "grpc_status"],
    &["residency", "peers"],
    &["saga", "cdc", "config"],
    &["metrics", "admin"],
    &["sql"],
    &["federation", "flight"],
    &["peer_api"],
    &["server"],
    &["cli", "fuzzing"],
];

/// An outside library and the only places (path prefixes under `node/src`) that may
/// name it in code.
const ROOMS: &[(&str, &[&str])] = &[
    ("redb::", &["storage/"]),
    ("wasmtime::", &["plugins/"]),
    ("wasmtime_wasi", &["plugins/"]),
    ("rdkafka::", &["cdc/kafka.rs"]),
    ("foyer::", &["cache/"]),
    ("axum::", &["metrics/server.rs"]),
    ("prometheus_client::", &["metrics/"]),
    ("procfs::", &["metrics/process.rs"]),
    ("tonic_health::", &["server/serving.rs"]),
    // W3C trace context in one module; the OTLP exporter where the binary installs it.
    ("opentelemetry", &["trace_context.rs", "cli/logging.rs"]),
    ("opentelemetry_otlp", &["cli/logging.rs"]),
    ("indicatif::", &["cli/progress.rs"]),
    ("tonic::transport::Server", &["server/"]),
    ("_server::", &["server/", "flight/", "admin/", "peer_api/"]),
    // One error model: errors carry an `ErrorKind`; only `grpc_status` turns a kind into
    // a status or a peer's status back into a kind. No domain code reads gRPC codes
    // (metrics count calls by code; the servers' tests assert them).
    ("tonic::Code", &["grpc_status.rs", "metrics/", "server/"]),
    ("Status::new(", &["grpc_status.rs"]),
    ("Status::invalid_argument(", &["grpc_status.rs"]),
    ("Status::permission_denied(", &["grpc_status.rs"]),
    ("Status::unauthenticated(", &["grpc_status.rs"]),
    ("Status::not_found(", &["grpc_status.rs"]),
    ("Status::already_exists(", &["grpc_status.rs"]),
    ("Status::failed_precondition(", &["grpc_status.rs"]),
    ("Status::aborted(", &["grpc_status.rs"]),
    ("Status::resource_exhausted(", &["grpc_status.rs"]),
    ("Status::unavailable(", &["grpc_status.rs"]),
    ("Status::unimplemented(", &["grpc_status.rs"]),
    ("Status::internal(", &["grpc_status.rs"]),
    ("Status::cancelled(", &["grpc_status.rs"]),
];

/// The node's crates: their source folder (relative to the repository) and, for a crate
/// that is one module of the floors, that module's name (its files count as
/// `<module>/<file>`); a crate without one holds several modules, one per top file.
const CRATES: &[(&str, Option<&str>)] = &[
    ("node/model/src", None),
    ("node/storage/src", Some("storage")),
    ("node/redact-text/src", Some("redact_text")),
    ("node/plugin-host/src", Some("plugins")),
    ("node/engine/src", None),
    ("node/src", None),
];

/// Packages a crate must not depend on, directly or through others.
const FORBIDDEN_DEPENDENCIES: &[(&str, &[&str])] = &[
    (
        "domicile-model",
        &[
            "datafusion",
            "arrow",
            "redb",
            "wasmtime",
            "rdkafka",
            "tonic",
            "tokio",
            "foyer",
        ],
    ),
    (
        "domicile-storage",
        &[
            "datafusion",
            "arrow",
            "wasmtime",
            "rdkafka",
            "tonic",
            "foyer",
            // Storage names a change's trace by a hook; it knows no tracing system.
            "opentelemetry",
        ],
    ),
];

fn floor_of(module: &str) -> Option<usize> {
    FLOORS.iter().position(|floor| floor.contains(&module))
}

/// The module a file belongs to (`sql/engine.rs` → `sql`); `None` for the crate roots
/// (named by their folder, `node/src/lib.rs`).
fn module_of(relative: &str) -> Option<&str> {
    if relative.starts_with("node/") {
        return None;
    }
    let first = relative.split('/').next()?;
    let module = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(module, "lib" | "main")).then_some(module)
}

/// `text` without comments (line comments, doc comments, block comments), string
/// contents kept: a path in a doc comment is prose, not an import.
fn code_of(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let mut in_string = false;
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            if c == '\\' {
                if let Some(next) = chars.next() {
                    out.push(next);
                }
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        match (c, chars.peek()) {
            ('"', _) => {
                in_string = true;
                out.push(c);
            }
            ('/', Some('/')) => {
                for skipped in chars.by_ref() {
                    if skipped == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            ('/', Some('*')) => {
                chars.next();
                let mut previous = ' ';
                for skipped in chars.by_ref() {
                    if previous == '*' && skipped == '/' {
                        break;
                    }
                    previous = skipped;
                }
            }
            _ => out.push(c),
        }
    }
    out
}

/// The modules `code` names through `crate::` (also inside `use crate::{a, b::c}`).
fn modules_named(code: &str) -> Vec<String> {
    let mut named = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find("};").unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    named.push(name);
                }
            }
            continue;
        }
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            named.push(name);
        }
    }
    named
}

/// Every breach of the floors and rooms in `files` (path relative to `node/src`, text).
fn violations(files: &BTreeMap<String, String>) -> Vec<String> {
    let mut found = Vec::new();
    for (path, text) in files {
        let code = code_of(text);
        for (library, rooms) in ROOMS {
            if code.contains(library) && !rooms.iter().any(|room| path.starts_with(room)) {
                found.push(format!("{path} names {library}, which lives in {rooms:?}"));
            }
        }
        let Some(module) = module_of(path) else {
            continue;
        };
        let Some(own) = floor_of(module) else {
            found.push(format!("{path}: module {module} has no floor in FLOORS"));
            continue;
        };
        // In a crate that is one module, `crate::x` may name its own submodule `x`.
        let submodules: Vec<&str> = if CRATES.iter().any(|(_, m)| *m == Some(module)) {
            files
                .keys()
                .filter_map(|other| other.strip_prefix(module)?.strip_prefix('/'))
                .filter_map(|rest| rest.split('/').next())
                .map(|first| first.strip_suffix(".rs").unwrap_or(first))
                .collect()
        } else {
            Vec::new()
        };
        for named in modules_named(&code) {
            if named == module || submodules.contains(&named.as_str()) {
                continue;
            }
            match floor_of(&named) {
                Some(floor) if floor < own => {}
                Some(floor) => found.push(format!(
                    "{path}: {module} (floor {own}) uses {named} (floor {floor}): \
                     code only looks down"
                )),
                // Crate-root items (`crate::Foo` re-exports) are not modules.
                None => {}
            }
        }
    }
    found
}

fn sources(dir: &Path, root: &Path, out: &mut BTreeMap<String, String>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read node/src")
        .map(|entry| entry.expect("entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            sources(&path, root, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let relative = path
                .strip_prefix(root)
                .expect("under node/src")
                .to_string_lossy()
                .replace('\\', "/");
            out.insert(relative, std::fs::read_to_string(&path).expect("source"));
        }
    }
}

#[test]
fn node_modules_only_look_down_and_outside_libraries_stay_in_their_rooms() {
    let repository = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = BTreeMap::new();
    for (dir, module) in CRATES {
        let root = repository.join(dir);
        let mut own = BTreeMap::new();
        sources(&root, &root, &mut own);
        assert!(!own.is_empty(), "no sources in {dir}");
        for (path, text) in own {
            let path = match module {
                Some(module) => format!("{module}/{path}"),
                None if path == "lib.rs" || path == "main.rs" => format!("{dir}/{path}"),
                None => path,
            };
            assert!(files.insert(path.clone(), text).is_none(), "{path} twice");
        }
    }
    assert!(files.len() > 50, "read {} files", files.len());
    let found = violations(&files);
    assert!(found.is_empty(), "layering broken:\n{}", found.join("\n"));
}

/// The packages `package` depends on for building (not its dev-dependencies), directly
/// or not, from `cargo tree` on the locked dependency graph.
fn dependency_tree(package: &str) -> Vec<String> {
    let output = std::process::Command::new(env!("CARGO"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["tree", "--locked", "--offline", "--edges", "normal,build"])
        .args(["--prefix", "none", "--format", "{p}", "--package", package])
        .output()
        .expect("run cargo tree");
    assert!(
        output.status.success(),
        "cargo tree -p {package}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

#[test]
fn lower_crates_build_without_the_engines_above_them() {
    for (package, forbidden) in FORBIDDEN_DEPENDENCIES {
        let tree = dependency_tree(package);
        assert!(
            tree.iter().any(|p| p == package),
            "cargo tree of {package} does not list it: {tree:?}"
        );
        let pulled: Vec<&String> = tree
            .iter()
            .filter(|p| forbidden.contains(&p.as_str()))
            .collect();
        assert!(
            pulled.is_empty(),
            "{package} depends on {pulled:?}, which it must build without"
        );
    }
    // The check can fail: the node's own crate pulls in every one of them.
    let node = dependency_tree("domicile");
    for engine in ["datafusion", "wasmtime", "rdkafka", "tonic"] {
        assert!(
            node.iter().any(|p| p == engine),
            "domicile without {engine}?"
        );
    }
}

#[test]
fn the_checker_reports_an_upward_import_and_a_library_outside_its_room() {
    let files: BTreeMap<String, String> = [
        (
            "storage/store.rs",
            "use crate::catalog::TableDef;\n/// See crate::sql for readers.\nfn f() { crate::sql::run(); }\n",
        ),
        ("sql/engine.rs", "use crate::{storage::Store, cli};\nuse redb::Database;\n"),
        ("newroom/mod.rs", "use crate::clock;\n"),
        // The plugin host is a crate of its own: `crate::residency` there is its own
        // submodule, not the residency floor above it.
        (
            "plugins/redactor.rs",
            "use crate::residency::bindings;\nuse crate::storage::Store;\n",
        ),
        ("plugins/residency.rs", "use crate::cdc::Relay;\n"),
        (
            "saga/steps.rs",
            "fn fenced(s: &Status) -> bool { s.code() == tonic::Code::Aborted }\n",
        ),
        ("flight/service.rs", "fn no() -> Status { Status::aborted(\"x\") }\n"),
    ]
    .into_iter()
    .map(|(path, text)| (path.to_string(), text.to_string()))
    .collect();
    let found = violations(&files);
    let expected = [
        "storage/store.rs: storage (floor 2) uses sql (floor 8)",
        "sql/engine.rs: sql (floor 8) uses cli (floor 12)",
        "sql/engine.rs names redb::",
        "newroom/mod.rs: module newroom has no floor",
        "plugins/residency.rs: plugins (floor 4) uses cdc (floor 6)",
        "saga/steps.rs names tonic::Code",
        "flight/service.rs names Status::aborted(",
    ];
    for needle in expected {
        assert!(
            found.iter().any(|f| f.contains(needle)),
            "{needle} not reported: {found:#?}"
        );
    }
    // Nothing else: the doc comment's `crate::sql` is prose, and storage may use catalog.
    assert_eq!(found.len(), expected.len(), "{found:#?}");
}

/// Where `code` defines a constant whose name says it is a bound (`*_MAX`,
/// `*_MAX_BYTES`, `*_MAX_MS` ...): the names found.
fn bounds_defined(code: &str) -> Vec<String> {
    code.lines()
        .filter_map(|line| {
            let rest = line.trim_start();
            let rest = rest
                .strip_prefix("pub(crate) ")
                .or_else(|| rest.strip_prefix("pub "))
                .unwrap_or(rest);
            let name: String = rest
                .strip_prefix("const ")?
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            (name.ends_with("_MAX") || name.contains("_MAX_")).then_some(name)
        })
        .collect()
}

#[test]
fn every_bound_is_defined_in_a_limits_file() {
    let repository = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut found = Vec::new();
    for (dir, _) in CRATES {
        let root = repository.join(dir);
        let mut files = BTreeMap::new();
        sources(&root, &root, &mut files);
        for (path, text) in files {
            if path.ends_with("limits.rs") {
                continue;
            }
            for name in bounds_defined(&code_of(&text)) {
                found.push(format!("{dir}/{path} defines {name}"));
            }
        }
    }
    assert!(
        found.is_empty(),
        "bounds belong in limits.rs (named with their unit, related by const assertions): {found:#?}"
    );
    // The check can fail.
    assert_eq!(
        bounds_defined(
            "/// x\npub(crate) const STEP_ROWS_MAX: usize = 1;\nconst A_MAX_MS: u64 = 2;\nconst MAXIMUM: u8 = 3;\n"
        ),
        ["STEP_ROWS_MAX", "A_MAX_MS"]
    );
}
