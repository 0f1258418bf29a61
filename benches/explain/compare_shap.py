#!/usr/bin/env python3
"""infera's explanations against the shap package's KernelExplainer.

Starts infera (the binary given with --infera) on the shipped models, and for each model
explains the first --instances rows of its golden.json twice: through infera's
POST /models/{name}/explain, and with shap.KernelExplainer on the same ONNX model (run by
onnxruntime), the same background (the version's background.json, or for a model without one
the rows infera builds from its profile.json) and the same target (the
class infera explains, or the value). Then it prints a Markdown table of the values' agreement
and of the time per instance, and exits non-zero when the values disagree beyond tolerance.

  * Few features (iris 4, diabetes 10): both sides enumerate every coalition (infera's exact
    Shapley values; shap's KernelExplainer with nsamples >= 2^F - 2 enumerates them all too), so
    the values must agree to float rounding: max |difference| <= 1e-4.
  * penguins (6 columns, island and sex strings; one graph input per column): the version has no
    background.json, so infera uses its profile-quantile background (10 rows, string columns
    from the profile's categories); this script builds the same 10 rows from profile.json (the
    rule in docs/explain.md) and gives shap numbers in which a string column holds the index of
    its string (the model function turns them back into strings for onnxruntime). Exact on both
    sides (2^6 coalitions): max |difference| <= 1e-4.
  * breast-cancer (30 features): both sample (infera with its own seeded generator, shap with
    numpy's), so they differ by sampling noise. The check: the infera-vs-shap difference is of the
    same size as infera's own seed-to-seed difference (at most 3x it, plus 1e-3).

shap runs with l1_reg=0 (its default, "num_features(10)", keeps only 10 features' attributions
non-zero, which is another estimator). Times: median over --repeats calls, infera through HTTP
(client-measured, so it includes the HTTP round trip), shap in-process.

  python3 -m venv /tmp/shap-venv && /tmp/shap-venv/bin/pip install -r benches/explain/requirements.txt
  cargo build --release
  /tmp/shap-venv/bin/python benches/explain/compare_shap.py --infera target/release/infera
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import onnxruntime as ort
import shap

ROOT = Path(__file__).resolve().parents[2]
MODELS = ["iris", "diabetes", "breast-cancer", "penguins"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url: str, body: dict) -> dict:
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        sys.exit(f"{url}: {e.code} {e.read().decode()}")


def wait_ready(base: str, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    until = time.monotonic() + timeout
    while time.monotonic() < until:
        if proc.poll() is not None:
            sys.exit(f"infera exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(base + "/health/ready", timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError):
            pass
        time.sleep(0.1)
    sys.exit("infera did not become ready")


class Model:
    def __init__(self, name: str):
        d = ROOT / "models" / name / "1"
        self.name = name
        self.session = ort.InferenceSession(str(d / "model.onnx"), providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        bg = json.loads((d / "background.json").read_text())
        self.features = bg["features"]
        self.background = np.asarray(bg["rows"], dtype=np.float32)
        self.x = np.asarray(json.loads((d / "golden.json").read_text())["inputs"], dtype=np.float32)
        self.classifier = len(self.session.get_outputs()) > 1

    def outputs(self, x: np.ndarray) -> np.ndarray:
        """[rows, columns]: class probabilities, or the value."""
        got = self.session.run(None, {self.input: np.asarray(x, dtype=np.float32)})
        if not self.classifier:
            return np.asarray(got[0], dtype=np.float64).reshape(len(x), 1)
        proba = got[1]
        if isinstance(proba, list):  # ZipMap: a list of {class: probability}
            proba = [[row[k] for k in sorted(row)] for row in proba]
        return np.asarray(proba, dtype=np.float64)


    def instance(self, x: np.ndarray):
        """x as infera takes it."""
        return x.tolist()


def profile_quantile(edges: list, shares: list, q: float) -> float:
    """infera's quantile of a binned profile feature (src/explain/background.rs)."""
    below = 0.0
    for b, share in enumerate(shares):
        if q <= below + share or b + 1 == len(shares):
            lo = edges[0] if b == 0 else edges[b - 1]
            hi = edges[-1] if b >= len(edges) else edges[b]
            t = min(max((q - below) / share, 0.0), 1.0) if share > 0 else 0.5
            return lo + t * (hi - lo)
        below += share
    return edges[-1]


def profile_category(categories: list, shares: list, q: float) -> str:
    below = 0.0
    for c, share in zip(categories, shares):
        below += share
        if q <= below:
            return c
    return categories[-1]


