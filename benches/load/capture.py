#!/usr/bin/env python3
"""The cost of data capture: digits at N connections with capture off and at 100% sampling.

Runs the release server on the shipped models twice per round, once without capture and once
with `--capture-dir` at `--capture-sample-rate 1` (every request written to Parquet), and drives
/models/digits/predict (one instance per request) with the closed-loop load generator for S
seconds each. The order alternates between rounds so a machine that gets busier or quieter
during the run does not favour one side. After each capture run the server is stopped with
SIGTERM (a clean shutdown closes every file) and the rows in the closed Parquet files are
counted from their footers, to check that capture kept up: rows dropped because the queue was
full are read from /metrics before the stop.

    benches/load/capture.py --infera BIN --loadgen BIN [--connections 64] [--seconds 10] [--rounds 3]

Prints one Markdown table row per run and the throughput ratio (capture on / off) per round;
exits non-zero on any non-2xx answer or connection error. Only the standard library is used
(the Parquet footer's row count is read with pyarrow when it is installed, else skipped);
benches/load/capture.sh builds the binaries and runs it.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
    raise RuntimeError("infera did not become ready")


def metric(text: str, series: str) -> float:
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    return 0.0


def parquet_rows(root: Path) -> int | None:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        return None
    return sum(pq.ParquetFile(p).metadata.num_rows for p in root.rglob("*.parquet"))


def run(args, work: Path, body: Path, capture: bool, tag: str) -> dict:
    port = free_port()
    argv = [args.infera, "--model-repository", str(ROOT / "models"), "--port", str(port),
            "--log", "warn"]
    cap_dir = work / f"capture-{tag}"
    if capture:
        argv += ["--capture-dir", str(cap_dir), "--capture-sample-rate", "1",
                 "--capture-replica", "bench"]
    log = open(work / f"infera-{tag}.log", "w")
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base + "/health/ready", proc)
        out = subprocess.run(
            [args.loadgen, "--url", base + "/models/digits/predict", "--body", str(body),
             "--connections", str(args.connections), "--duration-secs", str(args.seconds),
             "--warmup-secs", "1", "--threads", "1"],
            capture_output=True, text=True, check=True).stdout
        report = json.loads(out)
        metrics = urllib.request.urlopen(base + "/metrics", timeout=5).read().decode()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
    ok = report["latency_us"]["ok"]
    row = {
        "capture": capture,
        "requests": report["requests"],
        "rps": report["rps"],
        "non_2xx": sum(n for s, n in report["status"].items() if not s.startswith("2")),
        "errors": report["errors"],
        "p50_ms": ok["p50"] / 1000,
        "p99_ms": ok["p99"] / 1000,
        "load": os.getloadavg()[0],
    }
    if capture:
        row["queued"] = metric(metrics, 'infera_capture_rows_total{kind="prediction",outcome="queued"}')
        row["dropped"] = metric(metrics, 'infera_capture_rows_total{kind="prediction",outcome="dropped"}')
        row["rows_in_files"] = parquet_rows(cap_dir)
    return row


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--infera", required=True)
    ap.add_argument("--loadgen", required=True)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="infera-capture-bench-"))
    golden = json.loads((ROOT / "models/digits/1/golden.json").read_text())
    body = work / "digits1.json"
    body.write_text(json.dumps({"instances": golden["inputs"][:1]}))
    print("| Round | Capture | Requests | req/s | non-2xx | errors | p50 | p99 | rows queued / dropped / in files | load avg |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    ratios, failed = [], False
    for r in range(1, args.rounds + 1):
        order = [False, True] if r % 2 else [True, False]
        rows = {}
        for capture in order:
            row = run(args, work, body, capture, f"{r}-{'on' if capture else 'off'}")
            rows[capture] = row
            failed |= row["non_2xx"] > 0 or row["errors"] > 0
            counts = (f"{row['queued']:.0f} / {row['dropped']:.0f} / {row['rows_in_files']}"
                      if capture else "-")
            print(f"| {r} | {'100%' if capture else 'off'} | {row['requests']:,} | {row['rps']:,.0f} "
                  f"| {row['non_2xx']} | {row['errors']} | {row['p50_ms']:.2f} ms | {row['p99_ms']:.2f} ms "
                  f"| {counts} | {row['load']:.1f} |", flush=True)
        ratios.append(rows[True]["rps"] / rows[False]["rps"])
    print()
    print("capture on / off req/s per round: " + ", ".join(f"{x:.3f}" for x in ratios)
          + f"; median {statistics.median(ratios):.3f}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
