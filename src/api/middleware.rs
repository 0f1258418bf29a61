//! Cross-cutting HTTP behaviour: request ids, the HTTP metrics, body-size precheck, and panics
//! turned into JSON 500s.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower_http::request_id::{MakeRequestId, RequestId};

use super::error::ApiError;
use super::state::{AppState, Bulk};

/// Route label for requests that matched no route (a closed set: never the raw path).
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// Status recorded for a request whose client went away before the answer (nginx's 499).
pub const CLIENT_CLOSED: u16 = 499;

/// Records `infera_http_requests_total`, `infera_http_request_duration_seconds` and the
/// in-flight gauge, labelled by route template. A request dropped before its answer (client
/// disconnected) is recorded with status 499.
pub async fn http_metrics(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().cloned();
    let mut guard = InFlight {
        metrics: state.metrics.clone(),
        method: method_label(request.method()),
        route,
        started: Instant::now(),
        status: None,
    };
    state.metrics.http_in_flight().inc();
    let response = next.run(request).await;
    guard.status = Some(response.status().as_u16());
    response
}

/// Decrements the in-flight gauge and records the request however the handler future ends.
struct InFlight {
    metrics: std::sync::Arc<crate::monitoring::Metrics>,
    method: &'static str,
    /// The route template (None: no route matched). Cloning it bumps a refcount, no allocation.
    route: Option<MatchedPath>,
    started: Instant,
    status: Option<u16>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.metrics.http_in_flight().dec();
        let status = self.status.unwrap_or(CLIENT_CLOSED);
        self.metrics.http_request(
            self.method,
            self.route
                .as_ref()
                .map_or(UNMATCHED_ROUTE, MatchedPath::as_str),
            status,
            self.started.elapsed(),
        );
    }
}

/// The method as a metric label: the standard methods by name, anything else `OTHER`, so a
/// client inventing methods cannot create series.
pub fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    const KNOWN: [(Method, &str); 9] = [
        (Method::GET, "GET"),
        (Method::POST, "POST"),
        (Method::PUT, "PUT"),
        (Method::DELETE, "DELETE"),
        (Method::HEAD, "HEAD"),
        (Method::OPTIONS, "OPTIONS"),
        (Method::PATCH, "PATCH"),
        (Method::TRACE, "TRACE"),
        (Method::CONNECT, "CONNECT"),
    ];
    KNOWN
        .iter()
        .find(|(m, _)| m == method)
        .map_or("OTHER", |(_, label)| label)
}

/// Longest client-sent `x-request-id` kept; it becomes the prediction id and is echoed per
/// instance, so it is bounded like a body `id`.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// Whether a client's `x-request-id` is kept: 1 to 128 characters of `[A-Za-z0-9._:/-]`.
/// Anything else is replaced by a generated id (never echoed, never logged as sent).
pub fn acceptable_request_id(id: &[u8]) -> bool {
    (1..=MAX_REQUEST_ID_LEN).contains(&id.len())
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"._:/-".contains(b))
}

/// Drops an unacceptable `x-request-id` so that the request-id layer generates one.
pub async fn sanitize_request_id(mut request: Request, next: Next) -> Response {
    let bad = request
        .headers()
        .get_all(super::REQUEST_ID)
        .iter()
        .enumerate()
        .any(|(i, v)| i > 0 || !acceptable_request_id(v.as_bytes()));
    if bad {
        request.headers_mut().remove(super::REQUEST_ID);
    }
    next.run(request).await
}

/// Headers every response carries: browser hardening, and `Connection: close` once shutdown
/// has begun, so clients close their connection after this answer instead of sending another
/// request into a closing socket.
pub async fn response_headers(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in [
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    if state.draining.load(Ordering::Relaxed) {
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// CORS for the configured origins, or none (browsers then refuse cross-origin calls).
pub fn cors(origins: &[String]) -> Option<tower_http::cors::CorsLayer> {
    use axum::http::{HeaderName, Method};
    use tower_http::cors::{AllowOrigin, CorsLayer};
    if origins.is_empty() {
        return None;
    }
    let origins: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o.trim_end_matches('/')).ok())
        .collect();
    let exposed = [
        "x-request-id",
        "retry-after",
        "ratelimit-limit",
        "ratelimit-remaining",
        "ratelimit-reset",
        "inference-header-content-length",
    ];
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([Method::GET, Method::POST])
            .allow_headers([
                header::CONTENT_TYPE,
                header::AUTHORIZATION,
                HeaderName::from_static("x-request-id"),
                HeaderName::from_static("inference-header-content-length"),
            ])
            .expose_headers(exposed.map(HeaderName::from_static))
            .max_age(std::time::Duration::from_secs(600)),
    )
}

