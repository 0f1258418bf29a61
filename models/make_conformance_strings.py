#!/usr/bin/env python3
"""Build the string-tensor part of the ai.onnx.ml conformance set (models/conformance/str_*).

The same contract as models/make_conformance.py (64 held-out rows, onnxruntime's outputs for the
whole batch in golden.json, every row alone checked against its batch row, tolerance 1e-5), for
the graphs that carry strings:

  * string class labels (`classlabels_strings`): every scikit-learn classifier family trained on
    the data set's class *names* (iris "setosa", ..., cancer "malignant"/"benign", wine
    "class_0", ...), so the label output is a string tensor; with and without ZipMap (whose
    keys are then strings);
  * string inputs: one string input `cat_input` [N, 4] whose columns are iris measurements
    binned into words ("low", "mid", "high", ... per column), through OneHotEncoder
    (OneHotEncoder op with cats_strings) and OrdinalEncoder (LabelEncoder keys_strings), in
    front of a classifier with string labels.

  * map inputs (`map_*`): skl2onnx's DictVectorizer pipeline (`map(string, float)`) and
    one-node DictVectorizer / CastMap graphs; each instance is one map (a JSON object), and
    onnxruntime, which takes one map per call, runs each row alone.

golden.json has the same format as the other conformance models; string outputs are written as
JSON strings and string inputs as rows of JSON strings.

It needs only scikit-learn, skl2onnx, onnx and onnxruntime at the versions pinned in
models/requirements-conformance.txt:

    /tmp/conf-venv/bin/python models/make_conformance_strings.py           # writes models/conformance/str_*
    /tmp/conf-venv/bin/python models/make_conformance_strings.py --only 'str_logreg*'
    /tmp/conf-venv/bin/python models/make_conformance_strings.py --maps    # only map_* (map inputs)
"""

from __future__ import annotations

import os

os.environ["OMP_NUM_THREADS"] = "1"

import argparse
import fnmatch
import json
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import onnx
import onnxruntime as ort
import skl2onnx
import skl2onnx.common.tree_ensemble as _skl2onnx_tree_ensemble
import sklearn
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType, StringTensorType
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits, load_iris, load_linnerud, load_wine
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
from sklearn.ensemble import (
    ExtraTreesClassifier,
    GradientBoostingClassifier,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
)
from sklearn.calibration import CalibratedClassifierCV
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.ensemble import AdaBoostClassifier, BaggingClassifier, StackingClassifier, VotingClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegressionCV, Perceptron, RidgeClassifier, RidgeClassifierCV, SGDClassifier
from sklearn.multiclass import OneVsRestClassifier
from sklearn.naive_bayes import BernoulliNB, CategoricalNB, ComplementNB, GaussianNB, MultinomialNB
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import MinMaxScaler, StandardScaler, TargetEncoder
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder
from sklearn.svm import SVC, LinearSVC, NuSVC
from sklearn.tree import DecisionTreeClassifier, ExtraTreeClassifier

SKL2ONNX_OPSET = {"": 15, "ai.onnx.ml": 3}
N_GOLDEN = 64
SEED = 0
TOLERANCE = 1e-5
MAX_MODEL_BYTES = 300_000


def _patch_skl2onnx_bool_attrs() -> None:
    """As in make_conformance.py: skl2onnx 1.20's HGB converter passes a bool attribute."""
    original = _skl2onnx_tree_ensemble.add_node
    if getattr(original, "_infera_patched", False):
        return

    def add_node(*args, **kwargs):
        flag = kwargs.get("nodes_missing_value_tracks_true")
        if isinstance(flag, (bool, np.bool_)):
            kwargs["nodes_missing_value_tracks_true"] = int(flag)
        return original(*args, **kwargs)

    add_node._infera_patched = True
    _skl2onnx_tree_ensemble.add_node = add_node


_patch_skl2onnx_bool_attrs()


@dataclass
class Data:
    x_train: np.ndarray
    y_train: np.ndarray  # class names (str)
    x_test: np.ndarray
    y_test: np.ndarray
    input_name: str
    strings: bool  # string input


LOADERS = {"iris": load_iris, "wine": load_wine, "cancer": load_breast_cancer}
# Words for the binned iris columns: one vocabulary per column, so the encoders see distinct
# categories per column.
WORDS = [["short", "medium", "long"], ["narrow", "average", "wide"], ["small", "mid", "large"], ["thin", "normal", "thick"]]


