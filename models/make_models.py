#!/usr/bin/env python3
"""Build infera's example model repository (models/) from scratch.

Trains four small scikit-learn models on datasets that ship *inside*
scikit-learn (no downloads), exports them to ONNX with skl2onnx, checks the
ONNX graphs with onnxruntime against scikit-learn, and writes for each model:

    <out>/<name>/model.toml        model card / manifest read by the server
    <out>/<name>/1/model.onnx      the model, version 1
    <out>/<name>/1/golden.json     16 held-out input rows + onnxruntime outputs
    <out>/<name>/1/profile.json    reference profile of the training split, for
                                   infera's drift monitoring (see below)
    <out>/<name>/1/background.json background rows for infera's explanations:
                                   BACKGROUND_ROWS training rows (see below)

plus <out>/repository.toml.  Models:

    iris      LogisticRegression (multinomial), 4 features -> 3 classes
    digits    MLPClassifier (64 hidden units), 64 raw pixels 0..16 -> 10 classes
    diabetes  Ridge regression, 10 scaled features -> disease progression
    breast-cancer  GradientBoostingClassifier (50 trees of depth 3), 30 cell
              nucleus measurements -> malignant (0) / benign (1); exported
              with ZipMap

How to run (from the repository root):

    python3 -m venv .venv
    .venv/bin/pip install -r models/requirements.txt
    .venv/bin/python models/make_models.py            # writes into models/
    .venv/bin/python models/make_models.py --out /tmp/m  # somewhere else

Everything is deterministic (fixed random_state everywhere): with the pinned
versions in models/requirements.txt, re-running reproduces the committed
files byte for byte.

Constraints imposed by the Rust runtime (tract), which cannot run every
ONNX-ML operator:
  * iris and digits are exported with zipmap disabled, so the outputs are
    plain tensors: `label` (int64, [N]) and `probabilities` (float32, [N, C]);
  * no Scaler / Pipeline in the graph: the digits model takes raw pixels
    0..16 because the 1/16 input scaling used for training is folded into the
    first layer's weights;
  * the single input is `float_input`, float32, shape [N, n_features];
  * the graph may only contain the operators listed in ALLOWED_OPS, plus,
    for a model that opts in (Built.extra_ops), the ai.onnx.ml operators that
    infera implements itself outside tract (INFERA_OPS).

breast-cancer is the one model that uses INFERA_OPS: it keeps skl2onnx's
default graph, TreeEnsembleClassifier -> Cast -> `output_label` (int64, [N])
and TreeEnsembleClassifier -> ZipMap -> `output_probability`.  onnxruntime
returns the ZipMap output as a list of {class: probability} dicts; infera
serves it as a float32 [N, C] tensor, so golden.json stores it as an [N, C]
list of probabilities in class order (0, 1, ...).

profile.json (read by infera's drift monitor, src/monitoring/drift.rs) is
computed from the very training split the model was fitted on, with the
inputs as the model receives them (float32, the card's [[features]] order;
digits: raw pixels 0..16):

    {"source": ..., "rows": N,
     "features": [{"name": ..., "edges": [...], "shares": [...]}, ...],
                 (a string column, in models/make_examples.py's DataFrame models:
                  {"name": ..., "categories": [...], "shares": [...]}, see categorical())
     "predictions": {"kind": "classes", "shares": [...]}            classifiers
                    {"kind": "values", "edges": [...], "shares": [...]}  diabetes}

  * edges: the deciles (10%, ..., 90% quantiles, numpy's default linear
    interpolation) of the column, rounded to 6 significant digits (upwards
    where rounding to nearest would move a training value into another bin,
    see round_edge()) and deduplicated, so strictly increasing (a constant
    column has none);
  * bins: (-inf, e0], (e0, e1], ..., (e_last, +inf); the bin of x is the
    number of edges strictly below x (np.searchsorted(edges, x, "left"),
    Rust's partition_point(|e| e < x));
  * shares: fraction of training rows per bin (len(edges) + 1 entries),
    counted with the rounded edges and rounded to 6 significant digits;
  * predictions: classifiers, the share of each class index among
    onnxruntime's predicted labels on the training rows; the regressor, its
    predicted values on the training rows binned like a feature.

background.json (read by infera's explainer, src/explain/background.rs) holds
BACKGROUND_ROWS rows of the same training split, drawn without replacement
with numpy's default_rng(0) and kept in training-split order, as the model
receives them (float32 values written in their shortest decimal form):

    {"source": ..., "features": [names in column order], "rows": [[...], ...]}

The explanations' base value is the model's mean output over these rows.

Each model.toml also gets a [monitoring] table with the live quality target,
derived from the held-out evaluation (monitoring_targets()):

    accuracy_target = held-out accuracy - 0.05, rounded down to 2 decimals
    mae_target      = held-out MAE * 1.25, rounded up to 1 decimal
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import sklearn
import skl2onnx
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits, load_iris
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import accuracy_score, f1_score, mean_absolute_error, r2_score, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier

INPUT_NAME = "float_input"
TARGET_OPSET = {"": 15, "ai.onnx.ml": 3}
N_GOLDEN = 16
SEED = 0

# Operators that tract-onnx 0.23 implements and that these converters emit.
# Anything else (ZipMap, Scaler, ArrayFeatureExtractor on strings, ...) is a
# hard error: the server would fail to load the model.
ALLOWED_OPS = {
    "LinearClassifier",
    "LinearRegressor",
    "Normalizer",
    "MatMul",
    "Gemm",
    "Add",
    "Relu",
    "Softmax",
    "ArgMax",
    "Cast",
    "Reshape",
    "Identity",
    "ArrayFeatureExtractor",
}
FORBIDDEN_OPS = {"ZipMap", "Scaler"}
# ai.onnx.ml operators that infera implements itself (not tract).  A model may
# use them only if its builder lists them in Built.extra_ops; this lifts
# FORBIDDEN_OPS for that model alone.  iris, digits and diabetes stay
# tract-only.
INFERA_OPS = {"TreeEnsembleClassifier", "ZipMap"}

OWNER = "infera examples <ml-team@example.com>"
TAGS = ["tabular", "sklearn", "example"]


@dataclass
class Feature:
    name: str
    description: str
    min: float | None = None
    max: float | None = None


@dataclass
class Built:
    """Everything needed to write one model's directory."""

    name: str
    onnx_model: onnx.ModelProto
    golden_x: np.ndarray  # float32 [N_GOLDEN, n_features], from the test split
    test_x: np.ndarray  # float32, full test split
    test_y: np.ndarray
    train_x: np.ndarray  # float32, the training split as the model receives it (profile.json)
    train_source: str  # profile.json "source": which data train_x is
    reference: dict[str, np.ndarray]  # sklearn outputs on test_x, keyed like the ONNX outputs
    card: dict  # manifest fields other than evaluation
    features: list[Feature]
    tolerance: float
    evaluation: list[dict] = field(default_factory=list)
    extra_ops: frozenset[str] = frozenset()  # subset of INFERA_OPS this graph may use


