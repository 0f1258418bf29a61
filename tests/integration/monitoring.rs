//! Model quality in production, end to end through the router: drift against a reference
//! profile, ground-truth feedback and live accuracy, and the webhook on state changes.

use std::sync::{Arc, Mutex};

use axum::http::StatusCode;
use axum::Router;
use serde_json::{json, Value};

use crate::common::{eventually, get, loaded, metric, post, shipped};
use crate::onnx;

/// A deterministic uniform stream on [0, 1) (xorshift).
pub(crate) struct Rng(pub(crate) u64);
impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// `lin`: y = a for inputs (a, b, c), a regression model whose card names the features, with a
/// reference profile of three U(0, 1) features (decile bins) and predictions like `a`.
pub(crate) fn drift_repo() -> tempfile::TempDir {
    let repo = tempfile::tempdir().unwrap();
    onnx::write(
        repo.path(),
        "lin",
        tract_onnx::pb::GraphProto {
            node: vec![onnx::node("MatMul", &["x", "w"], &["y"], vec![])],
            name: "lin".into(),
            initializer: vec![onnx::f32_tensor("w", &[3, 1], vec![1.0, 0.0, 0.0])],
            input: vec![onnx::io("x", onnx::F32, &[-1, 3])],
            output: vec![onnx::io("y", onnx::F32, &[-1, 1])],
            ..Default::default()
        },
    );
    std::fs::write(
        repo.path().join("lin/model.toml"),
        r#"
task = "regression"
[outputs]
value = "y"
[monitoring]
drift_window = 400
mae_target = 0.2
[[features]]
name = "a"
[[features]]
name = "b"
[[features]]
name = "c"
"#,
    )
    .unwrap();
    let deciles: Vec<f64> = (1..10).map(|k| k as f64 / 10.0).collect();
    let uniform = |name: &str| json!({"name": name, "edges": deciles, "shares": vec![0.1; 10]});
    let profile = json!({
        "source": "synthetic U(0,1) training data",
        "rows": 10000,
        "features": [uniform("a"), uniform("b"), uniform("c")],
        "predictions": {"kind": "values", "edges": deciles, "shares": vec![0.1; 10]},
    });
    std::fs::write(
        repo.path().join("lin/1/profile.json"),
        serde_json::to_string(&profile).unwrap(),
    )
    .unwrap();
    repo
}