def load(dataset: str, standardise: bool = False, max_train: int | None = None, words: bool = False) -> Data:
    bunch = LOADERS[dataset]()
    x, y = bunch.data, np.array([str(bunch.target_names[t]) for t in bunch.target], dtype=object)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.3, stratify=y, random_state=SEED)
    if standardise:
        mean, std = x_train.mean(axis=0), x_train.std(axis=0)
        x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    if max_train is not None and len(x_train) > max_train:
        keep = np.sort(np.random.RandomState(SEED).choice(len(x_train), max_train, replace=False))
        x_train, y_train = x_train[keep], y_train[keep]
    if words:
        # Tertiles of the training split per column -> a word per value.
        edges = np.quantile(x_train, [1 / 3, 2 / 3], axis=0)

        def to_words(a):
            bins = np.stack([np.searchsorted(edges[:, j], a[:, j], side="right") for j in range(a.shape[1])], axis=1)
            return np.array([[WORDS[j][b] for j, b in enumerate(row)] for row in bins], dtype=object)

        return Data(to_words(x_train), y_train, to_words(x_test), y_test, "cat_input", True)
    return Data(x_train, y_train, x_test.astype(np.float32), y_test, "float_input", False)


def load_text() -> Data:
    """A text corpus bundled with scikit-learn: the lines of its data sets' descriptions
    (DESCR), each labelled with the data set it describes."""
    docs, labels = [], []
    for name, loader in [("iris", load_iris), ("wine", load_wine), ("cancer", load_breast_cancer), ("diabetes", load_diabetes), ("digits", load_digits), ("linnerud", load_linnerud)]:
        for line in loader().DESCR.splitlines():
            line = line.strip()
            if len(line.split()) >= 4 and not set(line) <= set("=-:. "):
                docs.append(line)
                labels.append(name)
    x = np.array(docs, dtype=object).reshape(-1, 1)
    y = np.array(labels, dtype=object)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.3, stratify=y, random_state=SEED)
    return Data(x_train, y_train, x_test, y_test, "text", True)


PENGUIN_NUMBERS = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]
PENGUIN_CATEGORIES = ["island", "sex"]


def load_penguins(unseen: bool = False, missing: bool = False, binary: bool = False) -> Data:
    """The Palmer penguins (bundled offline by the palmerpenguins package): one graph input per
    DataFrame column, numbers and strings; rows with a missing value are dropped.

    `unseen`: categories the training split never had in the held-out rows (every 5th row's
    island is "Atlantis", every 7th row's sex "unknown"); `missing`: rows whose sex is missing
    are kept, the missing value being the empty string (what a string tensor can carry);
    `binary`: the label is "Adelie" or "other"."""
    import palmerpenguins

    df = palmerpenguins.load_penguins().dropna(subset=PENGUIN_NUMBERS + ["island", "species"] + ([] if missing else ["sex"]))
    x = df[PENGUIN_CATEGORIES + PENGUIN_NUMBERS].copy()
    for c in PENGUIN_NUMBERS:
        x[c] = x[c].astype(np.float32)
    for c in PENGUIN_CATEGORIES:
        x[c] = x[c].fillna("").astype(object)
    y = df["species"].astype(object).to_numpy()
    if binary:
        y = np.where(y == "Adelie", "Adelie", "other").astype(object)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.3, stratify=y, random_state=SEED)
    x_test = x_test.reset_index(drop=True)
    if unseen:
        x_test.loc[x_test.index % 5 == 0, "island"] = "Atlantis"
        x_test.loc[x_test.index % 7 == 0, "sex"] = "unknown"
    return Data(x_train, y_train, x_test, y_test, "<columns>", True)


def mixed(encoder, model):
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(
        ColumnTransformer([("num", StandardScaler(), PENGUIN_NUMBERS), ("cat", encoder, PENGUIN_CATEGORIES)]),
        model,
    )


@dataclass(frozen=True)
class Spec:
    name: str
    data: Callable[[], Data]
    make: Callable[[], Any]
    zipmap_variant: bool = True


def lr():
    return LogisticRegression(max_iter=10_000, random_state=SEED)