# --------------------------------------------------------------------------
# ONNX helpers
# --------------------------------------------------------------------------


def export(model, n_features: int, classifier: bool, zipmap: bool = False) -> onnx.ModelProto:
    # zipmap=True keeps skl2onnx's default (no options): outputs `output_label`
    # and `output_probability`, the latter a ZipMap sequence of maps.
    options = {id(model): {"zipmap": False}} if classifier and not zipmap else None
    onx = convert_sklearn(
        model,
        name=type(model).__name__,
        initial_types=[(INPUT_NAME, FloatTensorType([None, n_features]))],
        options=options,
        target_opset=TARGET_OPSET,
    )
    # skl2onnx can list the default domain twice in opset_import; keep one
    # entry per domain (sorted) so every reader sees an unambiguous opset.
    seen: dict[str, int] = {}
    for imp in onx.opset_import:
        seen[imp.domain] = max(seen.get(imp.domain, 0), imp.version)
    del onx.opset_import[:]
    for domain in sorted(seen):
        onx.opset_import.add(domain=domain, version=seen[domain])
    if classifier:
        int64_labels_without_cast(onx)
    # skl2onnx leaves the batch dimension anonymous (neither a size nor a
    # name); tract then refuses to type the graph unless the caller sets the
    # input fact itself.  Naming it "N" makes it a symbolic batch size.
    # (A ZipMap output is a sequence of maps: no tensor shape to name.)
    for v in list(onx.graph.input) + list(onx.graph.output):
        if not v.type.HasField("tensor_type"):
            continue
        d0 = v.type.tensor_type.shape.dim[0]
        if not d0.HasField("dim_value") and not d0.dim_param:
            d0.dim_param = "N"
    onnx.checker.check_model(onx, full_check=True)
    return onx


def int64_labels_without_cast(onx: onnx.ModelProto) -> None:
    """Make the `label` output int64 without an ONNX Cast node.

    skl2onnx's MLPClassifier graph ends with
        ArgMax -> ArrayFeatureExtractor(classes: int32) -> Reshape -> Cast(to=int64) -> label.
    tract turns every Cast-to-int64 into its symbolic TDim type, so `label`
    would come out of tract as TDim instead of i64.  Storing `classes` as
    int64 makes the Reshape already produce int64, so the Cast is dropped and
    the Reshape writes `label` directly.  Graphs without that tail (e.g.
    LinearClassifier, which emits int64 labels itself) are left untouched.
    """
    g = onx.graph
    cast = next((n for n in g.node if "label" in n.output), None)
    if cast is None or cast.op_type != "Cast":
        return
    to = next(onnx.helper.get_attribute_value(a) for a in cast.attribute if a.name == "to")
    if to != onnx.TensorProto.INT64:
        return
    reshape = next(n for n in g.node if cast.input[0] in n.output)
    afe = next(n for n in g.node if reshape.input[0] in n.output)
    assert reshape.op_type == "Reshape" and afe.op_type == "ArrayFeatureExtractor", (reshape, afe)
    classes = next(i for i in g.initializer if i.name == afe.input[0])
    values = onnx.numpy_helper.to_array(classes).astype(np.int64)
    classes.CopyFrom(onnx.numpy_helper.from_array(values, classes.name))
    reshape.output[0] = "label"
    g.node.remove(cast)


def op_types(onx: onnx.ModelProto) -> list[str]:
    return sorted({n.op_type for n in onx.graph.node})


