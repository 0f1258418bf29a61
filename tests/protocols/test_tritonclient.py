"""Open Inference Protocol (KServe V2) REST API, tested with the official Triton HTTP client.

A module-scoped fixture starts the infera release binary on 127.0.0.1 port 0 with the shipped
model repository, reads the bound address from its JSON log on stderr, and waits until the server
is ready. Every inference is compared with the committed golden files
``models/<model>/1/golden.json``: floats within ``tol * max(1, |want|)``, integers exactly.
"""

import collections
import json
import os
import queue
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

REPO = Path(__file__).resolve().parents[2]
MODELS_DIR = REPO / "models"
MODELS = ["iris", "digits", "diabetes", "breast-cancer"]

ADDR_WAIT_S = 20.0
READY_WAIT_S = 20.0
STOP_WAIT_S = 10.0

# "infera listening; Swagger UI at http://127.0.0.1:41234/docs"
_ADDR_IN_MESSAGE = re.compile(r"listening.*?http://([0-9.]+:\d+)")


def _infera_bin():
    if os.environ.get("INFERA_BIN"):
        return Path(os.environ["INFERA_BIN"])
    if os.environ.get("CARGO_TARGET_DIR"):
        return Path(os.environ["CARGO_TARGET_DIR"]) / "release" / "infera"
    return REPO / "target" / "release" / "infera"


def _addr_from_line(line):
    """The listening address in one stderr line (JSON log, or plain text as a fallback)."""
    try:
        record = json.loads(line)
    except ValueError:
        record = None
    if isinstance(record, dict):
        addr = record.get("addr")
        if isinstance(addr, str) and re.fullmatch(r"[0-9.]+:\d+", addr):
            return addr
        message = record.get("message")
        if isinstance(message, str):
            m = _ADDR_IN_MESSAGE.search(message)
            if m:
                return m.group(1)
        return None
    m = _ADDR_IN_MESSAGE.search(line)
    return m.group(1) if m else None


class _Server:
    def __init__(self, proc, addr, log):
        self.proc = proc
        self.addr = addr
        self.log = log  # the last stderr lines, for failure messages

    def stderr_tail(self):
        return "".join(self.log)


def _start_server():
    binary = _infera_bin()
    if not binary.is_file():
        pytest.fail(
            f"infera binary not found at {binary}: build it (cargo build --release) "
            "or set INFERA_BIN"
        )
    argv = [
        str(binary),
        "--host", "127.0.0.1",
        "--port", "0",
        "--model-repository", str(MODELS_DIR),
        "--log-format", "json",
    ]
    proc = subprocess.Popen(
        argv,
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
    )
    log = collections.deque(maxlen=200)
    lines = queue.Queue()

    def drain():
        # Runs for the server's whole life so that its stderr pipe never fills.
        for line in proc.stderr:
            log.append(line)
            lines.put(line)
        lines.put(None)  # EOF: the server exited

    threading.Thread(target=drain, name="infera-stderr", daemon=True).start()

    deadline = time.monotonic() + ADDR_WAIT_S
    addr = None
    while addr is None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            _stop(proc)
            pytest.fail(
                f"infera did not log its listening address within {ADDR_WAIT_S:.0f} s; "
                f"stderr:\n{''.join(log)}"
            )
        try:
            line = lines.get(timeout=remaining)
        except queue.Empty:
            continue
        if line is None:
            code = proc.wait()
            pytest.fail(
                f"infera exited (code {code}) before logging its listening address; "
                f"argv: {argv}\nstderr:\n{''.join(log)}"
            )
        addr = _addr_from_line(line)
    return _Server(proc, addr, log)


def _stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def server():
    srv = _start_server()
    try:
        yield srv
    finally:
        _stop(srv.proc)


