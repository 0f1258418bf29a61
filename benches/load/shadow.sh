#!/usr/bin/env bash
# Cost of a shadow version to the callers (docs/model-updates.md, docs/benchmarks.md):
#
#   benches/load/shadow.sh [connections] [seconds per leg] [rounds]     (default 64 10 3)
#
# Builds infera (release) and the load generator, then runs benches/load/shadow.py.
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
exec python3 benches/load/shadow.py --infera "$CARGO_TARGET_DIR/release/infera" --loadgen "$loadgen" \
    --connections "${1:-64}" --seconds "${2:-10}" --rounds "${3:-3}"
