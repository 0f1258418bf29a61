#!/usr/bin/env python3
"""Generates the zoo's built models (nothing downloaded, nothing committed but this script).

- `encoder`: a small transformer encoder written with the onnx helper API, weights drawn from a
  seeded normal distribution. Inputs `input_ids` and `attention_mask`, both INT64
  `[batch, sequence]`; outputs `last_hidden_state` `[batch, sequence, 32]` and `pooled`
  `[batch, 32]` (mean over the unmasked tokens, then tanh). One attention layer (single head,
  additive mask), a ReLU feed-forward block and two layer norms written as primitive ops.
- `encoder-fp16`: the same graph with its weight matrices stored as FP16, each cast to FP32
  where it is used.
- `encoder-int8`: the same graph through onnxruntime's `quantize_dynamic` (weights int8,
  activations quantised at run time: DynamicQuantizeLinear + MatMulInteger).
- `cnn`: a small image classifier (two Conv + Relu, MaxPool, GlobalAveragePool, a dense layer and
  Softmax), input `image` FP32 `[batch, 3, height, width]`, outputs `logits` and `probabilities`.
- `cnn-fp16`: the same network with FP16 inputs, weights, arithmetic and outputs.
- `cnn-qdq`, `cnn-qop`: `cnn` through onnxruntime's static quantisation (calibrated on seeded
  random images; uint8 activations, int8 weights), in the QDQ format (QuantizeLinear /
  DequantizeLinear around float Conv and MatMul, per-channel weights) and the QOperator format
  (QLinearConv, QLinearMatMul).

All go into the zoo model repository, `<out>/<name>/1/model.onnx`, beside the fetched models.

    python3 tests/zoo/generate.py [--out DIR]      # needs onnx and onnxruntime (the zoo venv)
"""

import argparse
import os
import tempfile
import zlib
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

VOCAB, HIDDEN, FFN, MAX_POS = 1000, 32, 64, 512
OPSET = 17


def layer_norm(nodes, inits, x, prefix):
    """LayerNorm over the last axis from primitive ops (ReduceMean, Sub, Mul, Sqrt, Div)."""
    rng = np.random.default_rng(zlib.crc32(prefix.encode()))
    inits += [
        numpy_helper.from_array(np.array(1e-5, np.float32), f"{prefix}.eps"),
        numpy_helper.from_array((1 + 0.1 * rng.standard_normal(HIDDEN)).astype(np.float32),
                                f"{prefix}.gamma"),
        numpy_helper.from_array((0.1 * rng.standard_normal(HIDDEN)).astype(np.float32),
                                f"{prefix}.beta"),
    ]
    p = prefix
    nodes += [
        helper.make_node("ReduceMean", [x], [f"{p}.mean"], axes=[-1], keepdims=1),
        helper.make_node("Sub", [x, f"{p}.mean"], [f"{p}.centred"]),
        helper.make_node("Mul", [f"{p}.centred", f"{p}.centred"], [f"{p}.sq"]),
        helper.make_node("ReduceMean", [f"{p}.sq"], [f"{p}.var"], axes=[-1], keepdims=1),
        helper.make_node("Add", [f"{p}.var", f"{p}.eps"], [f"{p}.var_eps"]),
        helper.make_node("Sqrt", [f"{p}.var_eps"], [f"{p}.std"]),
        helper.make_node("Div", [f"{p}.centred", f"{p}.std"], [f"{p}.normed"]),
        helper.make_node("Mul", [f"{p}.normed", f"{p}.gamma"], [f"{p}.scaled"]),
        helper.make_node("Add", [f"{p}.scaled", f"{p}.beta"], [f"{p}.out"]),
    ]
    return f"{p}.out"