@pytest.fixture(scope="module")
def client(server):
    c = httpclient.InferenceServerClient(url=server.addr)
    deadline = time.monotonic() + READY_WAIT_S
    last_error = None
    while True:
        if server.proc.poll() is not None:
            pytest.fail(
                f"infera exited (code {server.proc.returncode}) before it was ready; "
                f"stderr:\n{server.stderr_tail()}"
            )
        try:
            if c.is_server_ready():
                break
        except Exception as e:  # connection refused and the like, while it starts
            last_error = e
        if time.monotonic() > deadline:
            pytest.fail(
                f"infera at {server.addr} not ready within {READY_WAIT_S:.0f} s "
                f"(last error: {last_error!r}); stderr:\n{server.stderr_tail()}"
            )
        time.sleep(0.05)
    try:
        yield c
    finally:
        c.close()


# ---------------------------------------------------------------------------------------------
# Golden files and comparisons


def _golden(model):
    with open(MODELS_DIR / model / "1" / "golden.json") as f:
        return json.load(f)


GOLDEN = {m: _golden(m) for m in MODELS}


def _is_integer_output(values):
    return np.asarray(values).dtype.kind in "iu"


def _expected_outputs(model):
    """[(name, datatype, shape)] that the model's metadata should list, from its golden file."""
    out = []
    for name, values in GOLDEN[model]["outputs"].items():
        want = np.asarray(values)
        if _is_integer_output(values):
            out.append((name, "INT64", [-1]))
        else:
            out.append((name, "FP32", [-1] + list(want.shape[1:])))
    return out


def _assert_matches(got, values, tol, what):
    want = np.asarray(values)
    assert got is not None, f"{what}: output missing from the response"
    assert got.shape == want.shape, f"{what}: shape {got.shape}, want {want.shape}"
    if want.dtype.kind in "iu":
        assert got.dtype == np.int64, f"{what}: dtype {got.dtype}, want int64"
        bad = np.flatnonzero(got.reshape(-1) != want.reshape(-1))
        assert bad.size == 0, (
            f"{what}: {bad.size} integer values differ; first at flat index {bad[0]}: "
            f"got {got.reshape(-1)[bad[0]]}, want {want.reshape(-1)[bad[0]]}"
        )
    else:
        assert got.dtype == np.float32, f"{what}: dtype {got.dtype}, want float32"
        g = got.astype(np.float64).reshape(-1)
        w = want.astype(np.float64).reshape(-1)
        err = np.abs(g - w)
        limit = tol * np.maximum(1.0, np.abs(w))
        bad = np.flatnonzero(~(err <= limit))
        assert bad.size == 0, (
            f"{what}: {bad.size} values outside tolerance {tol}; worst at flat index "
            f"{bad[np.argmax(err[bad])]}: got {g[bad[np.argmax(err[bad])]]}, "
            f"want {w[bad[np.argmax(err[bad])]]}"
        )


def _input(model, rows, binary):
    g = GOLDEN[model]
    x = np.asarray(rows, dtype=np.float32)
    inp = httpclient.InferInput(g["input"], list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=binary)
    return inp


def _requested(model, binary, names=None):
    names = names if names is not None else list(GOLDEN[model]["outputs"])
    return [httpclient.InferRequestedOutput(n, binary_data=binary) for n in names]


def _check_result(model, result, n_rows, binary, what):
    g = GOLDEN[model]
    outputs = result.get_response().get("outputs", [])
    assert sorted(o["name"] for o in outputs) == sorted(g["outputs"]), (
        f"{what}: response outputs {[o['name'] for o in outputs]}"
    )
    expected_types = {name: dt for name, dt, _ in _expected_outputs(model)}
    for name, values in g["outputs"].items():
        meta = result.get_output(name)
        assert meta["datatype"] == expected_types[name], f"{what}/{name}: {meta}"
        # The transport really is the one asked for.
        if binary:
            assert "data" not in meta, f"{what}/{name}: JSON data in a binary reply: {meta}"
            assert meta.get("parameters", {}).get("binary_data_size", 0) > 0, (
                f"{what}/{name}: no binary_data_size: {meta}"
            )
        else:
            assert "data" in meta, f"{what}/{name}: no JSON data: {meta}"
        _assert_matches(
            result.as_numpy(name), values[:n_rows], g["tolerance"], f"{what}/{name}"
        )


