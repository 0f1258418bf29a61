#!/usr/bin/env python3
"""The API contract check: schemathesis against the spec infera serves, every check, stateful on.

Two runs, each against a fresh infera release binary serving the shipped models on 127.0.0.1
port 0 (the port is read from the server's JSON log):
  1. without API keys (the served spec then carries no security requirement), and
  2. with an API keys file holding one key with every scope, sent as a bearer token, so the
     authentication checks (ignored_auth, missing_required_header) exercise the 401 / 403 paths.

Each run: `schemathesis run --checks all --phases examples,coverage,fuzzing,stateful`, bounded by
--max-examples per operation and --max-time, with a fixed seed (override with --seed) and the
settings in tests/security/schemathesis.toml. Exits non-zero if either run finds a failure or
the server dies.

    INFERA_BIN=target/release/infera SCHEMATHESIS=venv/bin/schemathesis \\
        python3 tests/security/run_schemathesis.py [--max-time 60] [--max-examples 25]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
START_WAIT_S = 60.0


def start_infera(binary: Path, extra: list[str]) -> tuple[subprocess.Popen, str]:
    """Starts infera on port 0 and returns it with its base URL once every model is ready."""
    cmd = [str(binary), "--model-repository", str(REPO / "models"), "--port", "0",
           "--log-format", "json", "--log", "info", *extra]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    found: list[str] = []
    got = threading.Event()

    def read() -> None:
        for line in proc.stderr:
            if not got.is_set():
                try:
                    addr = json.loads(line).get("addr")
                except ValueError:
                    addr = None
                if isinstance(addr, str) and re.fullmatch(r"[0-9.]+:\d+", addr):
                    found.append(addr)
                    got.set()
            if "ERROR" in line or "panicked" in line:
                sys.stderr.write(f"infera: {line}")

    threading.Thread(target=read, daemon=True).start()
    if not got.wait(START_WAIT_S):
        proc.kill()
        raise SystemExit("infera did not log its address")
    base = f"http://{found[0]}"
    deadline = time.monotonic() + START_WAIT_S
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/health/ready", timeout=2) as r:
                if r.status == 200:
                    return proc, base
        except OSError:
            pass
        if proc.poll() is not None:
            raise SystemExit(f"infera exited with {proc.returncode} before it was ready")
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("infera was not ready in time")


def keys_file(binary: Path, directory: Path) -> tuple[Path, str]:
    """A keys file with one key holding every scope; returns it and the key."""
    key = secrets.token_urlsafe(32)
    digest = subprocess.run([str(binary), "hash-key"], input=key, capture_output=True,
                            text=True, check=True).stdout.strip()
    path = directory / "keys.toml"
    path.write_text(
        f'[[keys]]\nname = "schemathesis"\nsha256 = "{digest}"\n'
        'scopes = ["predict", "feedback", "read", "admin"]\n'
    )
    return path, key


def run(args: argparse.Namespace, label: str, extra_server: list[str], headers: list[str]) -> int:
    proc, base = start_infera(args.infera, extra_server)
    try:
        cmd = [args.schemathesis, "--config-file", str(HERE / "schemathesis.toml"), "run",
               f"{base}/openapi.json", "--checks", "all",
               "--phases", "examples,coverage,fuzzing,stateful",
               "--max-examples", str(args.max_examples), "--max-time", str(args.max_time),
               "--seed", str(args.seed), "--request-timeout", "10", "--no-color",
               # One worker: hypothesis parses source with `ast` in every worker thread, and
               # CPython 3.11's AST constructor is not thread-safe ("AST constructor recursion
               # depth mismatch", CPython gh-106905); with two workers a run hit it.
               "--workers", "1"]
        for header in headers:
            cmd += ["--header", header]
        print(f"== schemathesis, {label}", flush=True)
        result = subprocess.run(cmd, check=False)
        if proc.poll() is not None:
            print(f"infera died during the run (exit {proc.returncode})", file=sys.stderr)
            return 1
        return result.returncode
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    target = os.environ.get("CARGO_TARGET_DIR", str(REPO / "target"))
    parser.add_argument("--infera", type=Path,
                        default=Path(os.environ.get("INFERA_BIN", f"{target}/release/infera")))
    parser.add_argument("--schemathesis", default=os.environ.get("SCHEMATHESIS", "schemathesis"))
    parser.add_argument("--max-examples", type=int, default=25)
    parser.add_argument("--max-time", type=int, default=60, help="seconds per run")
    parser.add_argument("--seed", type=int, default=20261201)
    args = parser.parse_args()

    failed = []
    if run(args, "no API keys", [], []) != 0:
        failed.append("no API keys")
    with tempfile.TemporaryDirectory() as tmp:
        path, key = keys_file(args.infera, Path(tmp))
        if run(args, "with an API key", ["--api-keys-file", str(path)],
               [f"Authorization: Bearer {key}"]) != 0:
            failed.append("with an API key")
    if failed:
        print(f"schemathesis failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    print("schemathesis: both runs passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
