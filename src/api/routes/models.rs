//! `GET /models` and `GET /models/{name}`: what is served, with model cards and contracts.

use axum::extract::{Path, State};
use axum::Json;

use crate::api::error::{ApiError, ErrorBody};
use crate::api::state::AppState;
use crate::api::types::{
    ContractBody, FeatureBody, ModelDetail, ModelList, ModelSummary, VersionBody,
};
use crate::inference::{FeatureSpec, InputContract, ModelContract};
use crate::repository::{FeatureType, ModelEntry, ResolveError, VersionState};

pub(crate) fn state_of(entry: &ModelEntry) -> String {
    if entry.error.is_some() {
        return "failed".into();
    }
    entry
        .default_version()
        .and_then(|v| entry.versions.get(&v))
        .map(|s| s.name().to_string())
        .unwrap_or_else(|| "failed".into())
}

fn default_contract(entry: &ModelEntry) -> Option<&ModelContract> {
    match entry.versions.get(&entry.default_version()?)? {
        VersionState::Ready(loaded) => Some(&loaded.contract),
        VersionState::Loading
        | VersionState::Failed(_)
        | VersionState::Rejected { .. }
        | VersionState::Unloaded => None,
    }
}

/// List the models in the repository.
#[utoipa::path(
    get,
    path = "/models",
    tag = "models",
    responses((status = 200, description = "Every model with its versions and state", body = ModelList))
)]
pub async fn list_models(State(state): State<AppState>) -> Json<ModelList> {
    let catalog = state.predictor.store().snapshot();
    let models = catalog
        .models
        .values()
        .map(|entry| ModelSummary {
            name: entry.name.clone(),
            state: state_of(entry),
            default_version: entry.default_version(),
            versions: entry.versions.keys().copied().collect(),
            task: default_contract(entry)
                .map(|c| c.task)
                .or(entry.manifest.as_ref().and_then(|m| m.task)),
            description: entry.manifest.as_ref().and_then(|m| m.description.clone()),
        })
        .collect();
    Json(ModelList {
        default_model: catalog.default_model.clone(),
        models,
    })
}

/// A model's card, input/output contract, versions and state.
#[utoipa::path(
    get,
    path = "/models/{name}",
    tag = "models",
    params(("name" = String, Path, example = "iris", description = "Model name")),
    responses(
        (status = 200, description = "Model card, contract and versions", body = ModelDetail),
        (status = 404, description = "Unknown model", body = ErrorBody),
    )
)]
pub async fn get_model(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<ModelDetail>, ApiError> {
    let catalog = state.predictor.store().snapshot();
    let entry = catalog
        .models
        .get(&name)
        .ok_or(ResolveError::ModelNotFound(name))?;
    let versions = version_bodies(entry);
    Ok(Json(ModelDetail {
        name: entry.name.clone(),
        state: state_of(entry),
        default_version: entry.default_version(),
        card: entry.manifest.as_deref().cloned().unwrap_or_default(),
        contract: default_contract(entry).map(contract_body),
        versions,
        traffic: entry.traffic.clone(),
        error: entry.error.clone(),
        card_error: entry.card_error.clone(),
    }))
}

/// Every version of a model with its state and, for failed and refused ones, the reason.
pub(crate) fn version_bodies(entry: &ModelEntry) -> Vec<VersionBody> {
    entry
        .versions
        .iter()
        .map(|(version, s)| VersionBody {
            version: *version,
            state: s.name().to_string(),
            load_duration_ms: match s {
                VersionState::Ready(l) => Some(l.load_duration.as_secs_f64() * 1e3),
                VersionState::Loading
                | VersionState::Failed(_)
                | VersionState::Rejected { .. }
                | VersionState::Unloaded => None,
            },
            // The reason names file paths and graph details: useful to the operator reading the
            // card, and the repository layout is not a secret of this API.
            error: s.reason(),
        })
        .collect()
}

fn contract_body(c: &ModelContract) -> ContractBody {
    let body = |f: &FeatureSpec| FeatureBody {
        name: f.name.clone(),
        kind: (f.kind != FeatureType::Number).then(|| f.kind.as_str().to_string()),
        min: f.min,
        max: f.max,
    };
    let features = match &c.input {
        InputContract::Tabular { features, .. } => features.iter().map(body).collect(),
        // One input per card feature: the card's columns.
        InputContract::Tensors { .. } => c.columns.iter().map(|col| body(&col.spec)).collect(),
    };
    ContractBody {
        task: c.task,
        features,
        labels: c.labels().to_vec(),
        batched: c.signature.batched,
        inputs: c.signature.inputs.iter().map(Into::into).collect(),
        outputs: c.signature.outputs.iter().map(Into::into).collect(),
    }
}
