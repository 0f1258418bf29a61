"""The shipped DataFrame and text examples (models/penguins, models/tweet-source, built by
models/make_examples.py) answer like onnxruntime: golden.json is onnxruntime's own output on its
inputs, and infera, started on 127.0.0.1 port 0 with the shipped repository, gives the same labels
and probabilities within 1e-5 through /predict (objects of named values) and V2 (BYTES tensors)."""

import json
import os
import re
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = ["penguins", "tweet-source"]
TOLERANCE = 1e-5
WAIT_S = 60.0


def _bin():
    if os.environ.get("INFERA_BIN"):
        return os.environ["INFERA_BIN"]
    target = os.environ.get("CARGO_TARGET_DIR", str(REPO / "target"))
    return str(Path(target) / "release" / "infera")


@pytest.fixture(scope="module")
def server():
    proc = subprocess.Popen(
        [_bin(), "--model-repository", str(REPO / "models"), "--port", "0", "--log-format", "json"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    addr = None
    deadline = time.monotonic() + WAIT_S
    while addr is None:
        assert time.monotonic() < deadline, "no listening address logged"
        line = proc.stderr.readline()
        assert line, f"infera exited with {proc.poll()}"
        m = re.search(r"https?://([0-9.]+:[0-9]+)/docs", line)
        addr = m.group(1) if m else None
    threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
    while True:
        assert time.monotonic() < deadline, "not ready in time"
        try:
            with urllib.request.urlopen(f"http://{addr}/health/ready", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            time.sleep(0.05)
    yield addr
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=WAIT_S) == 0


def post(addr, path, body):
    req = urllib.request.Request(f"http://{addr}{path}", data=json.dumps(body).encode(),
                                 headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def golden(name):
    return json.loads((REPO / "models" / name / "1" / "golden.json").read_text())


def onnxruntime_outputs(name, instances):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(REPO / "models" / name / "1" / "model.onnx"), so,
                                providers=["CPUExecutionProvider"])
    feeds = {}
    for i in sess.get_inputs():
        column = [row[i.name] for row in instances]
        dtype = object if i.type == "tensor(string)" else np.float32
        feeds[i.name] = np.array(column, dtype=dtype).reshape(-1, 1)
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))


def close(got, want):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return got.shape == want.shape and bool(np.all(np.abs(got - want) <= TOLERANCE * np.maximum(1, np.abs(want))))


@pytest.mark.parametrize("name", EXAMPLES)
def test_golden_is_onnxruntime_output(name):
    g = golden(name)
    ref = onnxruntime_outputs(name, g["inputs"])
    assert [str(s) for s in ref["label"]] == g["outputs"]["label"]
    assert close(ref["probabilities"], g["outputs"]["probabilities"])


@pytest.mark.parametrize("name", EXAMPLES)
def test_predict_with_named_columns_matches_onnxruntime(server, name):
    g = golden(name)
    ref = onnxruntime_outputs(name, g["inputs"])
    status, body = post(server, f"/models/{name}/predict", {"instances": g["inputs"]})
    assert status == 200, body
    got = body["predictions"]
    assert [p["label"] for p in got] == [str(s) for s in ref["label"]]
    assert close([p["probabilities"] for p in got], ref["probabilities"])


@pytest.mark.parametrize("name", EXAMPLES)
def test_v2_bytes_matches_onnxruntime(server, name):
    g = golden(name)
    ref = onnxruntime_outputs(name, g["inputs"])
    names = list(g["inputs"][0])
    inputs = []
    for n in names:
        column = [row[n] for row in g["inputs"]]
        datatype = "BYTES" if isinstance(column[0], str) else "FP32"
        inputs.append({"name": n, "shape": [len(column), 1], "datatype": datatype, "data": column})
    status, body = post(server, f"/v2/models/{name}/infer", {"inputs": inputs})
    assert status == 200, body
    outputs = {o["name"]: o for o in body["outputs"]}
    assert outputs["label"]["datatype"] == "BYTES"
    assert outputs["label"]["data"] == [str(s) for s in ref["label"]]
    assert close(np.reshape(outputs["probabilities"]["data"], ref["probabilities"].shape), ref["probabilities"])


def test_an_unseen_island_is_served_and_counted(server):
    row = dict(golden("penguins")["inputs"][0], island="Anvers")
    status, body = post(server, "/models/penguins/predict", {"instances": [row]})
    assert status == 200, body
    with urllib.request.urlopen(f"http://{server}/metrics", timeout=10) as r:
        text = r.read().decode()
    assert 'infera_unseen_categories_total{feature="island",model="penguins"} 1' in text


def test_a_fraction_for_an_integer_column_is_refused(server):
    row = dict(golden("penguins")["inputs"][0], flipper_length_mm=190.5)
    status, body = post(server, "/models/penguins/predict", {"instances": [row]})
    assert status == 422, body
    assert body["error_type"] == "wrong_type"
    assert "flipper_length_mm" in body["error"]
