//! Request extractors whose rejections use infera's error envelope.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection};
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderMap, StatusCode};
use serde::de::DeserializeOwned;
use validator::Validate;

use super::error::ApiError;
use super::middleware::BodyLimit;
use crate::inference::{within, DecodeBudget, PredictError};

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
        read(req, state, None).await
    }
}

impl<T: DeserializeOwned + Validate> ValidJson<T> {
    /// As the extractor, with the body's instance lists and number arrays held to `budget`
    /// while they are parsed: an oversize request is refused (413 `too_many_instances` /
    /// `too_many_elements`) at the first row or number past the limit, not after parsing it all.
    pub async fn bounded<S: Send + Sync>(
        req: Request,
        state: &S,
        budget: DecodeBudget,
    ) -> Result<Self, ApiError> {
        read(req, state, Some(budget)).await
    }
}

/// A raw body (the V2 binary extension), read under the route's limit; a body over it is a 413
/// `payload_too_large` in infera's envelope, naming the limit, like [`ValidJson`]'s.
#[derive(Debug)]
pub struct RawBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let limit = req.extensions().get::<BodyLimit>().map(|l| l.0);
        Bytes::from_request(req, state)
            .await
            .map(RawBody)
            .map_err(|r| bytes_rejection(r, limit))
    }
}

async fn read<S, T>(
    req: Request,
    state: &S,
    budget: Option<DecodeBudget>,
) -> Result<ValidJson<T>, ApiError>
where
    S: Send + Sync,
    T: DeserializeOwned + Validate,
{
    let limit = req.extensions().get::<BodyLimit>().map(|l| l.0);
    if !json_content_type(req.headers()) {
        return Err(unsupported_media_type());
    }
    let body = Bytes::from_request(req, state)
        .await
        .map_err(|r| bytes_rejection(r, limit))?;
    // Parse once, directly; only a body that fails is parsed again through axum's extractor,
    // whose rejection names the path to the problem (that tracking costs on every request). A
    // parse stopped by the budget is not parsed again.
    let parsed = match budget {
        Some(budget) => within(budget, || serde_json::from_slice::<T>(&body))
            .map_err(|overrun| ApiError::from(PredictError::from(overrun)))?,
        None => serde_json::from_slice::<T>(&body),
    };
    let value = match parsed {
        Ok(value) => value,
        Err(_) => match axum::Json::<T>::from_bytes(&body) {
            Ok(axum::Json(value)) => value,
            Err(r) => return Err(rejection(r, limit)),
        },
    };
    value
        .validate()
        .map_err(|e| ApiError::invalid_request(describe(&e)))?;
    Ok(ValidJson(value))
}

/// `application/json` or `application/<anything>+json`, parameters allowed (as axum's `Json`).
fn json_content_type(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or("").trim();
    let Some((kind, sub)) = essence.split_once('/') else {
        return false;
    };
    kind.eq_ignore_ascii_case("application")
        && (sub.eq_ignore_ascii_case("json")
            || sub.len() > 5 && sub[sub.len() - 5..].eq_ignore_ascii_case("+json"))
}

fn unsupported_media_type() -> ApiError {
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        "expected a request body with Content-Type: application/json",
    )
}

fn bytes_rejection(e: BytesRejection, limit: Option<usize>) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            match limit {
                Some(limit) => format!("the request body exceeds the limit of {limit} bytes"),
                None => "the request body exceeds the size limit".to_string(),
            },
        );
    }
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "bad_body",
        format!("cannot read the request body: {}", e.body_text()),
    )
}

fn rejection(r: JsonRejection, limit: Option<usize>) -> ApiError {
    match r {
        JsonRejection::MissingJsonContentType(_) => unsupported_media_type(),
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
        JsonRejection::BytesRejection(e) => bytes_rejection(e, limit),
        other => ApiError::new(other.status(), "bad_request", other.body_text()),
    }
}

/// `validator` errors as one line: `field: message; field: message`.
fn describe(errors: &validator::ValidationErrors) -> String {
    let mut parts = Vec::new();
    collect(errors, "", &mut parts);
    parts.sort();
    parts.join("; ")
}

/// Walks nested (struct and list) errors, naming each by its path, e.g. `feedback[0]: ...`;
/// struct-level rules (`__all__`) are named by the struct's own path.
fn collect(errors: &validator::ValidationErrors, path: &str, out: &mut Vec<String>) {
    use validator::ValidationErrorsKind as Kind;
    for (field, kind) in errors.errors() {
        let here = match (path.is_empty(), field.as_ref()) {
            (true, "__all__") => "request".to_string(),
            (false, "__all__") => path.to_string(),
            (true, f) => f.to_string(),
            (false, f) => format!("{path}.{f}"),
        };
        match kind {
            Kind::Field(errs) => out.extend(errs.iter().map(|e| match &e.message {
                Some(m) => format!("{here}: {m}"),
                None => format!("{here}: fails the {} rule", e.code),
            })),
            Kind::Struct(inner) => collect(inner, &here, out),
            Kind::List(items) => {
                for (i, inner) in items {
                    collect(inner, &format!("{here}[{i}]"), out);
                }
            }
        }
    }
}
