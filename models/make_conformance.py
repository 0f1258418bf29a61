#!/usr/bin/env python3
"""Build the ai.onnx.ml conformance model repository (models/conformance/).

infera runs ONNX graphs with tract, and implements the classic-ML operators of
the "ai.onnx.ml" domain (TreeEnsembleClassifier/Regressor, SVMClassifier/
Regressor, LinearClassifier/Regressor, Scaler, Normalizer, Imputer, Binarizer,
OneHotEncoder, ArrayFeatureExtractor, ZipMap, ...) itself.  This script makes
a set of small models that exercise those operators the way real converters
emit them, together with onnxruntime's outputs as the reference:

    <out>/repository.toml            a comment line only (no keys)
    <out>/<name>/1/model.onnx        the model
    <out>/<name>/1/golden.json       64 held-out input rows + onnxruntime outputs

golden.json has the same format as models/*/1/golden.json (see
models/make_models.py and models/README.md):

    {"input": "float_input", "inputs": [[row], ...],
     "outputs": {"<output name>": <nested list>, ...}, "tolerance": 1e-05}

  * "inputs" are 64 rows of the held-out test split (cycled when the split is
    smaller), exact float32 values;
  * "outputs" hold what onnxruntime returns for the whole 64-row batch, for
    every graph output; integer outputs are written as ints.  A ZipMap output
    (onnxruntime returns a list of {class: probability} dicts) is written as
    a [64, C] list of probabilities in sorted class order, because infera
    serves ZipMap as a per-class probability tensor;
  * a value passes when |got - want| <= tolerance * max(1, |want|).

Every model has one input, `float_input`, float32 [N, n_features] (the batch
dimension is named "N", as in models/make_models.py), and classifiers are
trained on integer targets 0..C-1, so labels are int64.  Classifiers come in
two flavours: `<name>` without ZipMap (outputs `label` int64 [N] and
`probabilities` float32 [N, C], or [N, 1] for a binary LinearSVC) and
`<name>_zipmap` with the converter's default ZipMap (skl2onnx names the
outputs `output_label`, `output_probability`; onnxmltools keeps `label`,
`probabilities`) -- except where the converter has no ZipMap option
(onnxmltools' XGBoost converter; skl2onnx's LinearSVC converter).  For SVC
without probability=True and for LinearSVC the "probabilities" are decision
values.  The only edit made to a converter's graph: opset imports are
deduplicated, the batch dimension is named "N", and onnxmltools' LightGBM
classifiers, which declare `label` as [1], get it declared as ["N"].

Among the printed checks, "golden rows sensitive to a 1-ulp input change"
lists rows whose outputs move when every input is nudged by one float32 ulp.
For a bare tree ensemble those rows have a feature exactly equal to a split
threshold (so they pin down BRANCH_LEQ vs BRANCH_LT); for OneHotEncoder they
pin down the float -> int64 Cast (truncation: 15.999999 -> 15).

Names are `<family>_<task>[_<variant>]`; the data set is part of the name.

Converters: skl2onnx for scikit-learn models (target opset
{"": 15, "ai.onnx.ml": 3}; skl2onnx then declares the lowest ai.onnx.ml
version its nodes need, which is 1 for all of these) and onnxmltools for
XGBoost and LightGBM (target_opset=15, its maximum; it declares
ai.onnx.ml 1, and the XGBoost graphs import no default-domain opset at
all).  No converter used here emits the ai.onnx.ml opset-5 `TreeEnsemble`
operator or the *_as_tensor attributes (those are for double inputs).

Data sets are the ones bundled with scikit-learn (no downloads): iris, wine,
breast_cancer ("cancer", binary), diabetes (regression) and digits, split
70/30 with random_state=0 (stratified for classification).  The `*_std`
variants (used for the SVMs and LinearSVC, which need scaled features to
train well) are standardised with the training split's mean and standard
deviation *before* export: the graph sees the standardised values, it has no
Scaler.  SVMs are trained on a random 200-row subset of the training split so
the models stay small.

How to run (from the repository root):

    python3 -m venv /tmp/conf-venv
    /tmp/conf-venv/bin/pip install -r models/requirements-conformance.txt
    /tmp/conf-venv/bin/python models/make_conformance.py              # writes models/conformance/
    /tmp/conf-venv/bin/python models/make_conformance.py --out /tmp/c  # somewhere else
    /tmp/conf-venv/bin/python models/make_conformance.py --only 'svc_*'  # a subset (fnmatch)

Each model is checked before it is written: onnxruntime against the training
library (scikit-learn, XGBoost, LightGBM) on the whole test split (labels
must agree on >= 95% of the rows; the largest score difference is printed),
and every golden row run alone against its row of the batch.  Everything is
deterministic (fixed random_state, single-threaded training): with the
versions pinned in models/requirements-conformance.txt two runs write
byte-identical files.  models/bench_onnxruntime.py times onnxruntime on the
result.

Workaround: with the protobuf that pip installs next to these pins (7.36.2),
skl2onnx 1.20's HistGradientBoosting converter fails with "Field
onnx.AttributeProto.ints: Expected an int, got a boolean", because it passes
a Python bool for leaf nodes' nodes_missing_value_tracks_true.  The
`_patch_skl2onnx_bool_attrs` shim below turns that bool into an int; the
exported graph is what skl2onnx would emit with an older protobuf.
"""

