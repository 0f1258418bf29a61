#!/usr/bin/env python3
"""Build the benchmark-only model repository (models/bench/).

BENCHMARK ONLY.  The one model here, `cnn`, is a small "patchify" convolutional
network with RANDOM weights (numpy seed fixed, so the files are deterministic).
It has never seen data: its predictions are meaningless.  It exists so that load
benchmarks have a model whose per-request cost includes real compute instead of
only HTTP and JSON, which the tiny tabular models in models/ cannot show, and
whose cost per image drops when the server batches requests: at batch 1 most of
the time goes to the 2048->256 dense layer, a matrix-vector product that streams
its 2 MB of weights for one image, plus per-operator overhead; at batch 32 the
same weights serve 32 images in one matrix-matrix product.  The convolutions
are kept light (non-overlapping patches, no padding, 8 and 32 channels, 0.16 M
multiply-adds) because their cost per image does not shrink with the batch.
Measured on the project's 2-core machine, one thread, microseconds per image
(tract: criterion, `cargo bench --bench engine -- bench_cnn_run`, 2-3 runs;
onnxruntime: `--time`):

    batch                    1          8         32
    tract 0.23.9        86-103      52-72      34-35
    onnxruntime 1.32        67         23         19

The tract batch-32 figure needs glibc's malloc thresholds pinned in the bench
process (MALLOC_MMAP_THRESHOLD_=268435456 MALLOC_TRIM_THRESHOLD_=1073741824):
with the defaults, depending on the allocator's state, each batch-32 run can
page-fault a few MB of fresh memory and take ~3.3 ms instead of ~1.1 ms
(~1.5 M minor faults in one criterion run against ~4 k).  The same artifact made
the previous 3x3-conv version of this model look slower per image at batch
8/32 (~1.5 ms) than at batch 1 (~0.8 ms); with the thresholds pinned it cost a
flat ~0.8 ms per image at every batch size (tract's Python bindings, 0.23.9).

Why these sizes: in tract the dense layer at batch 32 already runs near the
core's peak (~12 us per image), while at batch 1 the same layer is a
memory-bound matrix-vector product (~35-40 us), so batching saves at most ~3x on
it; the convolutions add a fixed cost per image (im2col of the input alone is
~10 us), so they must stay small.  Tried first (same criterion bench, malloc
pinned): convolutions 3->32->64 with a 4096->128 dense layer (1.4 M
multiply-adds) took 118-135 us at batch 1 and 63 us per image at batch 32
(ratio ~0.5); 3->16->64 with 4096->128 took 101-105 us and 50 us (~0.48).
This one gets 0.34-0.40.  The dense layer is capped by the file size (~2 MB of
float32 weights).

Written (same layout and file formats as models/make_models.py):

    <out>/repository.toml          default_model = "cnn", with a comment
    <out>/cnn/model.toml           model card (task = "classification")
    <out>/cnn/1/model.onnx         the graph, built with onnx.helper (no torch)
    <out>/cnn/1/golden.json        3 random images + onnxruntime's outputs

models/bench/ holds its own repository.toml, so infera does not serve it when
it scans models/ (a nested directory with a repository.toml is a separate
repository, like models/conformance/).  Serve it on purpose:

    infera serve --model-repository models/bench
    infera check models/bench

The graph (opset 13, only operators tract-onnx 0.23 runs natively):

    image  float32 [N, 3, 64, 64]                    (N: symbolic batch dimension)
    Conv 3->8, 4x4, stride 4        + Relu           -> [N, 8, 16, 16]
    Conv 8->32, 2x2, stride 2       + Relu           -> [N, 32, 8, 8]
    Flatten                                          -> [N, 2048]
    Gemm 2048->256                  + Relu           -> [N, 256]
    Gemm 256->10                                     -> logits [N, 10]
    probabilities = Softmax(logits, axis=1)  float32 [N, 10]
    label         = ArgMax(logits, axis=1, keepdims=0)  int64 [N]

About 0.69 M multiply-adds per image (0.16 M in the convolutions, 0.53 M in the
dense layers) and 529 k parameters (~2.1 MB file).

Weights are He-initialised (normal, std sqrt(2 / fan_in)) so activations keep
their scale through the ReLUs; biases are small normal values.  Every activation
after a ReLU is positive, so with plain random weights the common level of the
input (not its pattern) would decide the answer and nearly every image would get
the same label.  So the first convolution's bias also subtracts 0.5 * (sum of its
weights), as if the input were centred to -0.5..0.5, and each later layer's
weights have zero mean over their inputs (zero_mean), which cancels the common
level.  The classifier's weights are scaled x12 and its bias is wider, so the 10
probabilities are not all ~0.1 and every golden instance's top class wins by a
clear margin (checked below: a near-tie would make the label depend on float
rounding, and tract and onnxruntime round differently).

golden.json inputs are noise images with values k/100, k in 0..100 (seeded):
two decimals keep the file small, and parsing "0.37" as a double and rounding
it to float32 (what infera and numpy both do) gives the exact input onnxruntime
saw.  Each instance is nested [3][64][64], the form POST /predict takes.

How to run (from the repository root):

    python3 -m venv .venv
    .venv/bin/pip install -r models/requirements.txt
    .venv/bin/python models/make_bench_models.py             # writes models/bench/
    .venv/bin/python models/make_bench_models.py --out /tmp/b
    .venv/bin/python models/make_bench_models.py --time      # also time onnxruntime

With the versions pinned in models/requirements.txt, re-running reproduces the
committed files byte for byte.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

SEED = 20240601  # weights
GOLDEN_SEED = SEED + 29  # golden inputs
OPSET = 13
NAME = "cnn"
INPUT = "image"
CHANNELS, HEIGHT, WIDTH = 3, 64, 64
N_CLASSES = 10
K1, K2 = 4, 2  # kernel = stride of the two patch convolutions: 64x64 -> 16x16 -> 8x8
C1, C2 = 8, 32  # their output channels
FEATURES = C2 * (HEIGHT // (K1 * K2)) * (WIDTH // (K1 * K2))  # 32 * 8 * 8 = 2048 after Flatten
HIDDEN = 256
N_GOLDEN = 3
TOLERANCE = 1e-5
# Smallest accepted gap between the two largest logits of a golden instance.
MIN_LOGIT_MARGIN = 1e-2
# Operators tract-onnx 0.23 implements; anything else would fail to load.
ALLOWED_OPS = {"Conv", "Relu", "Flatten", "Gemm", "Softmax", "ArgMax"}

REPOSITORY_TOML = """\
# BENCHMARK-ONLY repository, generated by models/make_bench_models.py.
# Its model has random weights: its predictions are meaningless.  Because this
# directory holds its own repository.toml, infera skips it when it serves
# models/; serve it explicitly with `infera serve --model-repository models/bench`.
default_model = "cnn"
"""

CARD = {
    "description": (
        "Benchmark-only CNN with random weights, predictions are meaningless. "
        "Takes a 3x64x64 float image (values 0..1, channels first) and returns 10 class "
        "probabilities; a patchify CNN: 4x4-stride-4 convolution (8 channels), 2x2-stride-2 "
        "convolution (32 channels), flatten to 2048, dense 2048->256 and 256->10, about 0.69 M "
        "multiply-adds per image and 0.53 M parameters. Most of its batch-1 cost is the 2 MB "
        "dense layer (a matrix-vector product), so batching requests makes it much cheaper "
        "per image. Used to load-test serving and dynamic batching with real per-request compute."
    ),
    "task": "classification",
    "owner": "infera benchmarks <ml-team@example.com>",
    "license": "CC0-1.0 (random weights generated by models/make_bench_models.py)",
    "labels": [str(i) for i in range(N_CLASSES)],
    "tags": ["benchmark", "random-weights", "image", "cnn"],
    "outputs": {"label": "label", "probabilities": "probabilities"},
}


# --------------------------------------------------------------------------
# The graph
# --------------------------------------------------------------------------


def he(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int) -> np.ndarray:
    return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)


def zero_mean(w: np.ndarray) -> np.ndarray:
    """Each output unit's weights minus their mean over its inputs (all axes but the first)."""
    return (w - w.mean(axis=tuple(range(1, w.ndim)), keepdims=True)).astype(np.float32)


