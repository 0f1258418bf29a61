//! Safe model updates: hot reload with the validation gate, version policies, the repository
//! watcher, `infera check --report`, and no lost request while versions swap under load.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde_json::{json, Value};
use tract_onnx::pb::GraphProto;

use crate::common::{eventually, get, loaded, metric, post, repo_with, shipped_models};
use crate::onnx::{f32_tensor, int_attr, io, node, write, F32, I64};
use infera::repository::WatchConfig;

pub(crate) const IRIS_ROW: [f64; 4] = [6.7, 3.0, 5.2, 2.3];

/// Copies `from` into `<model>/.incoming-<v>` and renames it to `<model>/<v>`: the documented way
/// to publish a version (a half-written directory is never seen under a version name).
pub(crate) fn publish(repo: &Path, model: &str, from: &Path, v: u64, extra: impl FnOnce(&Path)) {
    let staging = repo.join(model).join(format!(".incoming-{v}"));
    crate::common::copy_dir(from, &staging);
    extra(&staging);
    std::fs::rename(&staging, repo.join(model).join(v.to_string())).unwrap();
}

/// `eval.json` from a version's golden rows, labelled with the reference classes.
pub(crate) fn write_eval(dir: &Path) {
    let golden: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("golden.json")).unwrap()).unwrap();
    let eval = json!({"inputs": golden["inputs"], "labels": golden["outputs"]["label"]});
    std::fs::write(dir.join("eval.json"), eval.to_string()).unwrap();
}

/// An iris-shaped classifier that always answers class 0 (same inputs and outputs as iris v1).
pub(crate) fn write_worse_iris(dir: &Path) {
    let scratch = tempfile::tempdir().unwrap();
    let graph = GraphProto {
        node: vec![
            node("MatMul", &["float_input", "w"], &["m"], vec![]),
            node("Add", &["m", "b"], &["z"], vec![]),
            node(
                "Softmax",
                &["z"],
                &["probabilities"],
                vec![int_attr("axis", 1)],
            ),
            node(
                "ArgMax",
                &["probabilities"],
                &["label"],
                vec![int_attr("axis", 1), int_attr("keepdims", 0)],
            ),
        ],
        name: "worse".into(),
        initializer: vec![
            f32_tensor("w", &[4, 3], vec![0.0; 12]),
            f32_tensor("b", &[3], vec![5.0, 0.0, 0.0]),
        ],
        input: vec![io("float_input", F32, &[-1, 4])],
        output: vec![io("label", I64, &[-1]), io("probabilities", F32, &[-1, 3])],
        ..Default::default()
    };
    write(scratch.path(), "worse", graph);
    std::fs::copy(
        scratch.path().join("worse/1/model.onnx"),
        dir.join("model.onnx"),
    )
    .unwrap();
    std::fs::remove_file(dir.join("golden.json")).ok();
}

pub(crate) fn append_card(repo: &Path, model: &str, extra: &str) {
    let path = repo.join(model).join("model.toml");
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    std::fs::write(path, format!("{text}\n{extra}")).unwrap();
}

