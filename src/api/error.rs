//! The one place where errors become HTTP statuses and JSON bodies:
//! `{"error": "...", "error_type": "..."}`. Server faults get a generic message; their details
//! go to the log.

use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::{retry_after_secs, AuthError, RateLimited};
use crate::engine::EngineError;
use crate::inference::{ExplainError, PredictError};
use crate::repository::{AdminError, ResolveError};

/// Error body of every endpoint.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"error": "instance 0: expected 4 feature values, got 3", "error_type": "wrong_feature_count"}))]
pub struct ErrorBody {
    /// What went wrong, naming the offending field and limit.
    pub error: String,
    /// Stable machine-readable kind, e.g. `malformed_json`, `model_not_found`, `out_of_range`, `overloaded`.
    pub error_type: String,
}

/// An error on its way to becoming a response.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub error_type: &'static str,
    pub message: String,
    pub retry_after: Option<Duration>,
    /// `RateLimit-Limit` / `-Remaining` / `-Reset` of a rate-limit refusal: (limit, reset secs).
    pub rate_limit: Option<(u32, u64)>,
}

const RETRY_SOON: Option<Duration> = Some(Duration::from_secs(1));

impl ApiError {
    pub fn new(
        status: StatusCode,
        error_type: &'static str,
        message: impl Into<String>,
    ) -> ApiError {
        ApiError {
            status,
            error_type,
            message: message.into(),
            retry_after: None,
            rate_limit: None,
        }
    }

    fn retry(mut self, after: Option<Duration>) -> ApiError {
        self.retry_after = after;
        self
    }

    /// A server fault: logged in full, answered with a generic message.
    pub fn internal(detail: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %detail, "internal error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal server error",
        )
    }

    pub fn not_found(what: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", what)
    }

    pub fn invalid_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", message)
    }
}

impl From<ResolveError> for ApiError {
    fn from(e: ResolveError) -> ApiError {
        let message = e.to_string();
        match e {
            ResolveError::NoDefaultModel => {
                ApiError::new(StatusCode::BAD_REQUEST, "model_required", message)
            }
            ResolveError::ModelNotFound(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "model_not_found", message)
            }
            ResolveError::VersionNotFound { .. } => {
                ApiError::new(StatusCode::NOT_FOUND, "version_not_found", message)
            }
            ResolveError::Loading { .. } => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "model_not_ready", message)
                    .retry(RETRY_SOON)
            }
            ResolveError::Failed { .. } => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "model_unavailable",
                message,
            ),
            ResolveError::NotServed { .. } => {
                ApiError::new(StatusCode::NOT_FOUND, "version_not_served", message)
            }
        }
    }
}

impl From<AdminError> for ApiError {
    fn from(e: AdminError) -> ApiError {
        match e {
            AdminError::NotInRepository(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "model_not_found", e.to_string())
            }
            AdminError::Repository(e) => ApiError::internal(e),
            AdminError::Invalid(_) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_traffic",
                e.to_string(),
            ),
            AdminError::Conflict(_) => {
                ApiError::new(StatusCode::CONFLICT, "traffic_conflict", e.to_string())
            }
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> ApiError {
        match e {
            EngineError::Overloaded { retry_after, .. } => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "overloaded", e.to_string())
                    .retry(Some(retry_after))
            }
            EngineError::DeadlineExceeded(_) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "timeout", e.to_string())
                    .retry(RETRY_SOON)
            }
            EngineError::ShapeRefused { .. } => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unsupported_shape",
                e.to_string(),
            ),
            EngineError::Rejected(_) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "input_rejected",
                e.to_string(),
            ),
            EngineError::ShuttingDown => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                e.to_string(),
            )
            .retry(RETRY_SOON),
            EngineError::Load { .. }
            | EngineError::Unsupported { .. }
            | EngineError::BadInput { .. }
            | EngineError::Inference(_)
            | EngineError::UnsupportedOutput { .. }
            | EngineError::WorkerLost => ApiError::internal(e),
        }
    }
}

impl From<crate::engine::LaneError> for ApiError {
    fn from(e: crate::engine::LaneError) -> ApiError {
        use crate::engine::LaneError;
        match e {
            LaneError::Panicked => ApiError::internal("a request handler panicked"),
            LaneError::Stopped => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                "the server is shutting down",
            )
            .retry(RETRY_SOON),
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> ApiError {
        let message = e.to_string();
        match e {
            AuthError::Missing | AuthError::Invalid => {
                ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
            }
            AuthError::Forbidden { .. } => {
                ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
            }
        }
    }
}

impl From<RateLimited> for ApiError {
    fn from(e: RateLimited) -> ApiError {
        let reset = retry_after_secs(e.refusal.retry_after);
        let mut error = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", e.to_string())
            .retry(Some(Duration::from_secs(reset)));
        error.rate_limit = Some((e.refusal.burst, reset));
        error
    }
}

impl From<PredictError> for ApiError {
    fn from(e: PredictError) -> ApiError {
        match e {
            PredictError::Resolve(e) => e.into(),
            PredictError::TooManyInstances { .. } => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_many_instances",
                e.to_string(),
            ),
            PredictError::TooManyElements { .. } => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_many_elements",
                e.to_string(),
            ),
            PredictError::ListTooLong { list, .. } => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                list.error_type(),
                e.to_string(),
            ),
            PredictError::Contract(v) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                v.kind.as_str(),
                v.to_string(),
            ),
            PredictError::RateLimited(e) => e.into(),
            PredictError::Engine(e) => e.into(),
            PredictError::Output(detail) => ApiError::internal(detail),
        }
    }
}

impl From<ExplainError> for ApiError {
    fn from(e: ExplainError) -> ApiError {
        let message = e.to_string();
        match e {
            ExplainError::Predict(e) => e.into(),
            ExplainError::Busy { retry_after, .. } => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "explain_busy", message)
                    .retry(Some(retry_after))
            }
            ExplainError::TooManyInstances { .. } => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_many_instances", message)
            }
            ExplainError::NotTabular { .. }
            | ExplainError::FreeText { .. }
            | ExplainError::RawOutputs { .. }
            | ExplainError::NoBackground { .. } => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "not_explainable", message)
            }
            ExplainError::BadOption(_) => ApiError::invalid_request(message),
            ExplainError::Underdetermined { .. } => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "budget_too_small",
                message,
            ),
            ExplainError::Output(detail) => ApiError::internal(detail),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.message,
            error_type: self.error_type.to_string(),
        };
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"infera\""),
            );
        }
        if let Some((limit, reset)) = self.rate_limit {
            let headers = response.headers_mut();
            headers.insert("ratelimit-limit", HeaderValue::from(limit));
            headers.insert("ratelimit-remaining", HeaderValue::from(0u32));
            headers.insert("ratelimit-reset", HeaderValue::from(reset));
        }
        if let Some(after) = self.retry_after {
            let secs = after.as_secs().max(1).to_string();
            if let Ok(value) = HeaderValue::from_str(&secs) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
        }
        response
    }
}
