//! Capture sinks besides Parquet: gzip JSON lines (server flag and card override, read back by
//! the export), and the CloudEvents HTTP sink in KServe's payload-logger format, checked at a
//! local receiver.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode};
use axum::Router;
use infera::capture::{export, ExportOptions};
use serde_json::{json, Value};

use crate::capture_support::{files, read};
use crate::common::{eventually, get, loaded, metric, post, repo_with, shipped_models};

/// One received event: its headers (lower-case names) and JSON body.
type Event = (HashMap<String, String>, Value);

/// A CloudEvents receiver on 127.0.0.1 port 0 answering `status`.
async fn ce_receiver(status: StatusCode) -> (String, Arc<Mutex<Vec<Event>>>) {
    ce_receiver_with(move |_| status).await
}

/// A receiver whose answer depends on how many times it already received the same event
/// (same `ce-id` and `ce-type`).
async fn ce_receiver_with(
    answer: impl Fn(usize) -> StatusCode + Clone + Send + Sync + 'static,
) -> (String, Arc<Mutex<Vec<Event>>>) {
    let got: Arc<Mutex<Vec<Event>>> = Arc::default();
    let sink = got.clone();
    let app = Router::new().route(
        "/events",
        axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let (sink, answer) = (sink.clone(), answer.clone());
            async move {
                let headers: HashMap<String, String> = headers
                    .iter()
                    .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
                    .collect();
                let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let mut got = sink.lock().unwrap();
                let key = |h: &HashMap<String, String>| {
                    (h.get("ce-id").cloned(), h.get("ce-type").cloned())
                };
                let before = got.iter().filter(|(h, _)| key(h) == key(&headers)).count();
                got.push((headers, body));
                answer(before)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/events"), got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn predictions_are_posted_as_kserve_cloudevents() {
    let (url, events) = ce_receiver(StatusCode::ACCEPTED).await;
    // Credentials in the URL become a Basic auth header.
    let url = url.replace("http://", "http://logger:s3cret@");
    let infera = loaded(
        &shipped_models(),
        &[
            "--capture-url",
            &url,
            "--capture-namespace",
            "ml",
            "--capture-replica",
            "pod-a",
        ],
    );
    let app = infera.router();
    let body = json!({"instances": [[5.1, 3.5, 1.4, 0.2], [7.7, 3.0, 6.1, 2.3]], "id": "ce-1"});
    let r = post(&app, "/models/iris/predict", &body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    eventually("both events arrive", || events.lock().unwrap().len() >= 2).await;
    tokio::task::block_in_place(|| infera.stop_capture());

    let events = events.lock().unwrap().clone();
    assert_eq!(events.len(), 2, "one request and one response event");
    let of_type = |t: &str| {
        events
            .iter()
            .find(|(h, _)| h["ce-type"] == t)
            .unwrap_or_else(|| panic!("no {t} event in {events:?}"))
            .clone()
    };
    let (req_h, req_body) = of_type("org.kubeflow.serving.inference.request");
    let (resp_h, resp_body) = of_type("org.kubeflow.serving.inference.response");
    for h in [&req_h, &resp_h] {
        assert_eq!(h["ce-specversion"], "1.0");
        assert_eq!(h["ce-id"], "ce-1", "the prediction id");
        assert_eq!(h["ce-inferenceservicename"], "iris");
        assert_eq!(h["ce-namespace"], "ml");
        assert_eq!(h["ce-component"], "predictor");
        assert_eq!(h["ce-endpoint"], "default");
        assert_eq!(h["ce-source"], "/pod-a/models/iris/versions/1");
        assert!(
            h["ce-time"].ends_with('Z') && h["ce-time"].contains('T'),
            "{}",
            h["ce-time"]
        );
        assert_eq!(h["content-type"], "application/json");
        // base64("logger:s3cret")
        assert_eq!(h["authorization"], "Basic bG9nZ2VyOnMzY3JldA==");
    }
    assert_eq!(
        req_body,
        json!({"instances": [[5.1, 3.5, 1.4, 0.2], [7.7, 3.0, 6.1, 2.3]]})
    );
    assert_eq!(
        resp_body,
        json!({"predictions": ["setosa", "virginica"], "model_name": "iris"})
    );
    let text = get(&app, "/metrics").await.text;
    let sent = "infera_capture_events_total{outcome=\"sent\"}";
    assert_eq!(metric(&text, sent), Some(2.0), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusing_event_sink_is_counted_and_never_fails_a_request() {
    let (url, events) = ce_receiver(StatusCode::SERVICE_UNAVAILABLE).await;
    let infera = loaded(&shipped_models(), &["--capture-url", &url]);
    let app = infera.router();
    for i in 0..3 {
        let body = json!({"instances": [[5.1, 3.5, 1.4, 0.2]], "id": format!("x{i}")});
        let r = post(&app, "/models/iris/predict", &body).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    }
    eventually("the six posts were tried", || {
        events.lock().unwrap().len() >= 6
    })
    .await;
    tokio::task::block_in_place(|| infera.stop_capture());
    let text = get(&app, "/metrics").await.text;
    let failed = "infera_capture_events_total{outcome=\"failed\"}";
    assert_eq!(metric(&text, failed), Some(6.0), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_lines_files_from_the_flag_and_the_card_are_exported() {
    let repo = repo_with(&["iris", "diabetes"]);
    let path = repo.path().join("diabetes").join("model.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, format!("{text}\n[capture]\nformat = \"parquet\"\n")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let flags = [
        "--capture-dir",
        dir.path().to_str().unwrap(),
        "--capture-format",
        "jsonl",
    ];
    let infera = loaded(repo.path(), &flags);
    let app = infera.router();
    let iris = json!({"instances": [[5.1, 3.5, 1.4, 0.2], [7.7, 3.0, 6.1, 2.3]], "id": "j1"});
    assert_eq!(post(&app, "/models/iris/predict", &iris).await.status, 200);
    let diabetes = json!({"instances": [vec![0.01; 10]], "id": "d1"});
    assert_eq!(
        post(&app, "/models/diabetes/predict", &diabetes)
            .await
            .status,
        200
    );
    let feedback = json!({"feedback": [{"id": "j1/1", "label": "virginica"}]});
    assert_eq!(
        post(&app, "/models/iris/feedback", &feedback).await.status,
        200
    );
    tokio::task::block_in_place(|| infera.stop_capture());

    let found = files(dir.path());
    let named = |part: &str, ext: &str| {
        found
            .iter()
            .filter(|f| {
                let s = f.to_str().unwrap();
                s.contains(part) && s.ends_with(ext)
            })
            .count()
    };
    assert_eq!(named("/iris/1/date=", ".jsonl.gz"), 1, "{found:?}");
    assert_eq!(named("/iris/feedback/date=", ".jsonl.gz"), 1, "{found:?}");
    assert_eq!(
        named("/diabetes/1/date=", ".parquet"),
        1,
        "the card's format wins: {found:?}"
    );
    let out = dir.path().join("iris.parquet");
    let summary = export(&ExportOptions {
        capture: dir.path().to_path_buf(),
        model: "iris".into(),
        out: out.clone(),
        since_ms: None,
        labels: vec![],
    })
    .unwrap();
    assert_eq!(
        (summary.rows, summary.joined, summary.unlabelled),
        (2, 1, 1)
    );
    let t = read(&out);
    let names: Vec<&str> = t
        .schema_ref()
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect();
    assert_eq!(
        names[..4],
        [
            "sepal_length_cm",
            "sepal_width_cm",
            "petal_length_cm",
            "petal_width_cm"
        ],
        "feature columns in the order written"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_post_is_retried_and_feedback_is_posted_as_an_event() {
    // Every event is refused once (503), then accepted.
    let (url, events) = ce_receiver_with(|before| {
        if before == 0 {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::ACCEPTED
        }
    })
    .await;
    let flags = ["--capture-url", &url, "--capture-replica", "pod-a"];
    let infera = loaded(&shipped_models(), &flags);
    let app = infera.router();
    let body = json!({"instances": [[5.1, 3.5, 1.4, 0.2]], "id": "rt-1"});
    assert_eq!(post(&app, "/models/iris/predict", &body).await.status, 200);
    let feedback = json!({"feedback": [{"id": "rt-1/0", "label": "setosa"}, {"id": "rt-9/0", "class_index": 2}]});
    assert_eq!(
        post(&app, "/models/iris/feedback", &feedback).await.status,
        200
    );
    eventually("three events, each tried twice", || {
        events.lock().unwrap().len() >= 6
    })
    .await;
    tokio::task::block_in_place(|| infera.stop_capture());
    let text = get(&app, "/metrics").await.text;
    let count = |outcome: &str| {
        metric(
            &text,
            &format!("infera_capture_events_total{{outcome=\"{outcome}\"}}"),
        )
    };
    assert_eq!(count("sent"), Some(3.0), "{text}");
    assert_eq!(count("retried"), Some(3.0), "{text}");
    assert_eq!(count("failed").unwrap_or(0.0), 0.0, "{text}");
    let events = events.lock().unwrap().clone();
    assert_eq!(events.len(), 6);
    let (h, body) = events
        .iter()
        .find(|(h, _)| h["ce-type"] == "org.kubeflow.serving.feedback")
        .expect("a feedback event")
        .clone();
    assert_eq!(h["ce-source"], "/pod-a/models/iris/feedback");
    assert_eq!(h["ce-inferenceservicename"], "iris");
    assert!(h["ce-id"].starts_with("pod-a-feedback-"), "{h:?}");
    assert_eq!(
        body,
        json!({"feedback": [{"id": "rt-1/0", "label": "setosa"}, {"id": "rt-9/0", "class_index": 2}], "model_name": "iris"})
    );
    for (h, _) in &events {
        assert_eq!(h["ce-metadata"], "{}", "KServe's metadata attribute: {h:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_never_grow_the_event_queue_past_its_bound() {
    let (url, events) = ce_receiver(StatusCode::SERVICE_UNAVAILABLE).await;
    let flags = [
        "--capture-url",
        &url,
        "--capture-url-queue",
        "1",
        "--capture-url-in-flight",
        "1",
        "--capture-url-retries",
        "2",
    ];
    let infera = loaded(&shipped_models(), &flags);
    let app = infera.router();
    for i in 0..20 {
        let body = json!({"instances": [[5.1, 3.5, 1.4, 0.2]], "id": format!("b{i}")});
        let r = post(&app, "/models/iris/predict", &body).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    }
    eventually("the first event was tried three times", || {
        events.lock().unwrap().len() >= 3
    })
    .await;
    tokio::task::block_in_place(|| infera.stop_capture());
    let text = get(&app, "/metrics").await.text;
    let count = |outcome: &str| {
        metric(
            &text,
            &format!("infera_capture_events_total{{outcome=\"{outcome}\"}}"),
        )
        .unwrap_or(0.0)
    };
    // One post in flight (retrying for 300 ms) and one request queued: the other requests'
    // events are dropped, not held.
    assert!(count("dropped") >= 2.0 * 15.0, "{text}");
    assert_eq!(count("dropped") + count("failed"), 40.0, "{text}");
    assert_eq!(count("retried"), 2.0 * count("failed"), "{text}");
    assert_eq!(events.lock().unwrap().len() as f64, 3.0 * count("failed"));
}
