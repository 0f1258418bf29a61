//! The OpenAPI document: generated from the route table, served at /openapi.json, written to
//! openapi/openapi.json by `infera openapi`.

use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::access::{rule, Rule};
use super::routes::{admin, explain, health, metrics, models, monitoring, predict, traffic};
use super::state::AppState;
use super::v1;
use super::v2::routes as v2;

#[derive(OpenApi)]
#[openapi(
    paths(v1::status, v1::predict, v1::explain),
    info(
        title = "infera",
        description = "A small, fast inference server for ONNX models on CPU. POST instances to \
                       /predict; every model ships a model card at /models/{name}; Prometheus \
                       metrics at /metrics.",
        license(name = "Apache-2.0")
    ),
    tags(
        (name = "inference", description = "Predictions"),
        (name = "explain", description = "Feature attributions: why the model gave its output"),
        (name = "models", description = "Model cards, contracts and versions"),
        (name = "health", description = "Liveness and readiness probes"),
        (name = "monitoring", description = "Prometheus metrics"),
        (name = "v2", description = "Open Inference Protocol (KServe V2 / Triton) REST API, with the binary tensor data extension"),
        (name = "v1", description = "KServe V1 protocol"),
        (name = "admin", description = "Model repository control; present only when some API key has the admin scope"),
    )
)]
struct ApiDoc;

/// Every documented route, with its OpenAPI operation.
pub fn routes() -> OpenApiRouter<AppState> {
    public_routes().merge(admin_routes())
}

/// The admin API, mounted only when some API key has the `admin` scope.
pub fn admin_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(admin::repository_index))
        .routes(routes!(admin::load_model))
        .routes(routes!(admin::unload_model))
        .routes(routes!(traffic::set_shadow, traffic::clear_shadow))
        .routes(routes!(traffic::set_canary, traffic::clear_canary))
        .routes(routes!(traffic::promote_canary))
        .routes(routes!(traffic::roll_back_canary))
}

/// Every route but the admin API.
pub fn public_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(predict::predict_default))
        .routes(routes!(predict::predict_model))
        .routes(routes!(predict::predict_version))
        .routes(routes!(explain::explain_model))
        .routes(routes!(explain::explain_version))
        .routes(routes!(models::list_models))
        .routes(routes!(models::get_model))
        .routes(routes!(monitoring::feedback))
        .routes(routes!(monitoring::monitoring))
        .routes(routes!(monitoring::version_monitoring))
        .routes(routes!(health::live))
        .routes(routes!(health::ready))
        .routes(routes!(metrics::metrics))
        .routes(routes!(v2::server_metadata))
        .routes(routes!(v2::live))
        .routes(routes!(v2::ready))
        .routes(routes!(v2::index))
        .routes(routes!(v2::model_metadata))
        .routes(routes!(v2::version_metadata))
        .routes(routes!(v2::model_ready))
        .routes(routes!(v2::version_ready))
        .routes(routes!(v2::infer))
        .routes(routes!(v2::infer_version))
}

/// The OpenAPI document of the current code.
pub fn spec() -> utoipa::openapi::OpenApi {
    let mut spec = routes().split_for_parts().1;
    finish(&mut spec);
    spec
}

/// What the route annotations do not say: the version, and access control from the one table
/// in `access.rs` (the bearer scheme, each scoped operation's security requirement and its
/// 401 / 403 / 429 answers), so the document cannot drift from what the middleware enforces.
pub fn finish(spec: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
    spec.info.version = env!("CARGO_PKG_VERSION").to_string();
    spec.components
        .get_or_insert_with(Default::default)
        .add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API key from the server's keys file (--api-keys-file). Without a keys \
                     file no key is needed.",
                    ))
                    .build(),
            ),
        );
    for (path, item) in spec.paths.paths.iter_mut() {
        let route = path.split(':').next().unwrap_or(path);
        for (method, operation) in operations(item) {
            let Some(Rule::Scoped(scope)) = rule(&method, route) else {
                continue;
            };
            operation.security = Some(vec![SecurityRequirement::new(
                "api_key",
                Vec::<String>::new(),
            )]);
            let scope = scope.as_str();
            let answers = [
                ("401", "No API key, or not a valid one".to_string()),
                ("403", format!("The API key lacks the `{scope}` scope")),
                (
                    "429",
                    "Rate limited or overloaded; see Retry-After".to_string(),
                ),
            ];
            for (status, description) in answers {
                operation
                    .responses
                    .responses
                    .entry(status.to_string())
                    .or_insert_with(|| error_response(&description).into());
            }
        }
    }
}

/// The document a server without API keys serves: the same operations with no security
/// requirement and no 401 / 403 answers, because that server never asks for a key (the
/// committed `openapi/openapi.json` describes a server with a keys file).
pub fn without_keys(spec: &mut utoipa::openapi::OpenApi) {
    for item in spec.paths.paths.values_mut() {
        for (_, operation) in operations(item) {
            if operation.security.take().is_some() {
                operation.responses.responses.remove("401");
                operation.responses.responses.remove("403");
            }
        }
    }
}

fn operations(
    item: &mut utoipa::openapi::PathItem,
) -> Vec<(axum::http::Method, &mut utoipa::openapi::path::Operation)> {
    use axum::http::Method;
    [
        (Method::GET, item.get.as_mut()),
        (Method::POST, item.post.as_mut()),
        (Method::PUT, item.put.as_mut()),
        (Method::DELETE, item.delete.as_mut()),
        (Method::PATCH, item.patch.as_mut()),
    ]
    .into_iter()
    .filter_map(|(m, op)| op.map(|op| (m, op)))
    .collect()
}

fn error_response(description: &str) -> utoipa::openapi::Response {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .build()
}

/// The document as pretty JSON with a trailing newline, as committed in openapi/openapi.json.
pub fn spec_json() -> String {
    let mut text = spec()
        .to_pretty_json()
        .expect("the OpenAPI document serialises");
    text.push('\n');
    text
}