SPECS: list[Spec] = [
    Spec("str_logreg_clf_iris", lambda: load("iris"), lr),
    Spec("str_logreg_clf_binary_cancer", lambda: load("cancer", standardise=True), lr),
    Spec("str_linsvc_clf_wine", lambda: load("wine", standardise=True), lambda: LinearSVC(max_iter=100_000, random_state=SEED), zipmap_variant=False),
    Spec("str_linsvc_clf_binary_cancer", lambda: load("cancer", standardise=True), lambda: LinearSVC(max_iter=100_000, random_state=SEED), zipmap_variant=False),
    Spec("str_svc_clf_iris_rbf", lambda: load("iris"), lambda: SVC(kernel="rbf", random_state=SEED)),
    Spec("str_svc_clf_iris_rbf_proba", lambda: load("iris"), lambda: SVC(kernel="rbf", probability=True, random_state=SEED)),
    Spec("str_svc_clf_binary_cancer_poly", lambda: load("cancer", standardise=True, max_train=200), lambda: SVC(kernel="poly", degree=3, coef0=1.0, random_state=SEED)),
    Spec(
        "str_svc_clf_binary_cancer_poly_proba",
        lambda: load("cancer", standardise=True, max_train=200),
        lambda: SVC(kernel="poly", degree=3, coef0=1.0, probability=True, random_state=SEED),
    ),
    Spec("str_dt_clf_iris", lambda: load("iris"), lambda: DecisionTreeClassifier(max_depth=5, random_state=SEED)),
    Spec("str_dt_clf_binary_cancer", lambda: load("cancer"), lambda: DecisionTreeClassifier(max_depth=5, random_state=SEED)),
    Spec("str_rf_clf_binary_cancer", lambda: load("cancer"), lambda: RandomForestClassifier(n_estimators=15, max_depth=5, random_state=SEED, n_jobs=1)),
    Spec("str_et_clf_wine", lambda: load("wine"), lambda: ExtraTreesClassifier(n_estimators=15, max_depth=5, random_state=SEED, n_jobs=1)),
    Spec("str_gbt_clf_iris", lambda: load("iris"), lambda: GradientBoostingClassifier(n_estimators=10, max_depth=3, random_state=SEED)),
    Spec("str_gbt_clf_binary_cancer", lambda: load("cancer"), lambda: GradientBoostingClassifier(n_estimators=20, max_depth=3, random_state=SEED)),
    Spec("str_hgb_clf_wine", lambda: load("wine"), lambda: HistGradientBoostingClassifier(max_iter=10, max_depth=4, max_leaf_nodes=15, random_state=SEED)),
    Spec("str_hgb_clf_binary_cancer", lambda: load("cancer"), lambda: HistGradientBoostingClassifier(max_iter=20, max_depth=4, max_leaf_nodes=15, random_state=SEED)),
    Spec("str_knn_clf_iris", lambda: load("iris"), lambda: KNeighborsClassifier(n_neighbors=5)),
    # --- string inputs -------------------------------------------------------------
    Spec(
        "str_onehot_logreg_clf_iris_words",
        lambda: load("iris", words=True),
        lambda: make_pipeline(OneHotEncoder(handle_unknown="ignore", sparse_output=False), lr()),
    ),
    Spec(
        "str_ordinal_dt_clf_iris_words",
        lambda: load("iris", words=True),
        lambda: make_pipeline(OrdinalEncoder(), DecisionTreeClassifier(max_depth=4, random_state=SEED)),
    ),
    # --- one input per DataFrame column (numbers and strings) -----------------------------
    Spec("str_mixed_onehot_logreg_clf_penguins", load_penguins, lambda: mixed(OneHotEncoder(handle_unknown="ignore", sparse_output=False), lr())),
    Spec(
        "str_mixed_ordinal_rf_clf_penguins",
        load_penguins,
        lambda: mixed(OrdinalEncoder(), RandomForestClassifier(n_estimators=10, max_depth=4, random_state=SEED, n_jobs=1)),
    ),
    # --- text: StringNormalizer, Tokenizer, TfIdfVectorizer ------------------------------
    Spec("str_tfidf_word12_logreg_clf_descr", load_text, lambda: make_pipeline(TfidfVectorizer(ngram_range=(1, 2)), lr()), zipmap_variant=False),
    Spec("str_count_word_logreg_clf_descr", load_text, lambda: make_pipeline(CountVectorizer(), lr()), zipmap_variant=False),
    Spec("str_tfidf_char13_logreg_clf_descr", load_text, lambda: make_pipeline(TfidfVectorizer(analyzer="char", ngram_range=(1, 3), min_df=3), lr()), zipmap_variant=False),
]


# --- issue 13, operator half: the remaining classifier families with string labels -------------
# Every scikit-learn classifier skl2onnx converts (its `sklearn_classifier_list`), trained on class
# names. Absent, because the exporters cannot: XGBClassifier (xgboost refuses string labels at
# fit), GaussianProcessClassifier (skl2onnx 1.20 casts the labels to int), OneVsOneClassifier
# (skl2onnx 1.20 writes a graph that fails ONNX type inference, integer labels too) and
# QuadraticDiscriminantAnalysis (skl2onnx 1.20's label output is [1, N], not one per row).
def mlp():
    return MLPClassifier(hidden_layer_sizes=(16,), max_iter=3_000, random_state=SEED)