def encoder() -> onnx.ModelProto:
    rng = np.random.default_rng(12)

    def weight(name, *shape, scale=None):
        scale = scale if scale is not None else 1 / np.sqrt(shape[0])
        return numpy_helper.from_array((scale * rng.standard_normal(shape)).astype(np.float32),
                                       name)

    inits = [
        weight("tok_emb", VOCAB, HIDDEN, scale=1.0),
        weight("pos_emb", MAX_POS, HIDDEN, scale=0.1),
        weight("wq", HIDDEN, HIDDEN), weight("wk", HIDDEN, HIDDEN), weight("wv", HIDDEN, HIDDEN),
        weight("wo", HIDDEN, HIDDEN), weight("w1", HIDDEN, FFN), weight("w2", FFN, HIDDEN),
        numpy_helper.from_array(np.array(0, np.int64), "zero_s"),
        numpy_helper.from_array(np.array(1, np.int64), "one_s"),
        numpy_helper.from_array(np.array(1, np.int64), "axis1"),
        numpy_helper.from_array(np.array([1], np.int64), "axes1"),
        numpy_helper.from_array(np.array(1.0, np.float32), "one_f"),
        numpy_helper.from_array(np.array(-10000.0, np.float32), "neg_big"),
        numpy_helper.from_array(np.array(1 / np.sqrt(HIDDEN), np.float32), "inv_sqrt_d"),
    ]
    nodes = [
        # token and position embeddings
        helper.make_node("Gather", ["tok_emb", "input_ids"], ["tok"], axis=0),
        helper.make_node("Shape", ["input_ids"], ["ids_shape"]),
        helper.make_node("Gather", ["ids_shape", "axis1"], ["seq_len"], axis=0),
        helper.make_node("Range", ["zero_s", "seq_len", "one_s"], ["positions"]),
        helper.make_node("Gather", ["pos_emb", "positions"], ["pos"], axis=0),
        helper.make_node("Add", ["tok", "pos"], ["emb"]),
        # additive attention mask [batch, 1, sequence]
        helper.make_node("Cast", ["attention_mask"], ["mask_f"], to=TensorProto.FLOAT),
        helper.make_node("Sub", ["one_f", "mask_f"], ["mask_inv"]),
        helper.make_node("Mul", ["mask_inv", "neg_big"], ["mask_add2"]),
        helper.make_node("Unsqueeze", ["mask_add2", "axes1"], ["mask_add"]),
        # single-head self-attention
        helper.make_node("MatMul", ["emb", "wq"], ["q"]),
        helper.make_node("MatMul", ["emb", "wk"], ["k"]),
        helper.make_node("MatMul", ["emb", "wv"], ["v"]),
        helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 2, 1]),
        helper.make_node("MatMul", ["q", "kt"], ["scores_raw"]),
        helper.make_node("Mul", ["scores_raw", "inv_sqrt_d"], ["scores_scaled"]),
        helper.make_node("Add", ["scores_scaled", "mask_add"], ["scores"]),
        helper.make_node("Softmax", ["scores"], ["probs"], axis=-1),
        helper.make_node("MatMul", ["probs", "v"], ["ctx"]),
        helper.make_node("MatMul", ["ctx", "wo"], ["attn"]),
        helper.make_node("Add", ["emb", "attn"], ["res1"]),
    ]
    h1 = layer_norm(nodes, inits, "res1", "ln1")
    nodes += [
        helper.make_node("MatMul", [h1, "w1"], ["ff1"]),
        helper.make_node("Relu", ["ff1"], ["ff1_act"]),
        helper.make_node("MatMul", ["ff1_act", "w2"], ["ff2"]),
        helper.make_node("Add", [h1, "ff2"], ["res2"]),
    ]
    h2 = layer_norm(nodes, inits, "res2", "ln2")
    nodes += [
        helper.make_node("Identity", [h2], ["last_hidden_state"]),
        # masked mean over the sequence, then tanh
        helper.make_node("Unsqueeze", ["mask_f", "axes_last"], ["mask_col"]),
        helper.make_node("Mul", [h2, "mask_col"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "axes1"], ["summed"], keepdims=0),
        helper.make_node("ReduceSum", ["mask_f", "axes1"], ["count_raw"], keepdims=1),
        helper.make_node("Max", ["count_raw", "one_f"], ["count"]),
        helper.make_node("Div", ["summed", "count"], ["mean"]),
        helper.make_node("Tanh", ["mean"], ["pooled"]),
    ]
    inits.append(numpy_helper.from_array(np.array([-1], np.int64), "axes_last"))
    ids = helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"])
    mask = helper.make_tensor_value_info("attention_mask", TensorProto.INT64,
                                         ["batch", "sequence"])
    outs = [
        helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT,
                                      ["batch", "sequence", HIDDEN]),
        helper.make_tensor_value_info("pooled", TensorProto.FLOAT, ["batch", HIDDEN]),
    ]
    graph = helper.make_graph(nodes, "encoder", [ids, mask], outs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="infera tests/zoo/generate.py")
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def cnn(dtype=np.float32, onnx_type=TensorProto.FLOAT) -> onnx.ModelProto:
    """A small CNN classifier with variable batch, height and width, in `dtype` throughout."""
    rng = np.random.default_rng(21)

    def weight(name, *shape):
        scale = np.sqrt(2.0 / np.prod(shape[1:]))
        return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(dtype), name)

    def bias(name, n):
        return numpy_helper.from_array((0.1 * rng.standard_normal(n)).astype(dtype), name)

    inits = [weight("conv1.w", 8, 3, 3, 3), bias("conv1.b", 8),
             weight("conv2.w", 16, 8, 3, 3), bias("conv2.b", 16),
             weight("fc.w", 16, 10), bias("fc.b", 10)]
    nodes = [
        helper.make_node("Conv", ["image", "conv1.w", "conv1.b"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "conv2.w", "conv2.b"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("GlobalAveragePool", ["r2"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("MatMul", ["flat", "fc.w"], ["dense"]),
        helper.make_node("Add", ["dense", "fc.b"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
    ]
    inputs = [helper.make_tensor_value_info("image", onnx_type, ["batch", 3, "height", "width"])]
    outputs = [helper.make_tensor_value_info("logits", onnx_type, ["batch", 10]),
               helper.make_tensor_value_info("probabilities", onnx_type, ["batch", 10])]
    graph = helper.make_graph(nodes, "cnn", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="infera tests/zoo/generate.py")
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def quantised_cnn(tmp: Path, data: bytes) -> dict:
    """`cnn` statically quantised by onnxruntime in the QDQ and QOperator formats."""
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_static)

    class Images(CalibrationDataReader):
        def __init__(self):
            rng = np.random.default_rng(5)
            self.batches = iter([{"image": rng.standard_normal((1, 3, 32, 32), np.float32)}
                                 for _ in range(16)])

        def get_next(self):
            return next(self.batches, None)

    src = tmp / "cnn.onnx"
    src.write_bytes(data)
    out = {}
    for name, fmt in (("cnn-qdq", QuantFormat.QDQ), ("cnn-qop", QuantFormat.QOperator)):
        dst = tmp / f"{name}.onnx"
        quantize_static(str(src), str(dst), Images(), quant_format=fmt,
                        op_types_to_quantize=["Conv", "MatMul"],
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        per_channel=fmt == QuantFormat.QDQ)
        out[name] = dst.read_bytes()
    return out


def fp16_weights(model: onnx.ModelProto) -> onnx.ModelProto:
    """The same graph with every FP32 weight stored as FP16 and cast back to FP32 where used
    (how FP16 exports with FP32 inputs and outputs keep their weights)."""
    half = onnx.ModelProto()
    half.CopyFrom(model)
    graph = half.graph
    casts = []
    for init in graph.initializer:
        if init.data_type != TensorProto.FLOAT or len(init.dims) < 2:
            continue
        values = numpy_helper.to_array(init).astype(np.float16)
        name = init.name
        init.CopyFrom(numpy_helper.from_array(values, f"{name}.fp16"))
        casts.append(helper.make_node("Cast", [f"{name}.fp16"], [name], to=TensorProto.FLOAT))
    nodes = casts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(half, full_check=True)
    return half


def write(out: Path, name: str, data: bytes) -> None:
    target = out / name / "1" / "model.onnx"
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists() or target.read_bytes() != data:
        target.write_bytes(data)
    print(f"{name}: generated ({len(data)} bytes)")


def generate(out: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = encoder()
    data = model.SerializeToString()
    write(out, "encoder", data)
    write(out, "encoder-fp16", fp16_weights(model).SerializeToString())
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "encoder.onnx", Path(tmp) / "encoder-int8.onnx"
        src.write_bytes(data)
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8,
                         op_types_to_quantize=["MatMul"])
        write(out, "encoder-int8", dst.read_bytes())
        image_model = cnn().SerializeToString()
        write(out, "cnn", image_model)
        write(out, "cnn-fp16", cnn(np.float16, TensorProto.FLOAT16).SerializeToString())
        for name, quantised in quantised_cnn(Path(tmp), image_model).items():
            write(out, name, quantised)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = Path(os.environ.get("CARGO_TARGET_DIR", "/var/tmp/infera-target")) / "zoo"
    parser.add_argument("--out", type=Path, default=default)
    generate(parser.parse_args().out)


if __name__ == "__main__":
    main()
