//! The OpenAPI document: generated from the route table, served at /openapi.json, written to
//! openapi/openapi.json by `infera openapi`.

use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::routes::{health, metrics, models, monitoring, predict};
use super::state::AppState;
use super::v1;
use super::v2::routes as v2;

#[derive(OpenApi)]
#[openapi(
    paths(v1::status, v1::predict),
    info(
        title = "infera",
        description = "A small, fast inference server for ONNX models on CPU. POST instances to \
                       /predict; every model ships a model card at /models/{name}; Prometheus \
                       metrics at /metrics.",
        license(name = "Apache-2.0")
    ),
    tags(
        (name = "inference", description = "Predictions"),
        (name = "models", description = "Model cards, contracts and versions"),
        (name = "health", description = "Liveness and readiness probes"),
        (name = "monitoring", description = "Prometheus metrics"),
        (name = "v2", description = "Open Inference Protocol (KServe V2 / Triton) REST API, with the binary tensor data extension"),
        (name = "v1", description = "KServe V1 protocol"),
    )
)]
struct ApiDoc;

/// Every documented route, with its OpenAPI operation.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(predict::predict_default))
        .routes(routes!(predict::predict_model))
        .routes(routes!(predict::predict_version))
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
    spec.info.version = env!("CARGO_PKG_VERSION").to_string();
    spec
}

/// The document as pretty JSON with a trailing newline, as committed in openapi/openapi.json.
pub fn spec_json() -> String {
    let mut text = spec()
        .to_pretty_json()
        .expect("the OpenAPI document serialises");
    text.push('\n');
    text
}
