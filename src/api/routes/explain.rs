//! `POST /models/{name}/explain` and the versioned route: feature attributions for instances,
//! through the same `Explainer` as KServe V1's `:explain` verb.

use axum::extract::{Path, Request, State};
use axum::Json;
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use utoipa::ToSchema;
use validator::Validate;

use crate::api::error::{ApiError, ErrorBody};
use crate::api::extract::ValidJson;
use crate::api::routes::predict::parse_version;
use crate::api::state::AppState;
use crate::inference::{
    DecodeBudget, ExplainOptions, ExplainOutcome, Instance, InstanceExplanation, MethodChoice,
    Protocol, Target,
};

/// How to compute attributions.
#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExplainMethod {
    /// Exact Shapley values when every coalition fits the budget (and the feature limit),
    /// KernelSHAP otherwise.
    #[default]
    Auto,
    ExactShapley,
    KernelShap,
    /// Tensor inputs (images): patches set to `baseline` one at a time.
    Occlusion,
}

/// An explain request.
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"instances": [[6.7, 3.0, 5.2, 2.3]], "target": "virginica"}))]
pub struct ExplainRequest {
    /// Instances to explain, in the forms `/predict` takes (tabular models only). Held to
    /// `--explain-max-instances` while the body is parsed.
    #[validate(length(min = 1, message = "must hold at least one instance"))]
    #[schema(value_type = Vec<serde_json::Value>)]
    #[serde(deserialize_with = "crate::inference::bounded_instances")]
    pub instances: Vec<Instance>,
    /// Class label to explain (classifiers; default: the predicted class), or `"value"`
    /// (regressors, the default).
    #[validate(length(min = 1, max = 128, message = "must be 1-128 characters"))]
    pub target: Option<String>,
    #[serde(default)]
    pub method: ExplainMethod,
    /// Coalitions evaluated per instance (default `--explain-budget`, at most
    /// `--explain-max-budget`). KernelSHAP needs at least 2F + 2 (or all 2^F when fewer).
    pub budget: Option<usize>,
    /// Seed of KernelSHAP's sampling: the same seed gives the same attributions (default 0).
    #[serde(default)]
    pub seed: u64,
    /// Occlusion (tensor inputs): side of the square patches over the last two axes (default 8).
    #[validate(range(min = 1, message = "must be at least 1"))]
    pub patch: Option<usize>,
    /// Occlusion (tensor inputs): the value an occluded patch is set to (default 0).
    #[serde(default)]
    pub baseline: f64,
}

impl ExplainRequest {
    pub fn options(&self) -> ExplainOptions {
        ExplainOptions {
            target: self.target.clone(),
            method: match self.method {
                ExplainMethod::Auto => MethodChoice::Auto,
                ExplainMethod::ExactShapley => MethodChoice::Exact,
                ExplainMethod::KernelShap => MethodChoice::Kernel,
                ExplainMethod::Occlusion => MethodChoice::Occlusion,
            },
            budget: self.budget,
            seed: self.seed,
            patch: self.patch,
            baseline: self.baseline,
        }
    }
}

/// The background the base value is the mean output over.
#[derive(Debug, Serialize, ToSchema)]
pub struct BackgroundBody {
    /// Where the rows come from: `background.json` (training rows) or the reference profile's
    /// quantiles (an approximation).
    pub source: String,
    pub rows: usize,
}

/// One explanation per instance, in request order.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"model": "iris", "version": 1,
    "background": {"source": "background.json: 32 rows of the training split", "rows": 32},
    "explanations": [{"target": "virginica", "output": 0.93, "base_value": 0.33,
        "attributions": {"sepal_length_cm": 0.02, "sepal_width_cm": 0.01, "petal_length_cm": 0.31, "petal_width_cm": 0.26},
        "method": "exact_shapley", "samples": 16}]}))]
pub struct ExplainResponse {
    pub model: String,
    pub version: u64,
    pub background: BackgroundBody,
    pub explanations: Vec<ExplanationBody>,
}

/// Attributions of one instance: they sum to `output - base_value`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExplanationBody {
    /// The class label explained, or `"value"` for a regressor.
    pub target: String,
    /// The model's output for the target: the class probability or the value.
    pub output: f64,
    /// The mean output over the background: what the attributions are measured from.
    pub base_value: f64,
    /// Feature name -> contribution to `output - base_value`, in the model card's feature order
    /// (occlusion: `patch_<row>_<column>` -> output drop when that patch is occluded).
    #[schema(value_type = std::collections::BTreeMap<String, f64>)]
    pub attributions: Attributions,
    /// `exact_shapley`, `kernel_shap` or `occlusion`.
    pub method: String,
    /// Feature coalitions evaluated (each averaged over the background rows); occlusion: rows
    /// evaluated (the input, one per patch, the all-baseline input).
    pub samples: usize,
}

