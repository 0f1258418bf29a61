//! Liveness and readiness probes.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;

use crate::api::state::AppState;
use crate::api::types::HealthBody;

/// The process is up and serving HTTP.
#[utoipa::path(
    get,
    path = "/health/live",
    tag = "health",
    responses((status = 200, description = "Alive", body = HealthBody))
)]
pub async fn live() -> Json<HealthBody> {
    Json(HealthBody {
        status: "live".into(),
        models: BTreeMap::new(),
    })
}

/// Every model is loaded and warmed up.
#[utoipa::path(
    get,
    path = "/health/ready",
    tag = "health",
    responses(
        (status = 200, description = "Ready to serve every model", body = HealthBody),
        (status = 503, description = "Some model is loading or failed to load, or the server is shutting down", body = HealthBody),
    )
)]
pub async fn ready(State(state): State<AppState>) -> (StatusCode, Json<HealthBody>) {
    if state.draining.load(std::sync::atomic::Ordering::Relaxed) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(HealthBody {
                status: "draining".into(),
                models: BTreeMap::new(),
            }),
        );
    }
    let catalog = state.predictor.store().snapshot();
    if catalog.is_ready() {
        return (
            StatusCode::OK,
            Json(HealthBody {
                status: "ready".into(),
                models: BTreeMap::new(),
            }),
        );
    }
    let models = catalog
        .models
        .values()
        .filter(|m| !m.is_ready())
        .map(|m| {
            let state = if m.error.is_some() {
                "failed"
            } else {
                m.versions
                    .values()
                    .map(|v| v.name())
                    .find(|s| *s != "ready")
                    .unwrap_or("loading")
            };
            (m.name.clone(), state.to_string())
        })
        .collect();
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(HealthBody {
            status: "not_ready".into(),
            models,
        }),
    )
}
