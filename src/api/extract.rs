//! Request extractors whose rejections use infera's error envelope.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;
use validator::Validate;

use super::error::ApiError;
use super::middleware::BodyLimit;

/// A JSON body, parsed and then checked with `validator`.
/// 415 without a JSON content type, 413 over the size limit, 400 for malformed JSON, 422 for
/// well-formed JSON of the wrong shape.
#[derive(Debug)]
pub struct ValidJson<T>(pub T);

impl<S, T> FromRequest<S> for ValidJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Validate,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let limit = req.extensions().get::<BodyLimit>().map(|l| l.0);
        let axum::Json(value) = axum::Json::<T>::from_request(req, state)
            .await
            .map_err(|r| rejection(r, limit))?;
        value
            .validate()
            .map_err(|e| ApiError::invalid_request(describe(&e)))?;
        Ok(ValidJson(value))
    }
}

fn rejection(r: JsonRejection, limit: Option<usize>) -> ApiError {
    match r {
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "expected a request body with Content-Type: application/json",
        ),
        JsonRejection::JsonSyntaxError(e) => {
            let detail = e.body_text();
            let detail = detail
                .strip_prefix("Failed to parse the request body as JSON: ")
                .unwrap_or(&detail);
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "malformed_json",
                format!("malformed JSON: {detail}"),
            )
        }
        JsonRejection::JsonDataError(e) => {
            let detail = e.body_text();
            let prefix = "Failed to deserialize the JSON body into the target type: ";
            ApiError::invalid_request(detail.strip_prefix(prefix).unwrap_or(&detail).to_string())
        }
        JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                match limit {
                    Some(limit) => format!("the request body exceeds the limit of {limit} bytes"),
                    None => "the request body exceeds the size limit".to_string(),
                },
            )
        }
        JsonRejection::BytesRejection(e) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_body",
            format!("cannot read the request body: {}", e.body_text()),
        ),
        other => ApiError::new(other.status(), "bad_request", other.body_text()),
    }
}

/// `validator` errors as one line: `field: message; field: message`.
fn describe(errors: &validator::ValidationErrors) -> String {
    let mut parts: Vec<String> = errors
        .field_errors()
        .iter()
        .flat_map(|(field, errs)| {
            errs.iter().map(move |e| match &e.message {
                Some(m) => format!("{field}: {m}"),
                None => format!("{field}: fails the {} rule", e.code),
            })
        })
        .collect();
    parts.sort();
    parts.join("; ")
}