def build_model() -> onnx.ModelProto:
    rng = np.random.default_rng(SEED)
    inits: list[onnx.TensorProto] = []
    nodes: list[onnx.NodeProto] = []

    def init(name: str, value: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(value.astype(np.float32), name))
        return name

    def patch_conv_relu(
        x: str, cin: int, cout: int, k: int, idx: int, bias_scale: float, center: float = 0.0,
        zero_mean_weights: bool = False,
    ) -> str:
        """Conv with kernel k and stride k (non-overlapping k x k patches, no padding) + Relu."""
        w_np = he(rng, (cout, cin, k, k), cin * k * k)
        if zero_mean_weights:
            w_np = zero_mean(w_np)
        b_np = rng.standard_normal(cout) * bias_scale - center * w_np.sum(axis=(1, 2, 3))
        w = init(f"conv{idx}.weight", w_np)
        b = init(f"conv{idx}.bias", b_np)
        nodes.append(
            helper.make_node(
                "Conv",
                [x, w, b],
                [f"conv{idx}"],
                name=f"conv{idx}",
                kernel_shape=[k, k],
                pads=[0, 0, 0, 0],
                strides=[k, k],
            )
        )
        nodes.append(helper.make_node("Relu", [f"conv{idx}"], [f"relu{idx}"], name=f"relu{idx}"))
        return f"relu{idx}"

    x = patch_conv_relu(INPUT, CHANNELS, C1, K1, 1, bias_scale=0.1, center=0.5)  # [N, 8, 16, 16]
    x = patch_conv_relu(x, C1, C2, K2, 2, bias_scale=0.05, zero_mean_weights=True)  # [N, 32, 8, 8]
    nodes.append(helper.make_node("Flatten", [x], ["features"], name="flatten", axis=1))
    fc1_w = init("fc1.weight", zero_mean(he(rng, (HIDDEN, FEATURES), FEATURES)))
    fc1_b = init("fc1.bias", rng.standard_normal(HIDDEN) * 0.05)
    nodes.append(helper.make_node("Gemm", ["features", fc1_w, fc1_b], ["fc1"], name="fc1", transB=1))
    nodes.append(helper.make_node("Relu", ["fc1"], ["hidden"], name="relu_fc1"))
    # The classifier's weights are scaled up (x12 He) so the logits differ by a few units.
    fc2_w = init("fc2.weight", zero_mean(he(rng, (N_CLASSES, HIDDEN), HIDDEN)) * 12.0)
    fc2_b = init("fc2.bias", rng.standard_normal(N_CLASSES) * 0.5)
    nodes.append(helper.make_node("Gemm", ["hidden", fc2_w, fc2_b], ["logits"], name="fc2", transB=1))
    nodes.append(helper.make_node("Softmax", ["logits"], ["probabilities"], name="softmax", axis=1))
    nodes.append(helper.make_node("ArgMax", ["logits"], ["label"], name="argmax", axis=1, keepdims=0))

    graph = helper.make_graph(
        nodes,
        "bench_cnn",
        inputs=[helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["N", CHANNELS, HEIGHT, WIDTH])],
        outputs=[
            helper.make_tensor_value_info("label", TensorProto.INT64, ["N"]),
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", N_CLASSES]),
        ],
        initializer=inits,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="infera models/make_bench_models.py",
        doc_string="BENCHMARK ONLY: random weights, predictions are meaningless.",
    )
    model.ir_version = 8  # opset 13 era; readable by every onnx/onnxruntime/tract in use
    onnx.checker.check_model(model, full_check=True)
    ops = {n.op_type for n in model.graph.node}
    assert ops <= ALLOWED_OPS, ops - ALLOWED_OPS
    return model


