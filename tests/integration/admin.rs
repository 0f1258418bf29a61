//! The admin API: present only with an `admin` key; loads and unloads models from the
//! repository, never from anywhere else; the repository index lists every version's state.

use axum::http::{Method, StatusCode};
use serde_json::json;

use crate::access::{keys_file, send, APP_KEY, OPS_KEY, READER_KEY};
use crate::common::{get, loaded, repo_with};

#[tokio::test]
async fn the_admin_api_is_absent_without_an_admin_key() {
    let repo = repo_with(&["iris"]);
    let app = loaded(repo.path(), &[]).router();
    let r = get(&app, "/admin/repository").await;
    let (msg, kind) = r.error(StatusCode::NOT_FOUND);
    assert_eq!(kind, "not_found");
    assert!(msg.contains("no route"), "{msg}");
    let r = send(&app, Method::POST, "/admin/models/iris/unload", None, None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // Still documented in the committed OpenAPI file.
    let spec: serde_json::Value = serde_json::from_str(&infera::api::spec_json()).unwrap();
    for path in [
        "/admin/repository",
        "/admin/models/{name}/load",
        "/admin/models/{name}/unload",
    ] {
        assert!(spec["paths"][path].is_object(), "{path} not documented");
    }
}

#[tokio::test]
async fn an_admin_key_unloads_and_loads_models_from_the_repository() {
    let repo = repo_with(&["iris", "diabetes"]);
    let keys = keys_file(repo.path());
    let infera = loaded(repo.path(), &["--api-keys-file", keys.to_str().unwrap()]);
    let app = infera.router();
    let index = |key| send(&app, Method::GET, "/admin/repository", key, None);
    assert_eq!(index(None).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(index(Some(READER_KEY)).await.status, StatusCode::FORBIDDEN);
    let r = index(Some(OPS_KEY)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let body = r.json();
    assert_eq!(body["models"][1]["name"], "iris");
    assert_eq!(body["models"][1]["versions"][0]["state"], "ready");

    let unload = "/admin/models/iris/unload";
    assert_eq!(
        send(&app, Method::POST, unload, Some(APP_KEY), None)
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let r = send(&app, Method::POST, unload, Some(OPS_KEY), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["changes"][0]["action"], "unloaded");
    let predict = json!({"instances": [[6.7, 3.0, 5.2, 2.3]]});
    let p = send(
        &app,
        Method::POST,
        "/models/iris/predict",
        Some(APP_KEY),
        Some(&predict),
    )
    .await;
    assert_eq!(p.error(StatusCode::NOT_FOUND).1, "model_not_found");
    // A repository change does not bring it back; the index shows it unloaded.
    infera.reloader().reload().unwrap();
    let body = index(Some(OPS_KEY)).await.json();
    let iris = body["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "iris")
        .unwrap();
    assert_eq!(iris["state"], "unloaded");
    assert_eq!(get(&app, "/health/ready").await.status, StatusCode::OK);

    // Load it again, with a new version published meanwhile: it passes the gate and serves.
    crate::common::copy_dir(
        &repo.path().join("iris/1"),
        &repo.path().join("iris/.incoming"),
    );
    std::fs::rename(
        repo.path().join("iris/.incoming"),
        repo.path().join("iris/2"),
    )
    .unwrap();
    let r = send(
        &app,
        Method::POST,
        "/admin/models/iris/load",
        Some(OPS_KEY),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let body = r.json();
    assert!(
        body["changes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["version"] == 2 && c["action"] == "ready"),
        "{body}"
    );
    let p = send(
        &app,
        Method::POST,
        "/models/iris/predict",
        Some(APP_KEY),
        Some(&predict),
    )
    .await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.text);
    assert_eq!(p.json()["version"], 2);

    // Only model directories of the repository can be loaded.
    for name in ["nope", "..", "http:"] {
        let r = send(
            &app,
            Method::POST,
            &format!("/admin/models/{name}/load"),
            Some(OPS_KEY),
            None,
        )
        .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{name}: {}", r.text);
    }
}
