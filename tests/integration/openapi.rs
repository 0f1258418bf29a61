//! The committed OpenAPI document is what the code generates; every route is in it.

#[test]
fn committed_openapi_matches_the_code() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi/openapi.json");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    let generated = infera::api::spec_json();
    assert!(
        committed == generated,
        "openapi/openapi.json is stale: run `cargo run --release -- openapi > openapi/openapi.json`"
    );
}

#[test]
fn every_route_is_documented_with_error_bodies() {
    let spec: serde_json::Value = serde_json::from_str(&infera::api::spec_json()).unwrap();
    for (path, method) in [
        ("/predict", "post"),
        ("/models/{name}/predict", "post"),
        ("/models/{name}/versions/{version}/predict", "post"),
        ("/models", "get"),
        ("/models/{name}", "get"),
        ("/health/live", "get"),
        ("/health/ready", "get"),
        ("/metrics", "get"),
        ("/v2", "get"),
        ("/v2/health/live", "get"),
        ("/v2/health/ready", "get"),
        ("/v2/models", "get"),
        ("/v2/models/{name}", "get"),
        ("/v2/models/{name}/versions/{version}", "get"),
        ("/v2/models/{name}/ready", "get"),
        ("/v2/models/{name}/versions/{version}/ready", "get"),
        ("/v2/models/{name}/infer", "post"),
        ("/v2/models/{name}/versions/{version}/infer", "post"),
        ("/v1/models/{name}", "get"),
        ("/v1/models/{name}:predict", "post"),
    ] {
        let op = &spec["paths"][path][method];
        assert!(op.is_object(), "{method} {path} missing");
        assert!(
            op["responses"]["200"].is_object(),
            "{method} {path} has no 200"
        );
    }
    let predict = &spec["paths"]["/predict"]["post"]["responses"];
    for status in ["400", "404", "413", "415", "422", "429", "503"] {
        assert!(
            predict[status].is_object(),
            "/predict does not document {status}"
        );
    }
    assert!(spec["components"]["schemas"]["PredictRequest"]["example"].is_object());
}