def check_ops(name: str, onx: onnx.ModelProto, extra_ops: frozenset[str] = frozenset()) -> None:
    assert extra_ops <= INFERA_OPS, extra_ops
    ops = set(op_types(onx))
    bad = (ops - ALLOWED_OPS - extra_ops) | (ops & FORBIDDEN_OPS - extra_ops)
    if bad:
        sys.exit(f"{name}: graph contains operators tract cannot run: {sorted(bad)}")


def describe_io(onx: onnx.ModelProto) -> str:
    def one(v):
        if v.type.HasField("sequence_type"):  # ZipMap: seq(map(key, value))
            m = v.type.sequence_type.elem_type.map_type
            key = onnx.TensorProto.DataType.Name(m.key_type).lower()
            val = onnx.TensorProto.DataType.Name(m.value_type.tensor_type.elem_type).lower()
            return f"{v.name}: seq(map({key}, {val}))"
        t = v.type.tensor_type
        dims = [d.dim_param or (d.dim_value if d.HasField("dim_value") else "?") for d in t.shape.dim]
        dims = ["N" if (d == "" or d is None or d == "?") else d for d in dims]
        return f"{v.name}: {onnx.TensorProto.DataType.Name(t.elem_type).lower()} {dims}"

    ins = ", ".join(one(v) for v in onx.graph.input)
    outs = ", ".join(one(v) for v in onx.graph.output)
    return f"inputs [{ins}] outputs [{outs}]"


def ort_session(onx: onnx.ModelProto) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    return ort.InferenceSession(onx.SerializeToString(), so, providers=["CPUExecutionProvider"])


def run_ort(sess: ort.InferenceSession, x: np.ndarray) -> dict[str, np.ndarray]:
    """Run and return every output as an ndarray.  A ZipMap output (a list of
    {class: probability} dicts) becomes float32 [N, C] in sorted class order,
    which is how infera serves it."""
    out = {}
    for o, v in zip(sess.get_outputs(), sess.run(None, {INPUT_NAME: x})):
        if isinstance(v, list):
            keys = sorted(v[0])
            assert all(sorted(d) == keys for d in v), o.name
            v = np.array([[d[k] for k in keys] for d in v], dtype=np.float32)
        out[o.name] = v
    return out


def f32_rows(a: np.ndarray) -> list[list[float]]:
    """float32 matrix -> nested lists of Python floats holding the exact f32 values."""
    return [[float(np.float32(v)) for v in row] for row in a]


# --------------------------------------------------------------------------
# The four models
# --------------------------------------------------------------------------


def build_iris() -> Built:
    data = load_iris()
    x_train, x_test, y_train, y_test = train_test_split(
        data.data, data.target, test_size=0.3, stratify=data.target, random_state=SEED
    )
    # lbfgs fits a multinomial (softmax) model for >2 classes; scikit-learn
    # >= 1.7 no longer takes multi_class= and always does this.
    model = LogisticRegression(max_iter=10_000, random_state=SEED)
    model.fit(x_train, y_train)
    x_test32 = x_test.astype(np.float32)
    return Built(
        name="iris",
        onnx_model=export(model, 4, classifier=True),
        golden_x=x_test32[:N_GOLDEN],
        test_x=x_test32,
        test_y=y_test,
        train_x=x_train.astype(np.float32),
        train_source=f"scikit-learn load_iris, stratified training split ({len(x_train)} rows)",
        reference={
            "label": model.predict(x_test32),
            "probabilities": model.predict_proba(x_test32),
        },
        card={
            "description": (
                "Classifies iris flowers into three species (setosa, versicolor, virginica) "
                "from four sepal/petal measurements in centimetres. "
                "Success: accuracy on held-out flowers >= 0.9."
            ),
            "task": "classification",
            "owner": OWNER,
            "license": "BSD-3-Clause (model and data from scikit-learn's bundled iris dataset)",
            "labels": [str(n) for n in data.target_names],
            "tags": TAGS,
            "training_data": {
                "name": "scikit-learn load_iris",
                "description": (
                    "150 flowers, 50 per species (Fisher, 1936); "
                    "stratified 70/30 train/test split, random_state=0"
                ),
                "rows": len(x_train),
            },
            "outputs": {"label": "label", "probabilities": "probabilities"},
        },
        features=[
            Feature("sepal_length_cm", "Sepal length in centimetres", 0.0, 30.0),
            Feature("sepal_width_cm", "Sepal width in centimetres", 0.0, 30.0),
            Feature("petal_length_cm", "Petal length in centimetres", 0.0, 30.0),
            Feature("petal_width_cm", "Petal width in centimetres", 0.0, 30.0),
        ],
        tolerance=1e-5,
    )


