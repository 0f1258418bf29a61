#!/usr/bin/env python3
"""Version swaps under load: the "nothing lost" benchmark of docs/model-updates.md.

Starts infera on a scratch copy of the shipped iris model (with an eval.json and a [gate] in its
card), drives /models/iris/predict with the closed-loop load generator (N keep-alive
connections for S seconds), and meanwhile publishes a new version every second the documented
way (copy into a hidden staging directory, rename into place); the repository watcher picks each
up, gates it and swaps it in. One candidate in the middle carries a corrupted golden.json and
must be refused by the gate while the serving version keeps answering. Afterwards it prints a
JSON summary and exits non-zero on any non-2xx answer, any connection error, a rejected
candidate that served, or too few swaps.

    benches/load/swap.py --infera BIN --loadgen BIN [--connections 64] [--seconds 30] [--no-swaps]

Only the standard library is used; benches/load/swap.sh builds the binaries and runs it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ROW = [6.7, 3.0, 5.2, 2.3]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"infera exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except Exception:
            pass
        time.sleep(0.01)
    raise RuntimeError(f"{url} not ready after {timeout} s")


def make_repo(repo: Path) -> Path:
    iris = repo / "iris"
    shutil.copytree(ROOT / "models" / "iris", iris)
    v1 = iris / "1"
    golden = json.loads((v1 / "golden.json").read_text())
    (v1 / "eval.json").write_text(json.dumps({"inputs": golden["inputs"], "labels": golden["outputs"]["label"]}))
    with open(iris / "model.toml", "a") as f:
        f.write("\n[gate]\nmin_accuracy = 0.9\nmax_accuracy_drop = 0.0\n")
    return v1


def publish(repo: Path, source: Path, version: int, corrupt_golden: bool) -> None:
    staging = repo / "iris" / f".incoming-{version}"
    shutil.copytree(source, staging)
    if corrupt_golden:
        path = staging / "golden.json"
        golden = json.loads(path.read_text())
        golden["outputs"]["probabilities"][0][0] += 0.5
        path.write_text(json.dumps(golden))
    os.rename(staging, repo / "iris" / str(version))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--infera", required=True)
    ap.add_argument("--loadgen", required=True)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--seconds", type=int, default=30)
    ap.add_argument("--no-swaps", action="store_true", help="the same load without publishing (baseline)")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="infera-swap-"))
    repo = work / "repo"
    v1 = make_repo(repo)
    body = work / "body.json"
    body.write_text(json.dumps({"instances": [ROW]}))
    port = free_port()
    log = open(work / "infera.log", "w")
    proc = subprocess.Popen(
        [args.infera, "--model-repository", str(repo), "--port", str(port), "--log", "warn,infera=info",
         "--reload-debounce-ms", "100"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base + "/health/ready", proc)
        load = subprocess.Popen(
            [args.loadgen, "--url", base + "/models/iris/predict", "--body", str(body),
             "--connections", str(args.connections), "--duration-secs", str(args.seconds),
             "--warmup-secs", "0", "--threads", "1"],
            stdout=subprocess.PIPE, text=True)
        bad = args.seconds // 2
        served, published = [], []
        started = time.monotonic()
        version = 1
        while not args.no_swaps and time.monotonic() - started < args.seconds - 1:
            tick = started + len(published) + 1
            time.sleep(max(0.0, tick - time.monotonic()))
            version += 1
            publish(repo, v1, version, corrupt_golden=(len(published) == bad))
            published.append(version)
            served.append(get_json(base + "/models/iris")["default_version"])
        out, _ = load.communicate(timeout=args.seconds + 60)
        report = json.loads(out)
        time.sleep(1)
        card = get_json(base + "/models/iris")
        states = {v["version"]: v["state"] for v in card["versions"]}
        rejected = published[bad] if published else None
        metrics = urllib.request.urlopen(base + "/metrics", timeout=5).read().decode()
        gate_failures = [l for l in metrics.splitlines() if l.startswith("infera_model_gate_failures_total")]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    non_2xx = sum(n for s, n in report["status"].items() if not s.startswith("2"))
    summary = {
        "connections": args.connections,
        "seconds": args.seconds,
        "requests": report["requests"],
        "rps": report["rps"],
        "status": report["status"],
        "non_2xx": non_2xx,
        "errors": report["errors"],
        "reconnects": report["reconnects"],
        "latency_ok_us": report["latency_us"]["ok"],
        "versions_published": len(published),
        "default_version_after_each_publish": served,
        "final_default_version": card["default_version"],
        "rejected_candidate": rejected,
        "rejected_candidate_state": states.get(rejected),
        "gate_failure_metric": gate_failures,
    }
    print(json.dumps(summary, indent=1))
    ok = non_2xx == 0 and report["errors"] == 0 and (args.no_swaps or (
        states.get(rejected) == "rejected" and card["default_version"] == published[-1]
        and len(published) >= args.seconds - 2))
    if not ok:
        print(f"FAILED (server log: {work / 'infera.log'})", file=sys.stderr)
        return 1
    shutil.rmtree(work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