/// Named attributions, serialised as a JSON object in feature order.
#[derive(Debug)]
pub struct Attributions(pub Vec<(String, f64)>);

impl Serialize for Attributions {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, value) in &self.0 {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

impl From<InstanceExplanation> for ExplanationBody {
    fn from(e: InstanceExplanation) -> Self {
        ExplanationBody {
            target: e.target,
            output: e.output,
            base_value: e.base_value,
            attributions: Attributions(e.attributions),
            method: e.method.as_str().to_string(),
            samples: e.samples,
        }
    }
}

impl From<ExplainOutcome> for ExplainResponse {
    fn from(o: ExplainOutcome) -> Self {
        ExplainResponse {
            model: o.model,
            version: o.version,
            background: BackgroundBody {
                source: o.background,
                rows: o.background_rows,
            },
            explanations: o.explanations.into_iter().map(Into::into).collect(),
        }
    }
}

/// Explain with the highest version of a model.
#[utoipa::path(
    post,
    path = "/models/{name}/explain",
    tag = "explain",
    params(("name" = String, Path, example = "iris", description = "Model name")),
    request_body = ExplainRequest,
    responses(
        (status = 200, description = "One explanation per instance", body = ExplainResponse),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 404, description = "Unknown model", body = ErrorBody),
        (status = 413, description = "Body or instance count over the limit", body = ErrorBody),
        (status = 415, description = "Content-Type is not application/json", body = ErrorBody),
        (status = 422, description = "An instance breaks the contract, an option contradicts the model or the limits, or the model cannot be explained", body = ErrorBody),
        (status = 429, description = "Every explanation slot is taken, or the model's queue is full; retry after Retry-After seconds", body = ErrorBody),
        (status = 503, description = "Model not ready, timed out, or shutting down", body = ErrorBody),
    )
)]
pub async fn explain_model(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Request,
) -> Result<Json<ExplainResponse>, ApiError> {
    let request = read_request(&state, body).await?;
    let target = Target {
        model: Some(&name),
        version: None,
        protocol: Protocol::Http,
        route_key: None,
    };
    explain(&state, target, &request.instances, &request.options()).await
}

/// Explain with one specific version of a model.
#[utoipa::path(
    post,
    path = "/models/{name}/versions/{version}/explain",
    tag = "explain",
    params(
        ("name" = String, Path, example = "iris", description = "Model name"),
        ("version" = u64, Path, example = 1, description = "Model version (positive integer)"),
    ),
    request_body = ExplainRequest,
    responses(
        (status = 200, description = "One explanation per instance", body = ExplainResponse),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 404, description = "Unknown model or version", body = ErrorBody),
        (status = 413, description = "Body or instance count over the limit", body = ErrorBody),
        (status = 415, description = "Content-Type is not application/json", body = ErrorBody),
        (status = 422, description = "An instance breaks the contract, an option contradicts the model or the limits, or the model cannot be explained", body = ErrorBody),
        (status = 429, description = "Every explanation slot is taken, or the model's queue is full; retry after Retry-After seconds", body = ErrorBody),
        (status = 503, description = "Model not ready, timed out, or shutting down", body = ErrorBody),
    )
)]
pub async fn explain_version(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
    body: Request,
) -> Result<Json<ExplainResponse>, ApiError> {
    let request = read_request(&state, body).await?;
    let version = parse_version(&name, &version)?;
    let target = Target {
        model: Some(&name),
        version: Some(version),
        protocol: Protocol::Http,
        route_key: None,
    };
    explain(&state, target, &request.instances, &request.options()).await
}

/// An explain body, held while it is parsed to `--explain-max-instances` (the list stops at the
/// instance past it: 413 `too_many_instances`) and `--max-elements`, as `/predict` is held to
/// its own limits.
pub async fn read_request(state: &AppState, body: Request) -> Result<ExplainRequest, ApiError> {
    let budget = DecodeBudget {
        max_instances: state.explainer.limits().max_instances,
        ..state.predictor.decode_budget()
    };
    let ValidJson(request) = ValidJson::bounded(body, state, budget).await?;
    Ok(request)
}

/// The one explain call behind every protocol.
pub async fn explain(
    state: &AppState,
    target: Target<'_>,
    instances: &[Instance],
    options: &ExplainOptions,
) -> Result<Json<ExplainResponse>, ApiError> {
    let outcome = state.explainer.explain(target, instances, options).await?;
    Ok(Json(outcome.into()))
}
