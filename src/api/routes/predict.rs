//! `POST /predict` and the per-model predict routes.

use axum::extract::{Path, Request, State};
use axum::http::HeaderMap;
use axum::Extension;
use axum::Json;
use tower_http::request_id::RequestId;

use crate::api::access::Usage;
use crate::api::error::{ApiError, ErrorBody};
use crate::api::extract::ValidJson;
use crate::api::state::AppState;
use crate::api::types::{IdentifiedPrediction, PredictRequest, PredictResponse};
use crate::inference::{Protocol, Target};

/// Predict with the model named in the body, or the default model.
#[utoipa::path(
    post,
    path = "/predict",
    tag = "inference",
    request_body = PredictRequest,
    responses(
        (status = 200, description = "One prediction per instance", body = PredictResponse),
        (status = 400, description = "Malformed JSON, or no model named and no default model", body = ErrorBody),
        (status = 404, description = "Unknown model", body = ErrorBody),
        (status = 413, description = "Body or instance count over the limit", body = ErrorBody),
        (status = 415, description = "Content-Type is not application/json", body = ErrorBody),
        (status = 422, description = "An instance breaks the model's input contract", body = ErrorBody),
        (status = 429, description = "Inference queue full; retry after Retry-After seconds", body = ErrorBody),
        (status = 503, description = "Model not ready, timed out, or shutting down", body = ErrorBody),
    )
)]
pub async fn predict_default(
    State(state): State<AppState>,
    request_id: Option<Extension<RequestId>>,
    headers: HeaderMap,
    body: Request,
) -> Result<(Extension<Usage>, Json<PredictResponse>), ApiError> {
    let ValidJson(request) = read_request(&state, body).await?;
    let target = Target {
        model: request.model.as_deref(),
        version: None,
        protocol: Protocol::Http,
        route_key: route_key(&headers),
    };
    run(&state, target, request_id, &request).await
}

/// The body, held to the predictor's limits while it is parsed.
async fn read_request(
    state: &AppState,
    body: Request,
) -> Result<ValidJson<PredictRequest>, ApiError> {
    ValidJson::bounded(body, state, state.predictor.decode_budget()).await
}

/// Predict with the default (highest) version of a model.
#[utoipa::path(
    post,
    path = "/models/{name}/predict",
    tag = "inference",
    params(("name" = String, Path, example = "iris", description = "Model name")),
    request_body = PredictRequest,
    responses(
        (status = 200, description = "One prediction per instance", body = PredictResponse),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 404, description = "Unknown model", body = ErrorBody),
        (status = 413, description = "Body or instance count over the limit", body = ErrorBody),
        (status = 415, description = "Content-Type is not application/json", body = ErrorBody),
        (status = 422, description = "An instance breaks the model's input contract", body = ErrorBody),
        (status = 429, description = "Inference queue full; retry after Retry-After seconds", body = ErrorBody),
        (status = 503, description = "Model not ready, timed out, or shutting down", body = ErrorBody),
    )
)]
pub async fn predict_model(
    State(state): State<AppState>,
    Path(name): Path<String>,
    request_id: Option<Extension<RequestId>>,
    headers: HeaderMap,
    body: Request,
) -> Result<(Extension<Usage>, Json<PredictResponse>), ApiError> {
    let target = Target {
        model: Some(&name),
        version: None,
        protocol: Protocol::Http,
        route_key: route_key(&headers),
    };
    state.predictor.admit(target)?;
    let ValidJson(request) = read_request(&state, body).await?;
    check_body_model(&request, &name)?;
    run(&state, target, request_id, &request).await
}

/// Predict with one specific version of a model.
#[utoipa::path(
    post,
    path = "/models/{name}/versions/{version}/predict",
    tag = "inference",
    params(
        ("name" = String, Path, example = "iris", description = "Model name"),
        ("version" = u64, Path, example = 1, description = "Model version (positive integer)"),
    ),
    request_body = PredictRequest,
    responses(
        (status = 200, description = "One prediction per instance", body = PredictResponse),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 404, description = "Unknown model or version", body = ErrorBody),
        (status = 413, description = "Body or instance count over the limit", body = ErrorBody),
        (status = 415, description = "Content-Type is not application/json", body = ErrorBody),
        (status = 422, description = "An instance breaks the model's input contract", body = ErrorBody),
        (status = 429, description = "Inference queue full; retry after Retry-After seconds", body = ErrorBody),
        (status = 503, description = "Model not ready, timed out, or shutting down", body = ErrorBody),
    )
)]
pub async fn predict_version(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
    request_id: Option<Extension<RequestId>>,
    body: Request,
) -> Result<(Extension<Usage>, Json<PredictResponse>), ApiError> {
    if let Ok(v) = version.parse::<u64>() {
        state.predictor.admit(Target {
            model: Some(&name),
            version: Some(v),
            protocol: Protocol::Http,
            route_key: None,
        })?;
    }
    let ValidJson(request) = read_request(&state, body).await?;
    check_body_model(&request, &name)?;
    let version = parse_version(&name, &version)?;
    run(
        &state,
        Target {
            model: Some(&name),
            version: Some(version),
            protocol: Protocol::Http,
            route_key: None,
        },
        request_id,
        &request,
    )
    .await
}

/// The `X-Route-Key` header: a sticky canary sends every request with the same key to the same
/// version (only a hash of it is used; it is never logged or used as a metric label).
pub fn route_key(headers: &HeaderMap) -> Option<&str> {
    headers.get("x-route-key").and_then(|v| v.to_str().ok())
}

/// A version path segment: a positive integer, else the version does not exist.
pub fn parse_version(model: &str, version: &str) -> Result<u64, ApiError> {
    version
        .parse::<u64>()
        .ok()
        .filter(|v| *v > 0)
        .ok_or_else(|| {
            ApiError::new(
                axum::http::StatusCode::NOT_FOUND,
                "version_not_found",
                format!(
                    "model {model:?} has no version {version:?} (versions are positive integers)"
                ),
            )
        })
}

fn check_body_model(request: &PredictRequest, path_model: &str) -> Result<(), ApiError> {
    match &request.model {
        Some(body_model) if body_model != path_model => Err(ApiError::invalid_request(format!(
            "model: the body names {body_model:?} but the path names {path_model:?}"
        ))),
        _ => Ok(()),
    }
}

async fn run(
    state: &AppState,
    target: Target<'_>,
    request_id: Option<Extension<RequestId>>,
    request: &PredictRequest,
) -> Result<(Extension<Usage>, Json<PredictResponse>), ApiError> {
    let id = request
        .id
        .clone()
        .unwrap_or_else(|| request_id_of(request_id));
    let outcome = state
        .predictor
        .predict(target, &request.instances, &id)
        .await?;
    let predictions: Vec<IdentifiedPrediction> = outcome
        .predictions
        .into_iter()
        .enumerate()
        .map(|(i, p)| IdentifiedPrediction {
            id: format!("{id}/{i}"),
            body: p.into(),
        })
        .collect();
    let usage = Usage {
        model: outcome.model.clone(),
        instances: predictions.len(),
    };
    Ok((
        Extension(usage),
        Json(PredictResponse {
            model: outcome.model,
            version: outcome.version,
            id,
            predictions,
        }),
    ))
}

/// The `x-request-id` of the request (made by the middleware when the client sent none).
pub fn request_id_of(request_id: Option<Extension<RequestId>>) -> String {
    request_id
        .and_then(|Extension(rid)| rid.header_value().to_str().ok().map(str::to_string))
        .unwrap_or_default()
}