from __future__ import annotations

import os

# Single-threaded training everywhere (OpenMP in scikit-learn's HGB, LightGBM
# and XGBoost): thread scheduling must not be able to change a model.
os.environ["OMP_NUM_THREADS"] = "1"

import argparse
import fnmatch
import json
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import lightgbm
import numpy as np
import onnx
import onnxmltools
import onnxruntime as ort
import sklearn
import skl2onnx
import skl2onnx.common.tree_ensemble as _skl2onnx_tree_ensemble
import xgboost
from onnxmltools.convert.common.data_types import FloatTensorType as MlFloatTensorType
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits, load_iris, load_wine
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.exceptions import ConvergenceWarning
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import Binarizer, KBinsDiscretizer, MinMaxScaler, Normalizer, OneHotEncoder, StandardScaler
from sklearn.svm import SVC, SVR, LinearSVC, LinearSVR
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

INPUT_NAME = "float_input"
SKL2ONNX_OPSET = {"": 15, "ai.onnx.ml": 3}
ONNXMLTOOLS_OPSET = 15  # onnxmltools 1.16 supports at most 15; it picks ai.onnx.ml itself
N_GOLDEN = 64
SEED = 0
TOLERANCE = 1e-5
MAX_MODEL_BYTES = 300_000
MAX_TOTAL_BYTES = 5_000_000
REPOSITORY_TOML = "# ai.onnx.ml conformance models; generated by models/make_conformance.py\n"


# --------------------------------------------------------------------------
# skl2onnx shim (see the module docstring)
# --------------------------------------------------------------------------


def _patch_skl2onnx_bool_attrs() -> None:
    original = _skl2onnx_tree_ensemble.add_node
    if getattr(original, "_infera_patched", False):
        return

    def add_node(*args, **kwargs):
        flag = kwargs.get("nodes_missing_value_tracks_true")
        if isinstance(flag, (bool, np.bool_)):
            kwargs["nodes_missing_value_tracks_true"] = int(flag)
        return original(*args, **kwargs)

    add_node._infera_patched = True
    # The HGB converter looks add_node up as a module global at call time.
    _skl2onnx_tree_ensemble.add_node = add_node


_patch_skl2onnx_bool_attrs()


# --------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------


@dataclass
class Data:
    x_train: np.ndarray  # float64
    y_train: np.ndarray
    x_test: np.ndarray  # float32
    y_test: np.ndarray
    classification: bool


DATASETS: dict[str, tuple[Callable, bool, bool]] = {
    # name: (loader, classification, standardise with the training split's statistics)
    "iris": (load_iris, True, False),
    "wine": (load_wine, True, False),
    "wine_std": (load_wine, True, True),
    "cancer": (load_breast_cancer, True, False),
    "cancer_std": (load_breast_cancer, True, True),
    "digits": (load_digits, True, False),
    "diabetes": (load_diabetes, False, False),
}


def load(dataset: str, max_train: int | None) -> Data:
    loader, classification, standardise = DATASETS[dataset]
    x, y = loader(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.3, stratify=y if classification else None, random_state=SEED
    )
    if standardise:
        mean, std = x_train.mean(axis=0), x_train.std(axis=0)
        x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    if max_train is not None and len(x_train) > max_train:
        keep = np.sort(np.random.RandomState(SEED).choice(len(x_train), max_train, replace=False))
        x_train, y_train = x_train[keep], y_train[keep]
    if classification:
        y_train, y_test = y_train.astype(np.int64), y_test.astype(np.int64)
        assert set(np.unique(y_train)) == set(range(len(np.unique(y)))), dataset
    return Data(x_train, y_train, x_test.astype(np.float32), y_test, classification)


