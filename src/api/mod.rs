//! The REST layer: routes, request/response types, errors, extractors and middleware. It sees
//! the core only through `inference`, `repository` and `monitoring`; it never names tract types.

pub mod access;
mod error;
mod extract;
pub mod grpc;
mod middleware;
mod model_limit;
mod openapi;
mod routes;
mod state;
pub mod types;
mod v1;
mod v2;

use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, StatusCode};
use axum::response::IntoResponse;
use axum::Router;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa_swagger_ui::SwaggerUi;

pub use error::{ApiError, ErrorBody};
pub use middleware::{RequestIds, UNMATCHED_ROUTE};
pub use openapi::{spec, spec_json};
pub use state::{AppState, Bulk, Shared as AppShared};

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The whole HTTP application.
pub fn router(state: AppState) -> Router {
    let routes = if state.admin.is_some() {
        openapi::routes()
    } else {
        openapi::public_routes()
    };
    let (api, spec) = routes.split_for_parts();
    let mut spec = spec;
    openapi::finish(&mut spec);
    if !state.access.enabled() {
        openapi::without_keys(&mut spec);
    }
    let per_request = ServiceBuilder::new()
        .layer(axum::middleware::from_fn(middleware::sanitize_request_id))
        .layer(SetRequestIdLayer::new(REQUEST_ID, RequestIds::default()))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<_>| {
            let id = req.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("");
            tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
        })
        // A 5xx is not necessarily a fault (503 while loading or draining, a timeout under
        // load): real faults are logged where they happen (`ApiError::internal`), so the trace
        // layer does not log failures at ERROR.
        .on_failure(()))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(axum::middleware::from_fn_with_state(state.clone(), middleware::http_metrics))
        .layer(CatchPanicLayer::custom(middleware::panic_response))
        .layer(axum::middleware::from_fn_with_state(state.clone(), access::access))
        .layer(axum::middleware::from_fn_with_state(state.clone(), middleware::body_limit))
        .layer(axum::middleware::from_fn_with_state(state.clone(), middleware::bulk_lane))
        .layer(DefaultBodyLimit::max(
            state.max_body_bytes.max(state.max_model_body_bytes),
        ));
    let outer = ServiceBuilder::new()
        .option_layer(middleware::cors(&state.cors_origins))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::response_headers,
        ));
    let v1 = Router::new().route("/v1/models/{name}", axum::routing::any(v1::dispatch));
    api.merge(v1)
        .merge(SwaggerUi::new("/docs").url("/openapi.json", spec))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(per_request)
        .layer(outer)
        .with_state(state)
}

/// `/metrics` alone, for `--metrics-port`.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route(
            "/metrics",
            axum::routing::get(
                |axum::extract::State(s): axum::extract::State<AppState>| async move {
                    routes::metrics::render(&s)
                },
            ),
        )
        .fallback(not_found)
        .with_state(state)
}

async fn not_found(uri: axum::http::Uri) -> impl IntoResponse {
    ApiError::not_found(format!("no route for {}", uri.path()))
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> impl IntoResponse {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not allowed on {}", uri.path()),
    )
}
