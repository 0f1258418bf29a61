//! API keys with scopes, rate limits and usage per caller, through the whole router.

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use serde_json::json;

use crate::common::{self, get, loaded, metric, repo_with, Reply};

pub(crate) const APP_KEY: &str = "app-key-0123456789";
pub(crate) const READER_KEY: &str = "reader-key-0123456789";
pub(crate) const OPS_KEY: &str = "ops-key-0123456789";

pub(crate) fn keys_file(dir: &std::path::Path) -> std::path::PathBuf {
    let text = format!(
        "[[keys]]\nname = \"app\"\nsha256 = \"{}\"\nscopes = [\"predict\", \"feedback\"]\nrps = 0.001\nburst = 3\n\n\
         [[keys]]\nname = \"reader\"\nsha256 = \"{}\"\nscopes = [\"read\"]\n\n\
         [[keys]]\nname = \"ops\"\nsha256 = \"{}\"\nscopes = [\"admin\", \"read\", \"predict\"]\n",
        infera::auth::hash_key(APP_KEY),
        infera::auth::hash_key(READER_KEY),
        infera::auth::hash_key(OPS_KEY),
    );
    let path = dir.join("keys.toml");
    std::fs::write(&path, text).unwrap();
    path
}

pub(crate) async fn send(
    app: &Router,
    method: Method,
    uri: &str,
    key: Option<&str>,
    body: Option<&serde_json::Value>,
) -> Reply {
    let mut builder = Request::builder().method(method).uri(uri);
    if let Some(key) = key {
        builder = builder.header(header::AUTHORIZATION, format!("Bearer {key}"));
    }
    let body = match body {
        Some(b) => {
            builder = builder.header(header::CONTENT_TYPE, "application/json");
            Body::from(b.to_string())
        }
        None => Body::empty(),
    };
    common::send(app, builder.body(body).unwrap()).await
}

fn iris() -> serde_json::Value {
    json!({"instances": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]})
}

