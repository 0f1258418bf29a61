#!/usr/bin/env bash
# Side-by-side load benchmark: infera vs FastAPI + uvicorn + onnxruntime vs a bare axum echo.
#
#   benches/load/run.sh [seconds-per-cell]      (default 10)
#
# Builds infera (release), the echo floor and the load generator, makes the FastAPI peer's venv
# from benches/load/requirements.txt, installs wrk from Debian if missing, runs every scenario on
# loopback and writes $CARGO_TARGET_DIR/load-bench.md (+ .json). See docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/infera-target}"
SECONDS_PER_CELL="${1:-10}"

if ! command -v wrk >/dev/null; then
    apt-get install -y --no-install-recommends wrk >/dev/null
fi

cargo build --release --locked --bin infera
# The echo floor and load generator are bench targets; find their executables.
exes=$(cargo bench --locked --no-run --bench loadgen --bench echo_floor --message-format=json 2>/dev/null |
    python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("executable") and m["target"]["name"] in ("loadgen", "echo_floor"):
        print(m["target"]["name"], m["executable"])')
loadgen=$(awk '$1=="loadgen"{print $2}' <<<"$exes")
echo_floor=$(awk '$1=="echo_floor"{print $2}' <<<"$exes")

venv="$CARGO_TARGET_DIR/fastapi-venv"
stamp="$venv/.requirements"
if ! cmp -s benches/load/requirements.txt "$stamp" 2>/dev/null; then
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r benches/load/requirements.txt
    cp benches/load/requirements.txt "$stamp"
fi

exec python3 benches/load/run.py \
    --infera "$CARGO_TARGET_DIR/release/infera" \
    --echo-floor "$echo_floor" --loadgen "$loadgen" \
    --python "$venv/bin/python" --seconds "$SECONDS_PER_CELL" \
    --out "$CARGO_TARGET_DIR/load-bench.md"
