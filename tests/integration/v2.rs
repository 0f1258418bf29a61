//! Open Inference Protocol (KServe V2) and KServe V1 endpoints, in process. The real-client test
//! with tritonclient lives in tests/protocols/ (see docs/kserve.md).

use axum::http::{Method, StatusCode};
use serde_json::{json, Value};

use crate::common::{call, get, post, shipped, shipped_models};

fn golden(model: &str) -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(shipped_models().join(model).join("1/golden.json")).unwrap(),
    )
    .unwrap()
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

#[tokio::test]
async fn server_and_model_metadata_health_and_readiness() {
    let app = shipped().router();
    let meta = get(&app, "/v2").await.json();
    assert_eq!(meta["name"], "infera");
    assert!(meta["extensions"]
        .as_array()
        .unwrap()
        .contains(&json!("binary_tensor_data")));
    assert_eq!(
        get(&app, "/v2/health/live").await.json(),
        json!({"live": true})
    );
    assert_eq!(
        get(&app, "/v2/health/ready").await.json(),
        json!({"ready": true})
    );
    let model = get(&app, "/v2/models/iris").await.json();
    assert_eq!(
        model,
        json!({
            "name": "iris", "versions": ["1"], "platform": "onnx_onnxv1",
            "inputs": [{"name": "float_input", "datatype": "FP32", "shape": [-1, 4]}],
            "outputs": [
                {"name": "label", "datatype": "INT64", "shape": [-1]},
                {"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]}
            ]
        })
    );
    assert_eq!(get(&app, "/v2/models/iris/versions/1").await.json(), model);
    assert_eq!(
        get(&app, "/v2/models/iris/ready").await.json(),
        json!({"name": "iris", "ready": true})
    );
    assert_eq!(
        get(&app, "/v2/models/iris/versions/1/ready").await.status,
        StatusCode::OK
    );
    assert_eq!(
        get(&app, "/v2/models/nope/ready").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(&app, "/v2/models/iris/versions/9").await.status,
        StatusCode::NOT_FOUND
    );
    let index = get(&app, "/v2/models").await.json();
    assert!(index
        .as_array()
        .unwrap()
        .contains(&json!({"name": "digits", "version": "1", "state": "READY"})));
}

#[tokio::test]
async fn json_infer_matches_the_golden_outputs_and_echoes_the_id() {
    let app = shipped().router();
    let g = golden("iris");
    let rows = g["inputs"].as_array().unwrap();
    let body = json!({
        "id": "req-7",
        "inputs": [{"name": "float_input", "shape": [rows.len(), 4], "datatype": "FP32", "data": rows}],
    });
    let r = post(&app, "/v2/models/iris/infer", &body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let out = r.json();
    assert_eq!(out["model_name"], "iris");
    assert_eq!(out["model_version"], "1");
    assert_eq!(out["id"], "req-7");
    let label = out["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == "label")
        .unwrap();
    assert_eq!(label["datatype"], "INT64");
    assert_eq!(label["shape"], json!([rows.len()]));
    assert_eq!(label["data"], g["outputs"]["label"]);
    let probs = out["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == "probabilities")
        .unwrap();
    let want: Vec<f64> = g["outputs"]["probabilities"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()))
        .collect();
    let got: Vec<f64> = probs["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(got.len(), want.len());
    assert!(got.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-5));
    // Output selection and the versioned route.
    let body = json!({"inputs": [{"name": "float_input", "shape": [1, 4], "datatype": "FP32", "data": [[5.1, 3.5, 1.4, 0.2]]}], "outputs": [{"name": "label"}]});
    let out = post(&app, "/v2/models/iris/versions/1/infer", &body)
        .await
        .json();
    assert_eq!(
        out["outputs"],
        json!([{"name": "label", "datatype": "INT64", "shape": [1], "data": [0]}])
    );
}

#[tokio::test]
async fn binary_tensor_data_in_and_out() {
    let app = shipped().router();
    let g = golden("digits");
    let rows: Vec<f32> = g["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
        })
        .collect();
    let n = rows.len() / 64;
    let header = json!({
        "inputs": [{"name": "float_input", "shape": [n, 64], "datatype": "FP32", "parameters": {"binary_data_size": rows.len() * 4}}],
        "outputs": [{"name": "label", "parameters": {"binary_data": true}}, {"name": "probabilities"}],
    })
    .to_string();
    let mut body = header.clone().into_bytes();
    body.extend(f32_bytes(&rows));
    let request = axum::http::Request::builder()
        .method(Method::POST)
        .uri("/v2/models/digits/infer")
        .header("content-type", "application/octet-stream")
        .header("inference-header-content-length", header.len())
        .body(axum::body::Body::from(body))
        .unwrap();
    let response = tower::ServiceExt::oneshot(app.clone(), request)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let json_len: usize = response.headers()["inference-header-content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let bytes = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    let head: Value = serde_json::from_slice(&bytes[..json_len]).unwrap();
    assert_eq!(head["outputs"][0]["parameters"]["binary_data_size"], n * 8);
    let labels: Vec<i64> = bytes[json_len..]
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let want: Vec<i64> = g["outputs"]["label"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    assert_eq!(labels, want);
    assert_eq!(head["outputs"][1]["shape"], json!([n, 10]));
}

#[tokio::test]
async fn protocol_errors_are_400_404_naming_the_problem() {
    let app = shipped().router();
    let input = |datatype: &str, shape: Value, data: Value| json!({"inputs": [{"name": "float_input", "shape": shape, "datatype": datatype, "data": data}]});
    let cases = [
        (
            input("FP64", json!([1, 4]), json!([1, 2, 3, 4])),
            StatusCode::BAD_REQUEST,
            "datatype FP64 does not match the model's FP32",
        ),
        (
            input("BYTES", json!([1, 4]), json!(["a", "b", "c", "d"])),
            StatusCode::BAD_REQUEST,
            "BYTES",
        ),
        (
            input("FP32", json!([1, 5]), json!([1, 2, 3, 4, 5])),
            StatusCode::BAD_REQUEST,
            "shape [1, 5] but the model takes [-1, 4]",
        ),
        (
            input("FP32", json!([1, 4]), json!([1, 2, 3])),
            StatusCode::BAD_REQUEST,
            "holds 4 elements but data has 3",
        ),
        (
            input("FP32", json!([1, 4]), json!([1, 2, 3, 99])),
            StatusCode::BAD_REQUEST,
            "outside its valid range",
        ),
        (
            input("FP32", json!([4294967296i64, 4294967296i64, 4]), json!([1])),
            StatusCode::BAD_REQUEST,
            "is too large",
        ),
        (
            input("FP32", json!([-1, 4]), json!([1, 2, 3, 4])),
            StatusCode::BAD_REQUEST,
            "negative dimension",
        ),
        (
            json!({"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]}),
            StatusCode::BAD_REQUEST,
            "unknown input \"x\"",
        ),
        (
            json!({"inputs": []}),
            StatusCode::BAD_REQUEST,
            "missing input \"float_input\"",
        ),
        (
            json!({"inputs": [{"name": "float_input", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}], "outputs": [{"name": "nope"}]}),
            StatusCode::BAD_REQUEST,
            "unknown output \"nope\"",
        ),
    ];
    for (body, status, words) in cases {
        let r = post(&app, "/v2/models/iris/infer", &body).await;
        assert_eq!(r.status, status, "{body}: {}", r.text);
        let error = r.json()["error"].as_str().unwrap().to_string();
        assert!(error.contains(words), "{body}: {error}");
    }
    let r = post(
        &app,
        "/v2/models/nope/infer",
        &input("FP32", json!([1, 4]), json!([1, 2, 3, 4])),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = call(
        &app,
        Method::POST,
        "/v2/models/iris/infer",
        Some("application/json"),
        "{not json",
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn kserve_v1_predict_and_status() {
    let app = shipped().router();
    assert_eq!(
        get(&app, "/v1/models/iris").await.json(),
        json!({"name": "iris", "ready": true})
    );
    assert_eq!(
        get(&app, "/v1/models/nope").await.status,
        StatusCode::NOT_FOUND
    );
    let r = post(
        &app,
        "/v1/models/iris:predict",
        &json!({"instances": [[5.1, 3.5, 1.4, 0.2]]}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["predictions"][0]["label"], "setosa");
    let r = post(
        &app,
        "/v1/models/iris:bogus",
        &json!({"instances": [[5.1, 3.5, 1.4, 0.2]]}),
    )
    .await;
    // An unknown verb is 404 (`:explain` is served: see explain.rs).
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = post(
        &app,
        "/v1/models/iris:predict",
        &json!({"instances": [[5.1, 3.5]]}),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn v2_inference_counts_in_the_same_model_metrics() {
    let infera = shipped();
    let app = infera.router();
    let body = json!({"inputs": [{"name": "float_input", "shape": [2, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2, 6.7, 3.0, 5.2, 2.3]}]});
    assert_eq!(
        post(&app, "/v2/models/iris/infer", &body).await.status,
        StatusCode::OK
    );
    let text = infera.state.metrics.render();
    assert_eq!(
        crate::common::metric(
            &text,
            "infera_model_instances_total{model=\"iris\",protocol=\"http\",version=\"1\"}"
        ),
        Some(2.0)
    );
    assert_eq!(
        crate::common::metric(
            &text,
            "infera_prediction_confidence_count{model=\"iris\",version=\"1\"}"
        ),
        Some(2.0)
    );
    assert!(
        text.contains("route=\"/v2/models/{name}/infer\",status=\"200\""),
        "{text}"
    );
}
