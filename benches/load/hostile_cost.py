#!/usr/bin/env python3
"""Infera's CPU time per abusive request, by kind (docs/benchmarks.md, "Hostile traffic").

  python3 benches/load/hostile_cost.py --infera $CARGO_TARGET_DIR/release/infera [--count 1000]
  python3 benches/load/hostile_cost.py --infera BEFORE --infera AFTER [--rounds 3]

Starts one infera release binary per --infera (as hostile.py does), sends --count requests of
each kind from hostile.py's abusive_requests() one after another (keep-alive, reconnecting when
the server closes), and prints, per kind, each server's user+system CPU time per request
and the status classes it answered. CPU time is read from the server's process CPU clock
(clock_getcpuclockid: every thread, nanoseconds), not /proc's 10 ms ticks. Besides the abusive
requests it measures two kinds of connection: `connect_close` (a client connects and closes
without sending a byte) and `idle_timeout` (--idle-count connections opened together and left
idle until the server's header timeout closes them, as hostile.py's idle connections are).
With several binaries the kinds are sent to each in turn, --rounds times, and the median of the
rounds is printed, so a before/after comparison shares the machine's load. One sender, no
concurrency: this measures work, not latency.
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


def cpu_clock(pid: int) -> float:
    """CPU seconds `pid` has used so far, all threads, from its process CPU-time clock
    (clock_getcpuclockid(3): CPUCLOCK_SCHED of the process, nanosecond resolution)."""
    return time.clock_gettime(((~pid) << 3) | 2)


def connect_close(host: str, port: int, count: int) -> Counter:
    """`count` connections, each closed by the client without sending a byte."""
    statuses: Counter = Counter()
    for _ in range(count):
        socket.create_connection((host, port)).close()
        statuses["closed"] += 1
    return statuses


def idle_timeout(host: str, port: int, count: int) -> Counter:
    """`count` connections opened together and held until the server closes them (its header
    timeout), as hostile.py's idle connections."""
    statuses: Counter = Counter()
    socks = [socket.create_connection((host, port)) for _ in range(count)]
    for sock in socks:
        sock.settimeout(60)
        try:
            statuses["closed by server" if sock.recv(1) == b"" else "answered"] += 1
        except OSError:
            statuses["error"] += 1
        sock.close()
    return statuses


CONNECTION_KINDS = {"connect_close": connect_close, "idle_timeout": idle_timeout}


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


def cost(host: str, port: int, pid: int, send, count: int) -> tuple[float, Counter]:
    """Server CPU seconds per request for `count` of one kind, and what it answered."""
    before = cpu_clock(pid)
    statuses = send(host, port, count)
    time.sleep(0.2)  # let the server finish closing
    return (cpu_clock(pid) - before) / count, statuses


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--infera", type=Path, action="append", required=True,
                        help="a binary to measure; give several to compare them")
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--idle-count", type=int, default=500,
                        help="connections per idle_timeout round (each round waits for the "
                             "server's header timeout, 10 s by default)")
    parser.add_argument("--kinds", help="comma-separated kinds to measure (default: all)")
    args = parser.parse_args()
    kinds = [(kind, lambda h, p, n, raw=raw: send_all(h, p, raw, n))
             for kind, raw in hostile.abusive_requests()]
    kinds += list(CONNECTION_KINDS.items())
    if args.kinds:
        wanted = args.kinds.split(",")
        kinds = [k for k in kinds if k[0] in wanted]
    servers = [hostile.start_infera(binary) for binary in args.infera]
    names = [f"{b.name} µs" for b in args.infera]
    print("| kind | " + " | ".join(names) + " | answers |")
    print("|---|" + "---:|" * len(names) + "---|")
    try:
        for kind, send in kinds:
            costs: list[list[float]] = [[] for _ in servers]
            answers: list[str] = []
            for _ in range(args.rounds):
                for i, (proc, base) in enumerate(servers):
                    host, port = base[len("http://"):].split(":")
                    count = args.idle_count if kind == "idle_timeout" else args.count
                    used, statuses = cost(host, int(port), proc.pid, send, count)
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