/// Sends `n` instances in requests of 100; `shift_b` is added to feature b.
pub(crate) async fn stream(app: &Router, rng: &mut Rng, n: usize, shift_b: f64) {
    for _ in 0..n / 100 {
        let instances: Vec<[f64; 3]> = (0..100)
            .map(|_| [rng.next(), rng.next() + shift_b, rng.next()])
            .collect();
        let r = post(
            app,
            "/models/lin/predict",
            &json!({ "instances": instances }),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    }
}

fn feature_status(view: &Value, name: &str) -> String {
    view["drift"]["latest"]["features"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == name)
        .unwrap_or_else(|| panic!("{name} missing: {view}"))["status"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Two standard deviations of U(0, 1).
pub(crate) const TWO_SD: f64 = 2.0 * 0.288_675;

#[tokio::test]
async fn training_like_traffic_stays_ok_and_one_shifted_feature_turns_drifting_alone() {
    let repo = drift_repo();
    let infera = loaded(repo.path(), &[]);
    let app = infera.router();
    let before = get(&app, "/models/lin/monitoring").await.json();
    assert_eq!(before["status"], "ok");
    assert_eq!(before["drift"]["reference"]["state"], "profile");
    assert!(before["drift"]["latest"].is_null(), "{before}");

    let mut rng = Rng(7);
    stream(&app, &mut rng, 800, 0.0).await;
    let view = get(&app, "/models/lin/monitoring").await.json();
    assert_eq!(view["status"], "ok", "{view}");
    assert_eq!(view["drift"]["latest"]["instances"], 400);
    for f in ["a", "b", "c"] {
        assert_eq!(feature_status(&view, f), "ok", "{view}");
    }

    // Feature b moves by two standard deviations; within one window it is drifting.
    stream(&app, &mut rng, 400, TWO_SD).await;
    let view = get(&app, "/models/lin/monitoring").await.json();
    assert_eq!(view["status"], "drifting", "{view}");
    assert_eq!(feature_status(&view, "b"), "drifting", "{view}");
    assert_eq!(feature_status(&view, "a"), "ok", "{view}");
    assert_eq!(feature_status(&view, "c"), "ok", "{view}");
    assert_eq!(view["drift"]["latest"]["predictions"]["status"], "ok");

    let text = get(&app, "/metrics").await.text;
    let lin = "model=\"lin\",version=\"1\"";
    assert_eq!(
        metric(&text, &format!("infera_model_drift_status{{{lin}}}")),
        Some(2.0)
    );
    let psi_b = metric(
        &text,
        &format!("infera_feature_drift_psi{{feature=\"b\",{lin}}}"),
    )
    .unwrap();
    let psi_a = metric(
        &text,
        &format!("infera_feature_drift_psi{{feature=\"a\",{lin}}}"),
    )
    .unwrap();
    assert!(psi_b > 0.25 && psi_a < 0.1, "psi b {psi_b}, a {psi_a}");
}

#[tokio::test]
async fn a_model_without_a_profile_serves_and_reports_no_reference() {
    let repo = tempfile::tempdir().unwrap();
    onnx::doubler(repo.path(), "plain", &[-1, 3]);
    let app = loaded(repo.path(), &[]).router();
    let r = post(
        &app,
        "/models/plain/predict",
        &json!({"instances": [[1, 2, 3]]}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let view = get(&app, "/models/plain/monitoring").await.json();
    assert_eq!(view["status"], "ok");
    assert_eq!(
        view["drift"]["reference"]["state"], "no_reference",
        "{view}"
    );
    let text = get(&app, "/metrics").await.text;
    assert_eq!(
        metric(
            &text,
            "infera_model_drift_status{model=\"plain\",version=\"1\"}"
        ),
        Some(-1.0)
    );
}

#[tokio::test]
async fn feedback_with_known_labels_gives_exactly_the_expected_accuracy() {
    let infera = shipped();
    let app = infera.router();
    let setosa = [5.1, 3.5, 1.4, 0.2];
    let r = post(
        &app,
        "/models/iris/predict",
        &json!({"instances": vec![setosa; 10], "id": "batch-1"}),
    )
    .await
    .json();
    let ids: Vec<String> = r["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            assert_eq!(p["label"], "setosa");
            p["id"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(ids[3], "batch-1/3");
    // 7 right (3 by label, 4 by class index), 3 wrong, 1 unknown id, 1 unknown label.
    let mut items: Vec<Value> = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        items.push(match i {
            0..=2 => json!({"id": id, "label": "setosa"}),
            3..=6 => json!({"id": id, "class_index": 0}),
            _ => json!({"id": id, "label": "virginica"}),
        });
    }
    items.push(json!({"id": "never-made/0", "label": "setosa"}));
    let r = post(&app, "/models/iris/feedback", &json!({ "feedback": items })).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let body = r.json();
    assert_eq!(body["received"], 11);
    assert_eq!(body["matched"], 10);
    assert_eq!(body["unmatched"], 1);
    assert_eq!(body["invalid"], 0);

    let view = get(&app, "/models/iris/monitoring").await.json();
    assert_eq!(view["quality"]["samples"], 10);
    assert_eq!(view["quality"]["accuracy"], 0.7);

    let text = get(&app, "/metrics").await.text;
    let iris = "model=\"iris\",version=\"1\"";
    assert_eq!(
        metric(&text, &format!("infera_model_accuracy{{{iris}}}")),
        Some(0.7)
    );
    assert_eq!(
        metric(
            &text,
            "infera_prediction_outcomes_total{model=\"iris\",outcome=\"correct\",version=\"1\"}"
        ),
        Some(7.0)
    );
    assert_eq!(
        metric(
            &text,
            "infera_feedback_total{model=\"iris\",result=\"unknown\"}"
        ),
        Some(1.0)
    );
    // Each prediction is scored once: the same feedback again matches nothing.
    let again = post(
        &app,
        "/models/iris/feedback",
        &json!({"feedback": [{"id": ids[0], "label": "setosa"}]}),
    )
    .await
    .json();
    assert_eq!(again["unmatched"], 1);

    // A label the model does not know is invalid; the prediction stays available.
    let r = post(
        &app,
        "/models/iris/predict",
        &json!({"instances": [setosa], "id": "late"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let bad = post(
        &app,
        "/models/iris/feedback",
        &json!({"feedback": [{"id": "late/0", "label": "tulip"}]}),
    )
    .await
    .json();
    assert_eq!(bad["invalid"], 1, "{bad}");
    assert!(bad["errors"][0]
        .as_str()
        .unwrap()
        .contains("unknown label \"tulip\""));
    let good = post(
        &app,
        "/models/iris/feedback",
        &json!({"feedback": [{"id": "late/0", "label": "setosa"}]}),
    )
    .await
    .json();
    assert_eq!(good["matched"], 1, "{good}");
}

#[tokio::test]
async fn feedback_requests_are_validated() {
    let app = shipped().router();
    let two_answers = post(
        &app,
        "/models/iris/feedback",
        &json!({"feedback": [{"id": "x/0", "label": "setosa", "class_index": 0}]}),
    )
    .await;
    assert_eq!(two_answers.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        two_answers
            .text
            .contains("exactly one of label, class_index or value"),
        "{}",
        two_answers.text
    );
    let empty = post(&app, "/models/iris/feedback", &json!({"feedback": []})).await;
    assert_eq!(empty.status, StatusCode::UNPROCESSABLE_ENTITY);
    let unknown_model = post(
        &app,
        "/models/nope/feedback",
        &json!({"feedback": [{"id": "x/0", "value": 1.0}]}),
    )
    .await;
    assert_eq!(unknown_model.status, StatusCode::NOT_FOUND);
}

/// A local webhook receiver: records every JSON body POSTed to it.
pub(crate) async fn receiver() -> (String, Arc<Mutex<Vec<Value>>>) {
    let got: Arc<Mutex<Vec<Value>>> = Arc::default();
    let sink = got.clone();
    let app = Router::new().route(
        "/hook",
        axum::routing::post(move |axum::Json(v): axum::Json<Value>| {
            let sink = sink.clone();
            async move {
                sink.lock().unwrap().push(v);
                StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_fires_once_per_transition() {
    let (url, events) = receiver().await;
    let repo = drift_repo();
    let infera = loaded(repo.path(), &["--webhook-url", &url]);
    let app = infera.router();
    let mut rng = Rng(11);
    stream(&app, &mut rng, 400, 0.0).await;
    // Three windows' worth of drifted traffic: many comparisons, one transition.
    stream(&app, &mut rng, 1200, TWO_SD).await;
    eventually("the drifting event arrives", || {
        !events.lock().unwrap().is_empty()
    })
    .await;
    // Back to the training distribution: one more event, when it clears.
    stream(&app, &mut rng, 1200, 0.0).await;
    eventually("the recovery event arrives", || {
        events.lock().unwrap().len() >= 2
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let events = events.lock().unwrap().clone();
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0]["kind"], "drift");
    assert_eq!(events[0]["model"], "lin");
    assert_eq!(events[0]["version"], 1);
    assert_eq!(events[0]["status"], "drifting");
    assert_eq!(
        events[0]["detail"]["drifting"][0]["name"], "b",
        "{events:?}"
    );
    assert_eq!(events[1]["status"], "ok");
    let text = get(&app, "/metrics").await.text;
    assert_eq!(
        metric(&text, "infera_webhook_events_total{result=\"delivered\"}"),
        Some(2.0)
    );
}