def build_digits() -> Built:
    data = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        data.data, data.target, test_size=0.3, stratify=data.target, random_state=SEED
    )
    # Train on pixels scaled to [0, 1] (converges much better than 0..16) ...
    model = MLPClassifier(hidden_layer_sizes=(64,), max_iter=2_000, random_state=SEED)
    model.fit(x_train / 16.0, y_train)
    if model.n_iter_ >= model.max_iter:
        sys.exit("digits: MLPClassifier did not converge")
    x_test32 = x_test.astype(np.float32)
    reference = {
        "label": model.predict(x_test32 / np.float32(16.0)),
        "probabilities": model.predict_proba(x_test32 / np.float32(16.0)),
    }
    # ... then fold the 1/16 into the first layer, so the exported graph takes
    # raw pixel values 0..16 and needs no Scaler node:  (x/16) @ W == x @ (W/16).
    model.coefs_[0] = model.coefs_[0] / 16.0
    np.testing.assert_allclose(model.predict_proba(x_test32), reference["probabilities"], rtol=0, atol=1e-9)
    return Built(
        name="digits",
        onnx_model=export(model, 64, classifier=True),
        golden_x=x_test32[:N_GOLDEN],
        test_x=x_test32,
        test_y=y_test,
        # Raw pixels 0..16: the exported graph folds in the 1/16 scaling.
        train_x=x_train.astype(np.float32),
        train_source=(
            f"scikit-learn load_digits, stratified training split ({len(x_train)} rows), raw pixels 0..16"
        ),
        reference=reference,
        card={
            "description": (
                "Recognises a handwritten digit 0-9 from an 8x8 image given as 64 raw pixel "
                "intensities 0..16, row by row. "
                "Success: accuracy on held-out images >= 0.95."
            ),
            "task": "classification",
            "owner": OWNER,
            "license": (
                "BSD-3-Clause (model trained on scikit-learn's bundled copy of the UCI optical "
                "recognition of handwritten digits dataset)"
            ),
            "labels": [str(d) for d in range(10)],
            "tags": TAGS + ["image"],
            "training_data": {
                "name": "scikit-learn load_digits",
                "description": (
                    "1797 8x8 images of handwritten digits 0-9 (Alpaydin & Kaynak, UCI), "
                    "pixel intensities 0..16; stratified 70/30 train/test split, random_state=0; "
                    "trained on pixels/16, with the scaling folded into the first layer"
                ),
                "rows": len(x_train),
            },
            "outputs": {"label": "label", "probabilities": "probabilities"},
        },
        features=[
            Feature(
                f"pixel_{r}_{c}",
                f"Pixel intensity at row {r}, column {c} (0 = white, 16 = black)",
                0.0,
                16.0,
            )
            for r in range(8)
            for c in range(8)
        ],
        tolerance=1e-5,
    )


DIABETES_FEATURES = [
    ("age", "Age in years"),
    ("sex", "Sex (two-valued)"),
    ("bmi", "Body mass index"),
    ("bp", "Average blood pressure"),
    ("s1", "tc, total serum cholesterol"),
    ("s2", "ldl, low-density lipoproteins"),
    ("s3", "hdl, high-density lipoproteins"),
    ("s4", "tch, total cholesterol / HDL"),
    ("s5", "ltg, possibly log of serum triglycerides level"),
    ("s6", "glu, blood sugar level"),
]
DIABETES_SCALING = (
    "mean-centred and scaled by the standard deviation times sqrt(n_samples), "
    "as in scikit-learn's diabetes dataset"
)


def build_diabetes() -> Built:
    data = load_diabetes()
    assert list(data.feature_names) == [n for n, _ in DIABETES_FEATURES], data.feature_names
    x_train, x_test, y_train, y_test = train_test_split(
        data.data, data.target, test_size=0.3, random_state=SEED
    )
    model = Ridge(alpha=1.0, random_state=SEED)
    model.fit(x_train, y_train)
    x_test32 = x_test.astype(np.float32)
    return Built(
        name="diabetes",
        onnx_model=export(model, 10, classifier=False),
        golden_x=x_test32[:N_GOLDEN],
        test_x=x_test32,
        test_y=y_test,
        train_x=x_train.astype(np.float32),
        train_source=f"scikit-learn load_diabetes, training split ({len(x_train)} rows)",
        reference={"variable": model.predict(x_test32).reshape(-1, 1)},
        card={
            "description": (
                "Predicts a quantitative measure of diabetes disease progression one year after "
                "baseline (roughly 25..346 in the data) from age, sex, body mass index, blood "
                "pressure and six blood serum measurements. Every input is "
                + DIABETES_SCALING
                + ", not in raw units. Success: R^2 on held-out patients >= 0.3."
            ),
            "task": "regression",
            "owner": OWNER,
            "license": (
                "BSD-3-Clause (model and data from scikit-learn's bundled diabetes dataset, "
                "Efron et al. 2004)"
            ),
            "tags": TAGS,
            "training_data": {
                "name": "scikit-learn load_diabetes",
                "description": (
                    "442 diabetes patients (Efron, Hastie, Johnstone & Tibshirani, 2004, "
                    "'Least Angle Regression'), features " + DIABETES_SCALING + "; "
                    "70/30 train/test split, random_state=0"
                ),
                "rows": len(x_train),
            },
            "outputs": {"value": "variable"},
        },
        features=[
            Feature(name, f"{desc}; {DIABETES_SCALING}", -1.0, 1.0) for name, desc in DIABETES_FEATURES
        ],
        # Outputs are ~25..350, where one float32 ulp is already ~1.5e-5 to 3e-5;
        # infera compares |got - want| <= tolerance * max(1, |want|), so 1e-5 is
        # relative here and still admits a runtime that sums in another order.
        tolerance=1e-5,
    )


