//! HTTP-layer benchmarks, in-process through the axum router (no sockets): the framework floor
//! (`GET /health/live`), a full iris prediction, a 64-instance digits prediction, image-sized
//! inputs in three encodings, and a no-op engine (an Identity graph). Compare with
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

/// The allocator the server binary uses (src/main.rs), so the figures match it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "../tests/integration/onnx.rs"]
#[allow(dead_code)]
mod onnx;

fn app() -> axum::Router {
    app_on(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models"))
}

fn app_on(repo: &std::path::Path) -> axum::Router {
    app_with(repo, &[])
}

fn app_with(repo: &std::path::Path, extra: &[&str]) -> axum::Router {
    let mut argv = vec![
        "infera",
        "--model-repository",
        repo.to_str().unwrap(),
        "--port",
        "0",
    ];
    argv.extend_from_slice(extra);
    let args = Cli::try_parse_from(argv).unwrap().serve;
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

/// An image-sized input (3x64x64 floats, as JSON ~100 KB) through /predict, V2 JSON and V2 with
/// the binary tensor data extension, on a tiny model (global average pooling) so that request
/// decoding dominates.
fn image(c: &mut Criterion, runtime: &tokio::runtime::Runtime) {
    let repo = tempfile::tempdir().unwrap();
    let dims = [-1, 3, 64, 64];
    onnx::write(
        repo.path(),
        "image",
        tract_onnx::pb::GraphProto {
            node: vec![onnx::node("GlobalAveragePool", &["x"], &["y"], vec![])],
            name: "image".into(),
            input: vec![onnx::io("x", onnx::F32, &dims)],
            output: vec![onnx::io("y", onnx::F32, &[-1, 3, 1, 1])],
            ..Default::default()
        },
    );
    let app = runtime.block_on(async { app_on(repo.path()) });
    let pixels: Vec<f32> = (0..3 * 64 * 64)
        .map(|i| (i % 255) as f32 / 255.0 + 0.001)
        .collect();
    let nested: Vec<Vec<Vec<f32>>> = pixels
        .chunks(64 * 64)
        .map(|p| p.chunks(64).map(<[f32]>::to_vec).collect())
        .collect();
    let predict = serde_json::json!({ "instances": [nested] }).to_string();
    let v2_json = serde_json::json!({"inputs": [{"name": "x", "shape": [1, 3, 64, 64], "datatype": "FP32", "data": pixels}]}).to_string();
    let header = serde_json::json!({"inputs": [{"name": "x", "shape": [1, 3, 64, 64], "datatype": "FP32", "parameters": {"binary_data_size": pixels.len() * 4}}]}).to_string();
    let mut v2_binary = header.clone().into_bytes();
    v2_binary.extend(pixels.iter().flat_map(|p| p.to_le_bytes()));
    let header_len = header.len();
    let binary_request = move || {
        Request::builder()
            .method("POST")
            .uri("/v2/models/image/infer")
            .header("content-type", "application/octet-stream")
            .header("inference-header-content-length", header_len)
            .body(Body::from(v2_binary.clone()))
            .unwrap()
    };
    type MakeRequest = Box<dyn Fn() -> Request<Body>>;
    let cases: [(&str, MakeRequest); 3] = [
        (
            "http_image_predict_json",
            Box::new(move || request("POST", "/predict", &predict)),
        ),
        (
            "http_image_v2_json",
            Box::new(move || request("POST", "/v2/models/image/infer", &v2_json)),
        ),
        ("http_image_v2_binary", Box::new(binary_request)),
    ];
    for (name, make) in cases {
        c.bench_function(name, |b| {
            b.iter(|| {
                runtime.block_on(async {
                    let response = app.clone().oneshot(make()).await.unwrap();
                    assert!(
                        response.status().is_success(),
                        "{name}: {}",
                        response.status()
                    );
                    response.into_body().collect().await.unwrap().to_bytes()
                })
            })
        });
    }
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
        c.bench_function(name, |b| b.iter(|| answer(&runtime, &app, make())));
    }
    image(c, &runtime);
    noop(c, &runtime);
    monitoring_cost(c, &runtime);
}

/// What drift tracking and the prediction log add to a tiny model's request: iris with its
/// reference profile and the feedback log (the default), without the profile, and without both.
fn monitoring_cost(c: &mut Criterion, runtime: &tokio::runtime::Runtime) {
    let models = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models");
    // Two repositories holding only iris, one with its profile.json and one without.
    let (with, bare) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    for repo in [with.path(), bare.path()] {
        let iris = repo.join("iris");
        std::fs::create_dir_all(iris.join("1")).unwrap();
        std::fs::copy(models.join("iris/model.toml"), iris.join("model.toml")).unwrap();
        std::fs::copy(models.join("iris/1/model.onnx"), iris.join("1/model.onnx")).unwrap();
    }
    std::fs::copy(
        models.join("iris/1/profile.json"),
        with.path().join("iris/1/profile.json"),
    )
    .unwrap();
    let body = r#"{"instances": [[5.1, 3.5, 1.4, 0.2]]}"#;
    let cases = [
        ("profile_and_log", with.path().to_path_buf(), vec![]),
        ("log_only", bare.path().to_path_buf(), vec![]),
        (
            "neither",
            bare.path().to_path_buf(),
            vec!["--feedback-capacity", "0"],
        ),
    ];
    let mut group = c.benchmark_group("http_predict_iris_monitoring");
    for (name, repo, extra) in cases {
        let app = runtime.block_on(async { app_with(&repo, &extra) });
        let make = request_fn("POST", "/models/iris/predict", body);
        group.bench_function(name, |b| b.iter(|| answer(runtime, &app, make())));
    }
    group.finish();
}

/// The HTTP layer with a no-op engine: `POST /models/noop/predict` on an Identity graph of 64
/// floats, so the figure is routing, middleware, metrics, JSON in and out, validation and the
/// worker hand-off, with no model work.
fn noop(c: &mut Criterion, runtime: &tokio::runtime::Runtime) {
    let repo = tempfile::tempdir().unwrap();
    onnx::write(
        repo.path(),
        "noop",
        tract_onnx::pb::GraphProto {
            node: vec![onnx::node("Identity", &["x"], &["y"], vec![])],
            name: "noop".into(),
            input: vec![onnx::io("x", onnx::F32, &[-1, 64])],
            output: vec![onnx::io("y", onnx::F32, &[-1, 64])],
            ..Default::default()
        },
    );
    let app = runtime.block_on(async { app_on(repo.path()) });
    let row: Vec<f32> = (0..64).map(|i| i as f32 / 4.0).collect();
    let body = serde_json::json!({ "instances": [row] }).to_string();
    let make = request_fn("POST", "/models/noop/predict", &body);
    c.bench_function("http_predict_noop_engine/1", |b| {
        b.iter(|| answer(runtime, &app, make()))
    });
}

/// One request through the router, in process; the whole body is read.
fn answer(
    runtime: &tokio::runtime::Runtime,
    app: &axum::Router,
    request: Request<Body>,
) -> axum::body::Bytes {
    runtime.block_on(async {
        let response = app.clone().oneshot(request).await.unwrap();
        assert!(response.status().is_success());
        response.into_body().collect().await.unwrap().to_bytes()
    })
}

fn request_fn(method: &'static str, uri: &'static str, body: &str) -> impl Fn() -> Request<Body> {
    let body = body.to_string();
    move || request(method, uri, &body)
}

criterion_group!(benches, http);
criterion_main!(benches);
