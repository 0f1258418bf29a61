#!/usr/bin/env python3
"""Infera's CPU time per abusive request, by kind (docs/benchmarks.md, "Hostile traffic").

  python3 benches/load/hostile_cost.py --infera $CARGO_TARGET_DIR/release/infera [--count 1000]

Starts one infera release binary (as hostile.py does), sends --count requests of each kind from
hostile.py's abusive_requests() one after another (keep-alive, reconnecting when the server
closes), and prints, per kind, the server's user+system CPU time per request (/proc/PID/stat)
and the status classes it answered. One sender, no concurrency: this measures work, not latency.
"""

from __future__ import annotations

import argparse
import socket
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hostile  # noqa: E402


def send_all(host: str, port: int, raw: bytes, count: int) -> Counter:
    statuses: Counter = Counter()
    sock = None
    for _ in range(count):
        if sock is None:
            sock = socket.create_connection((host, port))
            reader = sock.makefile("rb")
        try:
            sock.sendall(raw)
            line = reader.readline()
            status = int(line.split()[1])
            length, close = 0, False
            while (header := reader.readline()) not in (b"\r\n", b""):
                name, _, value = header.decode("latin-1").partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
                elif name.strip().lower() == "connection" and "close" in value.lower():
                    close = True
            reader.read(length)
            statuses[f"{status // 100}xx"] += 1
        except (OSError, IndexError, ValueError):
            statuses["closed"] += 1
            close = True
        if close:
            sock.close()
            sock = None
    if sock is not None:
        sock.close()
    return statuses


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--infera", type=Path, required=True)
    parser.add_argument("--count", type=int, default=1000)
    args = parser.parse_args()
    proc, base = hostile.start_infera(args.infera)
    host, port = base[len("http://"):].split(":")
    print("| kind | infera CPU µs per request | answers |\n|---|---:|---|")
    try:
        for kind, raw in hostile.abusive_requests():
            before = hostile.cpu_seconds(proc.pid)
            statuses = send_all(host, int(port), raw, args.count)
            time.sleep(0.2)  # let the server finish closing
            used = hostile.cpu_seconds(proc.pid) - before
            answers = ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items()))
            print(f"| {kind} | {used / args.count * 1e6:.0f} | {answers} |", flush=True)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
