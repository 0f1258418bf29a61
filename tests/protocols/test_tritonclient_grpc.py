"""Open Inference Protocol over gRPC, tested with the official Triton gRPC client
(``tritonclient[grpc]``) and, as a second client, plain ``grpcio`` calling the protobuf stubs that
ship inside tritonclient (Triton's own ``grpc_service.proto``), the standard health client
(``grpcio-health-checking``) and server reflection (``grpcio-reflection``).

A module-scoped fixture starts the infera release binary with ``--grpc-port 0`` (and reflection)
on 127.0.0.1, reads both bound addresses from its JSON log, and waits until the server is ready.
Inference results are compared with the committed golden files, as in test_tritonclient.py:
every shipped model, plus the benchmark CNN (an image-sized input) when its repository is present.
"""

import collections
import json
import queue
import re
import subprocess
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from test_tritonclient import GOLDEN, MODELS, MODELS_DIR, REPO, _assert_matches, _infera_bin, _stop

ADDR_WAIT_S = 20.0
READY_WAIT_S = 20.0
BENCH_DIR = MODELS_DIR / "bench"
MAX_MESSAGE_BYTES = 1 << 20


def _golden(repo, model):
    with open(repo / model / "1" / "golden.json") as f:
        return json.load(f)


class _Server:
    def __init__(self, proc, http, grpc_addr, log):
        self.proc, self.http, self.grpc, self.log = proc, http, grpc_addr, log

    def stderr_tail(self):
        return "".join(self.log)


def _start(repo):
    binary = _infera_bin()
    if not binary.is_file():
        pytest.fail(f"infera binary not found at {binary}: build it or set INFERA_BIN")
    argv = [
        str(binary), "--host", "127.0.0.1", "--port", "0", "--grpc-port", "0",
        "--grpc-reflection", "--grpc-max-message-bytes", str(MAX_MESSAGE_BYTES),
        "--model-repository", str(repo), "--log-format", "json",
    ]
    proc = subprocess.Popen(argv, cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, errors="replace")
    log = collections.deque(maxlen=200)
    lines = queue.Queue()

    def drain():
        for line in proc.stderr:
            log.append(line)
            lines.put(line)
        lines.put(None)

    threading.Thread(target=drain, name="infera-stderr", daemon=True).start()
    addrs = {}
    deadline = time.monotonic() + ADDR_WAIT_S
    while len(addrs) < 2:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            _stop(proc)
            pytest.fail(f"no listening addresses within {ADDR_WAIT_S:.0f} s:\n{''.join(log)}")
        try:
            line = lines.get(timeout=remaining)
        except queue.Empty:
            continue
        if line is None:
            pytest.fail(f"infera exited (code {proc.wait()}):\n{''.join(log)}")
        try:
            record = json.loads(line)
        except ValueError:
            continue
        for key in ("addr", "grpc_addr"):
            value = record.get(key) if isinstance(record, dict) else None
            if isinstance(value, str) and re.fullmatch(r"[0-9.]+:\d+", value):
                addrs[key] = value
    return _Server(proc, addrs["addr"], addrs["grpc_addr"], log)


def _ready_client(server):
    c = grpcclient.InferenceServerClient(url=server.grpc)
    deadline = time.monotonic() + READY_WAIT_S
    while True:
        if server.proc.poll() is not None:
            pytest.fail(f"infera exited before it was ready:\n{server.stderr_tail()}")
        try:
            if c.is_server_ready():
                return c
        except InferenceServerException:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"not ready within {READY_WAIT_S:.0f} s:\n{server.stderr_tail()}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def server():
    srv = _start(MODELS_DIR)
    try:
        yield srv
    finally:
        _stop(srv.proc)


@pytest.fixture(scope="module")
def client(server):
    c = _ready_client(server)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture(scope="module")
def channel(server, client):
    with grpc.insecure_channel(server.grpc) as ch:
        yield ch