# The ten nucleus properties measured in the FNA images (from scikit-learn's
# load_breast_cancer DESCR); each appears as mean, standard error and worst.
BREAST_CANCER_PROPERTIES = {
    "radius": "radius (mean distance from the centre to points on the perimeter)",
    "texture": "texture (standard deviation of grey-scale values)",
    "perimeter": "perimeter",
    "area": "area",
    "smoothness": "smoothness (local variation in radius lengths)",
    "compactness": "compactness (perimeter^2 / area - 1.0)",
    "concavity": "concavity (severity of concave portions of the contour)",
    "concave points": "concave points (number of concave portions of the contour)",
    "symmetry": "symmetry",
    "fractal dimension": "fractal dimension ('coastline approximation' - 1)",
}
BREAST_CANCER_STATS = {
    "mean": "Mean over the nuclei in the image of the nucleus {}",
    "error": "Standard error over the nuclei in the image of the nucleus {}",
    "worst": "Worst (mean of the three largest values) over the nuclei in the image of the nucleus {}",
}


def round_up(x: float) -> float:
    """Round a positive number up to one significant digit: 281.1 -> 300.0, 0.2193 -> 0.3."""
    e = math.floor(math.log10(x))
    return float(f"{math.ceil(round(x / 10.0**e, 9))}e{e}")


def breast_cancer_feature(sklearn_name: str, train_max: float) -> Feature:
    words = sklearn_name.split()
    if words[0] == "mean" or words[0] == "worst":
        stat, prop = words[0], " ".join(words[1:])
    else:
        assert words[-1] == "error", sklearn_name
        stat, prop = "error", " ".join(words[:-1])
    # All 30 columns are non-negative measurements; allow up to 10x the largest
    # training value (rounded up) so that only absurd inputs are rejected.
    return Feature(
        sklearn_name.replace(" ", "_"),
        BREAST_CANCER_STATS[stat].format(BREAST_CANCER_PROPERTIES[prop]),
        0.0,
        round_up(10.0 * train_max),
    )


def build_breast_cancer() -> Built:
    data = load_breast_cancer()
    assert list(data.target_names) == ["malignant", "benign"], data.target_names
    x_train, x_test, y_train, y_test = train_test_split(
        data.data, data.target, test_size=0.3, stratify=data.target, random_state=SEED
    )
    assert x_train.min() >= 0.0
    model = GradientBoostingClassifier(n_estimators=50, max_depth=3, learning_rate=0.1, random_state=SEED)
    model.fit(x_train, y_train)
    x_test32 = x_test.astype(np.float32)
    return Built(
        name="breast-cancer",
        # Default skl2onnx export, ZipMap included: infera runs
        # TreeEnsembleClassifier and ZipMap itself.
        onnx_model=export(model, 30, classifier=True, zipmap=True),
        golden_x=x_test32[:N_GOLDEN],
        test_x=x_test32,
        test_y=y_test,
        train_x=x_train.astype(np.float32),
        train_source=f"scikit-learn load_breast_cancer, stratified training split ({len(x_train)} rows)",
        reference={
            "output_label": model.predict(x_test32),
            "output_probability": model.predict_proba(x_test32),
        },
        card={
            "description": (
                "Flags a breast mass as malignant or benign from 30 measurements of cell nuclei "
                "in a fine-needle aspirate image: the mean, standard error and worst value of ten "
                "nucleus properties (radius, texture, perimeter, area, smoothness, compactness, "
                "concavity, concave points, symmetry, fractal dimension). An example model, not "
                "a diagnostic device. Success: accuracy on held-out cases >= 0.9 and ROC AUC "
                "(benign vs malignant) >= 0.95."
            ),
            "task": "classification",
            "owner": OWNER,
            "license": (
                "BSD-3-Clause (model trained on scikit-learn's bundled copy of the UCI Wisconsin "
                "Diagnostic Breast Cancer dataset)"
            ),
            "labels": [str(n) for n in data.target_names],
            "tags": TAGS + ["medical", "gradient-boosting"],
            "training_data": {
                "name": "scikit-learn load_breast_cancer",
                "description": (
                    "569 breast masses, 212 malignant and 357 benign (Wolberg, Street & "
                    "Mangasarian, UCI Breast Cancer Wisconsin (Diagnostic)); "
                    "stratified 70/30 train/test split, random_state=0"
                ),
                "rows": len(x_train),
            },
            "outputs": {"label": "output_label", "probabilities": "output_probability"},
        },
        features=[
            breast_cancer_feature(str(n), float(m)) for n, m in zip(data.feature_names, x_train.max(axis=0))
        ],
        tolerance=1e-5,
        extra_ops=frozenset({"TreeEnsembleClassifier", "ZipMap"}),
    )


# --------------------------------------------------------------------------
# Verification, evaluation and writing
# --------------------------------------------------------------------------


