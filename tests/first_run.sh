#!/usr/bin/env bash
# The README's main command, verbatim, as a new user runs it: in a fresh clone of this
# checkout, with CARGO_TARGET_DIR unset (so the paths the README's commands name are the
# ones used), no input, no environment of ours. Waits for mesh.json, runs one query per
# region through stock ADBC using only what mesh.json says, stops the demo the way Ctrl-C
# does (SIGINT to its process group) and checks that it stopped cleanly.
#
# Usage: tests/first_run.sh PYTHON   (a Python with adbc-driver-flightsql; run.sh passes its venv's)
# A warm build is reused through symlinks: the clone's target/ and plugins/target/ point
# at cache folders outside it (target/ at $CARGO_TARGET_DIR when set, as run.sh sets it).
set -euo pipefail
python="${1:?usage: tests/first_run.sh PYTHON}"
source_tree="$(cd "$(dirname "$0")/.." && pwd)"
cache="$HOME/.cache/domicile"
target="${CARGO_TARGET_DIR:-$cache/target}"
plugins_target="$cache/plugins-target"
mkdir -p "$target" "$plugins_target"

work="$(mktemp -d)"
demo_pid=""
cleanup() {
  if [ -n "$demo_pid" ] && kill -0 "$demo_pid" 2>/dev/null; then
    kill -KILL -- "-$demo_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

git clone --quiet --no-hardlinks "$source_tree" "$work/clone"
# Uncommitted changes too, so a developer's run checks what they are about to commit.
(cd "$source_tree" && git diff HEAD --binary) | (cd "$work/clone" && git apply --allow-empty)
(cd "$source_tree" && git ls-files --others --exclude-standard -z) |
  (cd "$source_tree" && xargs -0 -r cp --parents -t "$work/clone")
ln -s "$target" "$work/clone/target"
ln -s "$plugins_target" "$work/clone/plugins/target"

# The first ```sh block of the README is its main command.
command="$(awk '/^```sh$/ {inside=1; next} inside && /^```$/ {exit} inside {print}' \
  "$work/clone/README.md")"
[ -n "$command" ] || { echo "first_run: no \`\`\`sh block in README.md" >&2; exit 1; }
echo "first_run: in a fresh clone, CARGO_TARGET_DIR unset: $command"

cd "$work/clone"
started=$(date +%s)
# Its own process group (setsid), like a terminal's foreground job; stdin closed.
env -u CARGO_TARGET_DIR -u DOMICILE_PLUGINS_DIR -u DOMICILE_WASM_DIR -u RUST_LOG \
  setsid bash -c "$command" </dev/null >"$work/demo.out" 2>"$work/demo.err" &
demo_pid=$!

mesh="$work/clone/domicile-demo/mesh.json"
deadline=$(( $(date +%s) + 3000 ))
until grep -q '^ready;' "$work/demo.out" 2>/dev/null; do
  if ! kill -0 "$demo_pid" 2>/dev/null; then
    echo "first_run: the demo exited before it was ready" >&2
    cat "$work/demo.out" >&2; tail -n 40 "$work/demo.err" >&2
    exit 1
  fi
  if [ "$(date +%s)" -gt "$deadline" ]; then
    echo "first_run: the demo was not ready after 50 minutes" >&2; exit 1
  fi
  sleep 2
done
echo "first_run: ready after $(( $(date +%s) - started )) s (build included)"
[ -f "$mesh" ] || { echo "first_run: no $mesh" >&2; exit 1; }

"$python" "$source_tree/tests/python/tools/first_query.py" "$mesh"

if grep -q $'\e\\[' "$work/clone/domicile-demo/demo.log"; then
  echo "first_run: ANSI escape codes in demo.log" >&2; exit 1
fi

kill -INT -- "-$demo_pid"
status=0
wait "$demo_pid" || status=$?
if [ "$status" -ne 0 ] || ! grep -q '^stopped cleanly' "$work/demo.out"; then
  echo "first_run: the demo did not stop cleanly on SIGINT (exit $status)" >&2
  tail -n 20 "$work/demo.out" >&2; tail -n 40 "$work/demo.err" >&2
  exit 1
fi
demo_pid=""
echo "first_run: stopped cleanly on SIGINT"
