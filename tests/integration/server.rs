//! The server on a real socket on 127.0.0.1:0: requests, request ids, Swagger UI, and graceful
//! shutdown that lets in-flight requests finish.

use serde_json::json;

use crate::common::{loaded, shipped, TestServer};
use crate::onnx;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_over_a_real_socket() {
    let server = TestServer::start(shipped()).await;
    let client = reqwest::Client::new();
    let r = client
        .post(server.url("/predict"))
        .header("x-request-id", "trace-me-123")
        .json(&json!({"instances": [[5.1, 3.5, 1.4, 0.2]]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-request-id"], "trace-me-123");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        body["id"], "trace-me-123",
        "the request id is the default prediction id"
    );
    assert_eq!(body["predictions"][0]["label"], "setosa");

    let r = client
        .get(server.url("/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let generated = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert!(
        generated.len() >= 16,
        "a request id is made when none is sent: {generated}"
    );

    let docs = client.get(server.url("/docs/")).send().await.unwrap();
    assert_eq!(docs.status(), 200);
    assert!(docs.text().await.unwrap().contains("swagger-ui"));
    let spec: serde_json::Value = client
        .get(server.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(spec["paths"]["/predict"]["post"].is_object());

    let metrics = client
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains(
        "infera_http_requests_total{method=\"POST\",route=\"/predict\",status=\"200\"} 1"
    ));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_in_flight_requests_finish() {
    let repo = tempfile::tempdir().unwrap();
    // A call takes about 0.2 s here: long enough that the poll below sees it running even
    // when the test threads are descheduled for tens of milliseconds on a loaded machine.
    onnx::slow(repo.path(), "slow", 512, 1500);
    let infera = loaded(repo.path(), &["--workers", "1"]);
    let pool = infera.pool().clone();
    let mut server = TestServer::start(infera).await;
    let url = server.url("/predict");
    let in_flight = tokio::spawn(async move {
        reqwest::Client::new()
            .post(url)
            .json(&json!({"instances": [vec![0.1f32; 512]]}))
            .send()
            .await
    });
    crate::common::eventually("the request reaches a worker", || pool.running() == 1).await;
    server.begin_stop();
    let reply = in_flight
        .await
        .unwrap()
        .expect("the in-flight request is answered");
    assert_eq!(reply.status(), 200);
    server.join().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_disconnects_is_counted_as_499_and_leaves_no_in_flight_request() {
    let repo = tempfile::tempdir().unwrap();
    onnx::slow(repo.path(), "slow", 512, 400);
    let infera = loaded(repo.path(), &["--workers", "1"]);
    let metrics = infera.state.metrics.clone();
    let server = TestServer::start(infera).await;
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_millis(20))
        .build()
        .unwrap();
    // 64 instances of the slow model take far longer than the client waits.
    let body = json!({"instances": vec![vec![0.1f32; 512]; 64]});
    let err = client
        .post(server.url("/predict"))
        .json(&body)
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    let series = "infera_http_requests_total{method=\"POST\",route=\"/predict\",status=\"499\"}";
    crate::common::eventually("the server records the abandoned request", || {
        crate::common::metric(&metrics.render(), series) == Some(1.0)
    })
    .await;
    assert_eq!(
        crate::common::metric(&metrics.render(), "infera_http_requests_in_flight"),
        Some(0.0)
    );
    server.stop().await;
}

#[tokio::test]
async fn readiness_turns_503_while_draining() {
    let infera = shipped();
    let app = infera.router();
    assert_eq!(crate::common::get(&app, "/health/ready").await.status, 200);
    infera
        .state
        .draining
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let r = crate::common::get(&app, "/health/ready").await;
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["status"], "draining");
}
