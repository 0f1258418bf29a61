//! Every client mistake gets its status and the JSON error envelope; nothing panics.

use axum::http::{Method, StatusCode};
use serde_json::json;

use crate::common::{call, get, loaded, post, repo_with, shipped};

#[tokio::test]
async fn malformed_json_is_400() {
    let app = shipped().router();
    let r = call(
        &app,
        Method::POST,
        "/predict",
        Some("application/json"),
        "{\"instances\": [[1,2",
    )
    .await;
    let (msg, kind) = r.error(StatusCode::BAD_REQUEST);
    assert_eq!(kind, "malformed_json");
    assert!(msg.contains("line 1"), "{msg}");
}

#[tokio::test]
async fn wrong_content_type_is_415() {
    let app = shipped().router();
    for ct in [None, Some("text/plain")] {
        let r = call(
            &app,
            Method::POST,
            "/predict",
            ct,
            "{\"instances\": [[1,2,3,4]]}",
        )
        .await;
        assert_eq!(
            r.error(StatusCode::UNSUPPORTED_MEDIA_TYPE).1,
            "unsupported_media_type"
        );
    }
}

#[tokio::test]
async fn unknown_model_and_version_are_404() {
    let app = shipped().router();
    let r = post(&app, "/models/nope/predict", &json!({"instances": [[1]]})).await;
    let (msg, kind) = r.error(StatusCode::NOT_FOUND);
    assert_eq!(kind, "model_not_found");
    assert!(msg.contains("\"nope\""), "{msg}");
    let r = post(
        &app,
        "/predict",
        &json!({"model": "nope", "instances": [[1]]}),
    )
    .await;
    assert_eq!(r.error(StatusCode::NOT_FOUND).1, "model_not_found");
    let r = post(
        &app,
        "/models/iris/versions/7/predict",
        &json!({"instances": [[1, 2, 3, 4]]}),
    )
    .await;
    assert_eq!(r.error(StatusCode::NOT_FOUND).1, "version_not_found");
    let r = post(
        &app,
        "/models/iris/versions/abc/predict",
        &json!({"instances": [[1, 2, 3, 4]]}),
    )
    .await;
    assert_eq!(r.error(StatusCode::NOT_FOUND).1, "version_not_found");
    let r = get(&app, "/models/nope").await;
    assert_eq!(r.error(StatusCode::NOT_FOUND).1, "model_not_found");
    let r = get(&app, "/no/such/route").await;
    assert_eq!(r.error(StatusCode::NOT_FOUND).1, "not_found");
}

