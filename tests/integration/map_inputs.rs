//! Models with an ONNX map input (DictVectorizer, CastMap; `models/conformance/map_*`, made by
//! `models/make_conformance_strings.py --maps` with onnxruntime's outputs for each map alone):
//! served with one map per instance as a JSON object, several maps in one batch, and the three
//! tensors of a map (`<name>.keys`, `.values`, `.lengths`) over V2.

use std::path::{Path, PathBuf};

use axum::http::StatusCode;
use serde_json::{json, Value};

use crate::common::{copy_dir, get, loaded, post};

fn conformance() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/conformance")
}

fn repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for m in [
        "map_dictvec_logreg_clf_iris",
        "map_castmap_dense_float",
        "map_castmap_sparse_int64",
    ] {
        copy_dir(&conformance().join(m), &dir.path().join(m));
    }
    dir
}

fn golden(repo: &Path, model: &str) -> Value {
    let text = std::fs::read_to_string(repo.join(model).join("1/golden.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn close(a: &Value, b: &Value) -> bool {
    let (a, b) = (a.as_f64().unwrap(), b.as_f64().unwrap());
    (a - b).abs() <= 1e-5 * a.abs().max(1.0)
}

#[tokio::test]
async fn a_dict_vectorizer_pipeline_takes_json_objects_and_answers_like_onnxruntime() {
    let dir = repo();
    let app = loaded(dir.path(), &[]).router();
    let model = "map_dictvec_logreg_clf_iris";
    let golden = golden(dir.path(), model);
    // Maps of 4, 3 (a feature missing) and 5 entries (one key outside the vocabulary): one batch.
    let rows = &golden["inputs"].as_array().unwrap()[..8];
    assert_eq!(rows[1].as_object().unwrap().len(), 3);
    assert!(rows[2].get("colour").is_some());
    let r = post(
        &app,
        &format!("/models/{model}/predict"),
        &json!({ "instances": rows }),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let predictions = r.json()["predictions"].as_array().unwrap().clone();
    for (i, p) in predictions.iter().enumerate() {
        assert_eq!(p["label"], golden["outputs"]["label"][i], "row {i}");
        let want = golden["outputs"]["probabilities"][i].as_array().unwrap();
        // Class order (iris' names are sorted, so an object keyed by name keeps it).
        let got: Vec<Value> = match &p["probabilities"] {
            Value::Array(a) => a.clone(),
            Value::Object(o) => o.values().cloned().collect(),
            other => panic!("row {i}: probabilities {other}"),
        };
        assert_eq!(got.len(), want.len(), "row {i}");
        for (value, want) in got.iter().zip(want) {
            assert!(close(value, want), "row {i}: {got:?} vs {want:?}");
        }
    }
    // The card shows the map as its three tensors.
    let card = get(&app, &format!("/models/{model}")).await;
    assert!(card.text.contains("features.keys"), "{}", card.text);
}

#[tokio::test]
async fn cast_map_sparse_over_v2_takes_the_three_tensors_and_predict_takes_objects() {
    let dir = repo();
    let app = loaded(dir.path(), &[]).router();
    let model = "map_castmap_sparse_int64";
    let golden = golden(dir.path(), model);
    // Two maps as V2 tensors, padded to the longer one: {2: -1.5, 7: 300} and {}.
    let body = json!({"inputs": [
        {"name": "m.keys", "shape": [2, 2], "datatype": "INT64", "data": [2, 7, 0, 0]},
        {"name": "m.values", "shape": [2, 2], "datatype": "FP32", "data": [-1.5, 300.0, 0.0, 0.0]},
        {"name": "m.lengths", "shape": [2], "datatype": "INT64", "data": [2, 0]},
    ]});
    let r = post(&app, &format!("/v2/models/{model}/infer"), &body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let out = &r.json()["outputs"][0];
    assert_eq!(out["shape"], json!([2, 6]));
    assert_eq!(
        out["data"],
        json!([0, 0, -1, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
        "key 7 is past max_map; -1.5 truncates toward zero; the empty map is all padding"
    );
    // The same model from /predict objects agrees with onnxruntime's rows.
    let rows = &golden["inputs"].as_array().unwrap()[..6];
    let r = post(
        &app,
        &format!("/models/{model}/predict"),
        &json!({ "instances": rows }),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    for (i, p) in r.json()["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        let got = p["outputs"]["y"]["data"].as_array().unwrap();
        let want = golden["outputs"]["y"][i].as_array().unwrap();
        assert_eq!(got.len(), want.len(), "row {i}");
        assert!(got.iter().zip(want).all(|(a, b)| close(a, b)), "row {i}");
    }
    // A length past the row's slots, or a key twice in one map, is the client's mistake.
    let mut bad = body.clone();
    bad["inputs"][2]["data"] = json!([3, 0]);
    let r = post(&app, &format!("/v2/models/{model}/infer"), &bad).await;
    let (error, _) = r.error(StatusCode::BAD_REQUEST);
    assert!(error.contains("length 3 is outside 0..=2"), "{error}");
    let mut twice = body;
    twice["inputs"][0]["data"] = json!([2, 2, 0, 0]);
    let r = post(&app, &format!("/v2/models/{model}/infer"), &twice).await;
    let (error, _) = r.error(StatusCode::BAD_REQUEST);
    assert!(error.contains("given twice"), "{error}");
}

#[tokio::test]
async fn map_instances_are_checked_and_counted_before_decoding() {
    let dir = repo();
    let app = loaded(dir.path(), &["--max-elements", "100"]).router();
    let url = "/models/map_castmap_dense_float/predict";
    let r = post(&app, url, &json!({"instances": [[1.0, 2.0]]})).await;
    let (error, kind) = r.error(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(kind, "wrong_type");
    assert!(error.contains("input \"m\" is a map"), "{error}");
    let r = post(&app, url, &json!({"instances": [{"x": 1.0}]})).await;
    let (error, _) = r.error(StatusCode::UNPROCESSABLE_ENTITY);
    assert!(error.contains("key \"x\" is not an int64"), "{error}");
    // One map of 40 entries and 10 empty ones: padded, 2 * 11 * 40 + 11 elements > 100.
    let big: serde_json::Map<String, Value> =
        (0..40).map(|k| (k.to_string(), json!(1.0))).collect();
    let mut instances = vec![Value::Object(big)];
    instances.extend((0..10).map(|_| json!({})));
    let r = post(&app, url, &json!({ "instances": instances })).await;
    let (error, kind) = r.error(StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(kind, "too_many_elements", "{error}");
    // Maps of one size run as one batch, in key order.
    let r = post(
        &app,
        url,
        &json!({"instances": [{"10": 1.0, "2": 2.0}, {"0": 3.0, "1": 4.0}]}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let p = r.json()["predictions"].clone();
    assert_eq!(p[0]["outputs"]["y"]["data"], json!([2.0, 1.0]), "{p}");
    assert_eq!(p[1]["outputs"]["y"]["data"], json!([3.0, 4.0]), "{p}");
    // Maps of different sizes cannot make DENSE rows: the operator refuses them, a 422 naming
    // why (a 500 before), and the server goes on serving.
    let r = post(
        &app,
        url,
        &json!({"instances": [{"1": 1.0, "2": 2.0}, {"0": 3.0}]}),
    )
    .await;
    let (error, kind) = r.error(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(kind, "input_rejected", "{error}");
    assert!(error.contains("same number of entries"), "{error}");
    let r = post(&app, url, &json!({"instances": [{"0": 3.0}]})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}
