#!/usr/bin/env bash
# Incremental rebuild times (issue 18, item 8): for each of a few source files, inserts
# one comment line at its top (every span in the file moves, as after a real edit),
# times `cargo nextest run --workspace --no-run` (the node's crates, their unit tests
# and the end-to-end test binary), then restores the file. Each file is timed RUNS
# times (default 3; the restore between runs is rebuilt untimed) and the median is
# printed with every run: one run on this machine varies by tens of seconds. Debug
# profile. Usage: [RUNS=N] rebuild.sh [file ...] (default: one file in the storage
# crate, one in the engine's sql, one in the top crate's Flight SQL service, and the
# binary's main.rs).
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/domicile/target}"
runs="${RUNS:-3}"
if [ "$#" -eq 0 ]; then
  set -- node/storage/src/value.rs node/engine/src/sql/engine.rs \
    node/src/flight/service.rs node/src/main.rs
fi
build() { cargo nextest run --workspace --no-run >/dev/null 2>&1; }
echo "warming up"
build
echo "machine: $(nproc) cores; $(git rev-parse --short HEAD); $runs runs per file"
for file in "$@"; do
  backup="$(mktemp)"
  cp "$file" "$backup"
  trap 'cp "$backup" "$file"' EXIT
  times=()
  for _ in $(seq "$runs"); do
    { echo "// rebuild.sh: a one-line change"; cat "$backup"; } >"$file"
    start=$(date +%s.%N)
    build
    end=$(date +%s.%N)
    times+=("$(echo "$end - $start" | bc)")
    # Restored with a new modification time, so the next run starts from a build of
    # the file as committed.
    cp "$backup" "$file"
    build
  done
  trap - EXIT
  rm -f "$backup"
  median="$(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')"
  printf '%-40s median %6.1f s  (runs: %s)\n' "$file" "$median" \
    "$(printf '%.1f ' "${times[@]}")"
done