class ColumnsModel(Model):
    """A DataFrame export (one input per column, strings among them), explained against the
    background infera builds from profile.json. shap sees numbers: a string column holds the
    index of its string in `self.vocab[j]`."""

    ROWS = 10

    def __init__(self, name: str):
        d = ROOT / "models" / name / "1"
        self.name = name
        self.session = ort.InferenceSession(str(d / "model.onnx"), providers=["CPUExecutionProvider"])
        self.inputs = self.session.get_inputs()
        self.text = [i.type == "tensor(string)" for i in self.inputs]
        self.features = [i.name for i in self.inputs]
        profile = json.loads((d / "profile.json").read_text())
        assert [f["name"] for f in profile["features"]] == self.features
        self.vocab: list[list[str]] = [[] for _ in self.features]
        rows = []
        for k in range(self.ROWS):
            q = (k + 0.5) / self.ROWS
            row = []
            for j, f in enumerate(profile["features"]):
                if f.get("categories"):
                    row.append(self.code(j, profile_category(f["categories"], f["shares"], q)))
                else:
                    row.append(profile_quantile(f["edges"], f["shares"], q))
            rows.append(row)
        self.background = np.asarray(rows, dtype=np.float64)
        golden = json.loads((d / "golden.json").read_text())["inputs"]
        self.x = np.asarray(
            [[self.code(j, r[f]) if self.text[j] else r[f] for j, f in enumerate(self.features)] for r in golden],
            dtype=np.float64,
        )
        self.classifier = True

    def code(self, j: int, s: str) -> float:
        if s not in self.vocab[j]:
            self.vocab[j].append(s)
        return float(self.vocab[j].index(s))

    def feeds(self, x: np.ndarray) -> dict:
        x = np.asarray(x, dtype=np.float64).reshape(-1, len(self.features))
        out = {}
        for j, i in enumerate(self.inputs):
            if self.text[j]:
                out[i.name] = np.asarray([[self.vocab[j][int(c)]] for c in x[:, j]], dtype=object)
            else:
                out[i.name] = x[:, j : j + 1].astype(np.float32)
        return out

    def outputs(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.session.run(None, self.feeds(x))[1], dtype=np.float64)

    def instance(self, x: np.ndarray):
        return {
            f: (self.vocab[j][int(x[j])] if self.text[j] else float(np.float32(x[j])))
            for j, f in enumerate(self.features)
        }


def load(name: str) -> Model:
    d = ROOT / "models" / name / "1"
    return Model(name) if (d / "background.json").exists() else ColumnsModel(name)


def infera_explain(base: str, m: Model, x: np.ndarray, budget: int, seed: int) -> tuple[dict, float]:
    body = {"instances": [m.instance(x)], "budget": budget, "seed": seed}
    started = time.perf_counter()
    got = post(f"{base}/models/{m.name}/explain", body)
    took = time.perf_counter() - started
    return got["explanations"][0], took


def shap_explain(m: Model, x: np.ndarray, column: int, nsamples: int) -> tuple[np.ndarray, float, float]:
    explainer = shap.KernelExplainer(lambda rows: m.outputs(rows)[:, column], m.background)
    started = time.perf_counter()
    values = explainer.shap_values(x.reshape(1, -1), nsamples=nsamples, l1_reg=0, silent=True)
    took = time.perf_counter() - started
    return np.asarray(values).reshape(-1), float(explainer.expected_value), took


def compare(base: str, m: Model, instances: int, repeats: int, budget: int) -> dict:
    width = len(m.features)
    exact = 2**width <= budget
    nsamples = 2**width - 2 if exact else budget - 2
    worst, worst_seed, infera_t, shap_t = 0.0, 0.0, [], []
    method = ""
    for i in range(instances):
        x = m.x[i]
        got, _ = infera_explain(base, m, x, budget, 0)
        method, samples = got["method"], got["samples"]
        phi = np.asarray([got["attributions"][f] for f in m.features])
        column = 0 if got["target"] == "value" else int(np.argmax(m.outputs(x.reshape(1, -1))[0]))
        values, expected, _ = shap_explain(m, x, column, nsamples)
        assert abs(expected - got["base_value"]) < 1e-4, (m.name, expected, got["base_value"])
        worst = max(worst, float(np.max(np.abs(values - phi))))
        if not exact:
            other, _ = infera_explain(base, m, x, budget, 1)
            phi1 = np.asarray([other["attributions"][f] for f in m.features])
            worst_seed = max(worst_seed, float(np.max(np.abs(phi1 - phi))))
        for _ in range(repeats):
            infera_t.append(infera_explain(base, m, x, budget, 0)[1])
        for _ in range(max(1, repeats // 10)):
            shap_t.append(shap_explain(m, x, column, nsamples)[2])
    limit = 1e-4 if exact else 3 * worst_seed + 1e-3
    return {
        "model": m.name,
        "features": width,
        "method": method,
        "samples": samples,
        "background": len(m.background),
        "max_abs_diff": worst,
        "seed_to_seed": worst_seed if not exact else None,
        "limit": limit,
        "ok": worst <= limit,
        "infera_ms": statistics.median(infera_t) * 1e3,
        "shap_ms": statistics.median(shap_t) * 1e3,
    }


def report(rows: list[dict]) -> str:
    out = [
        "| model | features | infera method | coalitions | background rows | max abs diff vs shap | infera seed-to-seed | limit | infera ms/instance (HTTP) | shap ms/instance | shap / infera |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        seed = "-" if r["seed_to_seed"] is None else f"{r['seed_to_seed']:.2e}"
        out.append(
            f"| {r['model']} | {r['features']} | {r['method']} | {r['samples']} | {r['background']} | "
            f"{r['max_abs_diff']:.2e} | {seed} | {r['limit']:.1e} | {r['infera_ms']:.2f} | {r['shap_ms']:.1f} | "
            f"{r['shap_ms'] / r['infera_ms']:.0f}x |"
        )
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--infera", required=True, help="path to the infera binary")
    ap.add_argument("--instances", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--budget", type=int, default=2048, help="coalitions per instance (infera's budget)")
    ap.add_argument("--models", default=",".join(MODELS))
    args = ap.parse_args()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            [args.infera, "--model-repository", str(ROOT / "models"), "--port", str(port), "--log", "warn"],
            stdout=log, stderr=subprocess.STDOUT,
        )
        try:
            wait_ready(base, proc)
            rows = [compare(base, load(n), args.instances, args.repeats, args.budget) for n in args.models.split(",")]
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    print(f"shap {shap.__version__}, onnxruntime {ort.__version__}, numpy {np.__version__}")
    print(report(rows))
    bad = [r["model"] for r in rows if not r["ok"]]
    if bad:
        sys.exit(f"values disagree beyond tolerance: {', '.join(bad)}")


if __name__ == "__main__":
    main()
