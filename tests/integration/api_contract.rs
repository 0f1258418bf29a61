//! What schemathesis found against the served spec (tests/security/run_schemathesis.py), kept
//! as regression tests: wrong methods on the V1 routes are 405, not 415 or 404; the 415 of
//! feedback and V1 predict is documented; the served spec asks for a key only when the server
//! has keys.

use axum::body::Body;
use axum::http::{header, Method, StatusCode};
use serde_json::{json, Value};

use crate::common::{call, get, loaded, post, shipped, shipped_models};

#[tokio::test]
async fn post_on_the_v1_status_route_is_405_before_the_body_is_read() {
    let app = shipped().router();
    // No content type and no body: the method is wrong, so the body never matters.
    let reply = call(&app, Method::POST, "/v1/models/iris", None, Body::empty()).await;
    let (_, kind) = reply.error(StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(kind, "method_not_allowed");
    assert_eq!(reply.headers[header::ALLOW], "GET,HEAD");

    let reply = get(&app, "/v1/models/iris:predict").await;
    let (_, kind) = reply.error(StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(kind, "method_not_allowed");
    assert_eq!(reply.headers[header::ALLOW], "POST");

    let reply = call(
        &app,
        Method::OPTIONS,
        "/v1/models/iris:predict",
        None,
        Body::empty(),
    )
    .await;
    reply.error(StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(reply.headers[header::ALLOW], "POST");
    let reply = call(&app, Method::DELETE, "/v1/models/iris", None, Body::empty()).await;
    reply.error(StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(reply.headers[header::ALLOW], "GET,HEAD");

    // The right methods still work.
    assert_eq!(get(&app, "/v1/models/iris").await.status, StatusCode::OK);
    let body = json!({"instances": [[5.1, 3.5, 1.4, 0.2]]});
    let reply = post(&app, "/v1/models/iris:predict", &body).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
}

#[tokio::test]
async fn a_body_that_is_not_json_is_a_documented_415() {
    let app = shipped().router();
    let spec = infera::api::spec();
    for uri in [
        "/v1/models/iris:predict",
        "/models/iris/feedback",
        "/models/iris/explain",
        "/models/iris/versions/1/explain",
    ] {
        let reply = call(&app, Method::POST, uri, Some("text/plain"), "{}").await;
        let (_, kind) = reply.error(StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert_eq!(kind, "unsupported_media_type");
        let path = uri
            .replace("iris", "{name}")
            .replace("/versions/1/", "/versions/{version}/");
        let responses = &spec.paths.paths[&path].post.as_ref().unwrap().responses;
        for status in ["413", "415", "422"] {
            assert!(
                responses.responses.contains_key(status),
                "{path} does not document {status}"
            );
        }
    }
}

fn security_of(spec: &Value, path: &str, method: &str) -> Option<Value> {
    spec["paths"][path][method].get("security").cloned()
}

#[tokio::test]
async fn the_served_spec_asks_for_a_key_only_when_the_server_has_keys() {
    let open = get(&shipped().router(), "/openapi.json").await.json();
    assert_eq!(security_of(&open, "/predict", "post"), None);
    assert!(open["paths"]["/predict"]["post"]["responses"]
        .get("401")
        .is_none());
    assert!(open["paths"]["/predict"]["post"]["responses"]
        .get("429")
        .is_some());

    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.toml");
    std::fs::write(
        &keys,
        format!(
            "[[keys]]\nname = \"app\"\nsha256 = \"{}\"\nscopes = [\"predict\", \"admin\"]\n",
            infera::auth::hash_key("app-key-0123456789")
        ),
    )
    .unwrap();
    // With the admin scope on some key, so the admin API (part of the committed spec) is mounted.
    let keyed = loaded(
        &shipped_models(),
        &["--api-keys-file", keys.to_str().unwrap()],
    );
    let mut builder = axum::http::Request::builder().uri("/openapi.json");
    builder = builder.header(header::AUTHORIZATION, "Bearer app-key-0123456789");
    let response = tower::ServiceExt::oneshot(keyed.router(), builder.body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let bytes = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    let served: Value = serde_json::from_slice(&bytes).unwrap();
    let committed: Value = serde_json::from_str(&infera::api::spec_json()).unwrap();
    assert!(security_of(&served, "/predict", "post").is_some());
    assert_eq!(
        served, committed,
        "a keyed server serves the committed spec"
    );
}
