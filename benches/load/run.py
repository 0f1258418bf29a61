#!/usr/bin/env python3
"""infera's side-by-side load benchmark (driven by benches/load/run.sh, which builds everything).

On this machine, in one run, on loopback:
  * infera (release build) serving the digits MLP and the benchmark-only CNN,
  * FastAPI + uvicorn + onnxruntime (benches/load/fastapi_server.py) with 1 and 2 workers,
    serving the same ONNX files,
  * a bare axum JSON echo (benches/load/echo_floor.rs): the HTTP floor, no model,
are driven by the same load generator (wrk with a POST script) at 1, 16 and 64 connections.
Then the CNN with dynamic batching on and off, and overload: infera at its admission capacity and
at 4x that, measured with benches/load/loadgen.rs (which separates the latency of accepted 200s
from 429 rejections, something wrk cannot do). Also: infera's start-to-ready time and idle RSS on
the shipped models.

Writes a Markdown report (and the raw JSON) and prints it. Only the standard library is used.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WRK_LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = os.getenv("CONTENT_TYPE") or "application/json"
if os.getenv("HEADER_LENGTH") then wrk.headers["Inference-Header-Content-Length"] = os.getenv("HEADER_LENGTH") end
local f = io.open(os.getenv("BODY_FILE"), "rb")
wrk.body = f:read("*a")
f:close()
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests":%d,"duration_us":%d,"non2xx":%d,"connect":%d,"read":%d,"write":%d,"timeout":%d,' ..
    '"p50":%d,"p90":%d,"p99":%d,"max":%d,"mean":%.1f}\\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 60.0) -> float:
    """Polls `url` until it answers 200; returns seconds waited."""
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return time.perf_counter() - start
        except Exception:
            pass
        time.sleep(0.002)
    raise RuntimeError(f"{url} not ready after {timeout} s")


def tree_pids(pid: int) -> list[int]:
    pids, frontier = [pid], [pid]
    while frontier:
        parent = frontier.pop()
        try:
            out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(parent)], capture_output=True, text=True).stdout
        except FileNotFoundError:
            out = ""
        kids = [int(x) for x in out.split()]
        pids += kids
        frontier += kids
    return pids


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children, MiB."""
    total = 0
    for p in tree_pids(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


class Server:
    def __init__(self, name: str, argv: list[str], port: int, health: str, env: dict | None = None):
        self.name, self.port = name, port
        self.log = tempfile.NamedTemporaryFile(prefix=f"load-{name}-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT,
                                     env={**os.environ, **(env or {})}, start_new_session=True)
        self.ready_s = wait_http(f"http://127.0.0.1:{port}{health}", self.proc)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def rss(self) -> float:
        return rss_mb(self.proc.pid)

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=20)
        except Exception:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def run_wrk(url: str, body: Path, conns: int, secs: int, lua: Path, env: dict | None = None) -> dict:
    threads = 1 if conns == 1 else 2
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{conns}", f"-d{secs}s", "--timeout", "10s", "-s", str(lua), url],
        capture_output=True, text=True, env={**os.environ, "BODY_FILE": str(body), **(env or {})},
        check=True).stdout
    line = next(l for l in out.splitlines() if l.startswith("RESULT "))
    r = json.loads(line[len("RESULT "):])
    r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
    r["errors"] = r["non2xx"] + r["connect"] + r["read"] + r["write"] + r["timeout"]
    return r


