"""A real Prometheus (Debian's package) scrapes a running infera and evaluates the shipped alert
rules: drift is driven through the API and the drift alert must go pending (or firing) in
Prometheus's own HTTP API. Also runs `promtool check rules` and the rule unit tests.

Run by tests/run (INFERA_BIN is the release binary). Needs `prometheus` and `promtool` on PATH:
.ci/run installs Debian's `prometheus` package.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy/prometheus/alerts.yml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


def post_json(url: str, body: dict) -> dict:
    req = urllib.request.Request(url, data=json.dumps(body).encode(),
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def wait_for(what: str, check, timeout: float = 90.0, every: float = 0.25):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except Exception as e:  # not up yet
            last = e
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


def tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} not found on PATH: install Debian's prometheus package (.ci/run does)"
    return path


def test_promtool_checks_and_unit_tests_the_shipped_rules():
    subprocess.run([tool("promtool"), "check", "rules", str(RULES)], check=True)
    subprocess.run([tool("promtool"), "test", "rules", "tests/monitoring/alerts_test.yml"],
                   check=True, cwd=ROOT)


@pytest.fixture()
def stack():
    prometheus = tool("prometheus")
    work = Path(tempfile.mkdtemp(prefix="infera-prom-"))
    infera_port, prom_port = free_port(), free_port()
    procs = []
    try:
        infera = subprocess.Popen(
            [os.environ["INFERA_BIN"], "--model-repository", str(ROOT / "models"),
             "--port", str(infera_port), "--log", "warn"],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        procs.append(infera)
        base = f"http://127.0.0.1:{infera_port}"
        wait_for("infera ready",
                 lambda: urllib.request.urlopen(f"{base}/health/ready", timeout=1).status == 200)
        (work / "prometheus.yml").write_text(f"""
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - {RULES}
scrape_configs:
  - job_name: infera
    static_configs:
      - targets: ["127.0.0.1:{infera_port}"]
""")
        prom = subprocess.Popen(
            [prometheus, f"--config.file={work / 'prometheus.yml'}",
             f"--storage.tsdb.path={work / 'data'}",
             f"--web.listen-address=127.0.0.1:{prom_port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        procs.append(prom)
        prom_url = f"http://127.0.0.1:{prom_port}"
        wait_for("the first scrape of infera", lambda: any(
            t["health"] == "up" for t in get_json(f"{prom_url}/api/v1/targets")["data"]["activeTargets"]))
        yield base, prom_url
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(work, ignore_errors=True)


def iris_rows(n: int, shift_petal_length: float, rng: random.Random) -> list[list[float]]:
    # Plausible iris measurements (cm); petal length shifted by `shift_petal_length`.
    rows = []
    for _ in range(n):
        rows.append([round(rng.uniform(4.5, 7.5), 1), round(rng.uniform(2.2, 4.2), 1),
                     round(rng.uniform(1.2, 6.5) + shift_petal_length, 1), round(rng.uniform(0.1, 2.4), 1)])
    return rows


def test_driven_drift_makes_the_shipped_alert_pending_in_prometheus(stack):
    base, prom = stack
    rng = random.Random(3)
    # Two standard deviations of iris petal length (sd 1.77 cm) added to every instance:
    # 300 instances fill more than one quarter of the default 1000-instance window.
    for _ in range(3):
        r = post_json(f"{base}/models/iris/predict", {"instances": iris_rows(100, 3.6, rng)})
        assert len(r["predictions"]) == 100
    view = get_json(f"{base}/models/iris/monitoring")
    drifting = [f["name"] for f in view["drift"]["latest"]["features"] if f["status"] == "drifting"]
    assert "petal_length_cm" in drifting, view

    def alert_state():
        alerts = get_json(f"{prom}/api/v1/alerts")["data"]["alerts"]
        for a in alerts:
            if (a["labels"]["alertname"] == "InferaFeatureDrift" and a["labels"]["model"] == "iris"
                    and a["labels"]["feature"] == "petal_length_cm"):
                return a["state"]
        return None

    state = wait_for("InferaFeatureDrift pending or firing", alert_state)
    assert state in ("pending", "firing"), state
    # The drift status gauge is visible to queries too.
    q = get_json(f"{prom}/api/v1/query?query=infera_model_drift_status%7Bmodel%3D%22iris%22%7D")
    assert q["data"]["result"][0]["value"][1] == "2", q