/// Refuses a declared body over the limit before reading it, naming the limit, and cuts off a
/// body without a Content-Length (or a longer one) at the limit while it is read. The limit is
/// `--max-body-bytes`, or on a model's inference routes what its contract needs
/// (`model_limit.rs`).
pub async fn body_limit(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let limit = super::model_limit::body_limit(&state, request.uri().path());
    if let Some(len) = declared_length(&request) {
        if len > limit as u64 {
            return ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("the request body is {len} bytes; the limit is {limit} bytes"),
            )
            .into_response();
        }
    }
    let (mut parts, body) = request.into_parts();
    parts.extensions.insert(BodyLimit(limit));
    let body = axum::body::Body::new(http_body_util::Limited::new(body, limit));
    next.run(Request::from_parts(parts, body)).await
}

/// Runs the rest of a request with a large body (at least `--bulk-body-bytes`, or of unknown
/// length: chunked) on the idle-priority bulk lane while small requests (a body under the
/// threshold) are being served: parsing, checking and answering a thousand rows holds a CPU for
/// most of a millisecond without a yield point, and on the HTTP threads small requests would
/// wait behind it. A client that goes away cancels the work as before.
pub async fn bulk_lane(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(bulk) = state.bulk.as_ref() else {
        return next.run(request).await;
    };
    match body_size(&request, bulk.min_body_bytes) {
        BodySize::None => return next.run(request).await,
        BodySize::Small => {
            bulk.small_seen.mark();
            return next.run(request).await;
        }
        BodySize::Large if !bulk.small_seen.within(Bulk::SMALL_WINDOW) => {
            return next.run(request).await;
        }
        BodySize::Large => {}
    }
    state.metrics.http_bulk().inc();
    use tracing::Instrument;
    bulk.lane
        .spawn(next.run(request).in_current_span())
        .await
        .unwrap_or_else(|e| ApiError::from(e).into_response())
}

/// A request's body as the bulk lane sees it.
enum BodySize {
    /// No body declared (GET, probes, scrapes).
    None,
    /// Under `--bulk-body-bytes`: the requests the lane protects.
    Small,
    /// At least `--bulk-body-bytes`, or of unknown length (chunked).
    Large,
}

fn body_size(request: &Request, min_body_bytes: u64) -> BodySize {
    match declared_length(request) {
        Some(0) => BodySize::None,
        Some(len) if len < min_body_bytes => BodySize::Small,
        Some(_) => BodySize::Large,
        None if request.headers().contains_key(header::TRANSFER_ENCODING) => BodySize::Large,
        None => BodySize::None,
    }
}

/// The body length the request declares (`Content-Length`), if any.
fn declared_length(request: &Request) -> Option<u64> {
    request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// The body limit in force, for extractors that report it.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

/// A handler panic becomes a JSON 500 (the worker threads catch model panics themselves).
pub fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    ApiError::internal("a request handler panicked").into_response()
}

/// Request ids: a per-process prefix from the start time plus a counter. Unique, cheap, and not
/// derived from request data.
#[derive(Debug, Clone)]
pub struct RequestIds {
    prefix: u32,
    counter: std::sync::Arc<AtomicU64>,
}

impl Default for RequestIds {
    fn default() -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        RequestIds {
            prefix: nanos ^ std::process::id(),
            counter: Default::default(),
        }
    }
}

impl MakeRequestId for RequestIds {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let id = format!("{:08x}-{n:012x}", self.prefix);
        HeaderValue::from_str(&id).ok().map(RequestId::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Method;

    #[test]
    fn invented_methods_share_one_label() {
        assert_eq!(method_label(&Method::POST), "POST");
        let made_up = Method::from_bytes(b"FOOBAR").unwrap();
        assert_eq!(method_label(&made_up), "OTHER");
    }

    #[test]
    fn request_ids_are_bounded_and_plain() {
        assert!(acceptable_request_id(b"req-1/a.b:c_d"));
        assert!(acceptable_request_id(&[b'a'; MAX_REQUEST_ID_LEN]));
        assert!(!acceptable_request_id(&[b'a'; MAX_REQUEST_ID_LEN + 1]));
        assert!(!acceptable_request_id(b""));
        assert!(!acceptable_request_id(b"a b"));
        assert!(!acceptable_request_id("é".as_bytes()));
    }
}
