//! HTTP-layer benchmarks, in-process through the axum router (no sockets): the framework floor
//! (`GET /health/live`), a full iris prediction, and a 64-instance digits prediction. Compare with
//! `benches/engine.rs` to see what the HTTP layer adds. Run: `cargo bench --bench http`.

use std::path::PathBuf;

use axum::body::Body;
use axum::http::Request;
use clap::Parser;
use criterion::{criterion_group, criterion_main, Criterion};
use http_body_util::BodyExt;
use infera::config::Cli;
use infera::server::Infera;
use tower::ServiceExt;

fn app() -> axum::Router {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models");
    let args = Cli::try_parse_from([
        "infera",
        "--model-repository",
        repo.to_str().unwrap(),
        "--port",
        "0",
    ])
    .unwrap()
    .serve;
    let infera = Infera::new(&args).unwrap();
    assert!(infera.load_models().is_empty());
    infera.router()
}

fn request(method: &str, uri: &str, body: &str) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

fn http(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let app = runtime.block_on(async { app() });
    let digits: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/digits/1/golden.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let digits_64: Vec<_> = digits["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .cycle()
        .take(64)
        .cloned()
        .collect();
    let digits_body = serde_json::json!({ "instances": digits_64 }).to_string();
    let cases = [
        ("http_health_live", request_fn("GET", "/health/live", "")),
        (
            "http_predict_iris/1",
            request_fn(
                "POST",
                "/predict",
                r#"{"instances": [[5.1, 3.5, 1.4, 0.2]]}"#,
            ),
        ),
        (
            "http_predict_digits/64",
            request_fn("POST", "/models/digits/predict", &digits_body),
        ),
    ];
    for (name, make) in cases {
        c.bench_function(name, |b| {
            b.iter(|| {
                runtime.block_on(async {
                    let response = app.clone().oneshot(make()).await.unwrap();
                    assert!(response.status().is_success());
                    response.into_body().collect().await.unwrap().to_bytes()
                })
            })
        });
    }
}

fn request_fn(method: &'static str, uri: &'static str, body: &str) -> impl Fn() -> Request<Body> {
    let body = body.to_string();
    move || request(method, uri, &body)
}

criterion_group!(benches, http);
criterion_main!(benches);