def verify_and_evaluate(b: Built) -> dict[str, np.ndarray]:
    """Check the ONNX graph against sklearn on the whole test split, compute the
    evaluation metrics from the ONNX outputs, return the golden outputs."""
    check_ops(b.name, b.onnx_model, b.extra_ops)
    sess = ort_session(b.onnx_model)
    got = run_ort(sess, b.test_x)
    if b.card["task"] == "classification":
        label_name, proba_name = b.card["outputs"]["label"], b.card["outputs"]["probabilities"]
        if list(got) != [label_name, proba_name]:
            sys.exit(f"{b.name}: unexpected outputs {list(got)}")
        label, proba = got[label_name], got[proba_name]
        assert label.dtype == np.int64 and label.shape == (len(b.test_x),), (label.dtype, label.shape)
        n_classes = len(b.card["labels"])
        assert proba.dtype == np.float32 and proba.shape == (len(b.test_x), n_classes), proba.shape
        np.testing.assert_array_equal(label, b.reference[label_name])
        np.testing.assert_allclose(proba, b.reference[proba_name], rtol=0, atol=1e-5)
        b.evaluation = [
            {"metric": "accuracy", "value": accuracy_score(b.test_y, label)},
            {"metric": "macro_f1", "value": f1_score(b.test_y, label, average="macro")},
        ]
        if n_classes == 2:  # binary: also rank quality of P(class 1)
            b.evaluation.append({"metric": "roc_auc", "value": roc_auc_score(b.test_y, proba[:, 1])})
    else:
        if list(got) != ["variable"]:
            sys.exit(f"{b.name}: unexpected outputs {list(got)}")
        value = got["variable"]
        assert value.dtype == np.float32 and value.shape == (len(b.test_x), 1), (value.dtype, value.shape)
        np.testing.assert_allclose(value, b.reference["variable"], rtol=1e-5, atol=1e-3)
        b.evaluation = [
            {"metric": "r2", "value": r2_score(b.test_y, value[:, 0])},
            {"metric": "mae", "value": mean_absolute_error(b.test_y, value[:, 0])},
        ]
    for e in b.evaluation:
        e["value"] = round(float(e["value"]), 4)
        e["dataset"] = f"held-out test split ({len(b.test_x)} rows)"

    # Golden outputs: exactly what onnxruntime returns for the 16-row batch.
    golden = run_ort(sess, b.golden_x)
    # Same rows inside the big batch must agree (batching must not matter).
    for k, v in golden.items():
        np.testing.assert_allclose(v, got[k][:N_GOLDEN], rtol=1e-6, atol=1e-6)
    return golden


# --------------------------------------------------------------------------
# Reference profile (profile.json) and monitoring targets ([monitoring])
# --------------------------------------------------------------------------

DECILES = [k / 10 for k in range(1, 10)]
SHARE_SUM_TOLERANCE = 1e-3  # what infera accepts for sum(shares)


def sig6(x: float) -> float:
    """Round to 6 significant digits (a short, stable JSON number)."""
    x = float(x)
    assert math.isfinite(x), x
    return float(f"{x:.6g}")


def round_edge(e: float, values: np.ndarray) -> float:
    """`e` rounded to 6 significant digits without moving any of `values` to
    another bin: to nearest if that keeps every value on its side of the edge,
    else up, else down.  (Deciles often fall exactly on a data value, and e.g.
    float32(2.7) = 2.70000005 > 2.7: rounding that edge to nearest, 2.7, would
    push every 2.7 into the bin above; 2.70001 keeps them.)"""
    d = Decimal(e)  # exact
    step = Decimal(1).scaleb(d.adjusted() - 5)  # one unit in the 6th significant digit
    below = int(np.count_nonzero(values <= e))
    for r in (sig6(e), float(d.quantize(step, ROUND_CEILING)), float(d.quantize(step, ROUND_FLOOR))):
        assert r == sig6(r), (e, r)
        if int(np.count_nonzero(values <= r)) == below:
            return r
    sys.exit(f"cannot round bin edge {e!r} to 6 significant digits without moving a training value")


def bin_shares(values: np.ndarray, edges: list[float]) -> list[float]:
    """Share of `values` in each bin (-inf, e0], (e0, e1], ..., (e_last, inf):
    the bin of x is the number of edges strictly below x, as in infera."""
    bins = np.searchsorted(np.asarray(edges, dtype=np.float64), values, side="left")
    counts = np.bincount(bins, minlength=len(edges) + 1)
    return [sig6(c / len(values)) for c in counts]


def binned(name: str, values: np.ndarray) -> dict:
    """Decile edges of `values` (float64 holding the float32 values the model
    sees) and the share of values per bin, both rounded to 6 significant digits.
    Shares are counted with the rounded edges, so they describe exactly the
    bins infera will use."""
    values = np.asarray(values, dtype=np.float64)
    assert values.ndim == 1 and len(values) > 0 and np.isfinite(values).all(), name
    edges = sorted({round_edge(float(q), values) for q in np.quantile(values, DECILES)})
    if len(edges) == 1 and values.min() == values.max():
        edges = []  # constant column: a single bin holding every row
    shares = bin_shares(values, edges)
    check_binned(name, edges, shares)
    return {"name": name, "edges": edges, "shares": shares}


def categorical(name: str, values) -> dict:
    """A string (categorical) column: its categories, sorted, and the share of
    values in each, rounded to 6 significant digits.  infera counts live
    values per category plus an "unseen" bucket (reference share 0) for values
    outside them (src/monitoring/categorical.rs)."""
    values = [str(v) for v in values]
    assert len(values) > 0, name
    categories = sorted(set(values))
    shares = [sig6(values.count(c) / len(values)) for c in categories]
    assert all(0.0 <= s <= 1.0 for s in shares), (name, shares)
    assert abs(sum(shares) - 1.0) <= SHARE_SUM_TOLERANCE, (name, sum(shares))
    return {"name": name, "categories": categories, "shares": shares}


def profile_column(name: str, values) -> dict:
    """One column of a profile: categories for strings, decile bins for numbers."""
    values = np.asarray(values)
    if values.dtype.kind in "OUS":
        return categorical(name, values)
    return binned(name, values.astype(np.float64))


