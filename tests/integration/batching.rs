//! Dynamic batching: requests that queue up together run as one model call, each caller gets
//! exactly its own rows back, `max_batch_size` and per-model overrides are honoured, and models
//! without a batch dimension are never batched.

use std::sync::Arc;

use axum::http::StatusCode;
use axum::Router;
use futures_util::future::join_all;
use serde_json::{json, Value};

use crate::common::{eventually, loaded, metric, post};
use crate::onnx;

const SLOW_WIDTH: usize = 512;

/// A repository with `slow` (keeps the only worker busy) and `dyn` (y = 2x, x: f32 [N, 3]).
fn repo() -> tempfile::TempDir {
    let repo = tempfile::tempdir().unwrap();
    onnx::slow(repo.path(), "slow", SLOW_WIDTH as i64, 400);
    onnx::doubler(repo.path(), "dyn", &[-1, 3]);
    repo
}

/// Request `i` carries 1 + i % 3 instances whose values are unique to (i, row).
fn instances_of(i: usize) -> Vec<[f32; 3]> {
    (0..1 + i % 3)
        .map(|row| {
            let base = (i * 10 + row) as f32;
            [base, base + 0.25, base + 0.5]
        })
        .collect()
}

fn m(infera: &infera::server::Infera, series: &str) -> f64 {
    let text = infera.state.metrics.render();
    metric(&text, series).unwrap_or_else(|| panic!("{series} missing from:\n{text}"))
}

/// Occupies the single worker with a long `slow` request, queues `n` requests on `dyn` behind
/// it, and returns every `dyn` reply (in request order) once all are answered.
async fn queue_behind_busy_worker(
    infera: &infera::server::Infera,
    app: &Arc<Router>,
    n: usize,
) -> Vec<crate::common::Reply> {
    let pool = infera.pool().clone();
    let busy = {
        let app = app.clone();
        let body = json!({ "instances": vec![vec![0.5f32; SLOW_WIDTH]; 256] });
        tokio::spawn(async move { post(&app, "/models/slow/predict", &body).await })
    };
    eventually("the slow request is running", || pool.running() == 1).await;
    let calls: Vec<_> = (0..n)
        .map(|i| {
            let app = app.clone();
            let body = json!({ "instances": instances_of(i) });
            tokio::spawn(async move { post(&app, "/models/dyn/predict", &body).await })
        })
        .collect();
    let replies: Vec<_> = join_all(calls)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(busy.await.unwrap().status, StatusCode::OK);
    replies
}

