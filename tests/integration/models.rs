//! Model cards, contracts, readiness, bare models, manifests that contradict their graph, and
//! `infera check`.

use axum::http::StatusCode;
use serde_json::json;

use crate::common::{get, loaded, post, repo_with, shipped, shipped_models};
use infera::config::CheckArgs;
use infera::server::Infera;

#[tokio::test]
async fn list_and_card_show_contract_and_versions() {
    let app = shipped().router();
    let list = get(&app, "/models").await.json();
    assert_eq!(list["default_model"], "iris");
    let names: Vec<_> = list["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "breast-cancer",
            "diabetes",
            "digits",
            "iris",
            "penguins",
            "tweet-source"
        ]
    );
    assert!(list["models"]
        .as_array()
        .unwrap()
        .iter()
        .all(|m| m["state"] == "ready"));

    let card = get(&app, "/models/iris").await.json();
    assert_eq!(card["state"], "ready");
    assert_eq!(card["default_version"], 1);
    assert_eq!(card["card"]["task"], "classification");
    assert!(card["card"]["description"]
        .as_str()
        .unwrap()
        .contains("Success"));
    assert!(card["card"]["owner"].is_string());
    assert!(card["card"]["training_data"]["name"].is_string());
    assert_eq!(card["card"]["evaluation"][0]["metric"], "accuracy");
    assert_eq!(
        card["contract"]["labels"],
        json!(["setosa", "versicolor", "virginica"])
    );
    assert_eq!(
        card["contract"]["features"][0],
        json!({"name": "sepal_length_cm", "min": 0.0, "max": 30.0})
    );
    assert_eq!(
        card["contract"]["inputs"][0],
        json!({"name": "float_input", "datatype": "f32", "shape": [-1, 4]})
    );
    assert_eq!(card["contract"]["batched"], true);
    assert_eq!(card["versions"][0]["state"], "ready");
    assert!(card["versions"][0]["load_duration_ms"].as_f64().unwrap() > 0.0);

    let diabetes = get(&app, "/models/diabetes").await.json();
    assert_eq!(diabetes["contract"]["task"], "regression");
    assert_eq!(
        diabetes["contract"]["features"].as_array().unwrap().len(),
        10
    );
}

#[tokio::test]
async fn readiness_waits_for_every_model() {
    let repo = repo_with(&["iris"]);
    let infera = Infera::new(&crate::common::args(repo.path(), &[])).unwrap();
    let app = infera.router();
    assert_eq!(get(&app, "/health/live").await.status, StatusCode::OK);
    let r = get(&app, "/health/ready").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.json()["models"]["iris"], "loading");
    let p = post(&app, "/predict", &json!({"instances": [[1, 2, 3, 4]]})).await;
    let (_, kind) = p.error(StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(kind, "model_not_ready");
    assert_eq!(p.headers["retry-after"], "1");
    assert!(infera.load_models().is_empty());
    let r = get(&app, "/health/ready").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["status"], "ready");
}

