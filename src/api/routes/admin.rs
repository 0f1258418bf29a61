//! The admin API (docs/model-updates.md): the repository index, and loading or unloading a
//! model from the repository. Mounted only when some API key carries the `admin` scope; a model
//! is only ever taken from the repository directory, never from a URL.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::Json;

use super::models::{state_of, version_bodies};
use crate::api::error::{ApiError, ErrorBody};
use crate::api::state::AppState;
use crate::api::types::{AdminChange, AdminResult, IndexModel, RepositoryIndex};
use crate::repository::{AdminError, ReloadReport, Reloader};

/// Every model in the catalog and every version with its state and reason, plus the models
/// unloaded through this API (Triton's repository index).
#[utoipa::path(
    get,
    path = "/admin/repository",
    tag = "admin",
    responses((status = 200, description = "The repository index", body = RepositoryIndex))
)]
pub async fn repository_index(State(state): State<AppState>) -> Json<RepositoryIndex> {
    let catalog = state.predictor.store().snapshot();
    let mut models: Vec<IndexModel> = catalog
        .models
        .values()
        .map(|entry| IndexModel {
            name: entry.name.clone(),
            state: state_of(entry),
            default_version: entry.default_version(),
            versions: version_bodies(entry),
            error: entry.error.clone(),
            card_error: entry.card_error.clone(),
        })
        .collect();
    if let Some(reloader) = &state.admin {
        for name in reloader.held() {
            models.push(IndexModel {
                name,
                state: "unloaded".into(),
                default_version: None,
                versions: Vec::new(),
                error: None,
                card_error: None,
            });
        }
    }
    models.sort_by(|a, b| a.name.cmp(&b.name));
    Json(RepositoryIndex { models })
}

/// Loads a model from the repository (again, after an unload) and applies its current files
/// now, every new version through the validation gate.
#[utoipa::path(
    post,
    path = "/admin/models/{name}/load",
    tag = "admin",
    params(("name" = String, Path, example = "diabetes", description = "A model directory of the repository")),
    responses(
        (status = 200, description = "What changed, and the model's versions now", body = AdminResult),
        (status = 404, description = "No such model directory in the repository", body = ErrorBody),
    )
)]
pub async fn load_model(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<AdminResult>, ApiError> {
    let outcome = run(&state, name.clone(), |r, n| r.load(n)).await?;
    Ok(Json(result(&state, &name, outcome)))
}

/// Stops serving a model (every version) until it is loaded again; requests already running on
/// it finish, and its files stay in the repository.
#[utoipa::path(
    post,
    path = "/admin/models/{name}/unload",
    tag = "admin",
    params(("name" = String, Path, example = "diabetes", description = "Model name")),
    responses(
        (status = 200, description = "What changed", body = AdminResult),
        (status = 404, description = "Unknown model", body = ErrorBody),
    )
)]
pub async fn unload_model(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<AdminResult>, ApiError> {
    let outcome = run(&state, name.clone(), |r, n| r.unload(n)).await?;
    Ok(Json(result(&state, &name, outcome)))
}

/// Runs a reload off the async runtime (it loads models and waits for any reload in progress).
pub(super) async fn run(
    state: &AppState,
    name: String,
    op: impl FnOnce(&Reloader, &str) -> Result<ReloadReport, AdminError> + Send + 'static,
) -> Result<ReloadReport, ApiError> {
    let reloader: Arc<Reloader> = state
        .admin
        .clone()
        .ok_or_else(|| ApiError::not_found("the admin API is not enabled"))?;
    let outcome = tokio::task::spawn_blocking(move || op(&reloader, &name))
        .await
        .map_err(ApiError::internal)?;
    Ok(outcome?)
}

pub(super) fn result(state: &AppState, name: &str, report: ReloadReport) -> AdminResult {
    let catalog = state.predictor.store().snapshot();
    AdminResult {
        model: name.to_string(),
        changes: report
            .changes
            .into_iter()
            .map(|c| AdminChange {
                version: c.version,
                action: c.action.to_string(),
                reason: c.reason,
            })
            .collect(),
        versions: catalog
            .models
            .get(name)
            .map(|e| version_bodies(e))
            .unwrap_or_default(),
        traffic: catalog
            .models
            .get(name)
            .map(|e| e.traffic.clone())
            .unwrap_or_default(),
    }
}
