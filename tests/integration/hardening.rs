//! Requests built to hurt the server: sizes declared far beyond the data sent, zero-row tensors,
//! huge ids and invented methods. Each must get a clear 4xx (or an empty answer), never a crash,
//! a 500 or unbounded memory.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::json;
use tower::ServiceExt;

use crate::common::{call, get, loaded, post, repo_with, shipped};
use crate::onnx;

/// The ~120-byte request that used to abort the process: a shape of 2^44 x 4 floats with one
/// element of data made the decoder reserve 562 TB before looking at the data.
#[tokio::test]
async fn a_huge_declared_shape_is_refused_before_anything_is_allocated() {
    let app = shipped().router();
    let body = json!({"inputs": [{"name": "float_input", "shape": [17592186044416u64, 4], "datatype": "FP32", "data": [1]}]});
    let r = post(&app, "/v2/models/iris/infer", &body).await;
    let (error, kind) = r.error(StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(kind, "too_many_elements");
    assert!(
        error.contains("70368744177664") && error.contains("16777216"),
        "{error}"
    );

    // Under the element limit but far beyond the data sent: the count is checked against the
    // data before the buffer exists.
    let body = json!({"inputs": [{"name": "float_input", "shape": [1_000_000, 4], "datatype": "FP32", "data": [1]}]});
    let r = post(&app, "/v2/models/iris/infer", &body).await;
    let (error, _) = r.error(StatusCode::BAD_REQUEST);
    assert!(
        error.contains("holds 4000000 elements but data has 1"),
        "{error}"
    );
}

#[tokio::test]
async fn binary_sizes_are_checked_with_overflow_in_mind() {
    let app = shipped().router();
    // 2^62 rows of 4 floats: count * 4 bytes overflows usize; it must not wrap into a match.
    let header = json!({"inputs": [{"name": "float_input", "shape": [4611686018427387904u64, 4], "datatype": "FP32", "parameters": {"binary_data_size": 16}}]})
        .to_string();
    let mut body = header.clone().into_bytes();
    body.extend_from_slice(&[0u8; 16]);
    let request = Request::builder()
        .method(Method::POST)
        .uri("/v2/models/iris/infer")
        .header("content-type", "application/octet-stream")
        .header("inference-header-content-length", header.len())
        .body(Body::from(body))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let text = response.into_body().collect().await.unwrap().to_bytes();
    assert!(
        status == StatusCode::BAD_REQUEST || status == StatusCode::PAYLOAD_TOO_LARGE,
        "{status}: {text:?}"
    );
}

#[tokio::test]
async fn the_element_limit_covers_predict_and_v1_too() {
    let repo = repo_with(&["iris"]);
    let app = loaded(repo.path(), &["--max-elements", "100"]).router();
    let rows: Vec<_> = (0..26).map(|_| json!([5.1, 3.5, 1.4, 0.2])).collect();
    let r = post(&app, "/predict", &json!({"instances": rows})).await;
    let (error, kind) = r.error(StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(kind, "too_many_elements");
    assert!(error.contains("104") && error.contains("100"), "{error}");
    let r = post(&app, "/v1/models/iris:predict", &json!({"instances": rows})).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.text);
    let r = post(&app, "/predict", &json!({"instances": rows[..25]})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}

/// Zero rows: a clear 4xx or an empty answer for every kind of model, never a panic or a 500.
#[tokio::test]
async fn zero_row_tensors_never_crash_any_kind_of_model() {
    let repo = repo_with(&["iris", "diabetes", "breast-cancer"]);
    onnx::doubler(repo.path(), "fixed", &[1, 3]);
    onnx::doubler(repo.path(), "noaxis", &[3]);
    onnx::doubler(repo.path(), "dynamic", &[-1, 3]);
    let app = loaded(repo.path(), &[]).router();
    let cases = [
        ("iris", "float_input", 4),
        ("diabetes", "float_input", 10),
        ("breast-cancer", "float_input", 30),
        ("fixed", "x", 3),
        ("noaxis", "x", 3),
        ("dynamic", "x", 3),
    ];
    for (model, input, width) in cases {
        let meta = get(&app, &format!("/v2/models/{model}")).await.json();
        let name = meta["inputs"][0]["name"]
            .as_str()
            .unwrap_or(input)
            .to_string();
        let body = json!({"inputs": [{"name": name, "shape": [0, width], "datatype": "FP32", "data": []}]});
        let r = post(&app, &format!("/v2/models/{model}/infer"), &body).await;
        assert!(
            r.status == StatusCode::OK || r.status.is_client_error(),
            "{model}: {} {}",
            r.status,
            r.text
        );
        if r.status == StatusCode::OK {
            for output in r.json()["outputs"].as_array().unwrap() {
                assert_eq!(output["shape"][0], 0, "{model}: {output}");
                assert_eq!(output["data"], json!([]), "{model}: {output}");
            }
        } else {
            let (_, kind) = r.error(StatusCode::BAD_REQUEST);
            assert_eq!(kind, "wrong_shape", "{model}: {}", r.text);
        }
        let r = post(
            &app,
            &format!("/models/{model}/predict"),
            &json!({"instances": []}),
        )
        .await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{model}: {}",
            r.text
        );
    }
}

#[tokio::test]
async fn a_huge_request_id_is_replaced_not_echoed_per_instance() {
    let app = shipped().router();
    let huge = "a".repeat(60_000);
    let rows: Vec<_> = (0..64).map(|_| json!([5.1, 3.5, 1.4, 0.2])).collect();
    let request = Request::builder()
        .method(Method::POST)
        .uri("/predict")
        .header("content-type", "application/json")
        .header("x-request-id", &huge)
        .body(Body::from(json!({"instances": rows}).to_string()))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let echoed = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(echoed.len() <= 128 && !echoed.contains("aaaa"), "{echoed}");
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(body.len() < 20_000, "answer is {} bytes", body.len());
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["id"], echoed.as_str());

    // An acceptable id is kept.
    let request = Request::builder()
        .method(Method::POST)
        .uri("/predict")
        .header("content-type", "application/json")
        .header("x-request-id", "order-42")
        .body(Body::from(
            json!({"instances": [[5.1, 3.5, 1.4, 0.2]]}).to_string(),
        ))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.headers()["x-request-id"], "order-42");
}