#[tokio::test]
async fn a_bare_onnx_file_is_served_from_its_graph() {
    let repo = tempfile::tempdir().unwrap();
    let dst = repo.path().join("bare").join("3");
    std::fs::create_dir_all(&dst).unwrap();
    std::fs::copy(
        shipped_models().join("iris/1/model.onnx"),
        dst.join("model.onnx"),
    )
    .unwrap();
    let app = loaded(repo.path(), &[]).router();
    let card = get(&app, "/models/bare").await.json();
    assert_eq!(card["contract"]["task"], "classification");
    assert_eq!(card["contract"]["labels"], json!(["0", "1", "2"]));
    assert_eq!(card["default_version"], 3);
    let r = post(
        &app,
        "/predict",
        &json!({"instances": [[6.7, 3.0, 5.2, 2.3]]}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["predictions"][0]["label"], "2");
    let r = post(&app, "/predict", &json!({"instances": [{"a": 1}]})).await;
    let (msg, kind) = r.error(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(kind, "wrong_type");
    assert!(msg.contains("array of 4 numbers"), "{msg}");
}

fn write_manifest(repo: &std::path::Path, model: &str, extra: &str) {
    let path = repo.join(model).join("model.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(path, format!("{text}\n{extra}")).unwrap();
}

#[tokio::test]
async fn a_manifest_that_contradicts_the_graph_is_rejected_clearly() {
    let repo = repo_with(&["iris", "diabetes"]);
    write_manifest(repo.path(), "iris", "[[features]]\nname = \"fifth\"\n");
    let infera = loaded(repo.path(), &[]);
    let app = infera.router();
    let card = get(&app, "/models/iris").await.json();
    assert_eq!(card["state"], "failed");
    let reason = card["versions"][0]["error"].as_str().unwrap();
    assert!(
        reason.contains("lists 5 features but input float_input takes 4"),
        "{reason}"
    );
    let r = get(&app, "/health/ready").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.json()["models"]["iris"], "failed");
    let p = post(
        &app,
        "/models/iris/predict",
        &json!({"instances": [[1, 2, 3, 4]]}),
    )
    .await;
    assert_eq!(
        p.error(StatusCode::SERVICE_UNAVAILABLE).1,
        "model_unavailable"
    );
    // The healthy model keeps serving.
    let p = post(
        &app,
        "/models/diabetes/predict",
        &json!({"instances": [[0, 0, 0, 0, 0, 0, 0, 0, 0, 0]]}),
    )
    .await;
    assert_eq!(p.status, StatusCode::OK);
}

#[test]
fn check_passes_on_the_shipped_models() {
    let (passed, text) = check(&shipped_models());
    assert!(passed, "{text}");
    assert!(text.contains("6 ok, 0 failing"), "{text}");
}

#[test]
fn check_fails_on_wrong_golden_outputs_and_bad_manifests() {
    let repo = repo_with(&["iris", "digits", "diabetes"]);
    let golden = repo.path().join("diabetes/1/golden.json");
    let text = std::fs::read_to_string(&golden).unwrap();
    let mut g: serde_json::Value = serde_json::from_str(&text).unwrap();
    let first = g["outputs"]["variable"][0][0].as_f64().unwrap();
    g["outputs"]["variable"][0][0] = json!(first * 1.001);
    std::fs::write(&golden, g.to_string()).unwrap();
    write_manifest(repo.path(), "iris", "labels_typo = 1\n");
    let (passed, text) = check(repo.path());
    assert!(!passed, "{text}");
    assert!(
        text.contains("FAIL  diabetes v1: golden outputs do not match"),
        "{text}"
    );
    assert!(text.contains("instance 0 element 0"), "{text}");
    assert!(
        text.contains("FAIL  iris") && text.contains("labels_typo"),
        "{text}"
    );
    assert!(text.contains("ok    digits v1"), "{text}");
}

#[test]
fn check_fails_on_an_unusable_reference_profile() {
    let repo = repo_with(&["iris"]);
    let profile = repo.path().join("iris/1/profile.json");
    assert!(profile.is_file(), "the shipped iris model has a profile");
    std::fs::write(&profile, r#"{"source": "x", "rows": 1, "features": [], "predictions": {"kind": "classes", "shares": [1.0]}}"#).unwrap();
    let (passed, text) = check(repo.path());
    assert!(!passed, "{text}");
    assert!(
        text.contains("FAIL  iris v1")
            && text.contains("the profile describes 0 features but the model takes 4"),
        "{text}"
    );
}

/// Runs `infera check` on `repository`: whether it passed, and what it printed.
fn check(repository: &std::path::Path) -> (bool, String) {
    let mut out = Vec::new();
    let args = CheckArgs {
        repository: repository.to_path_buf(),
        report: None,
        log: default_log(),
    };
    let passed = infera::cli::check(&args, &mut out).unwrap();
    (passed, String::from_utf8(out).unwrap())
}

fn default_log() -> infera::config::LogArgs {
    infera::config::LogArgs {
        log_format: infera::config::LogFormat::Pretty,
        log: "warn".into(),
    }
}

#[tokio::test]
async fn an_unreadable_manifest_fails_its_versions_instead_of_loading_forever() {
    let repo = repo_with(&["iris"]);
    write_manifest(repo.path(), "iris", "not toml at all = = =\n");
    let infera = loaded(repo.path(), &[]);
    let app = infera.router();
    let p = post(
        &app,
        "/models/iris/predict",
        &json!({"instances": [[1, 2, 3, 4]]}),
    )
    .await;
    assert_eq!(
        p.error(StatusCode::SERVICE_UNAVAILABLE).1,
        "model_unavailable"
    );
    assert!(
        !p.headers.contains_key("retry-after"),
        "a failed model will not come back by retrying"
    );
    let text = infera.state.metrics.render();
    assert!(
        text.contains("infera_model_ready{model=\"iris\",version=\"1\"} 0"),
        "{text}"
    );
}
