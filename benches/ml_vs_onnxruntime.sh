#!/usr/bin/env bash
# infera vs onnxruntime (single-threaded) on the ai.onnx.ml conformance models, in one run.
# Makes a venv from models/requirements-conformance.txt (once), then runs the criterion bench
# `benches/ml.rs`, which also runs models/bench_onnxruntime.py and prints a comparison table
# (also written to $CARGO_TARGET_DIR/ml-vs-onnxruntime.md).
#   benches/ml_vs_onnxruntime.sh            # every model
#   benches/ml_vs_onnxruntime.sh rf_        # models whose name contains rf_
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${INFERA_BENCH_VENV:-/var/tmp/infera-bench-venv}"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import onnxruntime' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet -r models/requirements-conformance.txt
fi
export INFERA_ORT_PYTHON="$venv/bin/python"
export INFERA_ML_BENCH_FILTER="${1:-}"
cargo bench --bench ml
