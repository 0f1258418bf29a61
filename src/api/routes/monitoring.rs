//! Model quality in production: `POST /models/{name}/feedback` (ground truth for earlier
//! predictions) and `GET /models/{name}/monitoring` (accuracy, drift, status).

use axum::extract::{Path, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use validator::{Validate, ValidationError};

use super::predict::parse_version;
use crate::api::error::{ApiError, ErrorBody};
use crate::api::extract::ValidJson;
use crate::api::state::AppState;
use crate::monitoring::{GroundTruth, MonitoringView, Unmatched};

/// Error messages echoed back per request.
const MAX_ERRORS: usize = 20;
/// Feedback items in one request; the list stops being parsed at the item past it.
const MAX_FEEDBACK_ITEMS: usize = 10_000;

/// Ground truth for earlier predictions.
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"feedback": [{"id": "3f2a9c1e-000000000001/0", "label": "setosa"}, {"id": "3f2a9c1e-000000000001/1", "class_index": 2}]}))]
pub struct FeedbackRequest {
    #[validate(length(min = 1, max = 10000, message = "must hold 1 to 10000 items"))]
    #[validate(nested)]
    #[serde(deserialize_with = "feedback_items")]
    pub feedback: Vec<FeedbackItem>,
}

/// The item list, refused (422) at item 10001 while it is parsed rather than after.
fn feedback_items<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<FeedbackItem>, D::Error> {
    crate::inference::at_most(d, MAX_FEEDBACK_ITEMS)
}

/// The true answer for one prediction: exactly one of `label`, `class_index` (classifiers) or
/// `value` (regressors).
#[derive(Debug, Serialize, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
#[validate(schema(function = "one_answer"))]
pub struct FeedbackItem {
    /// The prediction id from the predict response (`"<request id>/<instance index>"`).
    #[validate(length(min = 1, max = 200, message = "must be 1-200 characters"))]
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_index: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
}

fn one_answer(item: &FeedbackItem) -> Result<(), ValidationError> {
    let given = [
        item.label.is_some(),
        item.class_index.is_some(),
        item.value.is_some(),
    ]
    .iter()
    .filter(|g| **g)
    .count();
    if given != 1 {
        let mut e = ValidationError::new("one_answer");
        e.message = Some("give exactly one of label, class_index or value".into());
        return Err(e);
    }
    Ok(())
}

impl FeedbackItem {
    fn truth(&self) -> GroundTruth {
        match (&self.label, self.class_index, self.value) {
            (Some(l), _, _) => GroundTruth::Label(l.clone()),
            (None, Some(i), _) => GroundTruth::ClassIndex(i),
            (None, None, Some(v)) => GroundTruth::Value(v),
            (None, None, None) => unreachable!("validated: one answer"),
        }
    }
}

/// What became of the feedback.
#[derive(Debug, Serialize, ToSchema)]
pub struct FeedbackResponse {
    pub received: usize,
    /// Joined with a kept prediction and scored.
    pub matched: usize,
    /// No kept prediction of this model under that id: never made, already scored, evicted
    /// (capacity) or expired (TTL). Counted, not an error.
    pub unmatched: usize,
    /// Joined, but the answer does not fit the model (unknown label, class out of range, value
    /// for a classifier, ...); the prediction stays available.
    pub invalid: usize,
    /// Why items were invalid (the first few).
    pub errors: Vec<String>,
}

