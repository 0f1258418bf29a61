#!/usr/bin/env bash
# Isolation between models: the p99 of a quiet model (iris, 4 connections) alone, then while
# another model (digits) is saturated by 64 connections, in the same run on the same server.
# Before wake-ups were coalesced per queue, the quiet model's work waited behind the busy
# model's backlog of wake-up posts (iris p99 1.9 ms quiet, 7.4 ms next to a saturated digits).
#
#   benches/load/isolation.sh [seconds] [rounds]      (default 15 s, 2 rounds)
#
# Prints one line per round and a JSON summary; see docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/infera-target}"
secs="${1:-15}"
rounds="${2:-2}"

cargo build --release --locked --bin infera >&2
loadgen=$(cargo bench --locked --no-run --bench loadgen --message-format=json 2>/dev/null |
    python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("executable") and m["target"]["name"] == "loadgen":
        print(m["executable"])')

exec python3 - "$CARGO_TARGET_DIR/release/infera" "$loadgen" "$secs" "$rounds" <<'PY'
import json, socket, subprocess, sys, tempfile, time, urllib.request
infera, loadgen, secs, rounds = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

port = free_port()
server = subprocess.Popen([infera, "--port", str(port), "--log", "warn"])
base = f"http://127.0.0.1:{port}"
for _ in range(400):
    try:
        if urllib.request.urlopen(f"{base}/health/ready", timeout=1).status == 200:
            break
    except Exception:
        time.sleep(0.05)
bodies = {}
for model, width in (("iris", 4), ("digits", 64)):
    f = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
    json.dump({"instances": [[0.5] * width]}, f)
    f.close()
    bodies[model] = f.name

def load(model, conns, duration=secs):
    return subprocess.Popen(
        [loadgen, "--url", f"{base}/models/{model}/predict", "--body", bodies[model],
         "--connections", str(conns), "--duration-secs", str(duration), "--warmup-secs", "1"],
        stdout=subprocess.PIPE, text=True)

def result(p):
    out = json.loads(p.communicate()[0])
    return out["latency_us"]["ok"]["p99"], out["ok_rps"], out["errors"] + sum(
        n for s, n in out["status"].items() if not s.startswith("2"))

rows = []
try:
    for r in range(rounds):
        quiet = result(load("iris", 4))
        # The busy load outlasts the quiet one's whole measured window.
        busy = load("digits", 64, secs + 2)
        time.sleep(0.5)
        noisy = result(load("iris", 4))
        digits = result(busy)
        row = {"round": r + 1, "iris_p99_quiet_us": quiet[0], "iris_p99_next_to_busy_us": noisy[0],
               "ratio": round(noisy[0] / max(quiet[0], 1), 2), "iris_rps_quiet": round(quiet[1]),
               "iris_rps_next_to_busy": round(noisy[1]), "digits_rps": round(digits[1]),
               "non_2xx_or_errors": quiet[2] + noisy[2] + digits[2]}
        rows.append(row)
        print(f"round {r + 1}: iris p99 {quiet[0]} us alone, {noisy[0]} us next to saturated digits "
              f"({row['ratio']}x); digits {row['digits_rps']} req/s; non-2xx/errors {row['non_2xx_or_errors']}",
              file=sys.stderr)
finally:
    server.terminate()
    server.wait()
print(json.dumps(rows, indent=1))
PY
