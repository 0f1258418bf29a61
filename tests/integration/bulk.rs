//! The bulk lane (`engine/bulk_lane.rs`, `api/middleware.rs`): while small requests are being
//! served, requests with large bodies are handled on idle-priority threads and answered exactly
//! as on the HTTP threads; with no small request around they stay on the HTTP threads.
//! Cancellation through the lane is covered in `server.rs` (499).

use axum::body::Body;
use axum::http::Request;
use axum::Router;
use serde_json::json;

use crate::common::{loaded, metric, send, shipped_models, Reply};

const BULK: &str = "infera_http_bulk_requests_total";

fn iris_rows(n: usize) -> String {
    let rows: Vec<_> = (0..n)
        .map(|i| {
            json!([
                4.0 + (i % 40) as f64 * 0.1,
                3.0,
                1.0 + (i % 50) as f64 * 0.1,
                0.2
            ])
        })
        .collect();
    json!({"instances": rows, "id": "bulk"}).to_string()
}

/// A predict request with its declared length, as hyper hands it over from a socket.
async fn predict(app: &Router, body: String) -> Reply {
    let request = Request::post("/models/iris/predict")
        .header("content-type", "application/json")
        .header("content-length", body.len())
        .body(Body::from(body))
        .unwrap();
    send(app, request).await
}

fn bulk_count(infera: &infera::server::Infera) -> f64 {
    metric(&infera.state.metrics.render(), BULK).unwrap_or(0.0)
}

#[tokio::test]
async fn large_bodies_take_the_bulk_lane_while_small_ones_are_served_and_get_the_same_answers() {
    let on = loaded(&shipped_models(), &[]);
    let off = loaded(&shipped_models(), &["--bulk-threads", "0"]);
    let (on_app, off_app) = (on.router(), off.router());
    let large = iris_rows(1024);
    assert!(large.len() >= 16 * 1024, "{} bytes", large.len());

    // Only large requests so far: nobody to yield to, the HTTP threads serve it.
    assert_eq!(predict(&on_app, large.clone()).await.status, 200);
    assert_eq!(bulk_count(&on), 0.0, "no small request seen yet");

    let small = iris_rows(1);
    assert_eq!(predict(&on_app, small).await.status, 200);
    assert_eq!(
        bulk_count(&on),
        0.0,
        "a small body stays on the HTTP threads"
    );
    let via_lane = predict(&on_app, large.clone()).await;
    assert_eq!(via_lane.status, 200, "{}", via_lane.text);
    assert_eq!(
        bulk_count(&on),
        1.0,
        "a small request was served within the last second"
    );

    let direct = predict(&off_app, large).await;
    assert_eq!(direct.status, 200);
    assert_eq!(bulk_count(&off), 0.0, "--bulk-threads 0: no lane");
    assert_eq!(via_lane.json()["predictions"], direct.json()["predictions"]);
    assert_eq!(
        via_lane.json()["predictions"].as_array().unwrap().len(),
        1024
    );

    // Unknown length (chunked) counts as large; a refusal comes back through the lane unchanged.
    let chunked = Request::post("/models/iris/predict")
        .header("content-type", "application/json")
        .header("transfer-encoding", "chunked")
        .body(Body::from(r#"{"instances": [[1, 2, 3]]}"#))
        .unwrap();
    let refused = send(&on_app, chunked).await;
    let (_, kind) = refused.error(axum::http::StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(kind, "wrong_feature_count");
    assert_eq!(bulk_count(&on), 2.0);
}

#[tokio::test]
async fn the_threshold_is_a_flag() {
    let infera = loaded(&shipped_models(), &["--bulk-body-bytes", "10"]);
    let app = infera.router();
    // Under 10 bytes: small (refused, but served on the HTTP threads and counted as small).
    assert_eq!(predict(&app, "{}".into()).await.status, 422);
    assert_eq!(predict(&app, iris_rows(1)).await.status, 200);
    assert_eq!(
        bulk_count(&infera),
        1.0,
        "one row is over --bulk-body-bytes 10"
    );
}
