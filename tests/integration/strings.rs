//! String tensors end to end: string class labels in /predict, V1 and V2 answers; V2 `BYTES`
//! inputs as JSON strings and in the binary extension's length-prefixed layout (bounds checked
//! against the bytes sent); models with one input per DataFrame column taking /predict objects
//! of named values or arrays in input order; a TF-IDF text classifier.

use std::path::{Path, PathBuf};

use axum::http::StatusCode;
use serde_json::{json, Value};

use crate::common::{binary_infer, copy_dir, get, loaded, post, Reply};

const MODELS: [&str; 4] = [
    "str_logreg_clf_iris",
    "str_ordinal_dt_clf_iris_words",
    "str_mixed_onehot_logreg_clf_penguins",
    "str_tfidf_word12_logreg_clf_descr",
];

fn conformance() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/conformance")
}

fn repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for m in MODELS {
        copy_dir(&conformance().join(m), &dir.path().join(m));
    }
    dir
}

fn golden(name: &str) -> Value {
    let path = conformance().join(name).join("1/golden.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn app(dir: &Path) -> axum::Router {
    loaded(dir, &[]).router()
}

/// The length-prefixed BYTES layout of `items`.
fn bytes_layout(items: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    for s in items {
        out.extend_from_slice(&(s.len() as u32).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    }
    out
}

#[tokio::test]
async fn string_labels_come_from_the_graph_in_every_protocol() {
    let dir = repo();
    let app = app(dir.path());
    let g = golden("str_logreg_clf_iris");
    let rows = &g["inputs"].as_array().unwrap()[..3];
    let want: Vec<&str> = g["outputs"]["label"].as_array().unwrap()[..3]
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let r = post(
        &app,
        "/models/str_logreg_clf_iris/predict",
        &json!({ "instances": rows }),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let got: Vec<String> = r.json()["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["label"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(got, want);
    // The model's labels are the graph's class names.
    let m = get(&app, "/models/str_logreg_clf_iris").await;
    assert!(m.text.contains("versicolor"), "{}", m.text);
    // V2: the label output is BYTES.
    let flat: Vec<Value> = rows
        .iter()
        .flat_map(|r| r.as_array().unwrap().clone())
        .collect();
    let r = post(
        &app,
        "/v2/models/str_logreg_clf_iris/infer",
        &json!({"inputs": [{"name": "float_input", "shape": [3, 4], "datatype": "FP32", "data": flat}]}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let out = r.json();
    let label = out["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == "label")
        .unwrap()
        .clone();
    assert_eq!(label["datatype"], "BYTES");
    assert_eq!(label["data"], json!(want));
    // V1.
    let r = post(
        &app,
        "/v1/models/str_logreg_clf_iris:predict",
        &json!({ "instances": rows }),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.text.contains(want[0]), "{}", r.text);
}

#[tokio::test]
async fn v2_bytes_inputs_as_json_strings_and_binary_agree_with_onnxruntime() {
    let dir = repo();
    let app = app(dir.path());
    let model = "str_ordinal_dt_clf_iris_words";
    let g = golden(model);
    let rows = g["inputs"].as_array().unwrap();
    let words: Vec<&str> = rows
        .iter()
        .flat_map(|r| r.as_array().unwrap().iter().map(|v| v.as_str().unwrap()))
        .collect();
    let n = rows.len();
    let want = &g["outputs"]["label"];
    let r = post(
        &app,
        &format!("/v2/models/{model}/infer"),
        &json!({"inputs": [{"name": "cat_input", "shape": [n, 4], "datatype": "BYTES", "data": words}]}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let out = r.json();
    assert_eq!(out["outputs"][0]["data"], *want);

    // The binary layout, with the label asked for in binary too.
    let tail = bytes_layout(&words);
    let header = json!({
        "inputs": [{"name": "cat_input", "shape": [n, 4], "datatype": "BYTES", "parameters": {"binary_data_size": tail.len()}}],
        "outputs": [{"name": "label", "parameters": {"binary_data": true}}],
    });
    let (status, head, bytes) = binary_infer(&app, model, &header, &tail).await;
    assert_eq!(status, StatusCode::OK, "{head}");
    assert_eq!(head["outputs"][0]["datatype"], "BYTES");
    let want_labels: Vec<&str> = want
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(bytes, bytes_layout(&want_labels));
    assert_eq!(
        head["outputs"][0]["parameters"]["binary_data_size"],
        bytes.len()
    );
}

#[tokio::test]
async fn bytes_are_bounded_by_what_was_sent() {
    let dir = repo();
    let app = app(dir.path());
    let model = "str_ordinal_dt_clf_iris_words";
    let header = |size: usize, shape: Value| json!({"inputs": [{"name": "cat_input", "shape": shape, "datatype": "BYTES", "parameters": {"binary_data_size": size}}]});
    // A length prefix far past the data sent.
    let mut lie = u32::MAX.to_le_bytes().to_vec();
    lie.extend_from_slice(b"long");
    let (status, head, _) =
        binary_infer(&app, model, &header(lie.len(), json!([1, 4])), &lie).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{head}");
    assert!(
        head["error"]
            .as_str()
            .unwrap()
            .contains("runs past the data sent"),
        "{head}"
    );
    // A huge declared shape with four strings sent.
    let four = bytes_layout(&["long", "wide", "large", "thick"]);
    let (status, head, _) = binary_infer(
        &app,
        model,
        &header(four.len(), json!([1u64 << 40, 4])),
        &four,
    )
    .await;
    assert_eq!(status.as_u16() / 100, 4, "{head}");
    // Not UTF-8.
    let mut bad = bytes_layout(&["long", "wide", "large"]);
    bad.extend_from_slice(&2u32.to_le_bytes());
    bad.extend_from_slice(&[0xff, 0xfe]);
    let (status, head, _) =
        binary_infer(&app, model, &header(bad.len(), json!([1, 4])), &bad).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{head}");
    assert!(
        head["error"].as_str().unwrap().contains("not UTF-8"),
        "{head}"
    );
    // A number where a string belongs, in JSON.
    let r = post(
        &app,
        &format!("/v2/models/{model}/infer"),
        &json!({"inputs": [{"name": "cat_input", "shape": [1, 4], "datatype": "BYTES", "data": ["long", 3, "large", "thick"]}]}),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert!(r.text.contains("expected a string"), "{}", r.text);
}

#[tokio::test]
async fn one_input_per_column_takes_named_values_or_arrays_in_input_order() {
    let dir = repo();
    let app = app(dir.path());
    let model = "str_mixed_onehot_logreg_clf_penguins";
    let g = golden(model);
    let objects = &g["inputs"].as_array().unwrap()[..4];
    let want = &g["outputs"]["label"].as_array().unwrap()[..4];
    let labels = |r: &Reply| -> Vec<Value> {
        r.json()["predictions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["label"].clone())
            .collect()
    };
    let r = post(
        &app,
        &format!("/models/{model}/predict"),
        &json!({ "instances": objects }),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(labels(&r), want);
    // The same rows as arrays in the graph's input order.
    let order: Vec<String> = get(&app, &format!("/v2/models/{model}")).await.json()["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(order.len(), 6);
    let arrays: Vec<Value> = objects
        .iter()
        .map(|o| Value::Array(order.iter().map(|n| o[n].clone()).collect()))
        .collect();
    let r = post(
        &app,
        &format!("/models/{model}/predict"),
        &json!({ "instances": arrays }),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(labels(&r), want);
    // A string where a number belongs names the input.
    let mut wrong = objects[0].clone();
    wrong["body_mass_g"] = json!("heavy");
    let r = post(
        &app,
        &format!("/models/{model}/predict"),
        &json!({ "instances": [wrong] }),
    )
    .await;
    assert_eq!(r.status.as_u16() / 100, 4, "{}", r.text);
    assert!(r.text.contains("body_mass_g"), "{}", r.text);
    // V2: one tensor per input, BYTES and FP32 mixed.
    let inputs: Vec<Value> = order
        .iter()
        .map(|n| {
            let column: Vec<Value> = objects.iter().map(|o| o[n].clone()).collect();
            let datatype = if column[0].is_string() {
                "BYTES"
            } else {
                "FP32"
            };
            json!({"name": n, "shape": [4, 1], "datatype": datatype, "data": column})
        })
        .collect();
    let r = post(
        &app,
        &format!("/v2/models/{model}/infer"),
        &json!({ "inputs": inputs }),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let out = r.json();
    let label = out["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == "label")
        .unwrap()
        .clone();
    assert_eq!(label["data"].as_array().unwrap().as_slice(), want);
}

#[tokio::test]
async fn a_text_classifier_serves_documents() {
    let dir = repo();
    let app = app(dir.path());
    let model = "str_tfidf_word12_logreg_clf_descr";
    let g = golden(model);
    let docs = &g["inputs"].as_array().unwrap()[..5];
    let want = &g["outputs"]["label"].as_array().unwrap()[..5];
    let r = post(
        &app,
        &format!("/models/{model}/predict"),
        &json!({ "instances": docs }),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let got: Vec<Value> = r.json()["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["label"].clone())
        .collect();
    assert_eq!(got, want);
    // Documents of very different lengths share one batch.
    let r = post(
        &app,
        &format!("/models/{model}/predict"),
        &json!({ "instances": [[""], ["iris setosa versicolor virginica petal sepal width length"]] }),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["predictions"][1]["label"], "iris", "{}", r.text);
}
