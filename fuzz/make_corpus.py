#!/usr/bin/env python3
"""Writes the committed seed corpus of every fuzz target (fuzz/corpus/<target>/<name>).

Input layout (fuzz/src/lib.rs): byte 0 picks the model (0 iris, 1 digits, 2 diabetes,
3 breast-cancer, 4 a model that does not exist); an optional `x-request-id` value ended by two
zero bytes; then the body. v2_binary puts a little-endian u32 (the
Inference-Header-Content-Length value) before the body. grpc_infer takes a serialised
ModelInferRequest as it is. The seeds hold a valid request per
model kind plus the known crash cases: the V2 shape whose element count overflowed into a 562 TB
allocation, and a 60 KB request id with 1024 instances.

    python3 fuzz/make_corpus.py
"""

import json
import struct
from pathlib import Path

HERE = Path(__file__).resolve().parent
IRIS, DIGITS, DIABETES, CANCER, MISSING = range(5)
ROWS = {IRIS: [5.1, 3.5, 1.4, 0.2], DIGITS: [0.0] * 64, DIABETES: [0.01] * 10,
        CANCER: [1.0] * 30}


def j(value) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def with_id(model: int, request_id: bytes, body: bytes) -> bytes:
    return bytes([model]) + request_id + b"\0\0" + body


def v2_input(model: int, rows: int = 1) -> dict:
    row = ROWS[model]
    return {"name": "float_input", "shape": [rows, len(row)], "datatype": "FP32",
            "data": row * rows}


def varint(n: int) -> bytes:
    out = b""
    while n >= 0x80:
        out += bytes([n & 0x7F | 0x80])
        n >>= 7
    return out + bytes([n])


def field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (wire type 2)."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def grpc_seeds() -> dict[str, bytes]:
    """grpc_infer: serialised ModelInferRequests (proto/grpc_predict_v2.proto field numbers)."""
    row = ROWS[IRIS]
    shape = field(3, varint(1) + varint(4))
    typed = field(5, field(6, struct.pack("<4f", *row)))  # contents.fp32_contents, packed
    tensor = field(1, b"float_input") + field(2, b"FP32") + shape
    parameter = field(4, field(1, b"binary_data_output") + field(2, varint(1 << 3) + b"\x01"))
    return {
        "typed": field(1, b"iris") + field(5, tensor + typed) + field(6, field(1, b"label")),
        "raw": field(1, b"iris") + field(5, tensor) + field(7, struct.pack("<4f", *row))
        + parameter,
        # Unpacked int64 contents, a group in an unknown field, merged contents fields.
        "unpacked": field(1, b"iris") + field(5, tensor + field(5, varint(3 << 3) + varint(7)
                                                                 + varint(3 << 3) + varint(9))
                                              + field(5, field(8, b"x")))
        + varint(99 << 3 | 3) + varint(1 << 3) + varint(5) + varint(99 << 3 | 4),
        # The 654 MB case, cut to 64 KiB: empty inputs entries.
        "empty_inputs": field(1, b"iris") + b"\x2a\x00" * 32768,
    }


def seeds() -> dict[str, dict[str, bytes]]:
    crash_v2 = j({"inputs": [{"name": "float_input", "shape": [17592186044416, 4],
                              "datatype": "FP32", "data": [1]}]})
    huge_id = b"r" * 60_000
    iris_1024 = j({"instances": [ROWS[IRIS]] * 1024})
    out: dict[str, dict[str, bytes]] = {t: {} for t in
                                        ("predict_json", "v2_json", "v2_binary", "v1_predict",
                                         "feedback")}
    for m, row in ROWS.items():
        out["predict_json"][f"valid_{m}"] = bytes([m]) + j({"instances": [row, row]})
        out["v1_predict"][f"valid_{m}"] = bytes([m]) + j({"instances": [row]})
        out["v2_json"][f"valid_{m}"] = bytes([m]) + j({"id": "a", "inputs": [v2_input(m, 2)]})
        header = {"inputs": [{"name": "float_input", "shape": [1, len(row)], "datatype": "FP32",
                              "parameters": {"binary_data_size": 4 * len(row)}}],
                  "outputs": [{"name": "probabilities" if m != DIABETES else "variable",
                               "parameters": {"binary_data": True}}]}
        head = j(header)
        data = struct.pack(f"<{len(row)}f", *row)
        out["v2_binary"][f"valid_{m}"] = bytes([m]) + struct.pack("<I", len(head)) + head + data
    out["predict_json"]["named_features"] = bytes([IRIS]) + j(
        {"instances": [{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4,
                        "petal_width": 0.2}], "id": "abc"})
    out["predict_json"]["crash_huge_request_id"] = with_id(IRIS, huge_id, iris_1024)
    out["predict_json"]["deep_nesting"] = bytes([IRIS]) + b'{"instances":' + b"[" * 4096 + \
        b"]" * 4096 + b"}"
    out["v2_json"]["crash_huge_shape"] = bytes([IRIS]) + crash_v2
    out["v2_json"]["crash_huge_request_id"] = with_id(
        IRIS, huge_id, j({"inputs": [v2_input(IRIS, 1024)]}))
    out["v2_json"]["int_typed"] = bytes([IRIS]) + j(
        {"inputs": [{"name": "float_input", "shape": [1, 4], "datatype": "INT64",
                     "data": [[1, 2, 3, 4]]}], "parameters": {"binary_data_output": True}})
    big = j({"inputs": [{"name": "float_input", "shape": [17592186044416, 4], "datatype": "FP32",
                         "parameters": {"binary_data_size": 16}}]})
    out["v2_binary"]["crash_huge_shape"] = bytes([IRIS]) + struct.pack("<I", len(big)) + big + \
        b"\0" * 16
    out["v2_binary"]["length_past_body"] = bytes([IRIS]) + struct.pack("<I", 0xFFFFFFFF) + big
    out["v1_predict"]["crash_huge_request_id"] = with_id(IRIS, huge_id, iris_1024)
    out["v1_predict"]["wrong_target"] = bytes([MISSING]) + j({"instances": [[1, 2]]})
    fb = {"feedback": [{"id": "3f2a9c1e-000000000001/0", "label": "setosa"},
                       {"id": "3f2a9c1e-000000000001/1", "class_index": 2},
                       {"id": "x", "value": 1.5}]}
    out["feedback"]["mixed"] = bytes([IRIS]) + j(fb)
    out["feedback"]["regression"] = bytes([DIABETES]) + j({"feedback": [{"id": "a", "value": 3}]})
    out["feedback"]["crash_huge_request_id"] = with_id(
        CANCER, huge_id, j({"feedback": [{"id": "y" * 200, "class_index": 1}] * 1024}))
    out["grpc_infer"] = grpc_seeds()
    return out


def main() -> None:
    for target, files in seeds().items():
        directory = HERE / "corpus" / target
        directory.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            (directory / name).write_bytes(data)


if __name__ == "__main__":
    main()
