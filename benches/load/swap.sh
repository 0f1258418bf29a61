#!/usr/bin/env bash
# Version swaps under load (docs/model-updates.md, docs/benchmarks.md):
#
#   benches/load/swap.sh [connections] [seconds] [--no-swaps]     (default 64 30)
#
# Builds infera (release) and the load generator, then runs benches/load/swap.py.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/infera-target}"
cargo build --release --locked --bin infera
loadgen=$(cargo bench --locked --no-run --bench loadgen --message-format=json 2>/dev/null |
    python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("executable") and m["target"]["name"] == "loadgen":
        print(m["executable"])')
exec python3 benches/load/swap.py --infera "$CARGO_TARGET_DIR/release/infera" --loadgen "$loadgen" \
    --connections "${1:-64}" --seconds "${2:-30}" ${3:-}
