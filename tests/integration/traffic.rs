//! Shadow and canary traffic: a shadow never changes the caller's answer and its agreement with
//! the serving version is measured; a canary takes its share of the traffic (sticky by key when
//! asked), is promoted or rolled back through the admin API, and rolls back by itself when its
//! rule trips.

use std::collections::BTreeMap;

use axum::http::{Method, Request, StatusCode};
use axum::Router;
use serde_json::{json, Value};

use crate::access::{keys_file, send, OPS_KEY};
use crate::common::{self, get, loaded, metric, post, repo_with, shipped_models};
use crate::updates::{append_card, version_state, write_worse_iris, IRIS_ROW};

/// The 16 held-out iris rows of the shipped golden file.
fn golden_rows() -> Vec<Value> {
    let golden: Value = serde_json::from_str(
        &std::fs::read_to_string(shipped_models().join("iris/1/golden.json")).unwrap(),
    )
    .unwrap();
    golden["inputs"].as_array().unwrap().clone()
}

/// iris v1 as shipped and v2 answering class 0 for every row.
fn iris_with_worse_v2(card: &str) -> tempfile::TempDir {
    let repo = repo_with(&["iris"]);
    let v2 = repo.path().join("iris/2");
    common::copy_dir(&repo.path().join("iris/1"), &v2);
    write_worse_iris(&v2);
    append_card(repo.path(), "iris", card);
    repo
}

