"""The container's gRPC port, called with grpcio's generic unary calls and hand-encoded protobuf
messages (so no generated stubs are needed): the health service, ServerLive and ModelReady of
inference.GRPCInferenceService, a ModelInfer on iris, and UNAUTHENTICATED without the API key."""

import os
import struct

import grpc

SERVICE = "/inference.GRPCInferenceService/"


def varint(n):
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(number, payload):
    """A length-delimited field (strings, messages, packed repeated scalars)."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def infer_request(model, input_name, rows):
    """ModelInferRequest with one FP32 input in typed contents (fp32_contents = field 6)."""
    shape = b"".join(varint(n) for n in (len(rows), len(rows[0])))
    floats = b"".join(struct.pack("<f", v) for row in rows for v in row)
    tensor = (
        field(1, input_name.encode())
        + field(2, b"FP32")
        + field(3, shape)
        + field(5, field(6, floats))
    )
    return field(1, model.encode()) + field(5, tensor)


def fields(message):
    """Top-level (number, payload) pairs of length-delimited and varint fields."""
    out, i = [], 0
    while i < len(message):
        key, shift = 0, 0
        while True:
            b = message[i]
            i += 1
            key |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        number, wire = key >> 3, key & 7
        value, shift = 0, 0
        while True:
            b = message[i]
            i += 1
            value |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        if wire == 2:
            out.append((number, message[i : i + value]))
            i += value
        elif wire == 0:
            out.append((number, value))
        else:
            raise ValueError(f"unexpected wire type {wire}")
    return out


def check(addr, fail):
    channel = grpc.insecure_channel(addr)
    grpc.channel_ready_future(channel).result(timeout=20)
    raw = lambda path: channel.unary_unary(
        path, request_serializer=lambda b: b, response_deserializer=lambda b: b
    )
    key = os.environ.get("INFERA_TEST_KEY", "")
    auth = [("authorization", f"Bearer {key}")]
    # grpc.health.v1: status SERVING (1) for the whole server, without a key.
    health = raw("/grpc.health.v1.Health/Check")(b"", timeout=5)
    if fields(health) != [(1, 1)]:
        fail(f"gRPC health answered {health!r}, not SERVING")
    if fields(raw(SERVICE + "ServerLive")(b"", metadata=auth, timeout=5)) != [(1, 1)]:
        fail("gRPC ServerLive is not live")
    ready = raw(SERVICE + "ModelReady")(field(1, b"iris"), metadata=auth, timeout=5)
    if fields(ready) != [(1, 1)]:
        fail(f"gRPC ModelReady(iris) answered {ready!r}")
    request = infer_request("iris", "float_input", [[5.1, 3.5, 1.4, 0.2]])
    answer = dict((n, v) for n, v in fields(raw(SERVICE + "ModelInfer")(request, metadata=auth, timeout=5)) if n == 1)
    if answer.get(1) != b"iris":
        fail(f"gRPC ModelInfer(iris) answered model {answer!r}")
    try:
        raw(SERVICE + "ModelReady")(field(1, b"iris"), timeout=5)
        fail("gRPC ModelReady without the key was answered")
    except grpc.RpcError as e:
        if e.code() != grpc.StatusCode.UNAUTHENTICATED:
            fail(f"gRPC ModelReady without the key: {e.code()}, not UNAUTHENTICATED")
    print(
        f"  ok    gRPC {addr}: health SERVING, ServerLive, ModelReady(iris), ModelInfer(iris), "
        "UNAUTHENTICATED without the key"
    )
