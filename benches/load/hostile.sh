#!/usr/bin/env bash
# Hostile-traffic load test (docs/benchmarks.md, "Hostile traffic"):
#
#   benches/load/hostile.sh [extra hostile.py flags, e.g. --passes 3 --abusive 100000 --rate 2500]
#
# Builds the infera release binary and the load generator (benches/load/loadgen.rs), raises the
# open-file limit for the thousands of idle connections, runs benches/load/hostile.py and writes
# $CARGO_TARGET_DIR/hostile-bench.md (+ .json). Not part of CI (it takes minutes).
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
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
exec python3 benches/load/hostile.py --infera "$CARGO_TARGET_DIR/release/infera" \
    --loadgen "$loadgen" --out "$CARGO_TARGET_DIR/hostile-bench.md" "$@"
