#!/usr/bin/env bash
# Runs every check and test of Domicile: formatting, lints, Rust unit and end-to-end tests
# (real `domicile` processes, the stock Rust Flight SQL client, a real tansu Kafka
# broker, PostgreSQL 15 as the reference for SQL answers), and the Python ADBC tests. Installs what a fresh machine lacks. This is the README's test command and what
# CI runs (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

# One target directory outside the clone, reused across runs and by CI.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/domicile/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
venv="${DOMICILE_VENV:-$HOME/.cache/domicile/venv}"

step() { printf '\n==> %s\n' "$*"; }

step "toolchain (rust-toolchain.toml)"
rustup show active-toolchain
rustup target add wasm32-wasip2
if ! cargo nextest --version >/dev/null 2>&1; then
  cargo install cargo-nextest --locked
fi

step "tansu, the Kafka-protocol broker the CDC tests run against"
if ! command -v tansu >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/tansu" ]; then
  # About 15 minutes on 2 cores; its own target dir, so the project's stays as it is.
  CARGO_TARGET_DIR="$HOME/.cache/domicile/tansu-target" \
    cargo install tansu --features dynostore --locked
fi

step "PostgreSQL 15, the reference the SQL conformance files (tests/slt) are checked against"
if [ ! -x /usr/lib/postgresql/15/bin/initdb ]; then
  apt-get update -qq && apt-get install -y -qq postgresql-15 >/dev/null
fi

step "Python venv: ADBC Flight SQL client, confluent-kafka, pytest"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/python/requirements.txt
export DOMICILE_PYTHON="$venv/bin/python"

step "format and lints"
cargo fmt --check
cargo fmt --all --check --manifest-path plugins/Cargo.toml
cargo fmt --all --check --manifest-path tests/guests/Cargo.toml
cargo clippy --workspace --all-targets -- -D warnings
cargo clippy --manifest-path plugins/Cargo.toml --target wasm32-wasip2 -- -D warnings

step "WASM components: bundled plugins and hostile test guests (wasm32-wasip2)"
cargo build --release --target wasm32-wasip2 --manifest-path plugins/Cargo.toml
cargo build --release --target wasm32-wasip2 --manifest-path tests/guests/Cargo.toml
ls -l "$CARGO_TARGET_DIR/wasm32-wasip2/release/"*.wasm

step "plugin logic, natively"
cargo test --manifest-path plugins/Cargo.toml

step "build the domicile binary the end-to-end tests start"
cargo build -p domicile --bins

step "Rust unit and end-to-end tests"
cargo nextest run --workspace --no-fail-fast
cargo test --workspace --doc

step "Python ADBC Flight SQL tests"
DOMICILE_BIN="$CARGO_TARGET_DIR/debug/domicile" "$venv/bin/python" -m pytest -q tests/python

step "the README's main command, verbatim, in a fresh clone (CARGO_TARGET_DIR unset)"
tests/first_run.sh "$venv/bin/python"
