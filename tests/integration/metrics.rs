//! After known traffic, /metrics holds exactly the expected values.

use axum::http::StatusCode;
use serde_json::json;

use crate::common::{get, metric, post, shipped};

#[tokio::test]
async fn metrics_count_known_traffic_exactly() {
    let app = shipped().router();
    let setosa = json!([5.1, 3.5, 1.4, 0.2]);
    let virginica = json!([6.7, 3.0, 5.2, 2.3]);
    for _ in 0..3 {
        let r = post(&app, "/predict", &json!({"instances": [setosa, virginica]})).await;
        assert_eq!(r.status, StatusCode::OK);
    }
    let bad = post(&app, "/predict", &json!({"instances": [[1, 2, 3]]})).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    let missing = post(&app, "/models/nope/predict", &json!({"instances": [[1]]})).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    get(&app, "/nowhere/else").await;

    let text = get(&app, "/metrics").await.text;
    let m = |series: &str| {
        metric(&text, series).unwrap_or_else(|| panic!("{series} missing from:\n{text}"))
    };
    let iris = "model=\"iris\",version=\"1\"";
    let iris_http = "model=\"iris\",protocol=\"http\",version=\"1\"";
    assert_eq!(
        m(&format!("infera_model_instances_total{{{iris_http}}}")),
        6.0
    );
    assert_eq!(
        m(&format!(
            "infera_model_request_duration_seconds_count{{{iris_http}}}"
        )),
        3.0
    );
    assert!(
        !text.contains("protocol=\"grpc\""),
        "a protocol that served nothing exports no series"
    );
    assert_eq!(m(&format!("infera_model_batch_size_count{{{iris}}}")), 3.0);
    assert_eq!(m(&format!("infera_model_batch_size_sum{{{iris}}}")), 6.0);
    assert_eq!(
        m(&format!("infera_model_inference_seconds_count{{{iris}}}")),
        3.0
    );
    assert_eq!(
        m(&format!("infera_model_queue_wait_seconds_count{{{iris}}}")),
        3.0
    );
    assert_eq!(m(&format!("infera_model_queue_depth{{{iris}}}")), 0.0);
    assert_eq!(m(&format!("infera_model_ready{{{iris}}}")), 1.0);
    assert!(m(&format!("infera_model_load_duration_seconds{{{iris}}}")) > 0.0);
    assert_eq!(m("infera_model_failures_total{model=\"iris\",protocol=\"http\",reason=\"wrong_feature_count\",version=\"1\"}"), 1.0);
    assert_eq!(
        m("infera_predicted_class_total{class=\"setosa\",model=\"iris\",version=\"1\"}"),
        3.0
    );
    assert_eq!(
        m("infera_predicted_class_total{class=\"virginica\",model=\"iris\",version=\"1\"}"),
        3.0
    );
    assert_eq!(
        m("infera_predicted_class_total{class=\"versicolor\",model=\"iris\",version=\"1\"}"),
        0.0
    );
    assert_eq!(
        m(&format!("infera_prediction_confidence_count{{{iris}}}")),
        6.0
    );
    assert_eq!(
        m(&format!(
            "infera_prediction_confidence_bucket{{{iris},le=\"0.1\"}}"
        )),
        0.0
    );
    assert_eq!(
        m("infera_http_requests_total{method=\"POST\",route=\"/predict\",status=\"200\"}"),
        3.0
    );
    assert_eq!(
        m("infera_http_requests_total{method=\"POST\",route=\"/predict\",status=\"422\"}"),
        1.0
    );
    assert_eq!(m("infera_http_requests_total{method=\"POST\",route=\"/models/{name}/predict\",status=\"404\"}"), 1.0);
    assert_eq!(
        m("infera_http_requests_total{method=\"GET\",route=\"unmatched\",status=\"404\"}"),
        1.0
    );
    assert_eq!(m("infera_http_request_duration_seconds_count{method=\"POST\",route=\"/predict\",status=\"200\"}"), 3.0);
    assert!(m("infera_workers") >= 1.0);
    assert_eq!(m(&format!("infera_model_queue_capacity{{{iris}}}")), 256.0);
    assert_eq!(m(&format!("infera_model_max_batch_size{{{iris}}}")), 64.0);
    // Sequential requests never meet in the queue: one request per model call.
    assert_eq!(
        m(&format!("infera_model_requests_per_batch_count{{{iris}}}")),
        3.0
    );
    assert_eq!(
        m(&format!("infera_model_requests_per_batch_sum{{{iris}}}")),
        3.0
    );
    assert_eq!(
        m(&format!(
            "infera_build_info{{version=\"{}\"}}",
            env!("CARGO_PKG_VERSION")
        )),
        1.0
    );
    // The scrape itself is in flight while rendering.
    assert_eq!(m("infera_http_requests_in_flight"), 1.0);
    assert!(!text.contains("/nowhere"), "raw paths never become labels");
}

#[tokio::test]
async fn metrics_are_prometheus_text() {
    let app = shipped().router();
    let r = get(&app, "/metrics").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    for line in r
        .text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let value = line.rsplit(' ').next().unwrap();
        assert!(value.parse::<f64>().is_ok(), "bad sample line: {line}");
        assert!(line.starts_with("infera_"), "unprefixed metric: {line}");
    }
}