/// A bare model: v1 takes iris's 4 features, v2 digits' 64 (a declared breaking change), so
/// every iris-shaped request fails on v2.
fn bare_with_breaking_v2(card: &str) -> tempfile::TempDir {
    let repo = tempfile::tempdir().unwrap();
    for (model, v) in [("iris", 1), ("digits", 2)] {
        let dir = repo.path().join("bare").join(v.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(
            shipped_models().join(model).join("1/model.onnx"),
            dir.join("model.onnx"),
        )
        .unwrap();
    }
    std::fs::write(
        repo.path().join("bare/model.toml"),
        format!("[gate]\nbreaking_versions = [2]\n{card}"),
    )
    .unwrap();
    repo
}

fn metrics_value(text: &str, series: &str) -> f64 {
    metric(text, series).unwrap_or(0.0)
}

async fn metrics_text(app: &Router) -> String {
    get(app, "/metrics").await.text
}

/// Polls `/metrics` until `series` reaches `at_least`.
async fn wait_for_metric(app: &Router, series: &str, at_least: f64) -> String {
    for _ in 0..5_000 {
        let text = metrics_text(app).await;
        if metrics_value(&text, series) >= at_least {
            return text;
        }
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    panic!("{series} never reached {at_least}");
}

#[tokio::test]
async fn tensor_protocol_requests_are_mirrored_to_the_shadow_too() {
    let repo = iris_with_worse_v2("[shadow]\nversion = 2\nfraction = 1.0\n");
    let app = loaded(repo.path(), &[]).router();
    let rows = golden_rows();
    let mut served_zero = 0usize;
    for row in &rows {
        let body = json!({"inputs": [{
            "name": "float_input", "shape": [1, 4], "datatype": "FP32", "data": row
        }]});
        let r = post(&app, "/v2/models/iris/infer", &body).await;
        assert_eq!(r.status, 200, "{}", r.text);
        let answer = r.json();
        assert_eq!(answer["model_version"], "1", "the serving version answers");
        let label = answer["outputs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["name"] == "label")
            .unwrap()["data"][0]
            .clone();
        served_zero += usize::from(label == 0);
    }
    assert!(served_zero > 0 && served_zero < rows.len());
    let series = |name: &str| format!(r#"{name}{{model="iris",version="2"}}"#);
    let text = wait_for_metric(
        &app,
        &series("infera_shadow_instances_total"),
        rows.len() as f64,
    )
    .await;
    assert_eq!(
        metrics_value(&text, &series("infera_shadow_agreements_total")),
        served_zero as f64,
        "V2 tensors reach the shadow, which answers class 0 on every row"
    );
}

#[tokio::test]
async fn a_shadow_never_changes_the_answer_and_its_agreement_is_measured() {
    let repo = iris_with_worse_v2("[shadow]\nversion = 2\nfraction = 1.0\n");
    let app = loaded(repo.path(), &[]).router();
    let card = get(&app, "/models/iris").await.json();
    assert_eq!(card["default_version"], 1, "{card}");
    assert_eq!(
        version_state(&card, 2).0,
        "ready",
        "the shadow stays loaded"
    );
    assert_eq!(card["traffic"]["shadow"]["version"], 2);

    let rows = golden_rows();
    let (mut served_zero, mut expected_diff) = (0usize, 0.0f64);
    // The shadow answers class 0 with probabilities softmax([5, 0, 0]).
    let e5 = 5f64.exp();
    let shadow_p = [e5 / (e5 + 2.0), 1.0 / (e5 + 2.0), 1.0 / (e5 + 2.0)];
    for row in &rows {
        let body = json!({"instances": [row]});
        let r = post(&app, "/models/iris/predict", &body).await;
        assert_eq!(r.status, 200, "{}", r.text);
        let answer = r.json();
        assert_eq!(
            answer["version"], 1,
            "the caller is answered by the serving version"
        );
        let alone = post(&app, "/models/iris/versions/1/predict", &body)
            .await
            .json();
        assert_eq!(
            answer["predictions"][0]["probabilities"], alone["predictions"][0]["probabilities"],
            "the shadow does not change the answer"
        );
        let p = &answer["predictions"][0];
        served_zero += usize::from(p["class_index"] == 0);
        let probs: Vec<f64> = p["probabilities"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        expected_diff += probs
            .iter()
            .zip(shadow_p)
            .map(|(a, b)| (a - b).abs())
            .sum::<f64>()
            / 3.0;
    }
    assert!(
        served_zero > 0 && served_zero < rows.len(),
        "the rows must both agree and disagree"
    );
    let series = |name: &str| format!(r#"{name}{{model="iris",version="2"}}"#);
    let text = wait_for_metric(
        &app,
        &series("infera_shadow_instances_total"),
        rows.len() as f64,
    )
    .await;
    assert_eq!(
        metrics_value(&text, &series("infera_shadow_instances_total")),
        rows.len() as f64
    );
    assert_eq!(
        metrics_value(&text, &series("infera_shadow_agreements_total")),
        served_zero as f64,
        "the shadow agrees exactly on the rows served as class 0"
    );
    let sum = metrics_value(&text, &series("infera_shadow_abs_difference_sum"));
    let count = metrics_value(&text, &series("infera_shadow_abs_difference_count"));
    assert_eq!(count, rows.len() as f64);
    let mean = sum / count;
    let expected = expected_diff / rows.len() as f64;
    assert!(
        (mean - expected).abs() < 1e-5,
        "mean abs difference {mean}, expected {expected}"
    );
    assert_eq!(
        metrics_value(&text, &series("infera_shadow_duration_seconds_count")),
        rows.len() as f64
    );
    // Only the serving version counts the callers' requests.
    assert!(
        !text.contains(r#"infera_model_instances_total{model="iris",version="2"}"#),
        "{text}"
    );
}

#[tokio::test]
async fn a_failing_shadow_adds_no_errors_to_the_caller() {
    let repo = bare_with_breaking_v2("[shadow]\nversion = 2\n");
    let app = loaded(repo.path(), &[]).router();
    let card = get(&app, "/models/bare").await.json();
    assert_eq!(card["default_version"], 1, "{card}");
    for _ in 0..20 {
        let r = post(
            &app,
            "/models/bare/predict",
            &json!({"instances": [IRIS_ROW]}),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.json()["version"], 1);
    }
    let failed = r#"infera_shadow_requests_total{model="bare",outcome="failed",version="2"}"#;
    let text = wait_for_metric(&app, failed, 20.0).await;
    assert_eq!(metrics_value(&text, failed), 20.0);
    assert_eq!(
        metrics_value(
            &text,
            r#"infera_http_requests_total{method="POST",route="/models/{name}/predict",status="200"}"#
        ),
        20.0,
        "every caller got 200"
    );
    assert!(
        !text.contains(r#"infera_model_failures_total{model="bare""#),
        "the shadow's failures are not the model's: {text}"
    );
}

/// Counts which version answered `n` requests, each with the route key from `key(i)`.
async fn versions_of(app: &Router, n: usize, key: impl Fn(usize) -> Option<String>) -> Vec<u64> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let mut builder = Request::builder()
            .method(Method::POST)
            .uri("/models/iris/predict")
            .header("content-type", "application/json");
        if let Some(k) = key(i) {
            builder = builder.header("x-route-key", k);
        }
        let body = json!({"instances": [IRIS_ROW]}).to_string();
        let r = common::send(app, builder.body(body.into()).unwrap()).await;
        assert_eq!(r.status, 200, "{}", r.text);
        out.push(r.json()["version"].as_u64().unwrap());
    }
    out
}

#[tokio::test]
async fn a_canary_takes_its_fraction_of_the_requests() {
    let repo = repo_with(&["iris"]);
    common::copy_dir(&repo.path().join("iris/1"), &repo.path().join("iris/2"));
    append_card(
        repo.path(),
        "iris",
        "[canary]\nversion = 2\nfraction = 0.3\n",
    );
    let app = loaded(repo.path(), &[]).router();
    let card = get(&app, "/models/iris").await.json();
    assert_eq!(
        card["default_version"], 1,
        "the canary is not the default: {card}"
    );
    let n = 1000;
    let to_canary = versions_of(&app, n, |_| None)
        .await
        .iter()
        .filter(|v| **v == 2)
        .count();
    // Binomial(1000, 0.3): mean 300, sd 14.5; 5 sd either side.
    assert!(
        (228..=372).contains(&to_canary),
        "{to_canary} of {n} went to the canary"
    );
    // A request naming a version is never split.
    let r = post(
        &app,
        "/models/iris/versions/1/predict",
        &json!({"instances": [IRIS_ROW]}),
    )
    .await;
    assert_eq!(r.json()["version"], 1);
    let text = metrics_text(&app).await;
    assert_eq!(
        metrics_value(
            &text,
            r#"infera_canary_requests_total{model="iris",route="canary",version="2"}"#
        ),
        to_canary as f64
    );
}

#[tokio::test]
async fn sticky_keys_stay_on_their_version() {
    let repo = repo_with(&["iris"]);
    common::copy_dir(&repo.path().join("iris/1"), &repo.path().join("iris/2"));
    append_card(
        repo.path(),
        "iris",
        "[canary]\nversion = 2\nfraction = 0.5\nsticky = true\n",
    );
    let app = loaded(repo.path(), &[]).router();
    let mut seen: BTreeMap<usize, Vec<u64>> = BTreeMap::new();
    for _ in 0..5 {
        let versions = versions_of(&app, 40, |i| Some(format!("user-{i}"))).await;
        for (i, v) in versions.into_iter().enumerate() {
            seen.entry(i).or_default().push(v);
        }
    }
    for (key, versions) in &seen {
        assert!(
            versions.iter().all(|v| *v == versions[0]),
            "key {key} moved: {versions:?}"
        );
    }
    let keys_on_canary = seen.values().filter(|v| v[0] == 2).count();
    assert!(
        (5..=35).contains(&keys_on_canary),
        "{keys_on_canary} of 40 keys on the canary"
    );
}

#[tokio::test]
async fn a_canary_with_failing_requests_rolls_back_by_itself() {
    let repo = bare_with_breaking_v2(
        "[canary]\nversion = 2\nfraction = 0.5\n[canary.rollback]\nmax_error_rate = 0.5\nmin_samples = 10\n",
    );
    let infera = loaded(repo.path(), &[]);
    let app = infera.router();
    let mut failures = 0;
    for _ in 0..400 {
        let r = post(
            &app,
            "/models/bare/predict",
            &json!({"instances": [IRIS_ROW]}),
        )
        .await;
        failures += usize::from(r.status != StatusCode::OK);
        let card = get(&app, "/models/bare").await.json();
        if version_state(&card, 2).0 == "rejected" {
            break;
        }
    }
    let card = wait_rejected(&app, "bare", 2).await;
    let (state, reason) = version_state(&card, 2);
    assert_eq!(state, "rejected", "{card}");
    assert!(
        reason.contains("stage canary") && reason.contains("rolled back (errors)"),
        "{reason}"
    );
    assert!(
        (10..=30).contains(&failures),
        "rolled back after {failures} failed canary requests"
    );
    // All traffic is back on the stable version.
    for _ in 0..50 {
        let r = post(
            &app,
            "/models/bare/predict",
            &json!({"instances": [IRIS_ROW]}),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.json()["version"], 1);
    }
    let text = metrics_text(&app).await;
    assert_eq!(
        metrics_value(
            &text,
            r#"infera_canary_rollbacks_total{model="bare",trigger="errors",version="2"}"#
        ),
        1.0
    );
    // A reload keeps it refused: its files did not change.
    infera.reloader().reload().unwrap();
    let card = get(&app, "/models/bare").await.json();
    assert_eq!(version_state(&card, 2).0, "rejected");
    assert_eq!(card["default_version"], 1);
}

#[tokio::test]
async fn a_canary_that_disagrees_with_the_stable_version_rolls_back() {
    let repo = iris_with_worse_v2(
        "[canary]\nversion = 2\nfraction = 1.0\n[canary.rollback]\nmin_agreement = 0.9\nmin_samples = 16\n",
    );
    let app = loaded(repo.path(), &[]).router();
    let rows = golden_rows();
    // Every request goes to the canary (which answers) until the comparisons with the stable
    // version, made off the request path, trip the rule.
    let mut on_canary = 0;
    for row in rows.iter().cycle().take(16 * 20) {
        let r = post(&app, "/models/iris/predict", &json!({"instances": [row]})).await;
        assert_eq!(r.status, 200, "{}", r.text);
        if r.json()["version"] == 2 {
            on_canary += 1;
        } else {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(
        on_canary >= 16,
        "judged after at least min_samples instances"
    );
    let card = wait_rejected(&app, "iris", 2).await;
    let (_, reason) = version_state(&card, 2);
    assert!(reason.contains("rolled back (agreement)"), "{reason}");
    let r = post(
        &app,
        "/models/iris/predict",
        &json!({"instances": [IRIS_ROW]}),
    )
    .await;
    assert_eq!(r.json()["version"], 1);
}

/// Polls `GET /models/{model}` until version `v` is `rejected`, and returns the card.
async fn wait_rejected(app: &Router, model: &str, v: u64) -> Value {
    for _ in 0..5_000 {
        let card = get(app, &format!("/models/{model}")).await.json();
        if version_state(&card, v).0 == "rejected" {
            return card;
        }
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    panic!("{model} version {v} was never rolled back");
}

#[tokio::test]
async fn the_admin_api_sets_promotes_and_rolls_back_a_canary() {
    let repo = repo_with(&["iris"]);
    common::copy_dir(&repo.path().join("iris/1"), &repo.path().join("iris/2"));
    let keys = keys_file(repo.path());
    let infera = loaded(repo.path(), &["--api-keys-file", keys.to_str().unwrap()]);
    let app = infera.router();
    // With latest = 1, version 2 serves at first. Bad settings and a promote without a
    // canary are refused.
    let admin = |m, path: &str, body: Option<Value>| {
        let app = app.clone();
        let path = path.to_string();
        async move { send(&app, m, &path, Some(OPS_KEY), body.as_ref()).await }
    };
    let r = admin(
        Method::PUT,
        "/admin/models/iris/shadow",
        Some(json!({"version": 2, "fraction": 0.5})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = admin(
        Method::PUT,
        "/admin/models/iris/canary",
        Some(json!({"version": 2, "fraction": 0.5})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let body = r.json();
    assert!(
        body["traffic"]["shadow"].is_null(),
        "moved from shadow to canary: {body}"
    );
    assert_eq!(body["traffic"]["canary"]["version"], 2);
    let r = admin(Method::DELETE, "/admin/models/iris/canary", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.json()["traffic"]["canary"].is_null());
    let r = admin(
        Method::PUT,
        "/admin/models/iris/canary",
        Some(json!({"version": 2, "fraction": 1.5})),
    )
    .await;
    assert_eq!(
        r.error(StatusCode::UNPROCESSABLE_ENTITY).1,
        "invalid_traffic"
    );
    let r = admin(Method::POST, "/admin/models/iris/canary/promote", None).await;
    assert_eq!(r.error(StatusCode::CONFLICT).1, "traffic_conflict");

    // A canary on version 2: version 1 becomes the stable default again (loaded for it).
    let r = admin(
        Method::PUT,
        "/admin/models/iris/canary",
        Some(json!({"version": 2, "fraction": 1.0})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let body = r.json();
    assert_eq!(body["traffic"]["canary"]["version"], 2);
    let card = send(&app, Method::GET, "/models/iris", Some(OPS_KEY), None)
        .await
        .json();
    assert_eq!(card["default_version"], 1, "{card}");
    assert_eq!(version_state(&card, 1).0, "ready");
    let p = |app: Router| async move {
        send(
            &app,
            Method::POST,
            "/models/iris/predict",
            Some(OPS_KEY),
            Some(&json!({"instances": [IRIS_ROW]})),
        )
        .await
        .json()["version"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(p(app.clone()).await, 2, "fraction 1: the canary answers");

    // Promote: version 2 becomes the default; with latest = 1 version 1 is unloaded.
    let r = admin(Method::POST, "/admin/models/iris/canary/promote", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let card = send(&app, Method::GET, "/models/iris", Some(OPS_KEY), None)
        .await
        .json();
    assert_eq!(card["default_version"], 2, "{card}");
    assert!(card["traffic"]["canary"].is_null(), "{card}");
    assert_eq!(version_state(&card, 1).0, "unloaded");
    assert_eq!(p(app.clone()).await, 2);

    // The next candidate is named the canary before it is published, so it arrives as the
    // canary instead of taking over; rolled back by hand, version 2 keeps serving.
    let r = admin(
        Method::PUT,
        "/admin/models/iris/canary",
        Some(json!({"version": 3, "fraction": 1.0})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    crate::updates::publish(repo.path(), "iris", &repo.path().join("iris/2"), 3, |_| {});
    infera.reloader().reload().unwrap();
    let card = send(&app, Method::GET, "/models/iris", Some(OPS_KEY), None)
        .await
        .json();
    assert_eq!(version_state(&card, 3).0, "ready", "{card}");
    assert_eq!(card["default_version"], 2);
    assert_eq!(p(app.clone()).await, 3);
    let r = admin(Method::POST, "/admin/models/iris/canary/rollback", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["changes"][0]["action"], "rolled_back");
    let card = send(&app, Method::GET, "/models/iris", Some(OPS_KEY), None)
        .await
        .json();
    assert_eq!(version_state(&card, 3).0, "rejected", "{card}");
    assert_eq!(card["default_version"], 2);
    assert_eq!(p(app.clone()).await, 2);
    let text = get(&app, "/metrics").await.text;
    assert_eq!(
        metrics_value(
            &text,
            r#"infera_canary_rollbacks_total{model="iris",trigger="manual",version="3"}"#
        ),
        1.0
    );
}
