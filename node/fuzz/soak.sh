#!/usr/bin/env bash
# Runs every fuzz target for a while and reports what it found.
#
#   node/fuzz/soak.sh [minutes per target, default 10] [targets at once, default nproc] [target...]
#
# Needs a nightly toolchain (rustup) and cargo-fuzz (installed if absent). Builds in
# $FUZZ_TARGET_DIR (default ~/.cache/domicile/fuzz-target), with the node's own
# Cargo.lock so the fuzzed dependencies are the shipped ones. New inputs go to
# scratch/<target>/, the committed corpus/<target>/ is read only, crashes land in
# artifacts/<target>/. Exit status 1 if any target found a crash.
set -euo pipefail
minutes=${1:-10}
jobs=${2:-$(nproc)}
shift $(($# < 2 ? $# : 2))
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
target_dir=${FUZZ_TARGET_DIR:-$HOME/.cache/domicile/fuzz-target}
command -v cargo-fuzz > /dev/null || cargo install cargo-fuzz --locked
cp ../../Cargo.lock Cargo.lock
cargo +nightly fuzz build --target-dir "$target_dir"
# Run the binaries built once, so that editing the sources during a soak changes nothing.
bin_dir="$target_dir/$(rustc +nightly -vV | sed -n 's/^host: //p')/release"
mkdir -p scratch/logs
run_one() {
    local target=$1
    mkdir -p "scratch/$target" "artifacts/$target"
    # -rss_limit_mb: a decoder that allocates past this on any input is a finding.
    # -timeout: one input taking 10 s is a finding (a hostile client would repeat it).
    if "$bin_dir/$target" -artifact_prefix="artifacts/$target/" \
        "scratch/$target" "corpus/$target" \
        -max_total_time=$((minutes * 60)) -rss_limit_mb=2048 -timeout=10 \
        -max_len=65536 -print_final_stats=1 > "scratch/logs/$target.log" 2>&1; then
        echo "$target: clean after ${minutes} min ($(grep -m1 -o 'stat::number_of_executed_units: *[0-9]*' "scratch/logs/$target.log" | grep -o '[0-9]*$') runs)"
    else
        echo "$target: FOUND A CRASH, see scratch/logs/$target.log and artifacts/$target/"
        return 1
    fi
}
export -f run_one
export minutes bin_dir
if (($# > 0)); then printf '%s\n' "$@"; else cargo +nightly fuzz list; fi |
    xargs -P "$jobs" -I{} bash -c 'run_one {}'
