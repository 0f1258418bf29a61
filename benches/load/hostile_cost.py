#!/usr/bin/env python3
"""Infera's CPU time per abusive request, by kind (docs/benchmarks.md, "Hostile traffic").

  python3 benches/load/hostile_cost.py --infera $CARGO_TARGET_DIR/release/infera [--count 1000]
  python3 benches/load/hostile_cost.py --infera BEFORE --infera AFTER [--rounds 3]

Starts one infera release binary per --infera (as hostile.py does), sends --count requests of
each kind from hostile.py's abusive_requests() one after another (keep-alive, reconnecting when
the server closes), and prints, per kind, each server's user+system CPU time per request
(/proc/PID/stat) and the status classes it answered. With several binaries the kinds are sent to
each in turn, --rounds times, and the median of the rounds is printed, so a before/after
comparison shares the machine's load. One sender, no concurrency: this measures work, not
latency.
"""

from __future__ import annotations

import argparse
import socket
import statistics
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


def cost(host: str, port: int, pid: int, raw: bytes, count: int) -> tuple[float, Counter]:
    """Server CPU seconds per request for `count` of one request, and what it answered."""
    before = hostile.cpu_seconds(pid)
    statuses = send_all(host, port, raw, count)
    time.sleep(0.2)  # let the server finish closing
    return (hostile.cpu_seconds(pid) - before) / count, statuses


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--infera", type=Path, action="append", required=True,
                        help="a binary to measure; give several to compare them")
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    servers = [hostile.start_infera(binary) for binary in args.infera]
    names = [f"{b.name} µs" for b in args.infera]
    print("| kind | " + " | ".join(names) + " | answers |")
    print("|---|" + "---:|" * len(names) + "---|")
    try:
        for kind, raw in hostile.abusive_requests():
            costs: list[list[float]] = [[] for _ in servers]
            answers: list[str] = []
            for _ in range(args.rounds):
                for i, (proc, base) in enumerate(servers):
                    host, port = base[len("http://"):].split(":")
                    used, statuses = cost(host, int(port), proc.pid, raw, args.count)
                    costs[i].append(used)
                    if len(answers) < len(servers):
                        answers.append(", ".join(f"{k}: {v}" for k, v in sorted(statuses.items())))
            cells = " | ".join(f"{statistics.median(c) * 1e6:.0f}" for c in costs)
            print(f"| {kind} | {cells} | {' / '.join(dict.fromkeys(answers))} |", flush=True)
    finally:
        for proc, _ in servers:
            proc.terminate()
            proc.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
