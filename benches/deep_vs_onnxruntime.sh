#!/usr/bin/env bash
# Deep models: tract and infera against onnxruntime in one run (docs/benchmarks.md, "Deep models").
# Builds the release server and the bench programs (benches/deep.rs, benches/load/loadgen.rs),
# makes sure the zoo is in the cache (tests/zoo/fetch.py and generate.py; nothing downloaded when
# warm), then runs benches/deep_vs_onnxruntime.py with the zoo venv's Python (onnxruntime 1.32.0).
#   benches/deep_vs_onnxruntime.sh              # 3 rounds, 2 s per measurement
#   ROUNDS=5 SECS=3 benches/deep_vs_onnxruntime.sh
# Writes $CARGO_TARGET_DIR/deep-vs-onnxruntime.md (the table) and .json (every figure).
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-/var/tmp/infera-target}"
venv="${INFERA_ZOO_VENV:-$target/zoo-venv}"
zoo="${INFERA_ZOO:-$target/zoo}"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import onnxruntime, onnx' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet -r tests/zoo/requirements.txt
fi
for script in fetch.py generate.py; do
  "$venv/bin/python" "tests/zoo/$script" --out "$zoo" >/dev/null
done
cargo build --release --bin infera
bench_bin() {
  cargo bench --bench "$1" --no-run 2>&1 | sed -n 's/.*Executable .* (\(.*\))$/\1/p' | tail -1
}
deep="$(bench_bin deep)"
loadgen="$(bench_bin loadgen)"
"$venv/bin/python" benches/deep_vs_onnxruntime.py \
  --infera "$target/release/infera" --deep "$deep" --loadgen "$loadgen" --zoo "$zoo" \
  --rounds "${ROUNDS:-3}" --secs "${SECS:-2}" --out "$target/deep-vs-onnxruntime.md"