def run_loadgen(exe: str, url: str, body: Path, conns: int, secs: int, honor: bool = False) -> dict:
    out = subprocess.run([exe, "--url", url, "--body", str(body), "--connections", str(conns),
                          "--duration-secs", str(secs), "--warmup-secs", "1",
                          *(["--honor-retry-after"] if honor else [])],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def server_429_latency(metrics_url: str) -> dict:
    """Share of 429s infera answered within each latency bucket (its own histogram: first byte in
    to response head out, so without the time a request waited in the socket before being read)."""
    with urllib.request.urlopen(metrics_url, timeout=5) as r:
        text = r.read().decode()
    prefix = 'infera_http_request_duration_seconds_bucket{method="POST",route="/models/{name}/predict",status="429",le="'
    buckets = {}
    for line in text.splitlines():
        if line.startswith(prefix):
            le, value = line[len(prefix):].split('"}')
            buckets[le] = float(value)
    total = buckets.get("+Inf", 0.0)
    if not total:
        return {"count": 0}
    return {"count": int(total), **{f"within_{le}s": round(buckets[le] / total, 4)
                                    for le in ("0.00005", "0.0001", "0.00025", "0.0005", "0.001") if le in buckets}}


def infera_argv(exe: str, repo: Path, port: int, extra: list[str]) -> list[str]:
    return [exe, "--model-repository", str(repo), "--port", str(port), "--log", "warn", *extra]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--infera", required=True)
    ap.add_argument("--echo-floor", required=True)
    ap.add_argument("--loadgen", required=True)
    ap.add_argument("--python", required=True, help="python of the venv holding the FastAPI peer")
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--out", required=True, help="report path (.md); raw results go beside it (.json)")
    args = ap.parse_args()
    secs = args.seconds
    work = Path(tempfile.mkdtemp(prefix="infera-load-"))
    lua = work / "post.lua"
    lua.write_text(WRK_LUA)

    # Same ONNX files for every server: a repository with digits and the benchmark CNN.
    repo = work / "repo"
    repo.mkdir()
    (repo / "digits").symlink_to(ROOT / "models" / "digits")
    (repo / "cnn").symlink_to(ROOT / "models" / "bench" / "cnn")
    golden = json.loads((ROOT / "models/digits/1/golden.json").read_text())
    digits_body = work / "digits1.json"
    digits_body.write_text(json.dumps({"instances": golden["inputs"][:1]}))
    rng = random.Random(0)
    image = [[[round(rng.random(), 4) for _ in range(64)] for _ in range(64)] for _ in range(3)]
    cnn_body = work / "cnn1.json"
    cnn_body.write_text(json.dumps({"instances": [image]}))
    # The same image through the Open Inference Protocol's binary extension: no JSON numbers.
    flat = [v for channel in image for row in channel for v in row]
    header = json.dumps({"inputs": [{"name": "image", "shape": [1, 3, 64, 64], "datatype": "FP32",
                                     "parameters": {"binary_data_size": 4 * len(flat)}}],
                         "outputs": [{"name": "label"}]}).encode()
    cnn_binary = work / "cnn1.bin"
    cnn_binary.write_bytes(header + struct.pack(f"<{len(flat)}f", *flat))
    binary_env = {"CONTENT_TYPE": "application/octet-stream", "HEADER_LENGTH": str(len(header))}

    results: dict = {"seconds": secs, "digits": {}, "cnn": {}, "overload": {}, "footprint": {}}
    levels = [1, 16, 64]

    def measure(label: str, server: Server, path: str, body: Path, conns_list, section: str,
                env: dict | None = None):
        for c in conns_list:
            r = run_wrk(server.url(path), body, c, secs, lua, env)
            r["rss_mb"] = server.rss()
            results[section].setdefault(label, {})[str(c)] = r
            print(f"  {section:7} {label:24} c={c:<3} {r['rps']:>9.0f} req/s  p50 {r['p50']/1e3:7.2f} ms"
                  f"  p99 {r['p99']/1e3:7.2f} ms  errors {r['errors']}  rss {r['rss_mb']:.0f} MiB", flush=True)

    # 1. Footprint: start to ready and idle RSS on the shipped models.
    starts = []
    for _ in range(5):
        port = free_port()
        s = Server("infera-start", infera_argv(args.infera, ROOT / "models", port, []), port, "/health/ready")
        starts.append(s.ready_s * 1e3)
        time.sleep(0.5)
        idle = s.rss()
        s.stop()
    results["footprint"] = {"start_to_ready_ms": starts, "idle_rss_mb": idle}
    print(f"infera on models/: start to ready {min(starts):.1f}-{max(starts):.1f} ms, idle RSS {idle:.1f} MiB")

    # 2. digits MLP, batch-1 requests.
    port = free_port()
    s = Server("infera", infera_argv(args.infera, repo, port, []), port, "/health/ready")
    measure("infera", s, "/models/digits/predict", digits_body, levels, "digits")
    measure("infera", s, "/models/cnn/predict", cnn_body, [16, 64], "cnn")
    measure("infera V2 binary", s, "/v2/models/cnn/infer", cnn_binary, [16, 64], "cnn", binary_env)
    s.stop()
    port = free_port()
    s = Server("infera-nobatch", infera_argv(args.infera, repo, port, ["--max-batch-size", "1"]), port, "/health/ready")
    measure("infera (batching off)", s, "/models/digits/predict", digits_body, [64], "digits")
    measure("infera (batching off)", s, "/models/cnn/predict", cnn_body, [16, 64], "cnn")
    measure("infera V2 binary (batching off)", s, "/v2/models/cnn/infer", cnn_binary, [16, 64], "cnn",
            binary_env)
    s.stop()
    for workers in (1, 2):
        port = free_port()
        s = Server(f"fastapi-{workers}", [args.python, str(ROOT / "benches/load/fastapi_server.py"),
                                          "--models", str(repo), "--port", str(port), "--workers", str(workers)],
                   port, "/health")
        label = f"FastAPI {workers} worker{'s' if workers > 1 else ''}"
        measure(label, s, "/models/digits/predict", digits_body, levels, "digits")
        measure(label, s, "/models/cnn/predict", cnn_body, [16, 64], "cnn")
        s.stop()
    port = free_port()
    s = Server("echo", [args.echo_floor, "--port", str(port)], port, "/health")
    measure("axum JSON echo (floor)", s, "/models/digits/predict", digits_body, levels, "digits")
    measure("axum JSON parse only (floor)", s, "/parse/cnn", cnn_body, [64], "cnn")
    s.stop()

    # 3. Overload: admission capacity 64 queued requests; 64 connections vs 4x = 256.
    port = free_port()
    s = Server("infera-overload", infera_argv(args.infera, repo, port, ["--queue-capacity", "64"]), port,
               "/health/ready")
    for label, conns, honor in (("capacity", 64, False), ("4x capacity, clients retry at once", 256, False),
                                ("4x capacity, clients honour Retry-After", 256, True)):
        r = run_loadgen(args.loadgen, s.url("/models/digits/predict"), digits_body, conns, secs, honor)
        r["rss_mb"] = s.rss()
        results["overload"][label] = r
        ok, rej = r["latency_us"]["ok"], r["latency_us"]["rejected"]
        print(f"  overload {label:12} c={conns:<3} ok {r['ok_rps']:>8.0f}/s p99 {ok['p99']/1e3:6.2f} ms"
              f"  status {r['status']}  rejected p99 {rej['p99']/1e3:6.3f} ms  errors {r['errors']}", flush=True)
    results["overload_server_429"] = server_429_latency(s.url("/metrics"))
    print(f"  overload: server-side time to answer a 429: {results['overload_server_429']}", flush=True)
    s.stop()

    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(results, indent=1))
    report = render(results)
    out.write_text(report)
    print()
    print(report)
    shutil.rmtree(work, ignore_errors=True)
    return 0