def _input(model, rows, golden=GOLDEN):
    x = np.asarray(rows, dtype=np.float32)
    inp = grpcclient.InferInput(golden[model]["input"], list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    return inp


def _expect_error(call, code):
    with pytest.raises(InferenceServerException) as info:
        call()
    assert info.value.status() == str(code), (info.value.status(), info.value.message())
    return info.value


# ---------------------------------------------------------------------------------------------
# health, readiness and metadata


def test_server_live_ready_and_metadata(client):
    assert client.is_server_live() is True
    assert client.is_server_ready() is True
    meta = client.get_server_metadata(as_json=True)
    assert meta["name"] == "infera", meta
    assert meta["version"], meta


@pytest.mark.parametrize("model", MODELS)
def test_model_ready_and_metadata(client, model):
    assert client.is_model_ready(model) is True
    assert client.is_model_ready(model, model_version="1") is True
    g = GOLDEN[model]
    meta = client.get_model_metadata(model, model_version="1", as_json=True)
    assert meta["name"] == model and meta["platform"] == "onnx_onnxv1", meta
    assert meta["versions"] == ["1"], meta
    assert meta["inputs"] == [
        {"name": g["input"], "datatype": "FP32", "shape": [str(-1), str(len(g["inputs"][0]))]}
    ], meta  # protobuf's JSON writes int64 as strings
    assert sorted(o["name"] for o in meta["outputs"]) == sorted(g["outputs"]), meta


def test_unknown_model_and_version(client):
    err = _expect_error(lambda: client.get_model_metadata("nope"), grpc.StatusCode.NOT_FOUND)
    assert "nope" in err.message()
    _expect_error(lambda: client.get_model_metadata("iris", model_version="9"),
                  grpc.StatusCode.NOT_FOUND)
    _expect_error(lambda: client.is_model_ready("nope"), grpc.StatusCode.NOT_FOUND)


def test_standard_health_service(channel):
    stub = health_pb2_grpc.HealthStub(channel)
    serving = health_pb2.HealthCheckResponse.SERVING
    for service in ["", "inference.GRPCInferenceService", "live"]:
        reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert reply.status == serving, (service, reply)
    with pytest.raises(grpc.RpcError) as info:
        stub.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=5)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_reflection_lists_the_services(channel):
    db = ProtoReflectionDescriptorDatabase(channel)
    services = set(db.get_services())
    assert {"inference.GRPCInferenceService", "grpc.health.v1.Health"} <= services, services


def test_unserved_triton_rpcs_are_unimplemented(channel):
    stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
    with pytest.raises(grpc.RpcError) as info:
        stub.ModelConfig(service_pb2.ModelConfigRequest(name="iris"), timeout=5)
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED


# ---------------------------------------------------------------------------------------------
# inference: raw contents through tritonclient, typed contents through the plain stubs


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("rows", ["all", "one"])
def test_infer_raw_golden(client, model, rows):
    g = GOLDEN[model]
    inputs = g["inputs"] if rows == "all" else g["inputs"][:1]
    result = client.infer(model, [_input(model, inputs)], request_id=f"req-{model}")
    response = result.get_response()
    assert response.model_name == model and response.model_version == "1"
    assert response.id == f"req-{model}"
    assert len(response.raw_output_contents) == len(g["outputs"])
    for name, values in g["outputs"].items():
        _assert_matches(result.as_numpy(name), values[: len(inputs)], g["tolerance"],
                        f"{model}/{name}")


@pytest.mark.parametrize("model", MODELS)
def test_infer_typed_contents_golden(channel, model):
    g = GOLDEN[model]
    x = np.asarray(g["inputs"], dtype=np.float32)
    tensor = service_pb2.ModelInferRequest().InferInputTensor(
        name=g["input"], datatype="FP32", shape=list(x.shape)
    )
    tensor.contents.fp32_contents.extend(x.reshape(-1).tolist())
    request = service_pb2.ModelInferRequest(model_name=model, id="typed", inputs=[tensor])
    reply = service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=10)
    assert reply.id == "typed" and len(reply.raw_output_contents) == 0
    for out in reply.outputs:
        if out.datatype == "INT64":
            got = np.asarray(out.contents.int64_contents, dtype=np.int64)
        else:
            assert out.datatype == "FP32", out.datatype
            got = np.asarray(out.contents.fp32_contents, dtype=np.float32)
        got = got.reshape(list(out.shape))
        _assert_matches(got, g["outputs"][out.name], g["tolerance"], f"{model}/{out.name}")