def _expect_error(call, status=None):
    with pytest.raises(InferenceServerException) as info:
        call()
    err = info.value
    if status is not None:
        assert err.status() == str(status), (
            f"status {err.status()!r}, want {status}; message: {err.message()}"
        )
    return err


# ---------------------------------------------------------------------------------------------
# a. server and model health, server metadata


def test_server_live_and_ready(client):
    assert client.is_server_live() is True
    assert client.is_server_ready() is True


def test_server_metadata(client):
    meta = client.get_server_metadata()
    assert meta["name"] == "infera", meta
    assert isinstance(meta.get("version"), str) and meta["version"], meta
    assert "binary_tensor_data" in meta["extensions"], meta


@pytest.mark.parametrize("model", MODELS)
def test_model_ready(client, model):
    assert client.is_model_ready(model) is True
    assert client.is_model_ready(model, model_version="1") is True


def test_unknown_model_not_ready(client):
    try:
        ready = client.is_model_ready("nope")
    except InferenceServerException:
        return
    assert ready is False


def test_unknown_version_not_ready(client):
    try:
        ready = client.is_model_ready("iris", model_version="9")
    except InferenceServerException:
        return
    assert ready is False


# ---------------------------------------------------------------------------------------------
# b. model metadata


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("version", ["", "1"], ids=["latest", "v1"])
def test_model_metadata(client, model, version):
    g = GOLDEN[model]
    meta = client.get_model_metadata(model, model_version=version)
    assert meta["name"] == model, meta
    assert meta["platform"] == "onnx_onnxv1", meta
    assert meta["versions"] == ["1"], meta
    features = len(g["inputs"][0])
    assert meta["inputs"] == [
        {"name": g["input"], "datatype": "FP32", "shape": [-1, features]}
    ], meta
    got = sorted((o["name"], o["datatype"], o["shape"]) for o in meta["outputs"])
    assert got == sorted(_expected_outputs(model)), meta


def test_model_metadata_shapes_by_kind(client):
    """The task-specific output layout, stated outright rather than derived from goldens."""
    for model in ["iris", "digits", "breast-cancer"]:
        outs = client.get_model_metadata(model)["outputs"]
        assert len(outs) == 2, outs
        labels = [o for o in outs if o["datatype"] == "INT64"]
        probs = [o for o in outs if o["datatype"] == "FP32"]
        assert len(labels) == 1 and labels[0]["shape"] == [-1], outs
        assert len(probs) == 1 and len(probs[0]["shape"]) == 2, outs
        assert probs[0]["shape"][0] == -1 and probs[0]["shape"][1] >= 2, outs
    outs = client.get_model_metadata("diabetes")["outputs"]
    assert outs == [{"name": "variable", "datatype": "FP32", "shape": [-1, 1]}], outs


def test_unknown_model_metadata(client):
    err = _expect_error(lambda: client.get_model_metadata("nope"), status=404)
    assert "nope" in err.message()


# ---------------------------------------------------------------------------------------------
# c. inference against the golden files


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_infer_golden_batch(client, model, binary):
    rows = GOLDEN[model]["inputs"]
    result = client.infer(
        model, [_input(model, rows, binary)], outputs=_requested(model, binary)
    )
    assert result.get_response()["model_name"] == model
    _check_result(model, result, len(rows), binary, f"{model} batch of {len(rows)}")


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_infer_golden_single_row(client, model, binary):
    rows = GOLDEN[model]["inputs"][:1]
    result = client.infer(
        model, [_input(model, rows, binary)], outputs=_requested(model, binary)
    )
    _check_result(model, result, 1, binary, f"{model} batch of 1")


