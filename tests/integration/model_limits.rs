//! Limits that fit the model: one request of a model's own declared size (a 3x416x416 float
//! image is several MB as V2 JSON) is accepted by default, in JSON and binary, while routes and
//! models whose instances fit keep `--max-body-bytes`.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::json;

use crate::common::{loaded, post, repo_with, send};
use crate::onnx;

const IMAGE: usize = 3 * 416 * 416;

/// One image's values, with long decimals (as a client's normalised pixels are).
fn pixels() -> Vec<f32> {
    (0..IMAGE)
        .map(|i| (i % 255) as f32 / 255.0 + 0.001)
        .collect()
}

#[tokio::test]
async fn one_image_of_the_models_declared_size_is_accepted_in_json_and_binary() {
    let repo = repo_with(&["iris"]);
    onnx::doubler(repo.path(), "fixed", &[-1, 3, 416, 416]);
    crate::shapes::doubler_named(repo.path(), "detector", &["N", "3", "H", "W"]);
    let app = loaded(repo.path(), &[]).router();
    let x = pixels();
    let body = json!({"inputs": [{"name": "x", "shape": [1, 3, 416, 416], "datatype": "FP32", "data": x}]});
    let size = body.to_string().len();
    assert!(
        size > 4 * 1024 * 1024,
        "the body ({size} bytes) must exceed the default limit"
    );
    for model in ["fixed", "detector"] {
        let r = post(&app, &format!("/v2/models/{model}/infer"), &body).await;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "{model}: {}",
            &r.text[..r.text.len().min(300)]
        );
        let out = r.json();
        assert_eq!(out["outputs"][0]["shape"], json!([1, 3, 416, 416]));
        let last = out["outputs"][0]["data"][IMAGE - 1].as_f64().unwrap();
        assert_eq!(last as f32, x[IMAGE - 1] * 2.0);
        // The binary extension: the JSON header, then the raw little-endian floats.
        let header = json!({
            "inputs": [{"name": "x", "shape": [1, 3, 416, 416], "datatype": "FP32",
                        "parameters": {"binary_data_size": IMAGE * 4}}],
            "outputs": [{"name": "y", "parameters": {"binary_data": true}}]
        })
        .to_string();
        let mut raw = header.clone().into_bytes();
        for v in &x {
            raw.extend_from_slice(&v.to_le_bytes());
        }
        let request = Request::post(format!("/v2/models/{model}/infer"))
            .header("content-type", "application/octet-stream")
            .header("inference-header-content-length", header.len())
            .body(Body::from(raw))
            .unwrap();
        let r = send(&app, request).await;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "{model} binary: {}",
            &r.text[..r.text.len().min(300)]
        );
    }
    // A model whose instance fits keeps the server's limit, as does a body of that size.
    let rows: Vec<_> = (0..IMAGE / 2)
        .map(|_| json!([5.1, 3.5, 1.4, 0.2]))
        .collect();
    let r = post(&app, "/predict", &json!({ "instances": rows })).await;
    let (message, kind) = r.error(StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(kind, "payload_too_large");
    assert!(message.contains("4194304"), "{message}");
}
