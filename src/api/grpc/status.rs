//! gRPC status codes from infera's errors. Errors become `ApiError`s through the one mapping in
//! `api/error.rs`; this maps that outcome (HTTP status class) to a gRPC code, so REST and gRPC
//! always agree on what kind of failure a request met. The `error_type` travels in the
//! `infera-error-type` metadata; a retryable refusal carries `google.rpc.RetryInfo` in the
//! status details and a `retry-after` (seconds) metadata entry.

use axum::http::StatusCode;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::Code;
use tonic_types::{ErrorDetails, StatusExt};

use crate::api::ApiError;

/// Metadata key holding the stable machine-readable error kind, e.g. `model_not_found`.
pub const ERROR_TYPE: &str = "infera-error-type";

/// The gRPC code for an HTTP status that infera answers with.
fn code(status: StatusCode) -> Code {
    match status.as_u16() {
        // Malformed or contract-violating requests, including too many instances (413):
        // retrying the same request cannot succeed.
        400 | 413 | 415 | 422 => Code::InvalidArgument,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::NotFound,
        405 => Code::Unimplemented,
        429 => Code::ResourceExhausted,
        503 => Code::Unavailable,
        500 => Code::Internal,
        _ if status.is_client_error() => Code::FailedPrecondition,
        _ => Code::Unknown,
    }
}

/// The gRPC status for an error, with its kind and, when retrying helps, when to retry.
pub fn to_status(error: ApiError) -> tonic::Status {
    let mut metadata = MetadataMap::new();
    metadata.insert(ERROR_TYPE, MetadataValue::from_static(error.error_type));
    let mut details = ErrorDetails::new();
    if let Some(after) = error.retry_after {
        let secs = after.as_secs().max(1);
        metadata.insert("retry-after", MetadataValue::from(secs));
        details.set_retry_info(Some(std::time::Duration::from_secs(secs)));
    }
    tonic::Status::with_error_details_and_metadata(
        code(error.status),
        error.message,
        details,
        metadata,
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::engine::EngineError;
    use crate::inference::PredictError;
    use crate::repository::ResolveError;

    #[test]
    fn the_issue_codes_come_from_the_same_error_kinds_as_rest() {
        let not_found = to_status(ResolveError::ModelNotFound("nope".into()).into());
        assert_eq!(not_found.code(), Code::NotFound);
        assert_eq!(
            not_found.metadata().get(ERROR_TYPE).unwrap(),
            "model_not_found"
        );
        let too_many = to_status(
            PredictError::TooManyInstances {
                count: "9".into(),
                limit: 2,
            }
            .into(),
        );
        assert_eq!(too_many.code(), Code::InvalidArgument);
        let overloaded = to_status(
            PredictError::Engine(EngineError::Overloaded {
                capacity: 4,
                retry_after: Duration::from_secs(3),
            })
            .into(),
        );
        assert_eq!(overloaded.code(), Code::ResourceExhausted);
        assert_eq!(overloaded.metadata().get("retry-after").unwrap(), "3");
        let retry = overloaded.get_details_retry_info().expect("retry info");
        assert_eq!(retry.retry_delay, Some(Duration::from_secs(3)));
        let loading = to_status(
            ResolveError::Loading {
                model: "m".into(),
                version: 1,
            }
            .into(),
        );
        assert_eq!(loading.code(), Code::Unavailable);
        assert!(loading.get_details_retry_info().is_some());
        assert_eq!(code(StatusCode::UNAUTHORIZED), Code::Unauthenticated);
        assert_eq!(code(StatusCode::FORBIDDEN), Code::PermissionDenied);
    }

    #[test]
    fn server_faults_say_nothing_about_their_cause() {
        let status = to_status(ApiError::internal("secret detail"));
        assert_eq!(status.code(), Code::Internal);
        assert_eq!(status.message(), "internal server error");
        assert!(status.get_details_retry_info().is_none());
    }
}