def check_binned(name: str, edges: list[float], shares: list[float]) -> None:
    """The checks infera applies when it loads a profile."""
    assert len(shares) == len(edges) + 1, name
    assert all(math.isfinite(e) for e in edges), name
    assert all(a < b for a, b in zip(edges, edges[1:])), (name, edges)
    assert all(0.0 <= s <= 1.0 for s in shares), (name, shares)
    assert abs(sum(shares) - 1.0) <= SHARE_SUM_TOLERANCE, (name, sum(shares))


def build_profile(b: Built) -> dict:
    """profile.json for `b`: every input column and the model's own predictions
    (onnxruntime) on the training split."""
    x = b.train_x
    assert x.dtype == np.float32 and x.shape == (len(x), len(b.features)), (x.dtype, x.shape)
    assert b.card["training_data"]["rows"] == len(x)
    features = [binned(f.name, x[:, j]) for j, f in enumerate(b.features)]
    got = run_ort(ort_session(b.onnx_model), x)
    if b.card["task"] == "classification":
        n_classes = len(b.card["labels"])
        label = got[b.card["outputs"]["label"]]
        assert label.dtype == np.int64 and label.shape == (len(x),), (label.dtype, label.shape)
        assert label.min() >= 0 and label.max() < n_classes
        counts = np.bincount(label, minlength=n_classes)
        shares = [sig6(c / len(x)) for c in counts]
        assert abs(sum(shares) - 1.0) <= SHARE_SUM_TOLERANCE
        predictions = {"kind": "classes", "shares": shares}
    else:
        value = got[b.card["outputs"]["value"]]
        assert value.dtype == np.float32 and value.shape == (len(x), 1), (value.dtype, value.shape)
        p = binned("predictions", value[:, 0])
        predictions = {"kind": "values", "edges": p["edges"], "shares": p["shares"]}
    return {"source": b.train_source, "rows": len(x), "features": features, "predictions": predictions}


def render_profile(profile: dict) -> str:
    """One feature per line: small, stable and easy to diff."""

    def dumps(x) -> str:
        return json.dumps(x, separators=(", ", ": "), allow_nan=False)

    feats = profile["features"]
    out = [
        "{" + f'"source": {dumps(profile["source"])},',
        f' "rows": {dumps(profile["rows"])},',
        ' "features": [',
    ]
    out += ["   " + dumps(f) + ("," if i < len(feats) - 1 else "") for i, f in enumerate(feats)]
    out.append("  ],")
    out.append(f' "predictions": {dumps(profile["predictions"])}}}')
    text = "\n".join(out) + "\n"
    assert json.loads(text) == profile
    return text


BACKGROUND_ROWS = 32


def build_background(b: Built) -> dict:
    """background.json for `b`: BACKGROUND_ROWS training rows (see the module doc)."""
    x = b.train_x
    assert x.dtype == np.float32 and len(x) >= BACKGROUND_ROWS
    picked = np.sort(np.random.default_rng(0).choice(len(x), BACKGROUND_ROWS, replace=False))
    rows = [[float(np.format_float_positional(v, unique=True)) for v in x[i]] for i in picked]
    for r, i in zip(rows, picked):  # the decimal form must round-trip to the very same float32
        assert np.array_equal(np.asarray(r, dtype=np.float32), x[i])
    source = f"background.json: {BACKGROUND_ROWS} rows of the {b.train_source}, sampled with seed 0"
    return {"source": source, "features": [f.name for f in b.features], "rows": rows}


def render_background(background: dict) -> str:
    """One row per line, like profile.json."""

    def dumps(x) -> str:
        return json.dumps(x, separators=(", ", ": "), allow_nan=False)

    rows = background["rows"]
    out = [
        "{" + f'"source": {dumps(background["source"])},',
        f' "features": {dumps(background["features"])},',
        ' "rows": [',
    ]
    out += ["   " + dumps(r) + ("," if i < len(rows) - 1 else "") for i, r in enumerate(rows)]
    out.append("  ]}")
    text = "\n".join(out) + "\n"
    assert json.loads(text) == background
    return text


MONITORING_COMMENT = [
    "# Live quality target for infera's monitoring, derived by models/make_models.py from the",
    "# held-out evaluation above: accuracy_target = held-out accuracy - 0.05, rounded down to",
    "# 2 decimals (classifiers); mae_target = held-out MAE * 1.25, rounded up to 1 decimal",
    "# (regressors). Drift is measured against 1/profile.json (the training split).",
]


def monitoring_targets(b: Built) -> dict[str, float]:
    """[monitoring] for `b`, from its held-out evaluation (see MONITORING_COMMENT)."""
    metrics = {e["metric"]: e["value"] for e in b.evaluation}
    if b.card["task"] == "classification":
        # round() first so that e.g. 1.0 - 0.05 = 0.95 does not floor to 0.94.
        target = math.floor(round((metrics["accuracy"] - 0.05) * 100, 6)) / 100
        assert 0.0 <= target <= 1.0
        return {"accuracy_target": round(target, 2)}
    target = math.ceil(round(metrics["mae"] * 1.25 * 10, 6)) / 10
    return {"mae_target": round(target, 1)}


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        assert math.isfinite(v)
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # JSON string escapes are valid TOML basic-string escapes
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    raise TypeError(type(v))