def render(r: dict) -> str:
    secs = r["seconds"]
    lines = [f"Closed loop, batch-1 requests, {secs} s per cell, wrk (2 threads; 1 at c=1) on the same 2 cores.", ""]

    def table(section: str, title: str, conns_list):
        lines.extend([f"### {title}", "",
                      "| server | conns | req/s | p50 ms | p99 ms | errors | RSS MiB |",
                      "|---|---|---|---|---|---|---|"])
        for label, by_c in r[section].items():
            for c in conns_list:
                x = by_c.get(str(c))
                if x:
                    lines.append(f"| {label} | {c} | {x['rps']:,.0f} | {x['p50']/1e3:.2f} | {x['p99']/1e3:.2f} | "
                                 f"{x['errors']} | {x['rss_mb']:.0f} |")
        lines.append("")

    table("digits", "digits MLP (64 floats in, 10 classes)", [1, 16, 64])
    table("cnn", "benchmark-only CNN, random weights (3x64x64 floats: JSON body ~70 KB; V2 binary 48 KB)",
          [16, 64])

    d, c = r["digits"], r["cnn"]
    ratios = ["### Ratios (same run)", ""]
    best_fastapi = max((d[k]["64"] for k in d if k.startswith("FastAPI")), key=lambda x: x["rps"])
    inf = d["infera"]["64"]
    floor = d["axum JSON echo (floor)"]["64"]
    ratios.append(f"- digits, 64 conns: infera / best FastAPI req/s = **{inf['rps']/best_fastapi['rps']:.1f}x** "
                  f"(target >= 10x); p99 ratio = **{inf['p99']/best_fastapi['p99']:.3f}** (target <= 0.25); "
                  f"infera / axum echo floor = **{inf['rps']/floor['rps']:.0%}** (target >= 60%)")
    on, off = c["infera"]["64"], c["infera (batching off)"]["64"]
    ratios.append(f"- CNN as JSON, 64 conns: batching on / off req/s = **{on['rps']/off['rps']:.2f}x** (target >= 1.5x); "
                  f"p99 {on['p99']/1e3:.2f} ms on vs {off['p99']/1e3:.2f} ms off")
    bon, boff = c["infera V2 binary"]["64"], c["infera V2 binary (batching off)"]["64"]
    ratios.append(f"- CNN as V2 binary tensor, 64 conns: batching on / off req/s = **{bon['rps']/boff['rps']:.2f}x** "
                  f"(target >= 1.5x); p99 {bon['p99']/1e3:.2f} ms on vs {boff['p99']/1e3:.2f} ms off")
    best_cnn = max((c[k]["64"] for k in c if k.startswith("FastAPI")), key=lambda x: x["rps"])
    ratios.append(f"- CNN, 64 conns: infera / best FastAPI req/s = {on['rps']/best_cnn['rps']:.1f}x")
    o = r["overload"]
    cap = o["capacity"]
    for label in ("4x capacity, clients retry at once", "4x capacity, clients honour Retry-After"):
        over = o[label]
        ratios.append(f"- overload, {label} (queue capacity 64; loadgen 64 vs 256 conns): accepted p99 "
                      f"{cap['latency_us']['ok']['p99']/1e3:.2f} ms -> {over['latency_us']['ok']['p99']/1e3:.2f} ms "
                      f"(**{over['latency_us']['ok']['p99']/max(cap['latency_us']['ok']['p99'],1):.2f}x**, target <= 2x); "
                      f"429s: {over['status'].get('429', 0)}, their p99 {over['latency_us']['rejected']['p99']/1e3:.3f} ms; "
                      f"failed accepted requests (5xx/errors): "
                      f"{sum(v for k, v in over['status'].items() if k.startswith('5')) + over['errors']}; "
                      f"Retry-After missing: {over['retry_after_missing']}")
    f = r["footprint"]
    ratios.append(f"- infera on models/: start to ready {min(f['start_to_ready_ms']):.1f}-{max(f['start_to_ready_ms']):.1f} ms "
                  f"(target < 200 ms), idle RSS {f['idle_rss_mb']:.1f} MiB (target < 50 MiB)")
    lines.extend(ratios)
    lines.append("")
    lines.append("### Overload detail (loadgen)")
    lines.append("")
    lines.append("| load | conns | accepted/s | ok p50 ms | ok p99 ms | 429 | 429 p99 ms | 5xx | errors |")
    lines.append("|---|---|---|---|---|---|---|---|---|")
    for label, x in o.items():
        ok, rej = x["latency_us"]["ok"], x["latency_us"]["rejected"]
        fivexx = sum(v for k, v in x["status"].items() if k.startswith("5"))
        lines.append(f"| {label} | {x['connections']} | {x['ok_rps']:,.0f} | {ok['p50']/1e3:.2f} | {ok['p99']/1e3:.2f} | "
                     f"{x['status'].get('429', 0)} | {rej['p99']/1e3:.3f} | {fivexx} | {x['errors']} |")
    lines.append("")
    srv = r.get("overload_server_429", {})
    if srv.get("count"):
        shares = ", ".join(f"{k.split('_')[1]} {v:.1%}" for k, v in srv.items() if k != "count")
        lines.append(f"Server-side time to answer the {srv['count']:,} 429s (infera's own histogram, from the first "
                     f"byte read to the response head): share answered within {shares}. The client-side 429 "
                     f"latency above also counts the time the request sat in the socket behind other "
                     f"connections' requests.")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
