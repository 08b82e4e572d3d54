#!/usr/bin/env bash
# Runs every check and test of Domicile: formatting, lints, Rust unit and end-to-end tests
# (real `domicile` processes, the stock Rust Flight SQL client, a real tansu Kafka
# broker, PostgreSQL 15 as the reference for SQL answers), and the Python client tests
# (ADBC, pandas, polars, SQLAlchemy 2, pyarrow.flight; flightsql-dbapi with SQLAlchemy 1.4
# in a venv of its own). Installs what a fresh machine lacks. This is the README's test
# command and what CI runs (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

# One target directory outside the clone, reused across runs and by CI.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/domicile/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
venv="${DOMICILE_VENV:-$HOME/.cache/domicile/venv}"
# flightsql-dbapi needs SQLAlchemy < 2, which cannot share a venv with SQLAlchemy 2.
venv_sqlalchemy14="${DOMICILE_VENV_SQLALCHEMY14:-$HOME/.cache/domicile/venv-sqlalchemy14}"

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

step "promtool, Prometheus' linter the metrics test checks /metrics with"
if ! command -v promtool >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi

step "Python venvs: ADBC, pandas, polars, SQLAlchemy 2, confluent-kafka; flightsql-dbapi"
for pair in "$venv:tests/python/requirements.txt" \
  "$venv_sqlalchemy14:tests/python-sqlalchemy14/requirements.txt"; do
  dir="${pair%%:*}"
  if [ ! -x "$dir/bin/python" ]; then
    python3 -m venv "$dir"
  fi
  "$dir/bin/pip" install --quiet --disable-pip-version-check -r "${pair#*:}"
done
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

step "Python client tests: ADBC, pandas, polars, SQLAlchemy 2, pyarrow.flight"
DOMICILE_BIN="$CARGO_TARGET_DIR/debug/domicile" "$venv/bin/python" -m pytest -q tests/python
step "Python client tests: flightsql-dbapi (SQLAlchemy 1.4)"
DOMICILE_BIN="$CARGO_TARGET_DIR/debug/domicile" "$venv_sqlalchemy14/bin/python" -m pytest -q \
  -p no:cacheprovider tests/python-sqlalchemy14

step "the README's main command, verbatim, in a fresh clone (CARGO_TARGET_DIR unset)"
tests/first_run.sh "$venv/bin/python"