@pytest.mark.parametrize("model", MODELS)
def test_infer_default_outputs(client, model):
    """No outputs named: the server returns every output. The client then sends the request
    parameter binary_data_output=true, so every output must come back as binary data."""
    rows = GOLDEN[model]["inputs"]
    result = client.infer(model, [_input(model, rows, False)])
    _check_result(model, result, len(rows), True, f"{model} default outputs")


# ---------------------------------------------------------------------------------------------
# d. output selection


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
@pytest.mark.parametrize(
    "model,wanted,other",
    [
        ("iris", "label", "probabilities"),
        ("iris", "probabilities", "label"),
        ("breast-cancer", "output_probability", "output_label"),
    ],
)
def test_output_selection(client, model, wanted, other, binary):
    g = GOLDEN[model]
    rows = g["inputs"]
    result = client.infer(
        model, [_input(model, rows, binary)], outputs=_requested(model, binary, [wanted])
    )
    names = [o["name"] for o in result.get_response()["outputs"]]
    assert names == [wanted], names
    assert result.as_numpy(other) is None
    _assert_matches(
        result.as_numpy(wanted), g["outputs"][wanted], g["tolerance"], f"{model}/{wanted}"
    )


def test_unknown_output_requested(client):
    outputs = [httpclient.InferRequestedOutput("bogus", binary_data=False)]
    err = _expect_error(
        lambda: client.infer("iris", [_input("iris", GOLDEN["iris"]["inputs"], False)],
                             outputs=outputs),
        status=400,
    )
    assert "bogus" in err.message()


# ---------------------------------------------------------------------------------------------
# e. errors


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_error_unknown_model(client, binary):
    err = _expect_error(
        lambda: client.infer("nope", [_input("iris", GOLDEN["iris"]["inputs"][:1], binary)]),
        status=404,
    )
    assert "nope" in err.message()


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_error_wrong_datatype(client, binary):
    x = np.asarray(GOLDEN["iris"]["inputs"][:2], dtype=np.float64)
    inp = httpclient.InferInput("float_input", list(x.shape), "FP64")
    inp.set_data_from_numpy(x, binary_data=binary)
    err = _expect_error(lambda: client.infer("iris", [inp]), status=400)
    assert "FP64" in err.message() and "FP32" in err.message(), err.message()


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_error_wrong_shape(client, binary):
    x = np.arange(5, dtype=np.float32).reshape(1, 5)
    inp = httpclient.InferInput("float_input", [1, 5], "FP32")
    inp.set_data_from_numpy(x, binary_data=binary)
    err = _expect_error(lambda: client.infer("iris", [inp]), status=400)
    assert err.message(), "empty error message"


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_error_bytes_input(client, binary):
    x = np.array([b"abc", b"defg"], dtype=np.object_)
    inp = httpclient.InferInput("float_input", [2], "BYTES")
    inp.set_data_from_numpy(x, binary_data=binary)
    err = _expect_error(lambda: client.infer("iris", [inp]), status=400)
    assert "BYTES" in err.message(), err.message()


def test_error_unknown_input_name(client):
    x = np.asarray(GOLDEN["iris"]["inputs"][:1], dtype=np.float32)
    inp = httpclient.InferInput("not_an_input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=False)
    err = _expect_error(lambda: client.infer("iris", [inp]), status=400)
    assert err.message(), "empty error message"


# ---------------------------------------------------------------------------------------------
# f. model version in the path


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_infer_model_version(client, binary):
    rows = GOLDEN["iris"]["inputs"]
    result = client.infer(
        "iris",
        [_input("iris", rows, binary)],
        model_version="1",
        outputs=_requested("iris", binary),
    )
    _check_result("iris", result, len(rows), binary, "iris version 1")


def test_infer_unknown_model_version(client):
    err = _expect_error(
        lambda: client.infer(
            "iris", [_input("iris", GOLDEN["iris"]["inputs"][:1], False)], model_version="9"
        ),
        status=404,
    )
    assert "9" in err.message(), err.message()


def test_model_metadata_unknown_version(client):
    _expect_error(lambda: client.get_model_metadata("iris", model_version="9"), status=404)
