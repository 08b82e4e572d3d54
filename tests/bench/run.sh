#!/usr/bin/env bash
# Benchmarks a release build of domicile against PostgreSQL 15 on this machine, in one
# run: point selects and durable single-row updates, 1 and 8 clients. PostgreSQL runs on
# a fresh temp dir with its defaults (fsync on, synchronous_commit on) and is stopped at
# the end. Extra arguments go to domicile-bench (--rows N --seconds S --seed N).
# `run.sh --plugins` instead measures plugin costs (native vs WASM policy, redactor);
# `run.sh --guard [--seconds S]` the residency guard's cost (on vs off);
# `run.sh --wan [--seconds S]` local and routed reads / writes on a 3-region mesh with the
# seed scenario's round trips (80, 160, 170 ms) on the links;
# `run.sh --cdc [--seconds S]` CDC write cost (on vs off), relay events/s, and end-to-end
# lag (embedded transport, with and without WAN; Kafka via tansu, which must be installed);
# `run.sh --sagas [--seconds S] [--runs N] [--loopback-only] [--clients 32,64]
# [--commit-window-us 0,200]` transfers as sagas (us-east → eu-central), loopback and 80 ms
# RTT, 1 and 32 (or the given) clients, each many-client run N times, with the median; with
# each given storage commit window (default: the node's);
# `run.sh --federation [--seconds S]` federated queries over the simulated WAN, cold and
# cached, and local point reads with the row cache on and off;
# `run.sh --overload [--seconds S]` the steady workload of tests/overload.rs (point reads
# and transfers on the bank's us-east node) with the hostile mix off, on and off again:
# p50 / p99, calls/s and the node's RSS of each phase;
# `run.sh --transactions [--seconds S]` three-statement transfers in one transaction (1 and
# 8 clients) and bulk ingest rows/s, against the same on PostgreSQL (serializable; COPY).
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/domicile/target}"

if [ "${1:-}" = "--plugins" ]; then
  # Plugin costs: no server, no PostgreSQL; the native policy is the baseline.
  cargo build --release --target wasm32-wasip2 --manifest-path plugins/Cargo.toml
  cargo build --release -p domicile-tests --bin domicile-plugin-bench
  echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB"
  DOMICILE_WASM_DIR="$CARGO_TARGET_DIR/wasm32-wasip2/release" \
    exec "$CARGO_TARGET_DIR/release/domicile-plugin-bench"
fi

cargo build --release -p domicile --bin domicile -p domicile-tests --bin domicile-bench

if [ "${1:-}" = "--guard" ] || [ "${1:-}" = "--wan" ] || [ "${1:-}" = "--cdc" ] \
  || [ "${1:-}" = "--sagas" ] || [ "${1:-}" = "--federation" ] \
  || [ "${1:-}" = "--overload" ]; then
  # Residency guard on vs off, two nodes, same run; no PostgreSQL needed.
  cargo build --release --target wasm32-wasip2 --manifest-path plugins/Cargo.toml
  cargo build --release --target wasm32-wasip2 --manifest-path tests/guests/Cargo.toml
  echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB"
  DOMICILE_BIN="$CARGO_TARGET_DIR/release/domicile" \
    DOMICILE_WASM_DIR="$CARGO_TARGET_DIR/wasm32-wasip2/release" \
    exec "$CARGO_TARGET_DIR/release/domicile-bench" "$@"
fi

pg_bin=/usr/lib/postgresql/15/bin
if [ ! -x "$pg_bin/postgres" ]; then
  apt-get update -qq && apt-get install -y -qq postgresql-15 >/dev/null
fi
work=$(mktemp -d)
chown postgres "$work"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
runuser -u postgres -- "$pg_bin/initdb" -D "$work/pg" -A trust -U bench >/dev/null
runuser -u postgres -- "$pg_bin/pg_ctl" -D "$work/pg" -l "$work/pg.log" -w \
  -o "-p $port -k $work -c listen_addresses=127.0.0.1 -c max_connections=50" start >/dev/null
stop() {
  runuser -u postgres -- "$pg_bin/pg_ctl" -D "$work/pg" -m fast stop >/dev/null || true
  rm -rf "$work"
}
trap stop EXIT

# The nodes need the bundled EU policy (a node without one refuses to store rows).
cargo build --release --target wasm32-wasip2 --manifest-path plugins/Cargo.toml
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB; PostgreSQL $("$pg_bin/postgres" --version | awk '{print $3}')"
DOMICILE_BIN="$CARGO_TARGET_DIR/release/domicile" \
  DOMICILE_WASM_DIR="$CARGO_TARGET_DIR/wasm32-wasip2/release" \
  "$CARGO_TARGET_DIR/release/domicile-bench" \
  --postgres "host=127.0.0.1 port=$port user=bench dbname=postgres" "$@"