pub(crate) fn version_state(card: &Value, v: u64) -> (String, String) {
    let entry = card["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["version"] == v)
        .unwrap_or_else(|| panic!("no version {v} in {card}"));
    (
        entry["state"].as_str().unwrap().to_string(),
        entry["error"].as_str().unwrap_or("").to_string(),
    )
}

async fn predicted_version(app: &axum::Router) -> u64 {
    let r = post(
        app,
        "/models/iris/predict",
        &json!({"instances": [IRIS_ROW]}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()["version"].as_u64().unwrap()
}

#[tokio::test]
async fn a_new_version_passes_the_gate_and_takes_over() {
    let repo = repo_with(&["iris"]);
    write_eval(&repo.path().join("iris/1"));
    append_card(repo.path(), "iris", "[gate]\nmin_accuracy = 0.9\n");
    let infera = loaded(repo.path(), &[]);
    let app = infera.router();
    assert_eq!(predicted_version(&app).await, 1);
    publish(repo.path(), "iris", &repo.path().join("iris/1"), 2, |_| {});
    let report = infera.reloader().reload().unwrap();
    assert!(
        report
            .changes
            .iter()
            .any(|c| c.version == Some(2) && c.action == "ready"),
        "{report:?}"
    );
    assert_eq!(predicted_version(&app).await, 2);
    let card = get(&app, "/models/iris").await.json();
    assert_eq!(card["default_version"], 2);
    assert_eq!(version_state(&card, 1).0, "unloaded", "latest 1 by default");
    assert_eq!(version_state(&card, 2).0, "ready");
    let (_, kind) = post(
        &app,
        "/models/iris/versions/1/predict",
        &json!({"instances": [IRIS_ROW]}),
    )
    .await
    .error(StatusCode::NOT_FOUND);
    assert_eq!(kind, "version_not_served");
    let text = get(&app, "/metrics").await.text;
    assert!(
        metric(&text, r#"infera_model_ready{model="iris",version="2"}"#) == Some(1.0),
        "{text}"
    );
    assert!(
        !text
            .lines()
            .any(|l| l.starts_with("infera_model_instances_total{")
                && l.contains(r#"model="iris""#)
                && l.contains(r#"version="1""#)),
        "series of an unloaded version are dropped"
    );
    assert_eq!(get(&app, "/health/ready").await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_worse_candidate_is_rejected_and_the_old_version_keeps_serving() {
    let repo = repo_with(&["iris"]);
    write_eval(&repo.path().join("iris/1"));
    append_card(repo.path(), "iris", "[gate]\nmin_accuracy = 0.9\n");
    let infera = loaded(repo.path(), &[]);
    let app = infera.router();
    publish(
        repo.path(),
        "iris",
        &repo.path().join("iris/1"),
        2,
        write_worse_iris,
    );
    let report = infera.reloader().reload().unwrap();
    assert!(
        report
            .changes
            .iter()
            .any(|c| c.version == Some(2) && c.action == "rejected"),
        "{report:?}"
    );
    assert_eq!(
        predicted_version(&app).await,
        1,
        "the old version keeps serving"
    );
    let card = get(&app, "/models/iris").await.json();
    assert_eq!(card["default_version"], 1);
    let (state, reason) = version_state(&card, 2);
    assert_eq!(state, "rejected");
    assert!(
        reason.contains("stage eval") && reason.contains("below the card's gate.min_accuracy 0.9"),
        "{reason}"
    );
    assert_eq!(version_state(&card, 1).0, "ready");
    assert_eq!(get(&app, "/health/ready").await.status, StatusCode::OK);
    let text = get(&app, "/metrics").await.text;
    assert_eq!(
        metric(
            &text,
            r#"infera_model_gate_failures_total{model="iris",stage="eval"}"#
        ),
        Some(1.0),
        "{text}"
    );
    // Unchanged files are not gated again on the next pass.
    let again = infera.reloader().reload().unwrap();
    assert!(again.changes.is_empty(), "{again:?}");
}

#[tokio::test]
async fn a_candidate_worse_than_the_serving_version_by_more_than_the_margin_is_rejected() {
    let repo = repo_with(&["iris"]);
    write_eval(&repo.path().join("iris/1"));
    // No absolute target: only the comparison with the serving version on the same rows.
    append_card(repo.path(), "iris", "[gate]\nmax_accuracy_drop = 0.05\n");
    let infera = loaded(repo.path(), &[]);
    publish(
        repo.path(),
        "iris",
        &repo.path().join("iris/1"),
        2,
        write_worse_iris,
    );
    infera.reloader().reload().unwrap();
    let card = get(&infera.router(), "/models/iris").await.json();
    let (state, reason) = version_state(&card, 2);
    assert_eq!(state, "rejected");
    assert!(
        reason.contains("worse than the serving version's 1.0000"),
        "{reason}"
    );
}

#[tokio::test]
async fn a_golden_mismatch_is_rejected() {
    let repo = repo_with(&["iris"]);
    let infera = loaded(repo.path(), &[]);
    publish(repo.path(), "iris", &repo.path().join("iris/1"), 2, |dir| {
        let path = dir.join("golden.json");
        let mut golden: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        golden["outputs"]["probabilities"][0][0] = json!(0.5);
        std::fs::write(&path, golden.to_string()).unwrap();
    });
    infera.reloader().reload().unwrap();
    let app = infera.router();
    let card = get(&app, "/models/iris").await.json();
    let (state, reason) = version_state(&card, 2);
    assert_eq!(state, "rejected");
    assert!(
        reason.contains("stage golden") && reason.contains("golden outputs do not match"),
        "{reason}"
    );
    assert_eq!(predicted_version(&app).await, 1);
}

#[tokio::test]
async fn a_contract_change_is_rejected_unless_declared() {
    let repo = tempfile::tempdir().unwrap();
    let shipped = shipped_models();
    for (model, v) in [("iris", 1), ("digits", 2)] {
        std::fs::create_dir_all(repo.path().join("bare").join(v.to_string())).unwrap();
        std::fs::copy(
            shipped.join(model).join("1/model.onnx"),
            repo.path().join("bare").join(format!("{v}/model.onnx")),
        )
        .unwrap();
    }
    let infera = loaded(repo.path(), &[]);
    let app = infera.router();
    let card = get(&app, "/models/bare").await.json();
    // At start the highest version is gated first and nothing serves yet: v2 serves.
    assert_eq!(card["default_version"], 2);
    // v3 takes iris's 4 features again: a breaking change against the serving v2.
    std::fs::create_dir_all(repo.path().join("bare/3")).unwrap();
    std::fs::copy(
        shipped.join("iris/1/model.onnx"),
        repo.path().join("bare/3/model.onnx"),
    )
    .unwrap();
    infera.reloader().reload().unwrap();
    let card = get(&app, "/models/bare").await.json();
    let (state, reason) = version_state(&card, 3);
    assert_eq!(state, "rejected");
    assert!(
        reason.contains("stage contract") && reason.contains("features changed"),
        "{reason}"
    );
    assert_eq!(card["default_version"], 2);
    // Declaring the break lets it through (a card change re-gates every version).
    std::fs::write(
        repo.path().join("bare/model.toml"),
        "[gate]\nbreaking_versions = [3]\n",
    )
    .unwrap();
    infera.reloader().reload().unwrap();
    let card = get(&app, "/models/bare").await.json();
    assert_eq!(card["default_version"], 3, "{card}");
}

#[tokio::test]
async fn version_policies_choose_what_serves() {
    let repo = repo_with(&["iris"]);
    append_card(repo.path(), "iris", "[versions]\npolicy = \"all\"\n");
    let infera = loaded(repo.path(), &[]);
    let app = infera.router();
    publish(repo.path(), "iris", &repo.path().join("iris/1"), 2, |_| {});
    infera.reloader().reload().unwrap();
    let card = get(&app, "/models/iris").await.json();
    assert_eq!(version_state(&card, 1).0, "ready");
    assert_eq!(version_state(&card, 2).0, "ready");
    assert_eq!(card["default_version"], 2);
    let body = json!({"instances": [IRIS_ROW]});
    let r = post(&app, "/models/iris/versions/1/predict", &body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    // specific [1]: version 1 serves even though 2 is higher.
    let text = std::fs::read_to_string(repo.path().join("iris/model.toml")).unwrap();
    std::fs::write(
        repo.path().join("iris/model.toml"),
        text.replace("policy = \"all\"", "policy = \"specific\"\nspecific = [1]"),
    )
    .unwrap();
    infera.reloader().reload().unwrap();
    let card = get(&app, "/models/iris").await.json();
    assert_eq!(card["default_version"], 1, "{card}");
    assert_eq!(version_state(&card, 2).0, "unloaded");
    assert_eq!(predicted_version(&app).await, 1);
    // A removed version leaves the catalog; a new model appears.
    std::fs::remove_dir_all(repo.path().join("iris/2")).unwrap();
    crate::common::copy_dir(
        &shipped_models().join("diabetes"),
        &repo.path().join("diabetes"),
    );
    let report = infera.reloader().reload().unwrap();
    let card = get(&app, "/models/iris").await.json();
    assert_eq!(card["versions"].as_array().unwrap().len(), 1, "{card}");
    let r = post(
        &app,
        "/models/diabetes/predict",
        &json!({"instances": [vec![0.0; 10]]}),
    )
    .await;
    assert_eq!(r.status, 200, "{} {report:?}", r.text);
    // A removed model is gone.
    std::fs::remove_dir_all(repo.path().join("diabetes")).unwrap();
    infera.reloader().reload().unwrap();
    assert_eq!(
        get(&app, "/models/diabetes").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn card_changes_apply_and_a_broken_card_keeps_the_model_serving() {
    let repo = repo_with(&["iris"]);
    let infera = loaded(repo.path(), &[]);
    let app = infera.router();
    let path = repo.path().join("iris/model.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("Classifies iris", "Sorts iris")).unwrap();
    infera.reloader().reload().unwrap();
    let card = get(&app, "/models/iris").await.json();
    assert!(card["card"]["description"]
        .as_str()
        .unwrap()
        .starts_with("Sorts iris"));
    std::fs::write(&path, "descripton = \"typo\"\n").unwrap();
    infera.reloader().reload().unwrap();
    let card = get(&app, "/models/iris").await.json();
    assert!(
        card["card_error"].as_str().unwrap().contains("descripton"),
        "{card}"
    );
    assert!(card["card"]["description"]
        .as_str()
        .unwrap()
        .starts_with("Sorts iris"));
    assert_eq!(predicted_version(&app).await, 1);
    assert_eq!(get(&app, "/health/ready").await.status, StatusCode::OK);
}

/// The "nothing lost" property in process: clients keep predicting while versions are
/// published and swapped in every few milliseconds, with a failing candidate among them. Every
/// request is answered 200, and the answers come from several versions.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn swaps_under_load_lose_no_request() {
    let repo = repo_with(&["iris"]);
    write_eval(&repo.path().join("iris/1"));
    append_card(repo.path(), "iris", "[gate]\nmin_accuracy = 0.9\n");
    let infera = loaded(repo.path(), &[]);
    let app = infera.router();
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, answered) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut clients = Vec::new();
    for _ in 0..16 {
        let (app, stop, sent, answered) =
            (app.clone(), stop.clone(), sent.clone(), answered.clone());
        clients.push(tokio::spawn(async move {
            let mut versions = std::collections::BTreeSet::new();
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                sent.fetch_add(1, Ordering::Relaxed);
                let r = post(&app, "/predict", &json!({"instances": [IRIS_ROW]})).await;
                answered.fetch_add(1, Ordering::Relaxed);
                if r.status == 200 {
                    versions.insert(r.json()["version"].as_u64().unwrap());
                } else {
                    failures.push(format!("{} {}", r.status, r.text));
                }
            }
            (versions, failures)
        }));
    }
    let reloader = infera.reloader().clone();
    let root = repo.path().to_path_buf();
    let swaps = tokio::task::spawn_blocking(move || {
        let v1 = root.join("iris/1");
        for v in 2..=12u64 {
            if v == 7 {
                publish(&root, "iris", &v1, v, write_worse_iris);
            } else {
                publish(&root, "iris", &v1, v, |_| {});
            }
            reloader.reload().unwrap();
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    swaps.await.unwrap();
    stop.store(true, Ordering::Relaxed);
    let mut seen = std::collections::BTreeSet::new();
    for c in clients {
        let (versions, failures) = c.await.unwrap();
        assert!(
            failures.is_empty(),
            "non-2xx answers during swaps: {failures:?}"
        );
        seen.extend(versions);
    }
    assert_eq!(
        sent.load(Ordering::Relaxed),
        answered.load(Ordering::Relaxed)
    );
    assert!(
        answered.load(Ordering::Relaxed) > 100,
        "too little traffic to mean anything"
    );
    assert!(seen.len() >= 3, "answers came from versions {seen:?}");
    assert!(
        !seen.contains(&7),
        "the rejected candidate never answered: {seen:?}"
    );
    let card = get(&app, "/models/iris").await.json();
    assert_eq!(card["default_version"], 12);
    assert_eq!(version_state(&card, 7).0, "rejected");
}

#[tokio::test]
async fn the_watcher_serves_a_renamed_version_within_five_seconds() {
    let repo = repo_with(&["iris"]);
    let infera = loaded(repo.path(), &[]);
    let app = infera.router();
    let _watcher = infera
        .watch(WatchConfig {
            debounce: Duration::from_millis(100),
            poll: None,
        })
        .unwrap();
    let started = Instant::now();
    publish(repo.path(), "iris", &repo.path().join("iris/1"), 2, |_| {});
    let store = infera.state.predictor.store().clone();
    eventually("version 2 serves", || {
        store
            .snapshot()
            .models
            .get("iris")
            .and_then(|m| m.serving())
            .is_some_and(|l| l.version == 2)
    })
    .await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert_eq!(predicted_version(&app).await, 2);
}

#[test]
fn check_writes_a_machine_readable_report() {
    let repo = repo_with(&["iris"]);
    write_eval(&repo.path().join("iris/1"));
    append_card(repo.path(), "iris", "[gate]\nmin_accuracy = 0.9\n");
    publish(
        repo.path(),
        "iris",
        &repo.path().join("iris/1"),
        2,
        write_worse_iris,
    );
    let report_path = repo.path().join("report.json");
    let args = infera::config::CheckArgs {
        repository: repo.path().to_path_buf(),
        report: Some(report_path.clone()),
        log: infera::config::LogArgs {
            log_format: infera::config::LogFormat::Pretty,
            log: "warn".into(),
        },
    };
    let mut out = Vec::new();
    let passed = infera::cli::check(&args, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(!passed, "{text}");
    assert!(
        text.contains("ok    iris v1: ") && text.contains("eval: accuracy 1.0000"),
        "{text}"
    );
    assert!(
        text.contains("FAIL  iris v2: gate eval: accuracy"),
        "{text}"
    );
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(&report_path).unwrap()).unwrap();
    assert_eq!(report["passed"], false);
    let versions = report["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[0]["passed"], true);
    assert_eq!(versions[0]["eval"]["accuracy"], 1.0);
    assert_eq!(versions[1]["passed"], false);
    assert_eq!(versions[1]["compared_with"], 1);
    let stages: Vec<&str> = versions[1]["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        stages,
        ["passed", "passed", "skipped", "failed"],
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_announces_a_refused_candidate() {
    let (url, events) = crate::monitoring::receiver().await;
    let repo = repo_with(&["iris"]);
    write_eval(&repo.path().join("iris/1"));
    append_card(repo.path(), "iris", "[gate]\nmin_accuracy = 0.9\n");
    let infera = loaded(repo.path(), &["--webhook-url", &url]);
    publish(
        repo.path(),
        "iris",
        &repo.path().join("iris/1"),
        2,
        write_worse_iris,
    );
    let reloader = infera.reloader().clone();
    tokio::task::spawn_blocking(move || reloader.reload().unwrap())
        .await
        .unwrap();
    eventually("the gate event arrives", || {
        !events.lock().unwrap().is_empty()
    })
    .await;
    let got = events.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "{got:?}");
    let event = &got[0];
    assert_eq!(event["kind"], "gate");
    assert_eq!(event["status"], "rejected");
    assert_eq!(event["model"], "iris");
    assert_eq!(event["version"], 2);
    assert_eq!(event["detail"]["stage"], "eval");
    assert!(
        event["detail"]["reason"]
            .as_str()
            .unwrap()
            .contains("gate.min_accuracy"),
        "{event}"
    );
}

/// A request in flight on a version that a swap unloads finishes on that version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_flight_request_finishes_on_the_version_it_started_on() {
    let repo = tempfile::tempdir().unwrap();
    crate::onnx::slow(repo.path(), "slow", 256, 1500);
    let infera = loaded(repo.path(), &["--workers", "1"]);
    let app = infera.router();
    let body = json!({"instances": vec![vec![0.5; 256]; 64]});
    let in_flight = tokio::spawn({
        let app = app.clone();
        let body = body.clone();
        async move { post(&app, "/models/slow/predict", &body).await }
    });
    let pool = infera.pool().clone();
    eventually("the request runs on a worker", || {
        pool.running() > 0 || in_flight.is_finished()
    })
    .await;
    assert!(!in_flight.is_finished(), "{:?}", in_flight.await.unwrap());
    // Version 2 takes and returns the same tensors, but is one layer deep: quick to load.
    let quick = tempfile::tempdir().unwrap();
    crate::onnx::slow(quick.path(), "slow", 256, 1);
    publish(repo.path(), "slow", &quick.path().join("slow/1"), 2, |_| {});
    let reloader = infera.reloader().clone();
    tokio::task::spawn_blocking(move || reloader.reload().unwrap())
        .await
        .unwrap();
    assert!(
        !in_flight.is_finished(),
        "the request must still be running when the swap is published"
    );
    let card = get(&app, "/models/slow").await.json();
    assert_eq!(version_state(&card, 1).0, "unloaded", "{card}");
    let r = in_flight.await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.json()["version"],
        1,
        "answered by the version it started on"
    );
    let r = post(&app, "/models/slow/predict", &body).await;
    assert_eq!(r.json()["version"], 2, "new requests go to the new version");
}
