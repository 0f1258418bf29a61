//! KServe V1 protocol: `GET /v1/models/{name}`, `POST /v1/models/{name}:predict` (through the
//! same predictor as `/predict`) and `POST /v1/models/{name}:explain` (the same explainer as
//! `/models/{name}/explain`).

use crate::inference::Instance;
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use tower_http::request_id::RequestId;
use utoipa::ToSchema;
use validator::Validate;

use super::access::Usage;
use super::error::{ApiError, ErrorBody};
use super::extract::ValidJson;
use super::routes::explain::{explain as explain_instances, ExplainRequest, ExplainResponse};
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
    #[schema(value_type = Vec<Object>)]
    pub instances: Vec<Instance>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct V1PredictResponse {
    pub predictions: Vec<PredictionBody>,
}

/// Whether a model is ready (KServe V1).
#[utoipa::path(
    get,
    path = "/v1/models/{name}",
    tag = "v1",
    params(("name" = String, Path)),
    responses((status = 200, body = V1ModelStatus), (status = 503, body = V1ModelStatus), (status = 404, body = ErrorBody))
)]
pub async fn status(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
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
    params(("name" = String, Path)),
    request_body = V1PredictRequest,
    responses(
        (status = 200, body = V1PredictResponse),
        (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody),
        (status = 429, body = ErrorBody),
        (status = 503, body = ErrorBody),
    )
)]
pub async fn predict(
    State(state): State<AppState>,
    Path(target): Path<String>,
    request_id: Option<Extension<RequestId>>,
    body: Request,
) -> Result<Response, ApiError> {
    if target.ends_with(":explain") {
        return explain(State(state), Path(target), body).await;
    }
    let name = target.strip_suffix(":predict").ok_or_else(|| {
        ApiError::not_found(format!(
            "no route for POST /v1/models/{target} (expected /v1/models/<name>:predict or :explain)"
        ))
    })?;
    let ValidJson(request) = ValidJson::<V1PredictRequest>::from_request(body, &state).await?;
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
/// route as `:predict`, which hands the `:explain` verb here.
#[utoipa::path(
    post,
    path = "/v1/models/{name}:explain",
    tag = "v1",
    params(("name" = String, Path)),
    request_body = ExplainRequest,
    responses(
        (status = 200, body = ExplainResponse),
        (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 422, body = ErrorBody),
        (status = 429, body = ErrorBody),
        (status = 503, body = ErrorBody),
    )
)]
pub async fn explain(
    State(state): State<AppState>,
    Path(target): Path<String>,
    body: Request,
) -> Result<Response, ApiError> {
    let name = target.strip_suffix(":explain").ok_or_else(|| {
        ApiError::not_found(format!(
            "no route for POST /v1/models/{target} (expected /v1/models/<name>:explain)"
        ))
    })?;
    let ValidJson(request) = ValidJson::<ExplainRequest>::from_request(body, &state).await?;
    let target = Target {
        model: Some(name),
        version: None,
        protocol: Protocol::Http,
        route_key: None,
    };
    let answer = explain_instances(&state, target, &request.instances, &request.options()).await?;
    Ok(answer.into_response())
}