fn assert_own_rows(replies: &[crate::common::Reply]) {
    for (i, reply) in replies.iter().enumerate() {
        assert_eq!(reply.status, StatusCode::OK, "request {i}: {}", reply.text);
        let body = reply.json();
        let predictions = body["predictions"].as_array().unwrap();
        let sent = instances_of(i);
        assert_eq!(predictions.len(), sent.len(), "request {i}: {body}");
        for (row, (p, x)) in predictions.iter().zip(&sent).enumerate() {
            let want: Vec<f64> = x.iter().map(|v| f64::from(*v) * 2.0).collect();
            assert_eq!(
                p["outputs"]["y"]["data"],
                json!(want),
                "request {i} row {row} got another caller's row: {body}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_requests_run_as_one_batch_and_each_caller_gets_its_own_rows() {
    let repo = repo();
    let infera = loaded(repo.path(), &["--workers", "1"]);
    let app = Arc::new(infera.router());
    let replies = queue_behind_busy_worker(&infera, &app, 24).await;
    assert_own_rows(&replies);
    let rows: usize = (0..24).map(|i| instances_of(i).len()).sum();
    let dyn_ = "{model=\"dyn\",version=\"1\"}";
    assert_eq!(
        m(
            &infera,
            &format!("infera_model_requests_per_batch_sum{dyn_}")
        ),
        24.0
    );
    assert_eq!(
        m(&infera, &format!("infera_model_batch_size_sum{dyn_}")),
        rows as f64
    );
    let calls = m(
        &infera,
        &format!("infera_model_requests_per_batch_count{dyn_}"),
    );
    assert!(
        calls < 24.0,
        "24 requests queued behind a busy worker share model calls: {calls} calls"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_batch_size_bounds_every_call_and_a_larger_request_runs_alone() {
    let repo = repo();
    let infera = loaded(repo.path(), &["--workers", "1", "--max-batch-size", "4"]);
    let app = Arc::new(infera.router());
    let replies = queue_behind_busy_worker(&infera, &app, 24).await;
    assert_own_rows(&replies);
    let dyn_ = "model=\"dyn\",version=\"1\"";
    let calls = m(&infera, &format!("infera_model_batch_size_count{{{dyn_}}}"));
    let at_most_4 = m(
        &infera,
        &format!("infera_model_batch_size_bucket{{{dyn_},le=\"4\"}}"),
    );
    assert_eq!(at_most_4, calls, "no model call took more than 4 instances");
    assert!(
        calls < 24.0,
        "some requests were still joined: {calls} calls"
    );
    assert_eq!(
        m(&infera, &format!("infera_model_max_batch_size{{{dyn_}}}")),
        4.0
    );

    // Seven instances exceed the limit: the request is not split or refused, it runs alone.
    let seven: Vec<[f32; 3]> = (0..7).map(|i| [i as f32, 0.0, 1.0]).collect();
    let r = post(&app, "/models/dyn/predict", &json!({ "instances": seven })).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        r.json()["predictions"][6]["outputs"]["y"]["data"],
        json!([12.0, 0.0, 2.0])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batching_off_runs_one_request_per_call() {
    let repo = repo();
    let infera = loaded(repo.path(), &["--workers", "1", "--max-batch-size", "1"]);
    let app = Arc::new(infera.router());
    let replies = queue_behind_busy_worker(&infera, &app, 12).await;
    assert_own_rows(&replies);
    let dyn_ = "{model=\"dyn\",version=\"1\"}";
    assert_eq!(
        m(
            &infera,
            &format!("infera_model_requests_per_batch_count{dyn_}")
        ),
        12.0
    );
    assert_eq!(
        m(
            &infera,
            &format!("infera_model_requests_per_batch_sum{dyn_}")
        ),
        12.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_delay_gathers_concurrent_requests_into_one_call() {
    let repo = tempfile::tempdir().unwrap();
    onnx::doubler(repo.path(), "dyn", &[-1, 3]);
    // 300 ms is far longer than it takes to send five requests, so all five join the first.
    let infera = loaded(
        repo.path(),
        &["--workers", "1", "--max-queue-delay-us", "300000"],
    );
    let app = Arc::new(infera.router());
    let replies: Vec<_> = join_all((0..5).map(|i| {
        let app = app.clone();
        let body = json!({ "instances": instances_of(i) });
        tokio::spawn(async move { post(&app, "/models/dyn/predict", &body).await })
    }))
    .await
    .into_iter()
    .map(Result::unwrap)
    .collect();
    assert_own_rows(&replies);
    let dyn_ = "{model=\"dyn\",version=\"1\"}";
    assert_eq!(
        m(
            &infera,
            &format!("infera_model_requests_per_batch_count{dyn_}")
        ),
        1.0
    );
    assert_eq!(
        m(
            &infera,
            &format!("infera_model_requests_per_batch_sum{dyn_}")
        ),
        5.0
    );
}

#[tokio::test]
async fn models_without_a_batch_dimension_are_never_batched_and_cards_can_override() {
    let repo = tempfile::tempdir().unwrap();
    onnx::doubler(repo.path(), "fixed", &[1, 3]);
    onnx::doubler(repo.path(), "noaxis", &[3]);
    onnx::doubler(repo.path(), "tuned", &[-1, 3]);
    std::fs::write(
        repo.path().join("tuned/model.toml"),
        "[batching]\nmax_batch_size = 8\nmax_queue_delay_us = 250\nqueue_capacity = 16\n",
    )
    .unwrap();
    onnx::doubler(repo.path(), "bad", &[-1, 3]);
    std::fs::write(
        repo.path().join("bad/model.toml"),
        "[batching]\nmax_batch_size = 0\n",
    )
    .unwrap();
    let infera = loaded(repo.path(), &[]);
    let app = infera.router();
    let gauge = |name: &str, model: &str| {
        m(
            &infera,
            &format!("{name}{{model=\"{model}\",version=\"1\"}}"),
        )
    };
    assert_eq!(gauge("infera_model_max_batch_size", "fixed"), 1.0);
    assert_eq!(gauge("infera_model_max_batch_size", "noaxis"), 1.0);
    assert_eq!(gauge("infera_model_max_batch_size", "tuned"), 8.0);
    assert_eq!(gauge("infera_model_queue_capacity", "tuned"), 16.0);
    assert_eq!(gauge("infera_model_queue_capacity", "fixed"), 256.0);
    let card: Value = crate::common::get(&app, "/models/bad").await.json();
    let error = card.to_string();
    assert!(
        error.contains("batching.max_batch_size must be between 1 and 65536, got 0"),
        "{error}"
    );
}
