#!/usr/bin/env python3
"""Cost of a shadow version to the callers (docs/model-updates.md, docs/benchmarks.md).

Starts infera on a scratch copy of the shipped digits model with a second, identical version,
and drives /models/digits/predict with the closed-loop load generator (N keep-alive
connections, S seconds per leg). The legs alternate between a card without a shadow and one
with `[shadow] version = 2, fraction = 1.0` (every request mirrored), each on a fresh server, for
R rounds, so the ratios compare runs made minutes apart on the same machine. Prints a JSON
summary: per leg req/s, p50/p99 of successful requests, non-2xx, and the shadow's counters
(compared, dropped, failed), then the shadow/baseline ratios per round.

    benches/load/shadow.py --infera BIN --loadgen BIN [--connections 64] [--seconds 10] [--rounds 3]

Only the standard library is used; benches/load/shadow.sh builds the binaries and runs it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from swap import free_port, wait_ready  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def make_repo(repo: Path, shadow: bool) -> None:
    digits = repo / "digits"
    shutil.copytree(ROOT / "models" / "digits", digits)
    shutil.copytree(digits / "1", digits / "2")
    if shadow:
        with open(digits / "model.toml", "a") as f:
            f.write("\n[shadow]\nversion = 2\nfraction = 1.0\n")


def metric_sum(text: str, prefix: str) -> float:
    return sum(float(l.rsplit(" ", 1)[1]) for l in text.splitlines() if l.startswith(prefix))


def leg(args, work: Path, body: Path, shadow: bool) -> dict:
    repo = work / ("repo-shadow" if shadow else "repo-plain")
    shutil.rmtree(repo, ignore_errors=True)
    make_repo(repo, shadow)
    port = free_port()
    log = open(work / "infera.log", "a")
    proc = subprocess.Popen(
        [args.infera, "--model-repository", str(repo), "--port", str(port), "--log", "warn"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base + "/health/ready", proc)
        out = subprocess.run(
            [args.loadgen, "--url", base + "/models/digits/predict", "--body", str(body),
             "--connections", str(args.connections), "--duration-secs", str(args.seconds),
             "--warmup-secs", "1", "--threads", "1"],
            stdout=subprocess.PIPE, text=True, check=True).stdout
        import urllib.request
        metrics = urllib.request.urlopen(base + "/metrics", timeout=5).read().decode()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    report = json.loads(out)
    ok = report["latency_us"]["ok"]
    shadow_counts = {
        o: metric_sum(metrics, f'infera_shadow_requests_total{{model="digits",outcome="{o}",version="2"}}')
        for o in ("compared", "dropped", "failed")
    }
    return {
        "shadow": shadow,
        "requests": report["requests"],
        "rps": report["rps"],
        "non_2xx": sum(n for s, n in report["status"].items() if not s.startswith("2")),
        "errors": report["errors"],
        "p50_us": ok.get("p50"),
        "p99_us": ok.get("p99"),
        "shadow_requests": shadow_counts,
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--infera", required=True)
    ap.add_argument("--loadgen", required=True)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="infera-shadow-"))
    golden = json.loads((ROOT / "models/digits/1/golden.json").read_text())
    body = work / "body.json"
    body.write_text(json.dumps({"instances": [golden["inputs"][0]]}))
    legs, ratios = [], []
    for _ in range(args.rounds):
        plain = leg(args, work, body, shadow=False)
        mirrored = leg(args, work, body, shadow=True)
        legs += [plain, mirrored]
        ratios.append({
            "rps_shadow_over_plain": round(mirrored["rps"] / plain["rps"], 3),
            "p99_shadow_over_plain": round(mirrored["p99_us"] / plain["p99_us"], 3),
        })
    print(json.dumps({"connections": args.connections, "seconds": args.seconds, "legs": legs,
                      "ratios": ratios}, indent=1))
    bad = any(l["non_2xx"] or l["errors"] for l in legs)
    if bad:
        print(f"FAILED (server log: {work / 'infera.log'})", file=sys.stderr)
        return 1
    shutil.rmtree(work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