# --------------------------------------------------------------------------
# The models
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    name: str  # without the _zipmap suffix
    dataset: str
    make: Callable[[], Any]
    converter: str = "skl2onnx"  # or "onnxmltools"
    max_train: int | None = None  # subsample the training split (keeps SVMs small)
    zipmap_variant: bool = True  # classifiers: also emit <name>_zipmap


def lr():
    return LogisticRegression(max_iter=10_000, random_state=SEED)


def linsvc():
    return LinearSVC(C=1.0, max_iter=100_000, random_state=SEED)


def xgb_params():
    return dict(n_estimators=10, max_depth=4, learning_rate=0.3, tree_method="hist", n_jobs=1, random_state=SEED)


def lgbm_params():
    return dict(
        n_estimators=10,
        num_leaves=15,
        max_depth=4,
        learning_rate=0.2,
        min_child_samples=5,
        n_jobs=1,
        deterministic=True,
        force_row_wise=True,
        random_state=SEED,
        verbose=-1,
    )


# Pixels 27, 28, 35, 36 (centre of the 8x8 digit) take the integer values
# 0..16, so a OneHotEncoder can use int64 categories on them.
DIGITS_ONEHOT_COLUMNS = [27, 28, 35, 36]

SPECS: list[Spec] = [
    # --- linear models (LinearClassifier / LinearRegressor) ---------------
    Spec("logreg_clf_iris", "iris", lr),
    Spec("logreg_clf_binary_cancer", "cancer_std", lr),
    Spec("linsvc_clf_wine", "wine_std", linsvc),
    Spec("linsvc_clf_binary_cancer", "cancer_std", linsvc),
    Spec("linsvr_reg_diabetes", "diabetes", lambda: LinearSVR(C=100.0, epsilon=0.0, max_iter=100_000, random_state=SEED)),
    # --- kernel SVMs (SVMClassifier / SVMRegressor) -------------------------
    Spec("svc_clf_iris_rbf", "iris", lambda: SVC(kernel="rbf", random_state=SEED)),
    Spec("svc_clf_iris_rbf_proba", "iris", lambda: SVC(kernel="rbf", probability=True, random_state=SEED)),
    Spec("svc_clf_binary_cancer_poly", "cancer_std", lambda: SVC(kernel="poly", degree=3, coef0=1.0, random_state=SEED), max_train=200),
    Spec(
        "svc_clf_binary_cancer_poly_proba",
        "cancer_std",
        lambda: SVC(kernel="poly", degree=3, coef0=1.0, probability=True, random_state=SEED),
        max_train=200,
    ),
    Spec("svc_clf_binary_cancer_sigmoid", "cancer_std", lambda: SVC(kernel="sigmoid", gamma=0.01, coef0=0.0, random_state=SEED), max_train=200),
    Spec("svc_clf_wine_linear", "wine_std", lambda: SVC(kernel="linear", random_state=SEED)),
    Spec("svc_clf_wine_linear_proba", "wine_std", lambda: SVC(kernel="linear", probability=True, random_state=SEED)),
    # C, gamma and epsilon keep the SVR sums well conditioned (sum |alpha_i K_i| + |b| is at
    # most ~5x the prediction), so float32 summation order stays far inside the tolerance.
    Spec("svr_reg_diabetes_rbf", "diabetes", lambda: SVR(kernel="rbf", C=30.0, gamma=100.0, epsilon=40.0), max_train=200),
    Spec("svr_reg_diabetes_linear", "diabetes", lambda: SVR(kernel="linear", C=100.0, epsilon=20.0), max_train=200),
    # --- single trees --------------------------------------------------------
    Spec("dt_clf_iris", "iris", lambda: DecisionTreeClassifier(max_depth=5, random_state=SEED)),
    Spec("dt_clf_binary_cancer", "cancer", lambda: DecisionTreeClassifier(max_depth=5, random_state=SEED)),
    Spec("dt_reg_diabetes", "diabetes", lambda: DecisionTreeRegressor(max_depth=5, random_state=SEED)),
    # --- bagged trees -----------------------------------------------------------
    Spec("rf_clf_iris", "iris", lambda: RandomForestClassifier(n_estimators=15, max_depth=5, random_state=SEED, n_jobs=1)),
    Spec("rf_clf_binary_cancer", "cancer", lambda: RandomForestClassifier(n_estimators=15, max_depth=5, random_state=SEED, n_jobs=1)),
    Spec("rf_reg_diabetes", "diabetes", lambda: RandomForestRegressor(n_estimators=15, max_depth=5, random_state=SEED, n_jobs=1)),
    Spec("et_clf_wine", "wine", lambda: ExtraTreesClassifier(n_estimators=15, max_depth=5, random_state=SEED, n_jobs=1)),
    Spec("et_reg_diabetes", "diabetes", lambda: ExtraTreesRegressor(n_estimators=15, max_depth=5, random_state=SEED, n_jobs=1)),
    # --- boosted trees (scikit-learn) -----------------------------------------
    Spec("gbt_clf_iris", "iris", lambda: GradientBoostingClassifier(n_estimators=10, max_depth=3, random_state=SEED)),
    Spec("gbt_clf_binary_cancer", "cancer", lambda: GradientBoostingClassifier(n_estimators=20, max_depth=3, random_state=SEED)),
    Spec("gbt_reg_diabetes", "diabetes", lambda: GradientBoostingRegressor(n_estimators=20, max_depth=3, random_state=SEED)),
    Spec("hgb_clf_wine", "wine", lambda: HistGradientBoostingClassifier(max_iter=10, max_depth=4, max_leaf_nodes=15, random_state=SEED)),
    Spec("hgb_clf_binary_cancer", "cancer", lambda: HistGradientBoostingClassifier(max_iter=20, max_depth=4, max_leaf_nodes=15, random_state=SEED)),
    Spec("hgb_reg_diabetes", "diabetes", lambda: HistGradientBoostingRegressor(max_iter=20, max_depth=4, max_leaf_nodes=15, random_state=SEED)),
    # --- nearest neighbours (standard ONNX ops: Scan, TopK, ...) ---------------
    Spec("knn_clf_iris", "iris", lambda: KNeighborsClassifier(n_neighbors=5)),
    Spec("knn_reg_diabetes", "diabetes", lambda: KNeighborsRegressor(n_neighbors=5)),
    # --- pipelines ----------------------------------------------------------------
    Spec("scaler_logreg_clf_wine", "wine", lambda: make_pipeline(StandardScaler(), lr())),
    # On cancer (unlike iris or wine) no golden row lands within one float32 ulp
    # of a split threshold after the Mul/Add scaling, so a runtime that rounds
    # the scaling differently from onnxruntime (e.g. with an FMA) still agrees.
    Spec(
        "minmax_rf_clf_binary_cancer",
        "cancer",
        lambda: make_pipeline(MinMaxScaler(), RandomForestClassifier(n_estimators=10, max_depth=4, random_state=SEED, n_jobs=1)),
    ),
    Spec("imputer_scaler_ridge_reg_diabetes", "diabetes", lambda: make_pipeline(SimpleImputer(strategy="mean"), StandardScaler(), Ridge(alpha=1.0))),
    Spec(
        "onehot_logreg_clf_digits",
        "digits",
        lambda: make_pipeline(
            ColumnTransformer(
                [("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False), DIGITS_ONEHOT_COLUMNS)],
                remainder="passthrough",
            ),
            lr(),
        ),
    ),
    Spec("kbins_ridge_reg_diabetes", "diabetes", lambda: make_pipeline(KBinsDiscretizer(n_bins=4, encode="onehot-dense", strategy="uniform"), Ridge(alpha=1.0))),
    Spec("binarizer_logreg_clf_digits", "digits", lambda: make_pipeline(Binarizer(threshold=7.5), lr())),
    Spec("normalizer_linsvc_clf_wine", "wine", lambda: make_pipeline(Normalizer(norm="l2"), linsvc())),
    Spec("normalizer_max_logreg_clf_iris", "iris", lambda: make_pipeline(Normalizer(norm="max"), lr())),
    # --- XGBoost / LightGBM (onnxmltools) --------------------------------------
    Spec("xgb_clf_iris", "iris", lambda: xgboost.XGBClassifier(**xgb_params()), "onnxmltools", zipmap_variant=False),
    Spec("xgb_clf_binary_cancer", "cancer", lambda: xgboost.XGBClassifier(**xgb_params()), "onnxmltools", zipmap_variant=False),
    Spec("xgb_reg_diabetes", "diabetes", lambda: xgboost.XGBRegressor(**xgb_params()), "onnxmltools"),
    Spec("lgbm_clf_iris", "iris", lambda: lightgbm.LGBMClassifier(**lgbm_params()), "onnxmltools"),
    Spec("lgbm_clf_binary_cancer", "cancer", lambda: lightgbm.LGBMClassifier(**lgbm_params()), "onnxmltools"),
    Spec("lgbm_reg_diabetes", "diabetes", lambda: lightgbm.LGBMRegressor(**lgbm_params()), "onnxmltools"),
]


# --------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------


def final_estimator(model):
    return model.steps[-1][1] if isinstance(model, Pipeline) else model


class NoZipMap(Exception):
    """The converter has no ZipMap option for this classifier."""


def export(spec: Spec, model, n_features: int, classifier: bool, zipmap: bool, name: str) -> onnx.ModelProto:
    if spec.converter == "skl2onnx":
        options = {id(final_estimator(model)): {"zipmap": zipmap}} if classifier else None
        try:
            onx = convert_sklearn(
                model,
                name=name,
                initial_types=[(INPUT_NAME, FloatTensorType([None, n_features]))],
                options=options,
                target_opset=SKL2ONNX_OPSET,
            )
        except NameError as e:  # e.g. LinearSVC: "Option 'zipmap' not in [...]"
            if "Option 'zipmap'" not in str(e):
                raise
            if zipmap:
                raise NoZipMap(str(e)) from e
            # An explicit (empty) option set: without one, skl2onnx's Pipeline
            # parser would add zipmap=True for the final classifier itself.
            onx = convert_sklearn(
                model,
                name=name,
                initial_types=[(INPUT_NAME, FloatTensorType([None, n_features]))],
                options={id(final_estimator(model)): {}},
                target_opset=SKL2ONNX_OPSET,
            )
    elif isinstance(model, (xgboost.XGBClassifier, xgboost.XGBRegressor)):
        assert not zipmap, "onnxmltools' XGBoost converter has no ZipMap option"
        onx = onnxmltools.convert_xgboost(
            model,
            name=name,
            initial_types=[(INPUT_NAME, MlFloatTensorType([None, n_features]))],
            target_opset=ONNXMLTOOLS_OPSET,
        )
    else:
        onx = onnxmltools.convert_lightgbm(
            model,
            name=name,
            initial_types=[(INPUT_NAME, MlFloatTensorType([None, n_features]))],
            target_opset=ONNXMLTOOLS_OPSET,
            zipmap=zipmap,
        )
    # One opset_import entry per domain (sorted), as in models/make_models.py.
    seen: dict[str, int] = {}
    for imp in onx.opset_import:
        seen[imp.domain] = max(seen.get(imp.domain, 0), imp.version)
    del onx.opset_import[:]
    for domain in sorted(seen):
        onx.opset_import.add(domain=domain, version=seen[domain])
    # Name the anonymous batch dimension "N" (tract wants a symbol); sequence
    # (ZipMap) outputs have no tensor shape to name.
    for v in list(onx.graph.input) + list(onx.graph.output):
        if v.type.HasField("tensor_type") and v.type.tensor_type.HasField("shape"):
            d0 = v.type.tensor_type.shape.dim[0]
            if not d0.HasField("dim_value") and not d0.dim_param:
                d0.dim_param = "N"
    fix_declared_batch_dims(onx)
    onnx.checker.check_model(onx, full_check=True)
    return onx


def fix_declared_batch_dims(onx: onnx.ModelProto) -> None:
    """onnxmltools' LightGBM classifier declares `label` as int64 [1] although
    it returns one label per row ([N]); onnxruntime only warns, a runtime that
    trusts declared shapes would reject the model.  Declare the batch
    dimension of any such output as "N" (checked by running 3 rows)."""
    x = np.zeros((3, onx.graph.input[0].type.tensor_type.shape.dim[1].dim_value), np.float32)
    so = ort.SessionOptions()
    so.log_severity_level = 3  # the very warning this fixes
    sess = ort.InferenceSession(onx.SerializeToString(), so, providers=["CPUExecutionProvider"])
    for v, got in zip(onx.graph.output, sess.run(None, {INPUT_NAME: x})):
        if v.type.HasField("tensor_type") and isinstance(got, np.ndarray) and got.shape[:1] == (3,):
            d0 = v.type.tensor_type.shape.dim[0]
            if d0.HasField("dim_value"):
                print(f"  note: {onx.graph.name}: output {v.name!r} declared dim 0 = {d0.dim_value}, returns N rows: declaring it 'N'")
                d0.Clear()
                d0.dim_param = "N"


def ort_session(onx: onnx.ModelProto) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    return ort.InferenceSession(onx.SerializeToString(), so, providers=["CPUExecutionProvider"])


def run_ort(sess: ort.InferenceSession, x: np.ndarray) -> dict[str, np.ndarray]:
    """Run and return every output as an ndarray; ZipMap's list of
    {class: probability} dicts becomes [N, C] float32 in sorted class order."""
    out = {}
    for o, v in zip(sess.get_outputs(), sess.run(None, {INPUT_NAME: x})):
        if isinstance(v, list):
            keys = sorted(v[0])
            assert all(sorted(d) == keys for d in v), o.name
            v = np.array([[d[k] for k in keys] for d in v], dtype=np.float32)
        out[o.name] = v
    return out


# --------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------


def within(got: np.ndarray, want: np.ndarray, tol: float) -> bool:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return bool(np.all(np.abs(got - want) <= tol * np.maximum(1.0, np.abs(want))))


def rel_diff(got: np.ndarray, want: np.ndarray) -> float:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(np.max(np.abs(got - want) / np.maximum(1.0, np.abs(want))))


def check_against_library(name: str, model, data: Data, got: dict[str, np.ndarray]) -> str:
    """Compare onnxruntime on the whole test split with the training library;
    returns a one-line summary.  Labels must agree on >= 95% of the rows."""
    x = data.x_test
    outs = list(got.values())
    if data.classification:
        label, scores = outs[0], outs[1]
        assert label.dtype == np.int64 and label.shape == (len(x),), (name, label.dtype, label.shape)
        assert scores.dtype == np.float32 and scores.ndim == 2, (name, scores.dtype, scores.shape)
        want_label = np.asarray(model.predict(x)).astype(np.int64)
        mismatched = int(np.sum(label != want_label))
        if mismatched > 0.05 * len(x):
            sys.exit(f"{name}: onnxruntime and the library disagree on {mismatched}/{len(x)} labels")
        try:
            candidates = {"predict_proba": model.predict_proba(x)}
        except AttributeError:  # SVC(probability=False), LinearSVC: scores are decision values
            d = model.decision_function(x)
            if d.ndim == 2:
                candidates = {"decision_function": d}
            else:  # binary: converters lay the single decision value out in different ways
                candidates = {
                    "decision_function [d]": d[:, None],
                    "decision_function [-d, d]": np.stack([-d, d], axis=1),
                    "decision_function [d, -d]": np.stack([d, -d], axis=1),
                }
        diffs = {k: rel_diff(scores, v) for k, v in candidates.items() if v.shape == scores.shape}
        if diffs:
            kind = min(diffs, key=diffs.get)
            diff = f"max |score diff| vs {kind} {diffs[kind]:.2e}"
        else:
            diff = f"scores {scores.shape} not comparable with {list(candidates)}"
        return f"labels {len(x) - mismatched}/{len(x)} equal to the library, {diff}"
    (value,) = outs
    assert value.dtype == np.float32 and value.shape == (len(x), 1), (name, value.dtype, value.shape)
    want = np.asarray(model.predict(x), np.float64).reshape(-1, 1)
    return f"max relative diff vs library predict {rel_diff(value, want):.2e}"


def near_ties(golden: dict[str, np.ndarray]) -> str:
    """Rows of the golden batch whose two best class scores are (almost) tied."""
    scores = list(golden.values())[1]
    if scores.shape[1] < 2:
        return ""
    top = np.sort(scores.astype(np.float64), axis=1)[:, -2:]
    gap = top[:, 1] - top[:, 0]
    exact, close = int(np.sum(gap == 0)), int(np.sum((gap > 0) & (gap < 1e-4)))
    return f", golden rows with tied top-2 scores: {exact} exact, {close} within 1e-4"


def ulp_sensitive(sess: ort.InferenceSession, rows: np.ndarray, golden: dict[str, np.ndarray]) -> str:
    """Golden rows whose outputs move beyond the tolerance (or whose labels
    change) when every input is nudged by one float32 ulp, up or down.  For a
    bare tree ensemble such a row has a feature value (next to) equal to a
    split threshold, so it tests the comparison operator exactly; after
    arithmetic (e.g. a Scaler in front of trees) it is a row that a runtime
    rounding differently from onnxruntime could legitimately get wrong."""
    bad = np.zeros(len(rows), dtype=bool)
    for direction in (np.inf, -np.inf):
        nudged = run_ort(sess, np.nextafter(rows, np.float32(direction)))
        for k, v in golden.items():
            n = nudged[k]
            if np.issubdtype(v.dtype, np.integer):
                diff = (n != v).reshape(len(rows), -1).any(axis=1)
            else:
                a, b = n.astype(np.float64), v.astype(np.float64)
                diff = (np.abs(a - b) > TOLERANCE * np.maximum(1.0, np.abs(b))).reshape(len(rows), -1).any(axis=1)
            bad |= diff
    rows_list = [int(i) for i in np.flatnonzero(bad)]
    return f", golden rows sensitive to a 1-ulp input change: {rows_list if rows_list else 'none'}"


# --------------------------------------------------------------------------
# golden.json (same layout as models/make_models.py)
# --------------------------------------------------------------------------


def to_json_value(v: np.ndarray):
    if np.issubdtype(v.dtype, np.integer):
        return v.astype(np.int64).tolist()
    if v.dtype == np.float32:
        return np.vectorize(lambda e: float(np.float32(e)), otypes=[object])(v).tolist() if v.size else v.tolist()
    raise TypeError(f"unexpected output dtype {v.dtype}")


def render_golden(rows: np.ndarray, golden: dict[str, np.ndarray]) -> str:
    def dumps(x) -> str:
        return json.dumps(x, separators=(", ", ": "))

    inputs = [[float(np.float32(v)) for v in row] for row in rows]
    for r in inputs:  # the JSON values must round-trip to the very same float32 inputs
        assert all(float(np.float32(x)) == x for x in r)
    outputs = {k: to_json_value(v) for k, v in golden.items()}
    out = ['{"input": ' + dumps(INPUT_NAME) + ",", ' "inputs": [']
    out += ["   " + dumps(r) + ("," if i < len(inputs) - 1 else "") for i, r in enumerate(inputs)]
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
    out.append(f' "tolerance": {dumps(TOLERANCE)}}}')
    text = "\n".join(out) + "\n"
    parsed = json.loads(text)
    assert list(parsed) == ["input", "inputs", "outputs", "tolerance"]
    return text


# --------------------------------------------------------------------------
# Reporting helpers
# --------------------------------------------------------------------------


def op_types(onx: onnx.ModelProto) -> list[str]:
    return sorted({f"{n.domain or 'ai.onnx'}:{n.op_type}" for n in onx.graph.node})


def describe_io(onx: onnx.ModelProto) -> str:
    def one(v):
        t = v.type
        if t.HasField("tensor_type"):
            dims = [d.dim_param or (d.dim_value if d.HasField("dim_value") else "?") for d in t.tensor_type.shape.dim]
            return f"{v.name}: {onnx.TensorProto.DataType.Name(t.tensor_type.elem_type).lower()} {dims}"
        if t.HasField("sequence_type") and t.sequence_type.elem_type.HasField("map_type"):
            m = t.sequence_type.elem_type.map_type
            key = onnx.TensorProto.DataType.Name(m.key_type).lower()
            val = onnx.TensorProto.DataType.Name(m.value_type.tensor_type.elem_type).lower()
            return f"{v.name}: seq(map({key}, tensor({val})))"
        return f"{v.name}: {t}"

    ins = ", ".join(one(v) for v in onx.graph.input)
    outs = ", ".join(one(v) for v in onx.graph.output)
    return f"inputs [{ins}] outputs [{outs}]"


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------


def build(spec: Spec, out: Path) -> list[tuple[str, int]]:
    data = load(spec.dataset, spec.max_train)
    model = spec.make()
    variants = [False, True] if data.classification and spec.zipmap_variant else [False]
    written = []
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        # scikit-learn 1.9 deprecates SVC(probability=True) (and probA_/probB_,
        # which skl2onnx reads); the models are still what users export today.
        warnings.filterwarnings("ignore", message=".*probability.*", category=FutureWarning)
        warnings.filterwarnings("ignore", message=".*prob[AB]_.*", category=FutureWarning)
        model.fit(data.x_train, data.y_train)
        for zipmap in variants:
            written += export_and_write(spec, model, data, zipmap, out)
    return written


def export_and_write(spec: Spec, model, data: Data, zipmap: bool, out: Path) -> list[tuple[str, int]]:
    name = spec.name + ("_zipmap" if zipmap else "")
    try:
        onx = export(spec, model, data.x_test.shape[1], data.classification, zipmap, name)
    except NoZipMap as e:
        print(f"\n[{name}] skipped: {e}")
        return []
    idx = np.arange(N_GOLDEN) % len(data.x_test)  # cycle a test split shorter than 64 rows
    rows = data.x_test[idx]
    sess = ort_session(onx)
    full = run_ort(sess, data.x_test)
    summary = check_against_library(name, model, data, full)
    golden = run_ort(sess, rows)
    for k, v in golden.items():
        # The same rows inside the whole-test-split batch, and run one by one,
        # must agree within the golden tolerance (batching must not matter).
        assert within(v, full[k][idx], TOLERANCE), (name, k, "batch of 64 vs whole split")
        for i in range(N_GOLDEN):
            one = run_ort(sess, rows[i : i + 1])[k]
            assert within(one[0], v[i], TOLERANCE), (name, k, "row", i, one[0], v[i])
    if data.classification:
        summary += near_ties(golden)
    summary += ulp_sensitive(sess, rows, golden)
    blob = onx.SerializeToString()
    if len(blob) > MAX_MODEL_BYTES:
        sys.exit(f"{name}: model.onnx is {len(blob)} bytes (> {MAX_MODEL_BYTES})")
    d = out / name / "1"
    d.mkdir(parents=True, exist_ok=True)
    (d / "model.onnx").write_bytes(blob)
    (d / "golden.json").write_text(render_golden(rows, golden), encoding="utf-8")
    opsets = ", ".join(f"{i.domain or 'ai.onnx'}={i.version}" for i in onx.opset_import)
    print(f"\n[{name}] {spec.converter}, {len(blob)} bytes, opsets {opsets}")
    print(f"  ops: {', '.join(op_types(onx))}")
    print(f"  {describe_io(onx)}")
    print(f"  {summary}")
    return [(name, len(blob))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default_out = Path(__file__).resolve().parent / "conformance"
    ap.add_argument("--out", default=str(default_out), help="output directory (default: models/conformance/)")
    ap.add_argument("--only", action="append", default=[], metavar="GLOB", help="build only the models whose base name matches (repeatable)")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    print(
        f"numpy {np.__version__}, scikit-learn {sklearn.__version__}, skl2onnx {skl2onnx.__version__}, "
        f"onnx {onnx.__version__}, onnxruntime {ort.__version__}, onnxmltools {onnxmltools.__version__}, "
        f"xgboost {xgboost.__version__}, lightgbm {lightgbm.__version__}"
    )
    names = [s.name for s in SPECS]
    assert len(names) == len(set(names)), "duplicate model names"
    written = []
    for spec in SPECS:
        if args.only and not any(fnmatch.fnmatch(spec.name, g) for g in args.only):
            continue
        written += build(spec, out)
    (out / "repository.toml").write_text(REPOSITORY_TOML, encoding="utf-8")

    expected = {n for s in SPECS for n in (s.name, s.name + "_zipmap")}
    # str_*: string tensors, made by models/make_conformance_strings.py.
    stale = sorted(p.name for p in out.iterdir() if p.is_dir() and p.name not in expected and not p.name.startswith("str_"))
    if stale:
        print(f"\nwarning: directories not made by this script: {', '.join(stale)}")
    total = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"\nwrote {len(written)} models to {out}; directory holds {total} bytes")
    if total > MAX_TOTAL_BYTES:
        sys.exit(f"{out} holds {total} bytes (> {MAX_TOTAL_BYTES})")


if __name__ == "__main__":
    main()
