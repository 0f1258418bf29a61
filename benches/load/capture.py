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
    import gzip
    parquet = sum(pq.ParquetFile(p).metadata.num_rows for p in root.rglob("*.parquet"))
    jsonl = sum(sum(1 for _ in gzip.open(p)) for p in root.rglob("*.jsonl.gz"))
    return parquet + jsonl


def cpu_seconds(pid: int, thread: str | None = None) -> float:
    """User + system CPU time so far of a process (all its threads), or of its threads named
    `thread`, from /proc/PID/stat (/proc/PID/task/TID/stat)."""
    def stat(path: Path) -> float:
        fields = path.read_text().rsplit(")", 1)[1].split()
        # After the command name: state is field 3, utime field 14, stime field 15 (1-based).
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    if thread is None:
        return stat(Path(f"/proc/{pid}/stat"))
    return sum(stat(t / "stat") for t in Path(f"/proc/{pid}/task").iterdir()
               if (t / "comm").read_text().strip() == thread)


# Two-sided 95% Student t quantiles by degrees of freedom (1-30); above 30, 2.0 is close enough.
T95 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
       2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060,
       2.056, 2.052, 2.048, 2.045, 2.042]


def mean_ratio_interval(ratios: list[float]) -> tuple[float, float, float]:
    """Geometric mean of per-round ratios with a 95% confidence interval (t on log ratios):
    each round pairs the two legs run back to back, so the machine's drift between rounds
    cancels in the ratio and what is left is the round-to-round noise the interval reflects."""
    import math
    logs = [math.log(x) for x in ratios]
    mean = statistics.fmean(logs)
    if len(logs) < 2:
        return math.exp(mean), float("nan"), float("nan")
    half = T95[min(len(logs) - 2, len(T95) - 1)] * statistics.stdev(logs) / math.sqrt(len(logs))
    return math.exp(mean), math.exp(mean - half), math.exp(mean + half)


def run(args, work: Path, body: Path, capture: bool, tag: str, binary: str | None = None) -> dict:
    port = free_port()
    argv = [binary or args.infera, "--model-repository", str(ROOT / "models"), "--port", str(port),
            "--log", "warn"]
    cap_dir = work / f"capture-{tag}"
    if capture:
        argv += ["--capture-dir", str(cap_dir), "--capture-sample-rate", "1",
                 "--capture-replica", "bench", *args.capture_flag]
    log = open(work / f"infera-{tag}.log", "w")
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base + "/health/ready", proc)
        cpu_before = cpu_seconds(proc.pid)
        out = subprocess.run(
            [args.loadgen, "--url", base + "/models/digits/predict", "--body", str(body),
             "--connections", str(args.connections), "--duration-secs", str(args.seconds),
             "--warmup-secs", "1", "--threads", "1"],
            capture_output=True, text=True, check=True).stdout
        cpu = cpu_seconds(proc.pid) - cpu_before
        writer_cpu = cpu_seconds(proc.pid, "infera-capture")
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
        # Server CPU per request, warm-up included (its requests are not in `requests`, so this
        # slightly overstates both sides alike).
        "cpu_us": cpu / max(report["requests"], 1) * 1e6,
    }
    if capture:
        row["queued"] = metric(metrics, 'infera_capture_rows_total{kind="prediction",outcome="queued"}')
        row["dropped"] = metric(metrics, 'infera_capture_rows_total{kind="prediction",outcome="dropped"}')
        row["rows_in_files"] = parquet_rows(cap_dir)
        # The writer thread's CPU per row it took (whole run, warm-up included).
        row["writer_us"] = writer_cpu / max(row["queued"], 1) * 1e6
    return row


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--infera", required=True)
    ap.add_argument("--loadgen", required=True)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--compare", metavar="BIN",
                    help="another infera binary (e.g. the main branch's) run with capture in every round too")
    ap.add_argument("--capture-flag", action="append", default=[],
                    help="extra server flag for the capture runs (repeat), e.g. --capture-format=jsonl")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="infera-capture-bench-"))
    golden = json.loads((ROOT / "models/digits/1/golden.json").read_text())
    body = work / "digits1.json"
    body.write_text(json.dumps({"instances": golden["inputs"][:1]}))
    print("| Round | Capture | Requests | req/s | non-2xx | errors | p50 | p99 | server CPU/req | writer CPU/row | rows queued / dropped / in files | load avg |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    ratios, cpu_ratios, cmp_ratios, failed = [], [], [], False
    legs = [(False, None), (True, None)] + ([(True, args.compare)] if args.compare else [])
    for r in range(1, args.rounds + 1):
        # Rotate the order between rounds so a machine that gets busier or quieter during the
        # run favours no leg.
        order = legs[(r - 1) % len(legs):] + legs[:(r - 1) % len(legs)]
        rows = {}
        for capture, binary in order:
            tag = f"{r}-{'on' if capture else 'off'}{'-cmp' if binary else ''}"
            row = run(args, work, body, capture, tag, binary)
            rows[(capture, binary)] = row
            failed |= row["non_2xx"] > 0 or row["errors"] > 0
            counts = (f"{row['queued']:.0f} / {row['dropped']:.0f} / {row['rows_in_files']}"
                      if capture else "-")
            writer = f"{row['writer_us']:.1f} us" if capture else "-"
            label = ("100% (compared)" if binary else "100%") if capture else "off"
            print(f"| {r} | {label} | {row['requests']:,} | {row['rps']:,.0f} "
                  f"| {row['non_2xx']} | {row['errors']} | {row['p50_ms']:.2f} ms | {row['p99_ms']:.2f} ms "
                  f"| {row['cpu_us']:.1f} us | {writer} | {counts} | {row['load']:.1f} |", flush=True)
        off, on = rows[(False, None)], rows[(True, None)]
        ratios.append(on["rps"] / off["rps"])
        cpu_ratios.append(on["cpu_us"] / off["cpu_us"])
        if args.compare:
            cmp = rows[(True, args.compare)]
            cmp_ratios.append(cmp["cpu_us"] / off["cpu_us"])
    print()
    print("capture on / off req/s per round: " + ", ".join(f"{x:.3f}" for x in ratios)
          + f"; median {statistics.median(ratios):.3f}")
    print("capture on / off server CPU per request per round: "
          + ", ".join(f"{x:.3f}" for x in cpu_ratios) + f"; median {statistics.median(cpu_ratios):.3f}")
    mean, low, high = mean_ratio_interval(ratios)
    print(f"capture on / off req/s: geometric mean {mean:.3f}, 95% confidence interval "
          f"{low:.3f}-{high:.3f} over {len(ratios)} rounds; the 10% bar is "
          + ("met (the interval's low end is at least 0.90)" if low >= 0.90 else
             "NOT shown (the interval reaches below 0.90)"))
    if cmp_ratios:
        print("compared binary with capture / off, server CPU per request per round: "
              + ", ".join(f"{x:.3f}" for x in cmp_ratios) + f"; median {statistics.median(cmp_ratios):.3f}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