def svc_lin():
    return LinearSVC(max_iter=100_000, random_state=SEED)


def dt3():
    return DecisionTreeClassifier(max_depth=3, random_state=SEED)


SPECS += [
    Spec("str_mlp_clf_iris", lambda: load("iris", standardise=True), mlp),
    Spec("str_mlp_clf_binary_cancer", lambda: load("cancer", standardise=True), mlp),
    Spec("str_gnb_clf_iris", lambda: load("iris"), GaussianNB),
    Spec("str_bnb_clf_binary_cancer", lambda: load("cancer", standardise=True), lambda: BernoulliNB(binarize=0.0)),
    Spec("str_mnb_clf_wine", lambda: load("wine"), MultinomialNB),
    Spec("str_cnb_clf_wine", lambda: load("wine"), ComplementNB),
    Spec(
        "str_ordinal_catnb_clf_iris_words",
        lambda: load("iris", words=True),
        lambda: make_pipeline(OrdinalEncoder(), CategoricalNB()),
    ),
    Spec("str_sgd_hinge_clf_iris", lambda: load("iris", standardise=True), lambda: SGDClassifier(random_state=SEED)),
    Spec("str_sgd_log_clf_binary_cancer", lambda: load("cancer", standardise=True), lambda: SGDClassifier(loss="log_loss", random_state=SEED)),
    Spec("str_sgd_modhuber_clf_wine", lambda: load("wine", standardise=True), lambda: SGDClassifier(loss="modified_huber", random_state=SEED)),
    Spec("str_perceptron_clf_wine", lambda: load("wine", standardise=True), lambda: Perceptron(random_state=SEED)),
    # skl2onnx's ridge converters ignore the zipmap option (no probabilities): no ZipMap variant.
    Spec("str_ridge_clf_wine", lambda: load("wine", standardise=True), RidgeClassifier, zipmap_variant=False),
    Spec("str_ridge_clf_binary_cancer", lambda: load("cancer", standardise=True), RidgeClassifier, zipmap_variant=False),
    Spec("str_ridgecv_clf_iris", lambda: load("iris"), RidgeClassifierCV, zipmap_variant=False),
    Spec("str_logregcv_clf_iris", lambda: load("iris"), lambda: LogisticRegressionCV(max_iter=10_000, cv=3)),
    Spec("str_lda_clf_wine", lambda: load("wine"), LinearDiscriminantAnalysis),
    Spec("str_lda_clf_binary_cancer", lambda: load("cancer"), LinearDiscriminantAnalysis),
    Spec("str_ada_clf_iris", lambda: load("iris"), lambda: AdaBoostClassifier(dt3(), n_estimators=10, random_state=SEED)),
    Spec("str_ada_clf_binary_cancer", lambda: load("cancer"), lambda: AdaBoostClassifier(n_estimators=20, random_state=SEED)),
    Spec("str_bagging_clf_wine", lambda: load("wine"), lambda: BaggingClassifier(dt3(), n_estimators=10, random_state=SEED)),
    Spec(
        "str_voting_hard_clf_iris",
        lambda: load("iris"),
        lambda: VotingClassifier([("lr", lr()), ("dt", dt3()), ("gnb", GaussianNB())], voting="hard", flatten_transform=False),
    ),
    Spec(
        "str_voting_soft_clf_wine",
        lambda: load("wine", standardise=True),
        lambda: VotingClassifier([("lr", lr()), ("dt", dt3()), ("gnb", GaussianNB())], voting="soft", flatten_transform=False),
    ),
    Spec(
        "str_stacking_clf_iris",
        lambda: load("iris"),
        lambda: StackingClassifier([("dt", dt3()), ("gnb", GaussianNB())], final_estimator=lr()),
    ),
    Spec(
        "str_calibrated_sigmoid_clf_binary_cancer",
        lambda: load("cancer", standardise=True),
        lambda: CalibratedClassifierCV(svc_lin(), method="sigmoid", cv=3),
    ),
    Spec("str_calibrated_isotonic_clf_iris", lambda: load("iris"), lambda: CalibratedClassifierCV(GaussianNB(), method="isotonic", cv=3)),
    Spec("str_ovr_logreg_clf_wine", lambda: load("wine", standardise=True), lambda: OneVsRestClassifier(lr())),
    Spec("str_nusvc_clf_iris", lambda: load("iris"), lambda: NuSVC(probability=True, random_state=SEED)),
    Spec("str_svc_clf_binary_cancer_sigmoid", lambda: load("cancer", standardise=True, max_train=200), lambda: SVC(kernel="sigmoid", gamma=0.01, random_state=SEED)),
    Spec("str_svc_clf_wine_linear_proba", lambda: load("wine", standardise=True), lambda: SVC(kernel="linear", probability=True, random_state=SEED)),
    Spec("str_extratree_clf_iris", lambda: load("iris"), lambda: ExtraTreeClassifier(max_depth=5, random_state=SEED)),
    Spec("str_rf_clf_iris", lambda: load("iris"), lambda: RandomForestClassifier(n_estimators=15, max_depth=5, random_state=SEED, n_jobs=1)),
    Spec("str_scaler_logreg_clf_wine", lambda: load("wine"), lambda: make_pipeline(StandardScaler(), lr())),
    Spec("str_minmax_knn_clf_wine", lambda: load("wine"), lambda: make_pipeline(MinMaxScaler(), KNeighborsClassifier(n_neighbors=5))),
]

