//! KServe V1 protocol: `GET /v1/models/{name}`, `POST /v1/models/{name}:predict` (through the
//! same predictor as `/predict`) and `POST /v1/models/{name}:explain` (the same explainer as
//! `/models/{name}/explain`).

use crate::inference::Instance;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use tower_http::request_id::RequestId;
use utoipa::ToSchema;
use validator::Validate;

use super::access::Usage;
use super::error::{ApiError, ErrorBody};
use super::extract::ValidJson;
use super::routes::explain::{
    explain as explain_instances, read_request as read_explain_request, ExplainRequest,
    ExplainResponse,
};
use super::routes::predict::request_id_of;
use super::state::AppState;
use super::types::PredictionBody;
use crate::inference::{Protocol, Target};
use crate::repository::ResolveError;

#[derive(Debug, Serialize, ToSchema)]
pub struct V1ModelStatus {
    pub name: String,
    pub ready: bool,
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
pub struct V1PredictRequest {
    /// Instances in the same forms `/predict` takes.
    #[validate(length(min = 1, message = "must hold at least one instance"))]
    #[schema(value_type = Vec<serde_json::Value>)]
    #[serde(deserialize_with = "crate::inference::bounded_instances")]
    pub instances: Vec<Instance>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct V1PredictResponse {
    pub predictions: Vec<PredictionBody>,
}

/// Every method on `/v1/models/{name}`: axum cannot split a path segment at `:`, so the status
/// route, `/v1/models/{name}:predict` and `:explain` are one route, told apart here. A wrong method is a 405
/// whose `Allow` names what that resource takes, decided before any body is read; another verb
/// (`:foo`) is a 404.
pub async fn dispatch(
    State(state): State<AppState>,
    Path(target): Path<String>,
    method: Method,
    request_id: Option<Extension<RequestId>>,
    request: Request,
) -> Result<Response, ApiError> {
    if let Some(name) = target.strip_suffix(":explain") {
        return match method {
            Method::POST => explain(&state, name, request).await,
            _ => Ok(wrong_method(&method, &target, "POST")),
        };
    }
    match target.strip_suffix(":predict") {
        Some(name) if method == Method::POST => predict(&state, name, request_id, request).await,
        Some(_) => Ok(wrong_method(&method, &target, "POST")),
        None if target.contains(':') => Err(ApiError::not_found(format!(
            "no route for {method} /v1/models/{target} (expected /v1/models/<name>:predict or :explain)"
        ))),
        None if method == Method::GET || method == Method::HEAD => status(&state, target).await,
        None => Ok(wrong_method(&method, &target, "GET,HEAD")),
    }
}

/// Whether a model is ready (KServe V1).
#[utoipa::path(
    get,
    path = "/v1/models/{name}",
    tag = "v1",
    params(("name" = String, Path, example = "iris")),
    responses((status = 200, body = V1ModelStatus), (status = 503, body = V1ModelStatus), (status = 404, body = ErrorBody))
)]
pub async fn status(state: &AppState, name: String) -> Result<Response, ApiError> {
    let ready = match state
        .predictor
        .store()
        .snapshot()
        .resolve(Some(&name), None)
    {
        Ok(_) => true,
        Err(ResolveError::Loading { .. } | ResolveError::Failed { .. }) => false,
        Err(e) => return Err(e.into()),
    };
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Ok((code, Json(V1ModelStatus { name, ready })).into_response())
}

/// Predict (KServe V1): `{"instances": [...]}` -> `{"predictions": [...]}`.
#[utoipa::path(
    post,
    path = "/v1/models/{name}:predict",
    tag = "v1",
    params(("name" = String, Path, example = "iris")),
    request_body = V1PredictRequest,
    responses(
        (status = 200, body = V1PredictResponse),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 404, description = "Unknown model", body = ErrorBody),
        (status = 413, description = "Body, instance count or tensor elements over the limit", body = ErrorBody),
        (status = 415, description = "Content-Type is not application/json", body = ErrorBody),
        (status = 422, description = "Well-formed JSON of the wrong shape, or an instance that breaks the model's input contract", body = ErrorBody),
        (status = 429, description = "Inference queue full; retry after Retry-After seconds", body = ErrorBody),
        (status = 503, description = "Model loading or failed, deadline passed, or shutting down", body = ErrorBody),
    )
)]
pub async fn predict(
    state: &AppState,
    name: &str,
    request_id: Option<Extension<RequestId>>,
    request: Request,
) -> Result<Response, ApiError> {
    let budget = state.predictor.decode_budget();
    let ValidJson(request) = ValidJson::<V1PredictRequest>::bounded(request, state, budget).await?;
    let outcome = state
        .predictor
        .predict(
            Target {
                model: Some(name),
                version: None,
                protocol: Protocol::Http,
                route_key: None,
            },
            &request.instances,
            &request_id_of(request_id),
        )
        .await?;
    let usage = Usage {
        model: outcome.model,
        instances: outcome.predictions.len(),
    };
    Ok((
        Extension(usage),
        Json(V1PredictResponse {
            predictions: outcome.predictions.into_iter().map(Into::into).collect(),
        }),
    )
        .into_response())
}

/// Explain (KServe V1): the body and answer of `POST /models/{name}/explain`. Served by the same
/// route as `:predict`; `dispatch` hands the `:explain` verb here.
#[utoipa::path(
    post,
    path = "/v1/models/{name}:explain",
    tag = "v1",
    params(("name" = String, Path, example = "iris")),
    request_body = ExplainRequest,
    responses(
        (status = 200, body = ExplainResponse),
        (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody),
        (status = 422, body = ErrorBody),
        (status = 429, body = ErrorBody),
        (status = 503, body = ErrorBody),
    )
)]
pub async fn explain(state: &AppState, name: &str, body: Request) -> Result<Response, ApiError> {
    let request = read_explain_request(state, body).await?;
    let target = Target {
        model: Some(name),
        version: None,
        protocol: Protocol::Http,
        route_key: None,
    };
    let answer = explain_instances(state, target, &request.instances, &request.options()).await?;
    Ok(answer.into_response())
}

/// 405 with `Allow`, as the router's own method fallback answers.
fn wrong_method(method: &Method, target: &str, allow: &'static str) -> Response {
    let error = ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not allowed on /v1/models/{target}"),
    );
    ([(header::ALLOW, HeaderValue::from_static(allow))], error).into_response()
}