#[tokio::test]
async fn invented_methods_do_not_create_metric_series() {
    let app = shipped().router();
    for method in ["FOOBAR", "BAZ1", "QUUX2"] {
        let m = Method::from_bytes(method.as_bytes()).unwrap();
        let r = call(&app, m, "/predict", None, Body::empty()).await;
        assert!(r.status.is_client_error(), "{method}: {}", r.status);
    }
    let metrics = get(&app, "/metrics").await.text;
    assert!(
        !metrics.contains("FOOBAR"),
        "an invented method became a label"
    );
    assert!(metrics.contains("method=\"OTHER\""), "{metrics}");
}

/// Expected states are not errors: readiness 503 while loading, 404s, 4xx and 429s must not log
/// at ERROR (a probe every few seconds would flood the log and page someone).
#[test]
fn expected_states_do_not_log_at_error() {
    use std::sync::{Arc, Mutex};
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::ERROR)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let repo = repo_with(&["iris"]);
            // Not loaded yet: readiness answers 503.
            let infera =
                infera::server::Infera::new(&crate::common::args(repo.path(), &[])).unwrap();
            let app = infera.router();
            for _ in 0..3 {
                assert_eq!(get(&app, "/health/ready").await.status, 503);
            }
            assert_eq!(
                post(&app, "/predict", &json!({"instances": [[1, 2, 3, 4]]}))
                    .await
                    .status,
                503
            );
            assert_eq!(get(&app, "/nope").await.status, 404);
            infera.load_models();
            assert_eq!(
                post(&app, "/predict", &json!({"instances": [[1, 2]]}))
                    .await
                    .status,
                422
            );
        });
    });
    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(log.is_empty(), "logged at ERROR:\n{log}");
}

#[tokio::test]
async fn deeply_nested_json_is_a_clear_400_on_every_decoder() {
    let app = shipped().router();
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let bodies = [
        ("/predict", format!("{{\"instances\": [{deep}]}}")),
        ("/v1/models/iris:predict", format!("{{\"instances\": [{deep}]}}")),
        (
            "/v2/models/iris/infer",
            format!("{{\"inputs\": [{{\"name\": \"float_input\", \"shape\": [1, 4], \"datatype\": \"FP32\", \"data\": {deep}}}]}}"),
        ),
    ];
    for (uri, body) in bodies {
        let r = call(&app, Method::POST, uri, Some("application/json"), body).await;
        let (error, kind) = r.error(StatusCode::BAD_REQUEST);
        assert_eq!(kind, "malformed_json", "{uri}: {error}");
        assert!(error.contains("recursion limit"), "{uri}: {error}");
    }
    // Feedback items are typed: the nesting is refused at its first wrong type.
    let body = format!("{{\"feedback\": [{deep}]}}");
    let r = call(
        &app,
        Method::POST,
        "/models/iris/feedback",
        Some("application/json"),
        body,
    )
    .await;
    let (_, kind) = r.error(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(kind, "invalid_request");
}