# --- mixed-input pipelines: unknown categories in the held-out rows -----------------------------
def imputed(strategy: str):
    return make_pipeline(
        SimpleImputer(strategy=strategy, missing_values="", fill_value="missing" if strategy == "constant" else None),
        OneHotEncoder(handle_unknown="ignore", sparse_output=False),
    )


SPECS += [
    Spec(
        "str_mixed_onehot_unknown_logreg_clf_penguins",
        lambda: load_penguins(unseen=True),
        lambda: mixed(OneHotEncoder(handle_unknown="ignore", sparse_output=False), lr()),
    ),
    Spec(
        "str_mixed_onehot_infrequent_logreg_clf_penguins",
        # No unseen categories here: skl2onnx 1.20 exports infrequent_if_exist with zeros=0, so
        # onnxruntime (and infera, alike) refuses a category never seen in training.
        load_penguins,
        lambda: mixed(OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=40, sparse_output=False), lr()),
    ),
    Spec(
        "str_mixed_ordinal_unknown_dt_clf_penguins",
        lambda: load_penguins(unseen=True),
        lambda: mixed(OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1), DecisionTreeClassifier(max_depth=4, random_state=SEED)),
    ),
    Spec(
        "str_mixed_target_logreg_clf_binary_penguins",
        lambda: load_penguins(unseen=True, binary=True),
        lambda: mixed(TargetEncoder(random_state=SEED), lr()),
    ),
    Spec("str_mixed_imputer_const_logreg_clf_penguins", lambda: load_penguins(missing=True), lambda: mixed(imputed("constant"), lr())),
    Spec("str_mixed_imputer_mostfreq_rf_clf_penguins", lambda: load_penguins(missing=True, unseen=True), lambda: mixed(imputed("most_frequent"), RandomForestClassifier(n_estimators=10, max_depth=4, random_state=SEED, n_jobs=1))),
]

# --- text pipelines: word and char n-grams, stop words, case, binary, sublinear tf, max features -
SPECS += [
    Spec("str_tfidf_word11_logreg_clf_descr", load_text, lambda: make_pipeline(TfidfVectorizer(), lr())),
    Spec("str_count_word12_stop_binary_logreg_clf_descr", load_text, lambda: make_pipeline(CountVectorizer(ngram_range=(1, 2), stop_words="english", binary=True), lr())),
    Spec(
        "str_tfidf_word12_nolower_sublinear_max_logreg_clf_descr",
        load_text,
        lambda: make_pipeline(TfidfVectorizer(ngram_range=(1, 2), lowercase=False, sublinear_tf=True, max_features=400), lr()),
    ),
    Spec("str_tfidf_char24_binary_logreg_clf_descr", load_text, lambda: make_pipeline(TfidfVectorizer(analyzer="char", ngram_range=(2, 4), binary=True, max_features=600), lr())),
    Spec("str_tfidf_word11_mnb_clf_descr", load_text, lambda: make_pipeline(TfidfVectorizer(), MultinomialNB(alpha=0.1))),
    Spec("str_tfidf_word12_dt_clf_descr", load_text, lambda: make_pipeline(TfidfVectorizer(ngram_range=(1, 2), max_features=300), DecisionTreeClassifier(max_depth=8, random_state=SEED))),
]


def final_estimator(model):
    return model.steps[-1][1] if isinstance(model, Pipeline) else model