# --------------------------------------------------------------------------
# onnxruntime: reference outputs and timing
# --------------------------------------------------------------------------


def ort_session(model: onnx.ModelProto) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def golden_inputs() -> np.ndarray:
    """N_GOLDEN images with values k/100 (exactly what infera decodes from the JSON).

    Each channel of each image is uniform noise in its own random sub-range of 0..1: plain
    uniform noise over 0..1 looks the same to the network, so every image would get the
    same answer.  GOLDEN_SEED is one whose 3 images get 3 different labels, each with a
    top-2 log-probability gap above 1.2."""
    rng = np.random.default_rng(GOLDEN_SEED)
    lo_hi = np.sort(rng.integers(0, 101, size=(N_GOLDEN, CHANNELS, 2)), axis=2)
    k = np.stack(
        [np.stack([rng.integers(lo, hi + 1, size=(HEIGHT, WIDTH)) for lo, hi in img]) for img in lo_hi]
    )
    # k / 100 in double is the double nearest to "0.37" (IEEE division is correctly rounded),
    # so this is exactly the float32 that infera gets from the JSON text "0.37".
    return (k / 100).astype(np.float32)


def check_reference(sess: ort.InferenceSession, x: np.ndarray) -> dict[str, np.ndarray]:
    label, proba = sess.run(["label", "probabilities"], {INPUT: x})
    assert label.dtype == np.int64 and label.shape == (len(x),), (label.dtype, label.shape)
    assert proba.dtype == np.float32 and proba.shape == (len(x), N_CLASSES), (proba.dtype, proba.shape)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(label, proba.argmax(axis=1))
    # Batch invariance and a clear winner for every instance.
    logp = np.log(proba.astype(np.float64))
    top2 = np.sort(logp, axis=1)[:, -2:]
    margin = (top2[:, 1] - top2[:, 0]).min()
    assert margin > MIN_LOGIT_MARGIN, f"top-2 logit margin {margin} too small"
    for i in range(len(x)):
        l1, p1 = sess.run(["label", "probabilities"], {INPUT: x[i : i + 1]})
        assert l1[0] == label[i]
        np.testing.assert_allclose(p1[0], proba[i], rtol=0, atol=1e-6)
    return {"label": label, "probabilities": proba}


