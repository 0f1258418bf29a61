//! Backpressure: a full queue is refused at once with 429 + Retry-After while every accepted
//! request completes; deadlines and disconnected callers are skipped before inference.

use std::sync::Arc;

use axum::http::StatusCode;
use futures_util::future::join_all;
use serde_json::json;

use crate::common::{eventually, get, loaded, metric, post};
use crate::onnx;

const WIDTH: usize = 512;

fn slow_repo(depth: usize) -> tempfile::TempDir {
    let repo = tempfile::tempdir().unwrap();
    onnx::slow(repo.path(), "slow", WIDTH as i64, depth);
    repo
}

fn instance() -> serde_json::Value {
    instances(1)
}

fn instances(n: usize) -> serde_json::Value {
    json!(vec![vec![0.5f32; WIDTH]; n])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queue_is_refused_with_429_and_no_accepted_request_is_lost() {
    let repo = slow_repo(400);
    let infera = loaded(
        repo.path(),
        &[
            "--workers",
            "1",
            "--queue-capacity",
            "2",
            "--retry-after-secs",
            "3",
        ],
    );
    let app = Arc::new(infera.router());
    let requests = (0..24).map(|_| {
        let app = app.clone();
        tokio::spawn(
            async move { post(&app, "/predict", &json!({ "instances": instance() })).await },
        )
    });
    let replies: Vec<_> = join_all(requests)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let ok = replies
        .iter()
        .filter(|r| r.status == StatusCode::OK)
        .count();
    let refused: Vec<_> = replies
        .iter()
        .filter(|r| r.status == StatusCode::TOO_MANY_REQUESTS)
        .collect();
    assert_eq!(
        ok + refused.len(),
        replies.len(),
        "only 200 and 429: {:?}",
        replies.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    // The queue's two slots always take the first two; a third fits only if the worker has
    // already dequeued a job when it arrives.
    assert!(ok >= 2, "the queue's two slots were used: {ok} ok");
    assert!(
        !refused.is_empty(),
        "24 concurrent slow requests overflow a queue of 2"
    );
    for r in &refused {
        assert_eq!(r.headers["retry-after"], "3");
        let (msg, kind) = r.error(StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(kind, "overloaded");
        assert!(msg.contains("queue is full (2 requests waiting)"), "{msg}");
    }
    for r in replies.iter().filter(|r| r.status == StatusCode::OK) {
        assert_eq!(
            r.json()["predictions"][0]["outputs"]["y"]["shape"],
            json!([WIDTH])
        );
    }
    let text = get(&app, "/metrics").await.text;
    let series = |reason: &str| {
        format!("infera_model_failures_total{{model=\"slow\",protocol=\"http\",reason=\"{reason}\",version=\"1\"}}")
    };
    assert_eq!(
        metric(&text, &series("overloaded")),
        Some(refused.len() as f64),
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            "infera_model_queue_depth{model=\"slow\",version=\"1\"}"
        ),
        Some(0.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_past_its_deadline_is_dropped_before_inference() {
    let repo = slow_repo(400);
    let infera = loaded(
        repo.path(),
        &["--workers", "1", "--request-timeout-ms", "1"],
    );
    let app = Arc::new(infera.router());
    let replies = join_all((0..4).map(|_| {
        let app = app.clone();
        tokio::spawn(
            async move { post(&app, "/predict", &json!({ "instances": instance() })).await },
        )
    }))
    .await;
    let timed_out = replies
        .into_iter()
        .map(Result::unwrap)
        .filter(|r| r.status == StatusCode::SERVICE_UNAVAILABLE)
        .inspect(|r| {
            assert_eq!(r.error(StatusCode::SERVICE_UNAVAILABLE).1, "timeout");
            assert!(r.headers.contains_key("retry-after"));
        })
        .count();
    assert!(
        timed_out >= 3,
        "a 1 ms budget cannot cover four runs of the slow model back to back"
    );
    let text = infera.state.metrics.render();
    let jobs_run = metric(
        &text,
        "infera_model_batch_size_count{model=\"slow\",version=\"1\"}",
    )
    .unwrap();
    assert!(
        jobs_run <= 1.0,
        "queued jobs past their deadline never reach the model: {jobs_run} ran"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_that_goes_away_is_skipped() {
    let repo = slow_repo(400);
    let infera = loaded(repo.path(), &["--workers", "1"]);
    let app = Arc::new(infera.router());
    // Queue a second job behind a busy worker, then abandon it.
    let (busy, abandoned) = busy_worker_and_one_queued(&infera, &app).await;
    abandoned.abort();
    assert_eq!(busy.await.unwrap().status, StatusCode::OK);
    let series =
        "infera_model_jobs_skipped_total{model=\"slow\",reason=\"cancelled\",version=\"1\"}";
    eventually("the abandoned job is skipped", || {
        metric(&infera.state.metrics.render(), series) == Some(1.0)
    })
    .await;
    let text = infera.state.metrics.render();
    assert_eq!(
        metric(
            &text,
            "infera_model_batch_size_count{model=\"slow\",version=\"1\"}"
        ),
        Some(1.0),
        "only one job ran"
    );
    eprintln!(
        "slow model compute: {:?} s",
        metric(
            &text,
            "infera_model_inference_seconds_sum{model=\"slow\",version=\"1\"}"
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_refuses_before_reading_the_body() {
    let repo = slow_repo(400);
    let infera = loaded(repo.path(), &["--workers", "1", "--queue-capacity", "1"]);
    let app = Arc::new(infera.router());
    let (busy, queued) = busy_worker_and_one_queued(&infera, &app).await;
    // Malformed JSON would be a 400 if the body were read: the full queue answers first.
    let r = crate::common::call(
        &app,
        axum::http::Method::POST,
        "/models/slow/predict",
        Some("application/json"),
        "{not json",
    )
    .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.text);
    assert!(r.headers.contains_key("retry-after"));
    assert_eq!(r.error(StatusCode::TOO_MANY_REQUESTS).1, "overloaded");
    assert_eq!(busy.await.unwrap().status, StatusCode::OK);
    assert_eq!(queued.await.unwrap().status, StatusCode::OK);
    let overloaded =
        "infera_model_failures_total{model=\"slow\",protocol=\"http\",reason=\"overloaded\",version=\"1\"}";
    assert_eq!(
        metric(&infera.state.metrics.render(), overloaded),
        Some(1.0)
    );
}

/// Occupies the only worker with a 64-instance request, then queues one more request and waits
/// until it sits in the queue. Returns both in-flight requests.
async fn busy_worker_and_one_queued(
    infera: &infera::server::Infera,
    app: &Arc<axum::Router>,
) -> (
    tokio::task::JoinHandle<crate::common::Reply>,
    tokio::task::JoinHandle<crate::common::Reply>,
) {
    let pool = infera.pool().clone();
    // 64 instances keep the only worker busy for tens of milliseconds.
    let busy = {
        let app = app.clone();
        tokio::spawn(
            async move { post(&app, "/predict", &json!({ "instances": instances(64) })).await },
        )
    };
    eventually("the first job is running", || pool.running() == 1).await;
    let queued = {
        let app = app.clone();
        tokio::spawn(
            async move { post(&app, "/predict", &json!({ "instances": instance() })).await },
        )
    };
    let depth = "infera_model_queue_depth{model=\"slow\",version=\"1\"}";
    eventually("the second job is queued", || {
        metric(&infera.state.metrics.render(), depth) == Some(1.0)
    })
    .await;
    (busy, queued)
}

/// One saturated model must not delay another: wake-ups are coalesced per queue, so a quiet
/// model's request waits behind at most about one job of the busy model, not behind its backlog,
/// and the wake-up channel never holds more posts than there are queues. Judged by counting, not
/// timing: ten quiet requests in a row must all be answered while most of the busy backlog is
/// still waiting (before the fix each one waited for every busy job queued ahead of its post).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saturated_model_does_not_delay_a_quiet_one() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let repo = slow_repo(60);
    crate::common::copy_dir(
        &crate::common::shipped_models().join("iris"),
        &repo.path().join("iris"),
    );
    let flags = [
        "--workers",
        "1",
        "--max-batch-size",
        "1",
        "--queue-capacity",
        "1024",
    ];
    let infera = loaded(repo.path(), &flags);
    let app = Arc::new(infera.router());
    let iris = json!({"model": "iris", "instances": [[5.1, 3.5, 1.4, 0.2]]});
    let slow = json!({"model": "slow", "instances": instance()});
    const FLOOD: usize = 300;
    let done = Arc::new(AtomicUsize::new(0));
    let flood: Vec<_> = (0..FLOOD)
        .map(|_| {
            let (app, slow, done) = (app.clone(), slow.clone(), done.clone());
            tokio::spawn(async move {
                let status = post(&app, "/predict", &slow).await.status;
                done.fetch_add(1, Ordering::SeqCst);
                status
            })
        })
        .collect();
    let depth = |app: Arc<axum::Router>| async move {
        let text = get(&app, "/metrics").await.text;
        metric(
            &text,
            "infera_model_queue_depth{model=\"slow\",version=\"1\"}",
        )
        .unwrap_or(0.0)
    };
    let mut deep = false;
    for _ in 0..5000 {
        if depth(app.clone()).await >= 200.0 {
            deep = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    assert!(deep, "the busy model's queue never filled");
    let before = done.load(Ordering::SeqCst);
    for _ in 0..10 {
        assert!(
            infera.pool().pending_wakeups() <= 2,
            "more posts than queues"
        );
        assert_eq!(post(&app, "/predict", &iris).await.status, StatusCode::OK);
    }
    let during = done.load(Ordering::SeqCst) - before;
    assert!(
        during < 100,
        "{during} busy jobs ran while 10 quiet requests were answered one after another \
         (the quiet model waited behind the busy backlog)"
    );
    for f in flood {
        assert_eq!(f.await.unwrap(), StatusCode::OK);
    }
    assert!(infera.pool().pending_wakeups() <= 2);
}