def initial_types(data: Data) -> list:
    if is_frame(data):
        return [
            (c, StringTensorType([None, 1]) if data.x_test[c].dtype == object else FloatTensorType([None, 1]))
            for c in data.x_test.columns
        ]
    width = data.x_test.shape[1]
    kind = StringTensorType([None, width]) if data.strings else FloatTensorType([None, width])
    return [(data.input_name, kind)]


def is_frame(data: Data) -> bool:
    return data.input_name == "<columns>"


def feeds(data: Data, x) -> dict:
    """onnxruntime's inputs: one [N, 1] array per column, or the one input."""
    if is_frame(data):
        return {c: x[c].to_numpy().reshape(-1, 1) for c in x.columns}
    return {data.input_name: x}


def take(x, rows):
    return x.iloc[rows].reset_index(drop=True) if hasattr(x, "iloc") else x[rows]


def export(model, data: Data, zipmap: bool, name: str) -> onnx.ModelProto | None:
    try:
        onx = convert_sklearn(
            model,
            name=name,
            initial_types=initial_types(data),
            options={id(final_estimator(model)): {"zipmap": zipmap}},
            target_opset=SKL2ONNX_OPSET,
        )
    except NameError as e:  # LinearSVC: no zipmap option
        if "Option 'zipmap'" not in str(e) or zipmap:
            raise
        onx = convert_sklearn(
            model,
            name=name,
            initial_types=initial_types(data),
            options={id(final_estimator(model)): {}},
            target_opset=SKL2ONNX_OPSET,
        )
    seen: dict[str, int] = {}
    for imp in onx.opset_import:
        seen[imp.domain] = max(seen.get(imp.domain, 0), imp.version)
    del onx.opset_import[:]
    for domain in sorted(seen):
        onx.opset_import.add(domain=domain, version=seen[domain])
    for v in list(onx.graph.input) + list(onx.graph.output):
        if v.type.HasField("tensor_type") and v.type.tensor_type.HasField("shape"):
            d0 = v.type.tensor_type.shape.dim[0]
            if not d0.HasField("dim_value") and not d0.dim_param:
                d0.dim_param = "N"
    onnx.checker.check_model(onx, full_check=True)
    return onx


def ort_session(onx: onnx.ModelProto) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    return ort.InferenceSession(onx.SerializeToString(), so, providers=["CPUExecutionProvider"])


def run_ort(sess: ort.InferenceSession, data: Data, x) -> dict[str, np.ndarray]:
    """Every output as an ndarray; ZipMap's dicts become [N, C] float32 in class order
    (scikit-learn's classes_ are sorted, so sorted keys are the class order)."""
    out = {}
    for o, v in zip(sess.get_outputs(), sess.run(None, feeds(data, x))):
        if isinstance(v, list):
            keys = sorted(v[0])
            assert all(sorted(d) == keys for d in v), o.name
            v = np.array([[d[k] for k in keys] for d in v], dtype=np.float32)
        out[o.name] = v
    return out


def same(got: np.ndarray, want: np.ndarray) -> bool:
    if got.dtype == object or want.dtype == object:
        return got.shape == want.shape and bool(np.all(got == want))
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return bool(np.all(np.abs(got - want) <= TOLERANCE * np.maximum(1.0, np.abs(want))))


def to_json_value(v: np.ndarray):
    if v.dtype == object:
        return [str(s) for s in v.tolist()] if v.ndim == 1 else [[str(s) for s in r] for r in v.tolist()]
    if np.issubdtype(v.dtype, np.integer):
        return v.astype(np.int64).tolist()
    if v.dtype == np.float32:
        return np.vectorize(lambda e: float(np.float32(e)), otypes=[object])(v).tolist() if v.size else v.tolist()
    raise TypeError(f"unexpected output dtype {v.dtype}")


def render_golden(input_name: str, rows, golden: dict[str, np.ndarray]) -> str:
    def dumps(x) -> str:
        return json.dumps(x, separators=(", ", ": "))

    if hasattr(rows, "iloc"):  # one input per column: instances are objects of named values
        inputs = [
            {c: (str(v) if isinstance(v, str) else float(np.float32(v))) for c, v in row.items()}
            for _, row in rows.iterrows()
        ]
        input_name = None
    elif rows.dtype == object:
        inputs = [[str(v) for v in row] for row in rows]
    else:
        inputs = [[float(np.float32(v)) for v in row] for row in rows]
    outputs = {k: to_json_value(v) for k, v in golden.items()}
    out = (['{"input": ' + dumps(input_name) + ","] if input_name else ["{"]) + [' "inputs": [']
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
    return "\n".join(out) + "\n"


