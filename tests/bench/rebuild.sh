#!/usr/bin/env bash
# Incremental rebuild times (issue 18, item 8): for each of a few source files, inserts
# one comment line at its top (every span in the file moves, as after a real edit),
# times `cargo nextest run --workspace --no-run` (the node, its unit tests and every
# end-to-end test binary), then restores the file and rebuilds untimed. Debug profile,
# this machine's cores. Usage: rebuild.sh [file ...] (default: one file in the storage
# crate, one in the engine's sql, one in the top crate's Flight SQL service, and the
# binary's main.rs).
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/domicile/target}"
if [ "$#" -eq 0 ]; then
  set -- node/storage/src/value.rs node/engine/src/sql/engine.rs \
    node/src/flight/service.rs node/src/main.rs
fi
build() { cargo nextest run --workspace --no-run >/dev/null 2>&1; }
echo "warming up"
build
echo "machine: $(nproc) cores; $(git rev-parse --short HEAD)"
for file in "$@"; do
  backup="$(mktemp)"
  cp -p "$file" "$backup"
  trap 'cp -p "$backup" "$file"' EXIT
  { echo "// rebuild.sh: a one-line change"; cat "$backup"; } >"$file"
  start=$(date +%s.%N)
  build
  end=$(date +%s.%N)
  cp -p "$backup" "$file"
  trap - EXIT
  rm -f "$backup"
  printf '%-40s %6.1f s\n' "$file" "$(echo "$end - $start" | bc)"
  build
done