/// Send ground truth for earlier predictions.
#[utoipa::path(
    post,
    path = "/models/{name}/feedback",
    tag = "monitoring",
    params(("name" = String, Path, example = "iris", description = "Model name")),
    request_body = FeedbackRequest,
    responses(
        (status = 200, description = "Feedback joined with the kept predictions", body = FeedbackResponse),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 404, description = "Unknown model", body = ErrorBody),
        (status = 413, description = "Body over the size limit", body = ErrorBody),
        (status = 415, description = "Content-Type is not application/json", body = ErrorBody),
        (status = 422, description = "Well-formed JSON of the wrong shape, or an item that gives no answer or several", body = ErrorBody),
    )
)]
pub async fn feedback(
    State(state): State<AppState>,
    Path(name): Path<String>,
    ValidJson(request): ValidJson<FeedbackRequest>,
) -> Result<Json<FeedbackResponse>, ApiError> {
    let catalog = state.predictor.store().snapshot();
    if !catalog.models.contains_key(&name) {
        return Err(crate::repository::ResolveError::ModelNotFound(name).into());
    }
    capture_feedback(&state, &name, &request.feedback);
    let log = state.predictor.log();
    let families = state.metrics.quality();
    let mut out = FeedbackResponse {
        received: request.feedback.len(),
        matched: 0,
        unmatched: 0,
        invalid: 0,
        errors: Vec::new(),
    };
    for item in &request.feedback {
        match log.score(&item.id, &name, |l| {
            l.monitor.score(l.predicted, &item.truth())
        }) {
            Err(why) => {
                out.unmatched += 1;
                families.feedback(
                    &name,
                    match why {
                        Unmatched::Unknown => "unknown",
                        Unmatched::OtherModel => "other_model",
                    },
                );
            }
            Ok(Ok(())) => {
                out.matched += 1;
                families.feedback(&name, "matched");
            }
            Ok(Err(reason)) => {
                out.invalid += 1;
                families.feedback(&name, "invalid");
                if out.errors.len() < MAX_ERRORS {
                    out.errors.push(format!("{}: {reason}", item.id));
                }
            }
        }
    }
    Ok(Json(out))
}

/// Keeps the ground truth for `infera export` (all of it: the join must not depend on which
/// replica made the prediction or whether it is still in memory).
fn capture_feedback(state: &AppState, model: &str, items: &[FeedbackItem]) {
    let Some(capture) = state.predictor.capture() else {
        return;
    };
    let items = items
        .iter()
        .map(|i| crate::capture::FeedbackItem {
            id: i.id.clone(),
            label: i.label.clone(),
            class_index: i.class_index.and_then(|c| i64::try_from(c).ok()),
            value: i.value,
        })
        .collect();
    capture.push(crate::capture::Record::Feedback(
        crate::capture::FeedbackBatch {
            model: model.to_string(),
            time_ms: crate::capture::now_ms(),
            items,
        },
    ));
}

/// Live accuracy, drift per feature and status of a model's default version.
#[utoipa::path(
    get,
    path = "/models/{name}/monitoring",
    tag = "monitoring",
    params(("name" = String, Path, example = "iris", description = "Model name")),
    responses(
        (status = 200, description = "Accuracy, drift, windows, status and the reference used", body = MonitoringView),
        (status = 404, description = "Unknown model", body = ErrorBody),
        (status = 503, description = "Model not loaded", body = ErrorBody),
    )
)]
pub async fn monitoring(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<MonitoringView>, ApiError> {
    let loaded = state
        .predictor
        .store()
        .snapshot()
        .resolve(Some(&name), None)?;
    Ok(Json(loaded.monitor.view()))
}

/// Live accuracy, drift per feature and status of one model version.
#[utoipa::path(
    get,
    path = "/models/{name}/versions/{version}/monitoring",
    tag = "monitoring",
    params(
        ("name" = String, Path, example = "iris", description = "Model name"),
        ("version" = u64, Path, example = 1, description = "Model version"),
    ),
    responses(
        (status = 200, description = "Accuracy, drift, windows, status and the reference used", body = MonitoringView),
        (status = 404, description = "Unknown model or version", body = ErrorBody),
        (status = 503, description = "Version not loaded", body = ErrorBody),
    )
)]
pub async fn version_monitoring(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Json<MonitoringView>, ApiError> {
    let version = parse_version(&name, &version)?;
    let loaded = state
        .predictor
        .store()
        .snapshot()
        .resolve(Some(&name), Some(version))?;
    Ok(Json(loaded.monitor.view()))
}