def build(spec: Spec, out: Path) -> list[str]:
    data = spec.data()
    model = spec.make()
    written = []
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        warnings.filterwarnings("ignore", message=".*probability.*", category=FutureWarning)
        warnings.filterwarnings("ignore", message=".*prob[AB]_.*", category=FutureWarning)
        # Text vectorizers take a 1-D list of documents; the graph's input is [N, 1].
        docs = (lambda x: x[:, 0]) if data.input_name == "text" else (lambda x: x)
        model.fit(docs(data.x_train), data.y_train)
        for zipmap in [False, True] if spec.zipmap_variant else [False]:
            name = spec.name + ("_zipmap" if zipmap else "")
            onx = export(model, data, zipmap, name)
            idx = np.arange(N_GOLDEN) % len(data.x_test)
            rows = take(data.x_test, idx)
            sess = ort_session(onx)
            full = run_ort(sess, data, data.x_test)
            labels = next(v for v in full.values() if v.ndim == 1 or v.dtype == object)
            agree = float(np.mean(labels.reshape(-1) == model.predict(docs(data.x_test))))
            assert agree >= 0.95, (name, "onnxruntime vs scikit-learn labels", agree)
            assert labels.dtype == object, (name, "the label output is a string tensor")
            golden = run_ort(sess, data, rows)
            for k, v in golden.items():
                assert same(v, full[k][idx]), (name, k, "batch of 64 vs whole split")
                for i in range(N_GOLDEN):
                    one = run_ort(sess, data, take(rows, slice(i, i + 1)))[k]
                    assert same(one[0:1], v[i : i + 1]), (name, k, "row", i)
            blob = onx.SerializeToString()
            if len(blob) > MAX_MODEL_BYTES:
                sys.exit(f"{name}: model.onnx is {len(blob)} bytes (> {MAX_MODEL_BYTES})")
            d = out / name / "1"
            d.mkdir(parents=True, exist_ok=True)
            (d / "model.onnx").write_bytes(blob)
            (d / "golden.json").write_text(render_golden(data.input_name, rows, golden), encoding="utf-8")
            ops = sorted({f"{n.domain or 'ai.onnx'}:{n.op_type}" for n in onx.graph.node})
            print(f"[{name}] {len(blob)} bytes, labels agree with scikit-learn on {agree:.1%}; ops: {', '.join(ops)}")
            written.append(name)
    return written


def map_graph(name: str, key: int, value: int, node, out_type: int):
    """A one-node ai.onnx.ml graph on a map(key, value) input `m` with output `y`."""
    from onnx import helper

    map_type = helper.make_map_type_proto(key, helper.make_tensor_type_proto(value, None))
    graph = helper.make_graph([node], name, [helper.make_value_info("m", map_type)], [helper.make_tensor_value_info("y", out_type, None)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15), helper.make_opsetid("ai.onnx.ml", 3)])


def render_map_golden(rows: list[dict], golden: dict[str, np.ndarray]) -> str:
    """golden.json for a map-input model: each instance is its map as a JSON object (int keys as
    their decimal names), outputs as in render_golden (doubles kept as Python floats)."""
    def value(v):
        return float(v) if isinstance(v, (float, np.floating)) else str(v)

    inputs = [{str(k): value(v) for k, v in row.items()} for row in rows]
    outputs = {k: (v.tolist() if v.dtype == np.float64 else to_json_value(v)) for k, v in golden.items()}
    lines = ['{', ' "inputs": [']
    lines += ["   " + json.dumps(r, separators=(", ", ": ")) + ("," if i < len(inputs) - 1 else "") for i, r in enumerate(inputs)]
    lines += ["  ],", ' "outputs": ' + json.dumps(outputs, separators=(", ", ": ")) + ",", f' "tolerance": {json.dumps(TOLERANCE)}' + "}"]
    return "\n".join(lines) + "\n"