#[tokio::test]
async fn keys_and_scopes_decide_who_may_call_what() {
    let repo = repo_with(&["iris"]);
    let keys = keys_file(repo.path());
    let app = loaded(repo.path(), &["--api-keys-file", keys.to_str().unwrap()]).router();

    let r = send(&app, Method::POST, "/predict", None, Some(&iris())).await;
    let (_, kind) = r.error(StatusCode::UNAUTHORIZED);
    assert_eq!(kind, "unauthorized");
    assert!(r.headers[header::WWW_AUTHENTICATE]
        .to_str()
        .unwrap()
        .starts_with("Bearer"));
    let r = send(
        &app,
        Method::POST,
        "/predict",
        Some("not-a-key"),
        Some(&iris()),
    )
    .await;
    r.error(StatusCode::UNAUTHORIZED);
    let r = send(
        &app,
        Method::POST,
        "/predict",
        Some(READER_KEY),
        Some(&iris()),
    )
    .await;
    let (error, kind) = r.error(StatusCode::FORBIDDEN);
    assert_eq!(kind, "forbidden");
    assert!(
        error.contains("reader") && error.contains("predict"),
        "{error}"
    );
    assert!(!error.contains(READER_KEY));

    let r = send(&app, Method::POST, "/predict", Some(APP_KEY), Some(&iris())).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = send(&app, Method::POST, "/v2/models/iris/infer", Some(APP_KEY), Some(&json!({"inputs": [{"name": "float_input", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]}))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = send(&app, Method::GET, "/models/iris", Some(APP_KEY), None).await;
    r.error(StatusCode::FORBIDDEN);
    let r = send(&app, Method::GET, "/models/iris", Some(READER_KEY), None).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = send(&app, Method::GET, "/v2/models/iris", None, None).await;
    r.error(StatusCode::UNAUTHORIZED);

    // Probes, metrics and the API documents stay open.
    for uri in [
        "/health/live",
        "/health/ready",
        "/metrics",
        "/v2/health/live",
        "/openapi.json",
    ] {
        let r = get(&app, uri).await;
        assert_eq!(r.status, StatusCode::OK, "{uri}");
    }
    // A wrong method still gets its 405, not an auth error.
    let r = send(&app, Method::GET, "/predict", None, None).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);

    let metrics = get(&app, "/metrics").await.text;
    let m = |series: &str| metric(&metrics, series).unwrap_or(0.0);
    assert_eq!(m("infera_auth_refused_total{reason=\"missing_key\"}"), 2.0);
    assert_eq!(m("infera_auth_refused_total{reason=\"invalid_key\"}"), 1.0);
    assert_eq!(m("infera_auth_refused_total{reason=\"forbidden\"}"), 2.0);
    assert_eq!(
        m("infera_caller_requests_total{caller=\"app\",class=\"2xx\",model=\"iris\"}"),
        2.0
    );
    assert_eq!(
        m("infera_caller_instances_total{caller=\"app\",model=\"iris\"}"),
        3.0
    );
    assert_eq!(
        m("infera_caller_requests_total{caller=\"reader\",class=\"2xx\",model=\"iris\"}"),
        1.0
    );
    assert!(!metrics.contains(APP_KEY) && !metrics.contains(&infera::auth::hash_key(APP_KEY)));
}

#[tokio::test]
async fn a_keys_rate_limit_answers_429_with_the_standard_headers() {
    let repo = repo_with(&["iris"]);
    let keys = keys_file(repo.path());
    let app = loaded(repo.path(), &["--api-keys-file", keys.to_str().unwrap()]).router();
    for _ in 0..3 {
        let r = send(&app, Method::POST, "/predict", Some(APP_KEY), Some(&iris())).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    }
    let r = send(&app, Method::POST, "/predict", Some(APP_KEY), Some(&iris())).await;
    let (error, kind) = r.error(StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(kind, "rate_limited");
    assert!(error.contains("key limit"), "{error}");
    let retry: u64 = r.headers[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1);
    assert_eq!(r.headers["ratelimit-limit"], "3");
    assert_eq!(r.headers["ratelimit-remaining"], "0");
    assert_eq!(
        r.headers["ratelimit-reset"].to_str().unwrap(),
        retry.to_string()
    );
    // Another key is not limited by it.
    let r = send(&app, Method::POST, "/predict", Some(OPS_KEY), Some(&iris())).await;
    assert_eq!(r.status, StatusCode::OK);
    let metrics = get(&app, "/metrics").await.text;
    assert_eq!(
        metric(&metrics, "infera_rate_limited_total{limit=\"key\"}"),
        Some(1.0)
    );
}

#[tokio::test]
async fn a_models_rate_limit_applies_to_that_model_on_every_protocol() {
    let repo = repo_with(&["iris", "diabetes"]);
    let app = loaded(
        repo.path(),
        &[
            "--model-rate-limit-rps",
            "0.001",
            "--model-rate-limit-burst",
            "1",
        ],
    )
    .router();
    let r = send(
        &app,
        Method::POST,
        "/models/iris/predict",
        None,
        Some(&iris()),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = send(
        &app,
        Method::POST,
        "/v1/models/iris:predict",
        None,
        Some(&iris()),
    )
    .await;
    let (error, kind) = r.error(StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(kind, "rate_limited");
    assert!(error.contains("model limit"), "{error}");
    let r = send(&app, Method::POST, "/v2/models/iris/infer", None, Some(&json!({"inputs": [{"name": "float_input", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]}))).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.text);
    let diabetes =
        json!({"instances": [[0.03, 0.05, 0.06, 0.02, -0.04, -0.03, -0.04, -0.002, 0.02, -0.017]]});
    let r = send(
        &app,
        Method::POST,
        "/models/diabetes/predict",
        None,
        Some(&diabetes),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let metrics = get(&app, "/metrics").await.text;
    assert_eq!(
        metric(&metrics, "infera_rate_limited_total{limit=\"model\"}"),
        Some(2.0)
    );
    assert_eq!(
        metric(
            &metrics,
            "infera_model_failures_total{model=\"iris\",protocol=\"http\",reason=\"rate_limited\",version=\"1\"}"
        ),
        Some(2.0)
    );
}

#[tokio::test]
async fn the_openapi_document_lists_the_scheme_and_every_route_is_in_the_access_table() {
    let spec: serde_json::Value = serde_json::from_str(&infera::api::spec_json()).unwrap();
    assert_eq!(
        spec["components"]["securitySchemes"]["api_key"]["scheme"],
        "bearer"
    );
    let predict = &spec["paths"]["/predict"]["post"];
    assert_eq!(predict["security"], json!([{"api_key": []}]));
    for status in ["401", "403", "429"] {
        assert!(predict["responses"][status].is_object(), "{status}");
    }
    assert!(spec["paths"]["/health/ready"]["get"]["security"].is_null());
    for (path, item) in spec["paths"].as_object().unwrap() {
        let route = path.split(':').next().unwrap();
        for method in item.as_object().unwrap().keys() {
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let listed = infera::api::access::TABLE
                .iter()
                .any(|(tm, tr, _)| *tm == m.as_str() && *tr == route);
            assert!(listed, "{method} {path} is missing from the access table");
        }
    }
}