#[tokio::test]
async fn body_over_the_limit_is_413_naming_the_limit() {
    let repo = repo_with(&["iris"]);
    let app = loaded(repo.path(), &["--max-body-bytes", "2048"]).router();
    let rows: Vec<_> = (0..200).map(|_| json!([5.1, 3.5, 1.4, 0.2])).collect();
    let r = post(&app, "/predict", &json!({ "instances": rows })).await;
    let (msg, kind) = r.error(StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(kind, "payload_too_large");
    assert!(msg.contains("2048"), "{msg}");
}

#[tokio::test]
async fn too_many_instances_is_413_naming_the_limit() {
    let repo = repo_with(&["iris"]);
    let app = loaded(repo.path(), &["--max-instances", "3"]).router();
    let rows: Vec<_> = (0..4).map(|_| json!([5.1, 3.5, 1.4, 0.2])).collect();
    let r = post(&app, "/predict", &json!({ "instances": rows })).await;
    let (msg, kind) = r.error(StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(kind, "too_many_instances");
    assert_eq!(msg, "4 instances in one request; the limit is 3");
}

/// (request body, error_type, words the message must contain)
fn contract_cases() -> Vec<(serde_json::Value, &'static str, Vec<&'static str>)> {
    vec![
        (
            json!({"instances": [[5.1, 3.5, 1.4]]}),
            "wrong_feature_count",
            vec!["instance 0", "expected 4", "got 3"],
        ),
        (
            json!({"instances": [[5.1, 3.5, 1.4, 0.2], {"sepal_length_cm": 1, "sepal_width_cm": 1, "petal_length_cm": 1, "petal_width": 1}]}),
            "unknown_feature",
            vec!["instance 1", "\\\"petal_width\\\"", "sepal_length_cm"],
        ),
        (
            json!({"instances": [{"sepal_length_cm": 1, "sepal_width_cm": 1, "petal_length_cm": 1}]}),
            "missing_feature",
            vec!["instance 0", "petal_width_cm"],
        ),
        (
            json!({"instances": [[5.1, 3.5, 1.4, 1e39]]}),
            "non_finite_value",
            vec!["instance 0", "petal_width_cm", "finite f32"],
        ),
        (
            json!({"instances": [[5.1, 3.5, 1.4, -2]]}),
            "out_of_range",
            vec!["petal_width_cm", "-2", "[0, 30]"],
        ),
        (
            json!({"instances": [[5.1, 3.5, "1.4", 0.2]]}),
            "wrong_type",
            vec!["petal_length_cm", "a string"],
        ),
        (
            json!({"instances": ["5.1"]}),
            "wrong_type",
            vec!["instance 0", "array of 4 numbers"],
        ),
        (
            json!({"instances": [[5.1, 3.5, null, 0.2]]}),
            "wrong_type",
            vec!["null"],
        ),
    ]
}

#[tokio::test]
async fn contract_violations_are_422_naming_instance_field_and_limit() {
    let app = shipped().router();
    for (body, kind, words) in contract_cases() {
        let r = post(&app, "/models/iris/predict", &body).await;
        let (msg, got_kind) = r.error(StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(got_kind, kind, "{body} -> {msg}");
        let shown = serde_json::to_string(&msg).unwrap();
        for w in words {
            assert!(shown.contains(w), "{kind}: message {shown} lacks {w}");
        }
    }
}

#[tokio::test]
async fn request_shape_errors_are_422() {
    let app = shipped().router();
    for (body, words) in [
        (json!({"instances": []}), "at least one instance"),
        (json!({"instance": [[1, 2, 3, 4]]}), "unknown field"),
        (json!({"instances": "x"}), "instances"),
        (
            json!({"id": "", "instances": [[1, 2, 3, 4]]}),
            "id: must be 1-128",
        ),
        (
            json!({"model": "../etc", "instances": [[1, 2, 3, 4]]}),
            "model: must be",
        ),
    ] {
        let r = post(&app, "/predict", &body).await;
        let (msg, kind) = r.error(StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(kind, "invalid_request");
        assert!(msg.contains(words), "{body}: {msg}");
    }
    let r = post(
        &app,
        "/models/iris/predict",
        &json!({"model": "digits", "instances": [[1, 2, 3, 4]]}),
    )
    .await;
    let (msg, _) = r.error(StatusCode::UNPROCESSABLE_ENTITY);
    assert!(msg.contains("path names \"iris\""), "{msg}");
}

#[tokio::test]
async fn no_default_model_is_400() {
    let repo = repo_with(&["iris", "digits"]);
    let app = loaded(repo.path(), &[]).router();
    let r = post(&app, "/predict", &json!({"instances": [[1, 2, 3, 4]]})).await;
    assert_eq!(r.error(StatusCode::BAD_REQUEST).1, "model_required");
    let r = post(
        &app,
        "/predict",
        &json!({"model": "iris", "instances": [[1, 2, 3, 4]]}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}

#[tokio::test]
async fn wrong_method_is_405() {
    let app = shipped().router();
    let r = call(&app, Method::DELETE, "/models", None, "").await;
    assert_eq!(
        r.error(StatusCode::METHOD_NOT_ALLOWED).1,
        "method_not_allowed"
    );
}

/// Hostile and odd bodies: each gets a 4xx envelope, and the server still answers afterwards.
#[tokio::test]
async fn odd_inputs_never_panic() {
    let app = shipped().router();
    let deep = format!(
        "{{\"instances\": {}1{}}}",
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let bodies = vec![
        String::new(),
        "null".into(),
        "[]".into(),
        "{\"instances\": [[]]}".into(),
        "{\"instances\": [{}]}".into(),
        "{\"instances\": [[1e308, 1e308, 1e308, 1e308]]}".into(),
        "{\"instances\": [[-0.0, 0, 0, 0]], \"id\": \"\\u0000\"}".into(),
        "{\"instances\": [[18446744073709551616, 1, 1, 1]]}".into(),
        deep,
        "\u{feff}{\"instances\": [[1,2,3,4]]}".into(),
    ];
    for body in bodies {
        let r = call(
            &app,
            Method::POST,
            "/models/iris/predict",
            Some("application/json"),
            body.clone(),
        )
        .await;
        assert!(
            r.status.is_client_error() || r.status.is_success(),
            "{} for {:.80}: {}",
            r.status,
            body,
            r.text
        );
        if r.status.is_client_error() {
            r.json();
        }
    }
    let ok = post(
        &app,
        "/predict",
        &json!({"instances": [[5.1, 3.5, 1.4, 0.2]]}),
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK);
}