def map_models() -> list[tuple[str, onnx.ModelProto, list[dict]]]:
    """The map-input models and their 64 held-out maps each. onnxruntime takes one map per call."""
    from onnx import TensorProto, helper
    from sklearn.feature_extraction import DictVectorizer
    from skl2onnx.common.data_types import DictionaryType

    data = load("iris")
    names = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    dicts = [dict(zip(names, map(float, row))) for row in data.x_train]
    model = make_pipeline(DictVectorizer(sparse=False), lr()).fit(dicts, data.y_train)
    dictvec = convert_sklearn(
        model,
        name="map_dictvec_logreg_clf_iris",
        initial_types=[("features", DictionaryType(StringTensorType([]), FloatTensorType([])))],
        options={id(model.steps[-1][1]): {"zipmap": False}},
        target_opset=SKL2ONNX_OPSET,
    )
    rng = np.random.RandomState(SEED)
    iris_rows = []
    for i in range(N_GOLDEN):
        row = {k: float(np.float32(v)) for k, v in zip(names, data.x_test[i % len(data.x_test)])}
        if i % 4 == 1:  # a feature missing: its column is 0
            del row[names[i % 3]]
        if i % 4 == 2:  # a key outside the vocabulary: ignored
            row["colour"] = 1.0
        iris_rows.append(row)
    int_dict = map_graph(
        "map_dictvec_int_keys", TensorProto.INT64, TensorProto.FLOAT,
        helper.make_node("DictVectorizer", ["m"], ["y"], domain="ai.onnx.ml", int64_vocabulary=[7, 3, 11, 3, 0]),
        TensorProto.FLOAT,
    )
    int_rows = [{int(k): float(np.float32(rng.normal())) for k in rng.choice([0, 3, 5, 7, 11, 12], size=rng.randint(1, 5), replace=False)} for _ in range(N_GOLDEN)]
    dense = map_graph(
        "map_castmap_dense_float", TensorProto.INT64, TensorProto.FLOAT,
        helper.make_node("CastMap", ["m"], ["y"], domain="ai.onnx.ml", map_form="DENSE", cast_to="TO_FLOAT"),
        TensorProto.FLOAT,
    )
    # DENSE gives [1, n] per map: every map of the set has 3 entries, so the 64 stack.
    dense_rows = [{int(k): float(np.float32(rng.normal())) for k in rng.choice(20, size=3, replace=False)} for _ in range(N_GOLDEN)]
    sparse = map_graph(
        "map_castmap_sparse_int64", TensorProto.INT64, TensorProto.FLOAT,
        helper.make_node("CastMap", ["m"], ["y"], domain="ai.onnx.ml", map_form="SPARSE", cast_to="TO_INT64", max_map=6),
        TensorProto.INT64,
    )
    # Keys 6..8 are past max_map (ignored); values truncate toward zero.
    sparse_rows = [{int(k): float(np.float32(rng.normal() * 10)) for k in rng.choice(9, size=rng.randint(1, 5), replace=False)} for _ in range(N_GOLDEN)]
    return [
        ("map_dictvec_logreg_clf_iris", dictvec, iris_rows),
        ("map_dictvec_int_keys", int_dict, int_rows),
        ("map_castmap_dense_float", dense, dense_rows),
        ("map_castmap_sparse_int64", sparse, sparse_rows),
    ]


def write_map_models(out: Path, only: list[str]) -> list[str]:
    """Models with an ONNX map input (DictVectorizer, CastMap), served by infera as one map per
    instance (a JSON object). onnxruntime runs each map alone; golden.json holds those rows."""
    written = []
    for name, onx, rows in map_models():
        if only and not any(fnmatch.fnmatch(name, g) for g in only):
            continue
        sess = ort_session(onx)
        input_name = sess.get_inputs()[0].name
        runs = [sess.run(None, {input_name: row}) for row in rows]
        golden = {o.name: np.concatenate([r[i] for r in runs]) for i, o in enumerate(sess.get_outputs())}
        d = out / name / "1"
        d.mkdir(parents=True, exist_ok=True)
        (d / "model.onnx").write_bytes(onx.SerializeToString())
        (d / "golden.json").write_text(render_map_golden(rows, golden), encoding="utf-8")
        print(f"[{name}] map input; outputs {', '.join(f'{k} {v.shape}' for k, v in golden.items())}")
        written.append(name)
    return written


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "conformance"))
    ap.add_argument("--only", action="append", default=[], metavar="GLOB")
    ap.add_argument("--maps", action="store_true", help="write only the map-input models (map_*)")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"numpy {np.__version__}, scikit-learn {sklearn.__version__}, skl2onnx {skl2onnx.__version__}, onnx {onnx.__version__}, onnxruntime {ort.__version__}")
    written = []
    for spec in [] if args.maps else SPECS:
        if args.only and not any(fnmatch.fnmatch(spec.name, g) for g in args.only):
            continue
        written += build(spec, out)
    written += write_map_models(out, args.only)
    print(f"wrote {len(written)} models to {out}")


if __name__ == "__main__":
    main()
