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
    onnx::slow(repo.path(), "slow", 256, 1500);
    let infera = loaded(repo.path(), &["--workers", "1"]);
    let pool = infera.pool().clone();
    let mut server = TestServer::start(infera).await;
    let url = server.url("/predict");
    let in_flight = tokio::spawn(async move {
        reqwest::Client::new()
            .post(url)
            .json(&json!({"instances": [vec![0.1f32; 256]]}))
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