def time_ort(sess: ort.InferenceSession, batch: int, seconds: float = 2.0) -> float:
    """Mean onnxruntime time per image (ms) at the given batch size, one thread."""
    x = np.random.default_rng(0).random((batch, CHANNELS, HEIGHT, WIDTH), dtype=np.float32)
    for _ in range(5):
        sess.run(None, {INPUT: x})
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        sess.run(None, {INPUT: x})
        n += 1
    return (time.perf_counter() - t0) / (n * batch) * 1e3


# --------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------


def toml_value(v) -> str:
    if isinstance(v, str):
        return json.dumps(v)  # JSON string escapes are valid TOML basic-string escapes
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    raise TypeError(type(v))


def render_manifest() -> str:
    lines = [
        f"# Model card for '{NAME}'. Generated by models/make_bench_models.py -- do not edit by hand.",
        "# BENCHMARK ONLY: random weights, no training data, no evaluation.",
        "# Versions live in numbered sub-directories (1/model.onnx); golden.json beside each",
        f"# model holds {N_GOLDEN} random images and the onnxruntime reference outputs.",
        "",
    ]
    for key in ("description", "task", "owner", "license", "labels", "tags"):
        lines.append(f"{key} = {toml_value(CARD[key])}")
    lines += ["", "[outputs]"]
    for key, val in CARD["outputs"].items():
        lines.append(f"{key} = {toml_value(val)}")
    return "\n".join(lines) + "\n"


def render_golden(x: np.ndarray, ref: dict[str, np.ndarray]) -> str:
    def dumps(v) -> str:
        return json.dumps(v, separators=(", ", ": "))

    def row(r: np.ndarray) -> str:  # one image row of 64 values k/100, written "0.37"
        return "[" + ", ".join(repr(float(f"{float(v):.2f}")) for v in r) + "]"

    out = ['{"input": ' + dumps(INPUT) + ",", ' "inputs": [']
    for i, img in enumerate(x):
        out.append("   [")
        for c, ch in enumerate(img):
            out.append("    [")
            out += ["     " + row(r) + ("," if h < HEIGHT - 1 else "") for h, r in enumerate(ch)]
            out.append("    ]" + ("," if c < CHANNELS - 1 else ""))
        out.append("   ]" + ("," if i < len(x) - 1 else ""))
    out.append("  ],")
    out.append(' "outputs": {')
    out.append(f'   "label": {dumps([int(v) for v in ref["label"]])},')
    out.append('   "probabilities": [')
    proba = [[float(np.float32(v)) for v in r] for r in ref["probabilities"]]
    out += ["     " + dumps(r) + ("," if i < len(proba) - 1 else "") for i, r in enumerate(proba)]
    out.append("   ]")
    out.append("  },")
    out.append(f' "tolerance": {dumps(TOLERANCE)}}}')
    text = "\n".join(out) + "\n"
    # Sanity: valid JSON whose inputs are exactly the float32 images onnxruntime saw.
    parsed = json.loads(text)
    assert list(parsed) == ["input", "inputs", "outputs", "tolerance"]
    np.testing.assert_array_equal(np.array(parsed["inputs"], dtype=np.float32), x)
    return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--out",
        default=str(Path(__file__).resolve().parent / "bench"),
        help="output directory (default: models/bench/)",
    )
    ap.add_argument("--time", action="store_true", help="also time onnxruntime at batch 1 and 32")
    args = ap.parse_args()
    out = Path(args.out)

    print(f"numpy {np.__version__}, onnx {onnx.__version__}, onnxruntime {ort.__version__}")
    model = build_model()
    sess = ort_session(model)
    x = golden_inputs()
    ref = check_reference(sess, x)
    assert len(set(ref["label"].tolist())) == N_GOLDEN, f"golden labels not distinct: {ref['label']}"

    d = out / NAME
    (d / "1").mkdir(parents=True, exist_ok=True)
    (out / "repository.toml").write_text(REPOSITORY_TOML, encoding="utf-8")
    (d / "model.toml").write_text(render_manifest(), encoding="utf-8")
    (d / "1" / "model.onnx").write_bytes(model.SerializeToString())
    (d / "1" / "golden.json").write_text(render_golden(x, ref), encoding="utf-8")

    params = sum(int(np.prod(t.dims)) for t in model.graph.initializer)
    size = (d / "1" / "model.onnx").stat().st_size
    print(f"[{NAME}] {size} bytes, {params} parameters, opset {OPSET}")
    print(f"  ops: {', '.join(sorted({n.op_type for n in model.graph.node}))}")
    print(
        f"  golden labels {ref['label'].tolist()}, top probabilities "
        f"{[round(float(p), 3) for p in ref['probabilities'].max(axis=1)]}"
    )
    if args.time:
        for batch in (1, 8, 32):
            print(f"  onnxruntime (1 thread), batch {batch}: {time_ort(sess, batch):.3f} ms per image")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
