//! The server on a real socket on 127.0.0.1:0: requests, request ids, Swagger UI, and graceful
//! shutdown that lets in-flight requests finish.

use std::sync::atomic::Ordering;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{eventually, loaded, metric, shipped, TestServer};
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

/// A `/predict` request for `instances` rows of the 512-wide slow model, as raw HTTP/1.1.
fn slow_request(instances: usize) -> Vec<u8> {
    let body = json!({"instances": vec![vec![0.1f32; 512]; instances]}).to_string();
    let mut request = format!(
        "POST /predict HTTP/1.1\r\nhost: infera\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body.as_bytes());
    request
}

fn sample(metrics: &infera::monitoring::Metrics, series: &str) -> f64 {
    metric(&metrics.render(), series).unwrap_or(0.0)
}

const IN_FLIGHT: &str = "infera_http_requests_in_flight";
const JOBS_STARTED: &str = "infera_model_queue_wait_seconds_count{model=\"slow\",version=\"1\"}";

/// Two requests are in flight when shutdown begins, and both are answered. Nothing here waits
/// for a time or for a passing state: A's body is held back until the server is draining (so A
/// is in flight at that moment whatever the machine's load), and B's job is known to have
/// reached the worker from a counter that only grows (B may have finished by the time shutdown
/// begins on a very slow machine; it must be answered either way).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_in_flight_requests_finish() {
    let repo = tempfile::tempdir().unwrap();
    onnx::slow(repo.path(), "slow", 512, 1500);
    let infera = loaded(repo.path(), &["--workers", "1"]);
    let (metrics, draining) = (infera.state.metrics.clone(), infera.state.draining.clone());
    let mut server = TestServer::start(infera).await;

    // A: everything but the last byte of its body.
    let request = slow_request(1);
    let (head_and_most, last) = request.split_at(request.len() - 1);
    let mut a = TcpStream::connect(server.addr).await.unwrap();
    a.write_all(head_and_most).await.unwrap();
    eventually("A is in flight", || sample(&metrics, IN_FLIGHT) == 1.0).await;

    // B: a whole request; its job reaches the single worker.
    let before = sample(&metrics, JOBS_STARTED);
    let url = server.url("/predict");
    let b = tokio::spawn(async move {
        reqwest::Client::new()
            .post(url)
            .json(&json!({"instances": [vec![0.1f32; 512]]}))
            .send()
            .await
    });
    eventually("B's job reaches the worker", || {
        sample(&metrics, JOBS_STARTED) > before
    })
    .await;

    server.begin_stop();
    eventually("the server drains", || draining.load(Ordering::SeqCst)).await;
    a.write_all(last).await.unwrap();
    let answer = read_head(&mut a).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
    let reply = b.await.unwrap().expect("B is answered");
    assert_eq!(reply.status(), 200);
    server.join().await;
}

/// Reads a response head (the status line and headers).
async fn read_head(stream: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let mut chunk = [0u8; 1024];
        let n = tokio::time::timeout(std::time::Duration::from_secs(30), stream.read(&mut chunk))
            .await
            .expect("an answer")
            .unwrap();
        assert!(
            n > 0,
            "closed without an answer: {}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// The client leaves while its request is in flight (known from the gauge, not guessed from a
/// client timeout that may fire before the server has even read the request on a loaded
/// machine). Its 64 instances of the slow model are seconds of work, so the server notices the
/// closed connection long before it could answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_disconnects_is_counted_as_499_and_leaves_no_in_flight_request() {
    let repo = tempfile::tempdir().unwrap();
    onnx::slow(repo.path(), "slow", 512, 400);
    let infera = loaded(repo.path(), &["--workers", "1"]);
    let metrics = infera.state.metrics.clone();
    let server = TestServer::start(infera).await;
    // A small request first, so that the large one below goes through the bulk lane.
    let mut small = TcpStream::connect(server.addr).await.unwrap();
    small
        .write_all(b"POST /predict HTTP/1.1\r\nhost: infera\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}")
        .await
        .unwrap();
    let mut answer = Vec::new();
    small.read_to_end(&mut answer).await.unwrap();
    assert!(
        answer.starts_with(b"HTTP/1.1 4"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    let mut client = TcpStream::connect(server.addr).await.unwrap();
    client.write_all(&slow_request(64)).await.unwrap();
    eventually("the request is in flight", || {
        sample(&metrics, IN_FLIGHT) == 1.0
    })
    .await;
    drop(client);
    let series = "infera_http_requests_total{method=\"POST\",route=\"/predict\",status=\"499\"}";
    eventually("the server records the abandoned request", || {
        metric(&metrics.render(), series) == Some(1.0)
    })
    .await;
    assert_eq!(metric(&metrics.render(), IN_FLIGHT), Some(0.0));
    // 64 rows of 512 floats: the handler ran on the bulk lane, and the drop still cancelled it.
    assert_eq!(sample(&metrics, "infera_http_bulk_requests_total"), 1.0);
    let answered = "infera_http_requests_total{method=\"POST\",route=\"/predict\",status=\"200\"}";
    assert!(
        metric(&metrics.render(), answered).is_none(),
        "no answer was recorded"
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