def test_output_selection(client):
    g = GOLDEN["iris"]
    result = client.infer("iris", [_input("iris", g["inputs"])],
                          outputs=[grpcclient.InferRequestedOutput("probabilities")])
    assert [o.name for o in result.get_response().outputs] == ["probabilities"]
    assert result.as_numpy("label") is None
    _assert_matches(result.as_numpy("probabilities"), g["outputs"]["probabilities"],
                    g["tolerance"], "iris/probabilities")
    err = _expect_error(
        lambda: client.infer("iris", [_input("iris", g["inputs"])],
                             outputs=[grpcclient.InferRequestedOutput("bogus")]),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert "bogus" in err.message()


# ---------------------------------------------------------------------------------------------
# errors


def test_errors_map_to_grpc_codes(client):
    rows = GOLDEN["iris"]["inputs"][:2]
    _expect_error(lambda: client.infer("nope", [_input("iris", rows)]), grpc.StatusCode.NOT_FOUND)
    x = np.asarray(rows, dtype=np.float64)
    wrong_type = grpcclient.InferInput("float_input", list(x.shape), "FP64")
    wrong_type.set_data_from_numpy(x)
    err = _expect_error(lambda: client.infer("iris", [wrong_type]),
                        grpc.StatusCode.INVALID_ARGUMENT)
    assert "FP64" in err.message() and "FP32" in err.message(), err.message()
    five = np.zeros((1, 5), dtype=np.float32)
    wrong_shape = grpcclient.InferInput("float_input", [1, 5], "FP32")
    wrong_shape.set_data_from_numpy(five)
    _expect_error(lambda: client.infer("iris", [wrong_shape]), grpc.StatusCode.INVALID_ARGUMENT)
    text = grpcclient.InferInput("float_input", [2], "BYTES")
    text.set_data_from_numpy(np.array([b"a", b"b"], dtype=np.object_))
    err = _expect_error(lambda: client.infer("iris", [text]), grpc.StatusCode.INVALID_ARGUMENT)
    assert "BYTES" in err.message()


def test_declared_shape_larger_than_the_data_is_refused(channel):
    """A shape that claims 2^20 rows with 16 bytes of data: refused, nothing allocated."""
    tensor = service_pb2.ModelInferRequest().InferInputTensor(
        name="float_input", datatype="FP32", shape=[1 << 20, 4]
    )
    request = service_pb2.ModelInferRequest(
        model_name="iris", inputs=[tensor], raw_input_contents=[b"\0" * 16]
    )
    with pytest.raises(grpc.RpcError) as info:
        service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert dict(info.value.trailing_metadata())["infera-error-type"] == "wrong_shape"


def test_message_over_the_limit_is_refused(client, server):
    x = np.zeros((MAX_MESSAGE_BYTES // 16 + 1, 4), dtype=np.float32)
    _expect_error(lambda: client.infer("iris", [_input("iris", x)]),
                  grpc.StatusCode.OUT_OF_RANGE)
    # The server is still fine afterwards.
    assert client.is_server_ready()


def test_metrics_count_grpc_calls_by_rpc_and_code(client, server):
    import urllib.request

    client.is_server_live()
    with urllib.request.urlopen(f"http://{server.http}/metrics", timeout=5) as r:
        text = r.read().decode()
    assert re.search(
        r'infera_grpc_requests_total\{code="OK",rpc="inference.GRPCInferenceService/ServerLive"\} [1-9]',
        text,
    ), [line for line in text.splitlines() if "grpc" in line][:20]
    assert re.search(
        r'infera_grpc_requests_total\{code="NOT_FOUND",rpc="inference.GRPCInferenceService/ModelInfer"\} [1-9]',
        text,
    )


# ---------------------------------------------------------------------------------------------
# an image-sized model (models/bench: a 3x64x64 CNN), when its repository is present


@pytest.mark.skipif(not (BENCH_DIR / "cnn" / "1" / "model.onnx").is_file(),
                    reason="models/bench not present")
def test_image_model_raw_and_typed():
    golden = {"cnn": _golden(BENCH_DIR, "cnn")}
    srv = _start(BENCH_DIR)
    try:
        c = _ready_client(srv)
        g = golden["cnn"]
        result = c.infer("cnn", [_input("cnn", g["inputs"], golden)])
        for name, values in g["outputs"].items():
            _assert_matches(result.as_numpy(name), values, g["tolerance"], f"cnn/{name}")
        c.close()
    finally:
        _stop(srv.proc)


def test_sigterm_stops_both_servers():
    """One SIGTERM drains and stops the HTTP and the gRPC server: the process exits 0."""
    import signal

    srv = _start(MODELS_DIR)
    try:
        c = _ready_client(srv)
        assert c.is_server_live()
        c.close()
        srv.proc.send_signal(signal.SIGTERM)
        assert srv.proc.wait(timeout=15) == 0, srv.stderr_tail()
    finally:
        _stop(srv.proc)
