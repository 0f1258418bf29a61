//! Shared test helpers: building servers on the shipped or generated model repositories, calling
//! the router in-process, and running it on a real socket on 127.0.0.1:0.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::Router;
use clap::Parser;
use http_body_util::BodyExt;
use infera::config::{Cli, ServeArgs};
use infera::server::Infera;
use serde_json::Value;
use tower::ServiceExt;

/// A job observer that records nothing, for tests that drive the engine's queues directly.
pub struct Quiet;

impl infera::engine::JobObserver for Quiet {
    fn enqueued(&self) {}
    fn dequeued(&self) {}
    fn skipped(&self, _: infera::engine::SkipReason) {}
    fn started(&self, _: Duration) {}
    fn batch_ran(&self, _: usize, _: usize, _: Duration) {}
}

pub fn shipped_models() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models")
}

/// Serve flags for `repo`, on port 0, plus `extra`.
pub fn args(repo: &Path, extra: &[&str]) -> ServeArgs {
    let repo = repo.to_str().expect("utf-8 path");
    let mut argv = vec![
        "infera",
        "--model-repository",
        repo,
        "--host",
        "127.0.0.1",
        "--port",
        "0",
    ];
    argv.extend_from_slice(extra);
    Cli::try_parse_from(argv).expect("valid test flags").serve
}

/// A server on `repo` with every model loaded (load failures are kept in its catalog).
pub fn loaded(repo: &Path, extra: &[&str]) -> Infera {
    let infera = Infera::new(&args(repo, extra)).expect("server builds");
    infera.load_models();
    infera
}

/// The shipped models, loaded.
pub fn shipped() -> Infera {
    loaded(&shipped_models(), &[])
}

#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    /// Asserts the error envelope and returns (`error`, `error_type`).
    pub fn error(&self, status: StatusCode) -> (String, String) {
        assert_eq!(self.status, status, "body: {}", self.text);
        let body = self.json();
        let error = body["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error field: {body}"))
            .to_string();
        let kind = body["error_type"]
            .as_str()
            .unwrap_or_else(|| panic!("no error_type: {body}"))
            .to_string();
        assert_eq!(
            body.as_object().unwrap().len(),
            2,
            "envelope has exactly error + error_type: {body}"
        );
        (error, kind)
    }
}

/// One request through the router, in-process.
pub async fn call(
    router: &Router,
    method: Method,
    uri: &str,
    content_type: Option<&str>,
    body: impl Into<Body>,
) -> Reply {
    let mut builder = Request::builder().method(method).uri(uri);
    if let Some(ct) = content_type {
        builder = builder.header("content-type", ct);
    }
    send(router, builder.body(body.into()).unwrap()).await
}

/// A prepared request through the router, in-process.
pub async fn send(router: &Router, request: Request<Body>) -> Reply {
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        headers,
        text: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

pub async fn get(router: &Router, uri: &str) -> Reply {
    call(router, Method::GET, uri, None, Body::empty()).await
}

pub async fn post(router: &Router, uri: &str, body: &Value) -> Reply {
    call(
        router,
        Method::POST,
        uri,
        Some("application/json"),
        body.to_string(),
    )
    .await
}

/// Value of one Prometheus sample, e.g. `metric(&text, "infera_model_instances_total{model=\"iris\",version=\"1\"}")`.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| {
            line.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .map(|v| v.trim().parse().expect("numeric sample"))
}

/// The server running on a real socket; stops when dropped.
pub struct TestServer {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestServer {
    pub async fn start(infera: Infera) -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            infera::server::run_until(&infera, listener, shutdown, Duration::from_secs(10))
                .await
                .unwrap();
        });
        TestServer {
            addr,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Triggers graceful shutdown and waits for the server to finish.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(15), task)
                .await
                .expect("server stops")
                .unwrap();
        }
    }

    /// Triggers shutdown without waiting.
    pub fn begin_stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    pub async fn join(mut self) {
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(15), task)
                .await
                .expect("server stops")
                .unwrap();
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Copies a directory tree.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A fresh repository holding copies of the named shipped models.
pub fn repo_with(models: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for m in models {
        copy_dir(&shipped_models().join(m), &dir.path().join(m));
    }
    dir
}

/// Polls `check` every millisecond until it holds (at most 10 s).
pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..10_000 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// A V2 binary-extension inference (`header` JSON, then `tail` bytes): the status, the JSON
/// head of the answer and its binary tail (empty for a JSON-only answer).
pub async fn binary_infer(
    app: &Router,
    model: &str,
    header: &Value,
    tail: &[u8],
) -> (StatusCode, Value, Vec<u8>) {
    let header = header.to_string();
    let mut body = header.clone().into_bytes();
    body.extend_from_slice(tail);
    let request = Request::builder()
        .method(Method::POST)
        .uri(format!("/v2/models/{model}/infer"))
        .header("content-type", "application/octet-stream")
        .header("inference-header-content-length", header.len())
        .body(Body::from(body))
        .unwrap();
    let reply = app.clone().oneshot(request).await.unwrap();
    let status = reply.status();
    let json_len: Option<usize> = reply
        .headers()
        .get("inference-header-content-length")
        .map(|v| v.to_str().unwrap().parse().unwrap());
    let bytes = reply.into_body().collect().await.unwrap().to_bytes();
    let json_len = json_len.unwrap_or(bytes.len());
    let head: Value = serde_json::from_slice(&bytes[..json_len]).unwrap();
    (status, head, bytes[json_len..].to_vec())
}

/// The shipped penguins model's columns, in graph input order.
pub const PENGUIN_FEATURES: [&str; 6] = [
    "island",
    "sex",
    "bill_length_mm",
    "bill_depth_mm",
    "flipper_length_mm",
    "body_mass_g",
];

/// The shipped penguins model's golden rows (objects of named column values).
pub fn penguin_golden_inputs() -> Vec<serde_json::Value> {
    let path = shipped_models().join("penguins/1/golden.json");
    let golden: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    golden["inputs"].as_array().unwrap().clone()
}
