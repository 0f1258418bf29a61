//! `GET /metrics`: the Prometheus text exposition.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use crate::api::state::AppState;

/// Prometheus metrics in the text exposition format.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "monitoring",
    responses(
        (status = 200, description = "Prometheus text format 0.0.4", content_type = "text/plain", body = String),
        (status = 404, description = "Metrics are served on --metrics-port instead", body = crate::api::ErrorBody),
    )
)]
pub async fn metrics(State(state): State<AppState>) -> axum::response::Response {
    if let Some(port) = state.metrics_port {
        return crate::api::ApiError::not_found(format!(
            "metrics are served on port {port} (--metrics-port)"
        ))
        .into_response();
    }
    render(&state)
}

/// The exposition itself (also served alone on `--metrics-port`).
pub fn render(state: &AppState) -> axum::response::Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}