def render_manifest(b: Built) -> str:
    c = b.card
    lines = [
        f"# Model card for '{b.name}'. Generated by models/make_models.py -- do not edit by hand.",
        f"# Versions live in numbered sub-directories (1/model.onnx); golden.json beside each",
        f"# model holds 16 held-out inputs and the onnxruntime reference outputs.",
        "",
    ]
    for key in ("description", "task", "owner", "license", "labels", "tags"):
        if key in c:
            lines.append(f"{key} = {toml_value(c[key])}")
    lines += ["", "[training_data]"]
    for key in ("name", "description", "rows"):
        lines.append(f"{key} = {toml_value(c['training_data'][key])}")
    for e in b.evaluation:
        lines += ["", "[[evaluation]]"]
        for key in ("metric", "value", "dataset"):
            lines.append(f"{key} = {toml_value(e[key])}")
    lines += ["", "[outputs]"]
    for key, val in c["outputs"].items():
        lines.append(f"{key} = {toml_value(val)}")
    lines += ["", *MONITORING_COMMENT, "[monitoring]"]
    for key, val in monitoring_targets(b).items():
        lines.append(f"{key} = {toml_value(val)}")
    for f in b.features:
        lines += ["", "[[features]]", f"name = {toml_value(f.name)}", f"description = {toml_value(f.description)}"]
        if f.min is not None:
            lines.append(f"min = {toml_value(float(f.min))}")
        if f.max is not None:
            lines.append(f"max = {toml_value(float(f.max))}")
    return "\n".join(lines) + "\n"


def render_golden(b: Built, golden: dict[str, np.ndarray]) -> str:
    outputs: dict[str, list] = {}
    for k, v in golden.items():
        if v.dtype == np.int64:
            outputs[k] = [int(x) for x in v.reshape(-1)]
        else:
            outputs[k] = f32_rows(v)
    rows = f32_rows(b.golden_x)
    for r in rows:  # the JSON values must round-trip to the very same float32 inputs
        assert all(float(np.float32(x)) == x for x in r)

    def dumps(x) -> str:
        return json.dumps(x, separators=(", ", ": "))

    out = ['{"input": ' + dumps(INPUT_NAME) + ",", ' "inputs": [']
    out += ["   " + dumps(r) + ("," if i < len(rows) - 1 else "") for i, r in enumerate(rows)]
    out.append("  ],")
    out.append(' "outputs": {')
    keys = list(outputs)
    for ki, k in enumerate(keys):
        v = outputs[k]
        tail = "," if ki < len(keys) - 1 else ""
        if v and isinstance(v[0], list):
            out.append(f"   {dumps(k)}: [")
            out += ["     " + dumps(r) + ("," if i < len(v) - 1 else "") for i, r in enumerate(v)]
            out.append("   ]" + tail)
        else:
            out.append(f"   {dumps(k)}: {dumps(v)}{tail}")
    out.append("  },")
    out.append(f' "tolerance": {dumps(b.tolerance)}}}')
    text = "\n".join(out) + "\n"
    # Sanity: it is valid JSON with the expected shape.
    parsed = json.loads(text)
    assert list(parsed) == ["input", "inputs", "outputs", "tolerance"]
    return text


REPOSITORY_TOML = """\
# Model served by POST /predict when the request does not name a model.
default_model = "iris"
"""


def write(b: Built, golden: dict[str, np.ndarray], profile: dict, out: Path) -> None:
    d = out / b.name
    (d / "1").mkdir(parents=True, exist_ok=True)
    (d / "1" / "model.onnx").write_bytes(b.onnx_model.SerializeToString())
    (d / "1" / "golden.json").write_text(render_golden(b, golden), encoding="utf-8")
    (d / "1" / "profile.json").write_text(render_profile(profile), encoding="utf-8")
    (d / "1" / "background.json").write_text(render_background(build_background(b)), encoding="utf-8")
    (d / "model.toml").write_text(render_manifest(b), encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent), help="output directory (default: models/)")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    print(
        f"numpy {np.__version__}, scikit-learn {sklearn.__version__}, skl2onnx {skl2onnx.__version__}, "
        f"onnx {onnx.__version__}, onnxruntime {ort.__version__}"
    )
    for build in (build_iris, build_digits, build_diabetes, build_breast_cancer):
        b = build()
        golden = verify_and_evaluate(b)
        profile = build_profile(b)
        write(b, golden, profile, out)
        size = (out / b.name / "1" / "model.onnx").stat().st_size
        opsets = ", ".join(f"{i.domain or 'ai.onnx'}={i.version}" for i in b.onnx_model.opset_import)
        print(f"\n[{b.name}] {size} bytes, opsets {opsets}")
        print(f"  ops: {', '.join(op_types(b.onnx_model))}")
        print(f"  {describe_io(b.onnx_model)}")
        print("  " + ", ".join(f"{e['metric']}={e['value']}" for e in b.evaluation) + f" on {len(b.test_x)} test rows")
        psize = (out / b.name / "1" / "profile.json").stat().st_size
        pred = profile["predictions"]
        print(
            f"  profile.json: {psize} bytes, {len(profile['features'])} features, {profile['rows']} rows, "
            f"predictions {pred['kind']} {pred['shares']}; monitoring {monitoring_targets(b)}"
        )
    (out / "repository.toml").write_text(REPOSITORY_TOML, encoding="utf-8")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
