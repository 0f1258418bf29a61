//! The admin API's traffic routes (docs/model-updates.md): set or clear a model's shadow and
//! canary over its card, promote the canary, roll it back. Mounted with the rest of the admin
//! API; each answers after the change applied (the versions it names loaded and gated).

use axum::extract::{Path, State};
use axum::Json;

use super::admin::{result, run};
use crate::api::error::{ApiError, ErrorBody};
use crate::api::extract::ValidJson;
use crate::api::state::AppState;
use crate::api::types::AdminResult;
use crate::repository::{Canary, RollbackTrigger, Shadow};

/// Mirrors a share of the model's requests to a shadow version (over the card's `[shadow]`).
#[utoipa::path(
    put,
    path = "/admin/models/{name}/shadow",
    tag = "admin",
    params(("name" = String, Path, description = "Model name")),
    request_body = Shadow,
    responses(
        (status = 200, description = "The shadow applies; the model's versions now", body = AdminResult),
        (status = 400, description = "The body is not valid JSON", body = ErrorBody),
        (status = 404, description = "Unknown model", body = ErrorBody),
        (status = 415, description = "The body is not declared as application/json", body = ErrorBody),
        (status = 422, description = "A fraction out of range, or a version not in the repository", body = ErrorBody),
    )
)]
pub async fn set_shadow(
    State(state): State<AppState>,
    Path(name): Path<String>,
    ValidJson(shadow): ValidJson<Shadow>,
) -> Result<Json<AdminResult>, ApiError> {
    let report = run(&state, name.clone(), move |r, n| {
        r.set_shadow(n, Some(shadow))
    })
    .await?;
    Ok(Json(result(&state, &name, report)))
}

/// Stops mirroring the model's requests (also over a card's `[shadow]`).
#[utoipa::path(
    delete,
    path = "/admin/models/{name}/shadow",
    tag = "admin",
    params(("name" = String, Path, description = "Model name")),
    responses(
        (status = 200, description = "No shadow; the model's versions now", body = AdminResult),
        (status = 404, description = "Unknown model", body = ErrorBody),
    )
)]
pub async fn clear_shadow(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<AdminResult>, ApiError> {
    let report = run(&state, name.clone(), |r, n| r.set_shadow(n, None)).await?;
    Ok(Json(result(&state, &name, report)))
}

/// Sends a share of the model's requests to a canary version (over the card's `[canary]`).
#[utoipa::path(
    put,
    path = "/admin/models/{name}/canary",
    tag = "admin",
    params(("name" = String, Path, description = "Model name")),
    request_body = Canary,
    responses(
        (status = 200, description = "The canary applies; the model's versions now", body = AdminResult),
        (status = 400, description = "The body is not valid JSON", body = ErrorBody),
        (status = 404, description = "Unknown model", body = ErrorBody),
        (status = 415, description = "The body is not declared as application/json", body = ErrorBody),
        (status = 422, description = "A setting out of range, or a version not in the repository", body = ErrorBody),
    )
)]
pub async fn set_canary(
    State(state): State<AppState>,
    Path(name): Path<String>,
    ValidJson(canary): ValidJson<Canary>,
) -> Result<Json<AdminResult>, ApiError> {
    let report = run(&state, name.clone(), move |r, n| {
        r.set_canary(n, Some(canary))
    })
    .await?;
    Ok(Json(result(&state, &name, report)))
}

/// Ends the canary without a verdict: all traffic to the stable version, the canary version
/// stays loaded only if the version policy selects it.
#[utoipa::path(
    delete,
    path = "/admin/models/{name}/canary",
    tag = "admin",
    params(("name" = String, Path, description = "Model name")),
    responses(
        (status = 200, description = "No canary; the model's versions now", body = AdminResult),
        (status = 404, description = "Unknown model", body = ErrorBody),
    )
)]
pub async fn clear_canary(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<AdminResult>, ApiError> {
    let report = run(&state, name.clone(), |r, n| r.set_canary(n, None)).await?;
    Ok(Json(result(&state, &name, report)))
}

/// Makes the canary the serving version (it must be ready and the highest ready version).
#[utoipa::path(
    post,
    path = "/admin/models/{name}/canary/promote",
    tag = "admin",
    params(("name" = String, Path, description = "Model name")),
    responses(
        (status = 200, description = "Promoted; the model's versions now", body = AdminResult),
        (status = 404, description = "Unknown model", body = ErrorBody),
        (status = 409, description = "No canary, or it is not ready or not the highest ready version", body = ErrorBody),
    )
)]
pub async fn promote_canary(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<AdminResult>, ApiError> {
    let report = run(&state, name.clone(), |r, n| r.promote(n)).await?;
    Ok(Json(result(&state, &name, report)))
}

/// Rolls the canary back: its version becomes `rejected` (stage `canary`) until its files
/// change, and all traffic returns to the stable version.
#[utoipa::path(
    post,
    path = "/admin/models/{name}/canary/rollback",
    tag = "admin",
    params(("name" = String, Path, description = "Model name")),
    responses(
        (status = 200, description = "Rolled back; the model's versions now", body = AdminResult),
        (status = 404, description = "Unknown model", body = ErrorBody),
        (status = 409, description = "The model has no canary", body = ErrorBody),
    )
)]
pub async fn roll_back_canary(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<AdminResult>, ApiError> {
    let report = run(&state, name.clone(), |r, n| {
        r.roll_back_canary(n, RollbackTrigger::Manual, "by the admin API")
    })
    .await?;
    Ok(Json(result(&state, &name, report)))
}
