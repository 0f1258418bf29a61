#!/usr/bin/env python3
"""Hostile traffic against infera: does the process keep serving good requests well?

Driven by benches/load/hostile.sh (which builds the release binary and the load generator).
On loopback, against one infera release binary serving the shipped models with its default
limits (--max-connections 10000, --header-timeout-ms 10000, --max-body-bytes 4 MiB):

  * quiet: good /models/digits/predict requests from benches/load/loadgen.rs alone, for the
    length of one pass: the reference p99;
  * hostile passes (default 3): the same good load, while this script sends --abusive (default
    100,000) malformed and oversized requests at --rate per second over keep-alive connections
    (deep nesting, the 562 TB V2 shape, 60 KB request ids with 1024 instances, declared 1 GiB
    bodies, too many instances, broken binary header lengths, bad JSON, non-HTTP bytes, ...),
    holds --idle (default 3000) connections that send nothing and --slow (default 200) that send
    their headers one byte a second (both reopened whenever the server closes them);
  * quiet again, to see the server recover.

With --pin the server and the good client share CPU 0 and this script (the attacker) runs on
CPU 1, in every phase; with --interleave a quiet phase runs before every hostile pass and each
pass's p99 is compared with the quiet phase just before it (the machine's load drifts).

After each phase it reads the server's RSS (/proc/PID/status VmRSS): for a quiet phase right
after its good load ends, for a hostile pass one second after the last attacker closed its
connections (the server has no connection left then; what it still holds is the allocator's
cache, the feedback log and the like). At the end it prints a
Markdown table: good-request p50 / p99 and their ratio to the quiet p99, good requests per
second, the abusive answers by status class, connection errors, RSS, and the CPU seconds infera
and this script (the attacker) used in the phase. The verdict lines check the
issue's bar: every hostile pass's p99 within 2x of the quiet one, RSS after passes 2..N within
10% of RSS after pass 1, no 5xx other than 503, and the process alive. Exit 1 if a check fails.
Only the standard library is used.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GOOD_PATH = "/models/digits/predict"


# ---------------------------------------------------------------- the abusive requests


def request(method: str, path: str, body: bytes = b"", headers: dict | None = None,
            content_type: str = "application/json") -> bytes:
    head = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    if content_type:
        head.append(f"Content-Type: {content_type}")
    for name, value in (headers or {}).items():
        head.append(f"{name}: {value}")
    if "Content-Length" not in (headers or {}):
        head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def abusive_requests() -> list[tuple[str, bytes]]:
    """(kind, raw request) pairs; each hostile pass cycles through them."""
    iris_row = "[5.1,3.5,1.4,0.2]"
    deep = 50_000
    v2_crash = json.dumps({"inputs": [{"name": "float_input", "shape": [17592186044416, 4],
                                       "datatype": "FP32", "data": [1]}]}).encode()
    header = json.dumps({"inputs": [{"name": "float_input", "shape": [1, 4], "datatype": "FP32",
                                     "parameters": {"binary_data_size": 16}}]}).encode()
    return [
        ("deep_nesting", request("POST", "/predict",
                                 b'{"instances":' + b"[" * deep + b"]" * deep + b"}")),
        ("deep_nesting_v2", request("POST", "/v2/models/iris/infer",
                                    b'{"inputs":[{"data":' + b"[" * deep + b"]" * deep + b"}]}")),
        ("huge_shape_v2", request("POST", "/v2/models/iris/infer", v2_crash)),
        ("huge_shape_binary", request(
            "POST", "/v2/models/iris/infer",
            json.dumps({"inputs": [{"name": "float_input", "shape": [4294967296, 4294967296],
                                    "datatype": "FP32",
                                    "parameters": {"binary_data_size": 16}}]}).encode() + b"\0" * 16,
            headers={"Inference-Header-Content-Length": "999"},
            content_type="application/octet-stream")),
        ("bad_header_length", request(
            "POST", "/v2/models/iris/infer", header + b"\0" * 16,
            headers={"Inference-Header-Content-Length": "18446744073709551615"},
            content_type="application/octet-stream")),
        ("huge_request_id", request(
            "POST", "/predict",
            ('{"instances":[' + ",".join([iris_row] * 1024) + "]}").encode(),
            headers={"X-Request-Id": "r" * 60_000})),
        ("too_many_instances", request(
            "POST", "/predict", ('{"instances":[' + ",".join([iris_row] * 5000) + "]}").encode())),
        ("declared_1gib", request("POST", "/predict", b'{"instances":[',
                                  headers={"Content-Length": str(1 << 30)})),
        ("truncated_json", request("POST", "/predict", b'{"instances":[[5.1,3.5,')),
        ("overflowing_number", request("POST", "/predict", b'{"instances":[[1e400,1,1,1]]}')),
        ("wrong_types", request("POST", "/models/iris/feedback",
                                b'{"feedback":[{"id":{"a":[1,2]},"label":[null]}]}')),
        ("huge_feedback_id", request(
            "POST", "/models/iris/feedback",
            json.dumps({"feedback": [{"id": "x" * 100_000, "label": "setosa"}]}).encode())),
        ("v1_nested_objects", request(
            "POST", "/v1/models/iris:predict",
            b'{"instances":[' + b'{"a":' * 5000 + b"1" + b"}" * 5000 + b"]}")),
        ("wrong_content_type", request("POST", "/predict", b"instances=1",
                                       content_type="text/plain")),
        ("unknown_route", request("GET", "/" + "a/" * 2000)),
        ("invented_method", request("BREW", "/predict")),
        ("not_http", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(64) + b"\r\n\r\n"),
    ]


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Reads one response; returns (status, server closes the connection)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    length, close = 0, False
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value.strip())
        elif name == "connection" and "close" in value.lower():
            close = True
    if length:
        await reader.readexactly(length)
    return status, close


class Abuse:
    """Counts of what the abusive traffic got back."""

    def __init__(self) -> None:
        self.statuses: Counter = Counter()
        self.kinds_5xx: Counter = Counter()
        self.errors = 0
        self.sent = 0


async def abuser(host: str, port: int, todo: list[tuple[str, bytes]], start: float,
                 interval: float, abuse: Abuse) -> None:
    """Sends its share of requests, one at a time on a keep-alive connection, paced."""
    reader = writer = None
    for i, (kind, raw) in enumerate(todo):
        delay = start + i * interval - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(host, port)
            writer.write(raw)
            await writer.drain()
            abuse.sent += 1
            status, close = await asyncio.wait_for(read_response(reader), 30)
            abuse.statuses[f"{status // 100}xx" if status != 503 else "503"] += 1
            if status >= 500 and status != 503:
                abuse.kinds_5xx[kind] += 1
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError,
                IndexError, asyncio.LimitOverrunError):
            abuse.errors += 1
            close = True
        if close and writer is not None:
            writer.close()
            reader = writer = None
    if writer is not None:
        writer.close()


async def hold_idle(host: str, port: int, until: float, counter: Counter) -> None:
    """One connection that never sends a byte, reopened whenever the server closes it."""
    while time.monotonic() < until:
        try:
            reader, writer = await asyncio.open_connection(host, port)
            counter["idle_opened"] += 1
            try:
                await asyncio.wait_for(reader.read(1), max(0.1, until - time.monotonic()))
                counter["idle_closed_by_server"] += 1
            except asyncio.TimeoutError:
                pass
            writer.close()
        except OSError:
            counter["idle_connect_errors"] += 1
            await asyncio.sleep(0.5)


async def slow_headers(host: str, port: int, until: float, counter: Counter) -> None:
    """A slowloris connection: a request head one byte a second, reopened when closed."""
    while time.monotonic() < until:
        try:
            reader, writer = await asyncio.open_connection(host, port)
            counter["slow_opened"] += 1
            writer.write(b"POST /predict HTTP/1.1\r\nHost: x\r\n")
            while time.monotonic() < until and not reader.at_eof():
                writer.write(b"X")
                await writer.drain()
                try:
                    if await asyncio.wait_for(reader.read(1024), 1.0) == b"":
                        counter["slow_closed_by_server"] += 1
                        break
                    counter["slow_answered"] += 1
                    break
                except asyncio.TimeoutError:
                    pass
            writer.close()
        except OSError:
            counter["slow_errors"] += 1
            await asyncio.sleep(0.5)


async def hostile(host: str, port: int, args: argparse.Namespace, seconds: float,
                  seed: int) -> tuple[Abuse, Counter]:
    kinds = abusive_requests()
    rng = random.Random(seed)
    todo = [kinds[rng.randrange(len(kinds))] for _ in range(args.abusive)]
    abuse, counter = Abuse(), Counter()
    start = time.monotonic()
    until = start + seconds
    workers = args.abusers
    interval = workers / args.rate
    tasks = [abuser(host, port, todo[w::workers], start + w / args.rate, interval, abuse)
             for w in range(workers)]
    tasks += [hold_idle(host, port, until, counter) for _ in range(args.idle)]
    tasks += [slow_headers(host, port, until, counter) for _ in range(args.slow)]
    await asyncio.gather(*tasks)
    return abuse, counter


# ---------------------------------------------------------------- the server and good load


def pinned(cpus: str | None) -> list[str]:
    """A command prefix that runs it on `cpus` (taskset), or nothing."""
    return ["taskset", "-c", cpus] if cpus else []


def start_infera(binary: Path, cpus: str | None = None,
                 extra: list[str] | None = None) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        pinned(cpus) + [str(binary), "--model-repository", str(ROOT / "models"), "--port", "0",
         "--log-format", "json", "--log", "warn,infera::server=info"] + (extra or []),
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    got, found = threading.Event(), []

    def read() -> None:
        for line in proc.stderr:
            if not got.is_set():
                try:
                    addr = json.loads(line).get("addr")
                except ValueError:
                    addr = None
                if isinstance(addr, str):
                    found.append(addr)
                    got.set()
            elif '"ERROR"' in line:
                sys.stderr.write(f"infera: {line}")

    threading.Thread(target=read, daemon=True).start()
    if not got.wait(60):
        proc.kill()
        raise SystemExit("infera did not log its address")
    base = f"http://{found[0]}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/health/ready", timeout=2) as r:
                if r.status == 200:
                    return proc, base
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("infera was not ready in time")


def rss_mib(pid: int) -> float:
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", text).group(1)) / 1024


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (/proc/PID/stat utime, stime)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def good_load(loadgen: str, base: str, body: Path, seconds: float, conns: int,
              cpus: str | None = None, rate: float | None = None) -> dict:
    """The good client: closed loop over `conns` connections, or open loop at `rate` req/s."""
    extra = ["--rate", str(rate)] if rate else []
    out = subprocess.run(pinned(cpus) + [loadgen, "--url", base + GOOD_PATH, "--body", str(body),
                          "--connections", str(conns), "--duration-secs", str(int(seconds)),
                          "--warmup-secs", "1"] + extra,
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def phase(name: str, good: dict, abuse: Abuse | None, counter: Counter | None, rss: float,
          quiet_p99: float | None, cpu: tuple[float, float | None]) -> dict:
    ok = good["latency_us"]["ok"]
    return {"phase": name, "p50_ms": ok["p50"] / 1000, "p99_ms": ok["p99"] / 1000,
            "ratio": (ok["p99"] / quiet_p99) if quiet_p99 else 1.0, "ok_rps": good["ok_rps"],
            "good_errors": good["errors"] + sum(v for k, v in good["status"].items() if k != "200"),
            "abuse": dict(abuse.statuses) if abuse else {},
            "abuse_5xx": dict(abuse.kinds_5xx) if abuse else {},
            "abuse_errors": abuse.errors if abuse else 0,
            "abuse_sent": abuse.sent if abuse else 0,
            "conns": dict(counter) if counter else {}, "rss_mib": rss,
            "infera_cpu_s": cpu[0], "attacker_cpu_s": cpu[1]}


def table(rows: list[dict]) -> str:
    out = ["| phase | good p50 ms | good p99 ms | p99 / quiet | good req/s | good non-200 | "
           "abusive sent | abusive answers | conn. errors | idle / slow conns opened | RSS MiB after | "
           "infera CPU s | attacker CPU s |",
           "|---|---:|---:|---:|---:|---:|---:|---|---:|---|---:|---:|---:|"]
    for r in rows:
        answers = ", ".join(f"{k}: {v}" for k, v in sorted(r["abuse"].items())) or "-"
        conns = r["conns"]
        opened = (f"{conns.get('idle_opened', 0)} / {conns.get('slow_opened', 0)}"
                  if conns else "-")
        out.append(f"| {r['phase']} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['ratio']:.2f} | "
                   f"{r['ok_rps']:.0f} | {r['good_errors']} | {r['abuse_sent'] or '-'} | {answers} | "
                   f"{r['abuse_errors']} | {opened} | {r['rss_mib']:.1f} | {r['infera_cpu_s']:.1f} | "
                   + (f"{r['attacker_cpu_s']:.1f} |" if r["attacker_cpu_s"] is not None else "- |"))
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--infera", type=Path, required=True)
    parser.add_argument("--loadgen", required=True)
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--abusive", type=int, default=100_000, help="abusive requests per pass")
    parser.add_argument("--rate", type=float, default=2500, help="abusive requests per second")
    parser.add_argument("--abusers", type=int, default=32, help="keep-alive abusive connections")
    parser.add_argument("--idle", type=int, default=3000, help="idle connections held")
    parser.add_argument("--slow", type=int, default=200, help="slow-header connections held")
    parser.add_argument("--connections", type=int, default=4, help="good-load connections")
    parser.add_argument("--good-rate", type=float,
                        help="open-loop good load at this many req/s in all (loadgen --rate); "
                             "default: closed loop, each connection as fast as it can")
    parser.add_argument("--pin", action="store_true",
                        help="server and good client on CPU 0, this script (the attacker) on CPU 1")
    parser.add_argument("--interleave", action="store_true",
                        help="a quiet phase before every hostile pass; each pass is compared with "
                             "the quiet phase just before it")
    parser.add_argument("--infera-arg", action="append", default=[],
                        help="an extra flag for the server, e.g. --infera-arg=--bulk-threads=0 "
                             "(repeatable)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    server_cpus = None
    if args.pin:
        if (os.cpu_count() or 1) < 2:
            raise SystemExit("--pin needs two CPUs")
        server_cpus = "0"
        os.sched_setaffinity(0, {1})

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = args.idle + args.slow + args.abusers + 1024
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(need, hard), hard))

    seconds = max(10.0, args.abusive / args.rate)
    body = Path(tempfile.mkstemp(suffix=".json")[1])
    body.write_text(json.dumps({"instances": [[float(i % 17) for i in range(64)]]}))
    proc, base = start_infera(args.infera, server_cpus, args.infera_arg)
    host, port = base[len("http://"):].split(":")
    rows: list[dict] = []

    def quiet(name: str, reference: float | None) -> float:
        cpu0 = cpu_seconds(proc.pid)
        good = good_load(args.loadgen, base, body, seconds, args.connections, server_cpus,
                         args.good_rate)
        rows.append(phase(name, good, None, None, rss_mib(proc.pid), reference,
                          (cpu_seconds(proc.pid) - cpu0, None)))
        print(f"{name}: p99 {good['latency_us']['ok']['p99'] / 1000:.2f} ms", flush=True)
        return good["latency_us"]["ok"]["p99"]

    try:
        good_load(args.loadgen, base, body, 3, args.connections, server_cpus)  # warm-up
        quiet_p99 = quiet("quiet", None)
        for n in range(1, args.passes + 1):
            if args.interleave and n > 1:
                quiet_p99 = quiet(f"quiet {n}", None)
            result: dict = {}
            t = threading.Thread(target=lambda: result.update(
                good=good_load(args.loadgen, base, body, seconds, args.connections,
                               server_cpus, args.good_rate)))
            cpu0, own0 = cpu_seconds(proc.pid), time.process_time()
            t.start()
            abuse, counter = asyncio.run(hostile(host, int(port), args, seconds, seed=n))
            t.join()
            cpu = (cpu_seconds(proc.pid) - cpu0, time.process_time() - own0)
            time.sleep(1)  # let the server close what the attackers left
            if proc.poll() is not None:
                raise SystemExit(f"infera died in pass {n} (exit {proc.returncode})")
            rows.append(phase(f"hostile pass {n}", result["good"], abuse, counter,
                              rss_mib(proc.pid), quiet_p99, cpu))
            print(f"pass {n}: {rows[-1]}", flush=True)
        quiet("quiet after", quiet_p99)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        body.unlink()

    hostile_rows = [r for r in rows if r["phase"].startswith("hostile")]
    first_rss = hostile_rows[0]["rss_mib"]
    checks = [
        ("p99 of good requests within 2x of quiet in every hostile pass",
         all(r["ratio"] <= 2.0 for r in hostile_rows)),
        ("RSS 1 s after passes 2.. within 10% of RSS 1 s after pass 1",
         all(abs(r["rss_mib"] - first_rss) <= 0.1 * first_rss for r in hostile_rows[1:])),
        ("no 5xx other than 503 to abusive requests",
         not any(r["abuse_5xx"] for r in hostile_rows)),
        ("every good request answered 200", all(r["good_errors"] == 0 for r in rows)),
    ]
    report = [f"server flags: {' '.join(args.infera_arg) or '(defaults)'}", "", table(rows), ""]
    report += [f"- {'PASS' if ok else 'FAIL'}: {what}" for what, ok in checks]
    for r in hostile_rows:
        if r["abuse_5xx"]:
            report.append(f"- {r['phase']}: 5xx by kind {r['abuse_5xx']}")
        report.append(f"- {r['phase']} connections: {r['conns']}")
    text = "\n".join(report)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
        args.out.with_suffix(".json").write_text(json.dumps(rows, indent=1))
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
