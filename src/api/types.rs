//! Request and response bodies of the REST API, with their OpenAPI schemas.

use std::collections::BTreeMap;

use crate::inference::Instance;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use validator::{Validate, ValidationError};

use crate::engine::{TensorData, TensorSpec};
use crate::inference::Prediction;
use crate::repository::{valid_model_name, Manifest, Task, TrafficPlan};

fn model_name(name: &str) -> Result<(), ValidationError> {
    if valid_model_name(name) {
        Ok(())
    } else {
        Err(ValidationError::new("model_name")
            .with_message("must be 1-64 characters of letters, digits, '_', '-', '.'".into()))
    }
}

/// A prediction request.
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"instances": [[5.1, 3.5, 1.4, 0.2], {"sepal_length_cm": 6.7, "sepal_width_cm": 3.0, "petal_length_cm": 5.2, "petal_width_cm": 2.3}], "id": "req-42"}))]
pub struct PredictRequest {
    /// Model to use (POST /predict only). Absent: the default model.
    #[validate(custom(function = "model_name"))]
    pub model: Option<String>,
    /// Caller's request id, echoed in the response. Absent: the `x-request-id`.
    #[validate(length(min = 1, max = 128, message = "must be 1-128 characters"))]
    pub id: Option<String>,
    /// Instances to predict. Tabular models take an array of numbers (features in order) or an
    /// object of named features (strings for string columns); tensor models take a nested array
    /// per instance (or an object keyed by input name for several inputs); a model with one
    /// column takes a bare value (a text classifier: the document as a string). The model's
    /// contract decides, and refuses the rest with 422.
    #[validate(length(min = 1, message = "must hold at least one instance"))]
    #[schema(value_type = Vec<serde_json::Value>)]
    #[serde(deserialize_with = "crate::inference::bounded_instances")]
    pub instances: Vec<Instance>,
}

/// Predictions, one per instance, in request order.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"model": "iris", "version": 1, "id": "req-42", "predictions": [{"label": "setosa", "class_index": 0, "confidence": 0.98, "probabilities": [0.98, 0.02, 0.0]}]}))]
pub struct PredictResponse {
    pub model: String,
    pub version: u64,
    pub id: String,
    pub predictions: Vec<IdentifiedPrediction>,
}

/// One instance's answer with its prediction id (`"<request id>/<instance index>"`), under which
/// ground truth can be sent to `POST /models/{name}/feedback`.
#[derive(Debug, Serialize, ToSchema)]
pub struct IdentifiedPrediction {
    pub id: String,
    #[serde(flatten)]
    pub body: PredictionBody,
}

/// One instance's answer; its form depends on the model's task.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum PredictionBody {
    Classification(ClassificationBody),
    Regression(RegressionBody),
    Raw(RawBody),
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ClassificationBody {
    /// Class name from the model card.
    pub label: String,
    pub class_index: usize,
    /// Probability of the predicted class.
    pub confidence: f32,
    /// One probability per class, in class-index order (names in the model card's `labels`).
    pub probabilities: Vec<f32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RegressionBody {
    pub value: f64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RawBody {
    /// Output name -> this instance's slice of that output.
    pub outputs: BTreeMap<String, TensorBody>,
}

/// A tensor: element type, shape and flat row-major data.
#[derive(Debug, Serialize, ToSchema)]
pub struct TensorBody {
    pub datatype: String,
    pub shape: Vec<usize>,
    #[schema(value_type = Vec<f64>)]
    pub data: TensorValues,
}

/// Flat tensor values, serialised in their own type (so f32 values keep their short form).
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum TensorValues {
    Bool(Vec<bool>),
    U8(Vec<u8>),
    U16(Vec<u16>),
    U32(Vec<u32>),
    U64(Vec<u64>),
    I8(Vec<i8>),
    I16(Vec<i16>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    /// FP16 values, written as the f32 numbers they are exactly.
    F16(Vec<f32>),
    F32(Vec<f32>),
    F64(Vec<f64>),
    String(Vec<String>),
}

impl From<TensorData> for TensorValues {
    fn from(data: TensorData) -> TensorValues {
        match data {
            TensorData::Bool(v) => TensorValues::Bool(v),
            TensorData::U8(v) => TensorValues::U8(v),
            TensorData::U16(v) => TensorValues::U16(v),
            TensorData::U32(v) => TensorValues::U32(v),
            TensorData::U64(v) => TensorValues::U64(v),
            TensorData::I8(v) => TensorValues::I8(v),
            TensorData::I16(v) => TensorValues::I16(v),
            TensorData::I32(v) => TensorValues::I32(v),
            TensorData::I64(v) => TensorValues::I64(v),
            TensorData::F16(v) => TensorValues::F16(v.into_iter().map(half::f16::to_f32).collect()),
            TensorData::F32(v) => TensorValues::F32(v),
            TensorData::F64(v) => TensorValues::F64(v),
            TensorData::String(v) => TensorValues::String(v),
        }
    }
}

impl From<Prediction> for PredictionBody {
    fn from(p: Prediction) -> PredictionBody {
        match p {
            Prediction::Classification {
                class_index,
                label,
                confidence,
                probabilities,
            } => PredictionBody::Classification(ClassificationBody {
                label,
                class_index,
                confidence,
                probabilities,
            }),
            Prediction::Regression { value } => {
                PredictionBody::Regression(RegressionBody { value })
            }
            Prediction::Raw { outputs } => PredictionBody::Raw(RawBody {
                outputs: outputs
                    .into_iter()
                    .map(|o| {
                        let body = TensorBody {
                            datatype: o.dtype.name().to_string(),
                            shape: o.shape,
                            data: o.data.into(),
                        };
                        (o.name, body)
                    })
                    .collect(),
            }),
        }
    }
}

/// One entry of `GET /models`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelSummary {
    pub name: String,
    /// `ready`, `loading` or `failed` (the default version's state).
    pub state: String,
    /// Served when a request names no version (the highest).
    pub default_version: Option<u64>,
    pub versions: Vec<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task: Option<Task>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ModelList {
    /// The model `POST /predict` uses when the request names none.
    pub default_model: Option<String>,
    pub models: Vec<ModelSummary>,
}

/// `GET /models/{name}`: model card, contract and versions.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelDetail {
    pub name: String,
    pub state: String,
    pub default_version: Option<u64>,
    /// The manifest (model card) as written in `model.toml`; empty for a bare model.
    pub card: Manifest,
    /// What the default version takes and returns.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contract: Option<ContractBody>,
    pub versions: Vec<VersionBody>,
    /// The shadow and canary in force (the card's, or what the admin API set); a version they
    /// name that is not `ready` takes no traffic.
    pub traffic: TrafficPlan,
    /// A problem with the model as a whole (unreadable manifest, no versions).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// A changed `model.toml` on disk that could not be parsed: the model keeps serving with
    /// the card shown here.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub card_error: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VersionBody {
    pub version: u64,
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load_duration_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The input/output contract the server enforces.
#[derive(Debug, Serialize, ToSchema)]
pub struct ContractBody {
    pub task: Task,
    /// Named features in column order (tabular models).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub features: Vec<FeatureBody>,
    /// Class index -> name (classifiers).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    /// Whether several instances run as one batch in the graph.
    pub batched: bool,
    pub inputs: Vec<TensorSpecBody>,
    pub outputs: Vec<TensorSpecBody>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FeatureBody {
    pub name: String,
    /// `integer` or `string` (absent: a number).
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    #[schema(rename = "type")]
    pub kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
}

/// A graph input or output; -1 marks the batch (or another variable) dimension.
#[derive(Debug, Serialize, ToSchema)]
pub struct TensorSpecBody {
    pub name: String,
    pub datatype: String,
    pub shape: Vec<i64>,
}

impl From<&TensorSpec> for TensorSpecBody {
    fn from(s: &TensorSpec) -> TensorSpecBody {
        TensorSpecBody {
            name: s.name.clone(),
            datatype: s.dtype.name().to_string(),
            shape: s.shape_i64(),
        }
    }
}

/// Health probe answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthBody {
    /// `live`, `ready`, `not_ready` or `draining`.
    pub status: String,
    /// Models not ready yet, with their state (only when not ready).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub models: BTreeMap<String, String>,
}

/// `GET /admin/repository`: every model with its versions' states and reasons.
#[derive(Debug, Serialize, ToSchema)]
pub struct RepositoryIndex {
    pub models: Vec<IndexModel>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct IndexModel {
    pub name: String,
    /// `ready`, `loading`, `failed`, or `unloaded` (through the admin API).
    pub state: String,
    pub default_version: Option<u64>,
    pub versions: Vec<VersionBody>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub card_error: Option<String>,
}

/// What an admin load or unload changed.
#[derive(Debug, Serialize, ToSchema)]
pub struct AdminResult {
    pub model: String,
    pub changes: Vec<AdminChange>,
    /// The model's versions after the change (empty once unloaded).
    pub versions: Vec<VersionBody>,
    /// The shadow and canary in force after the change.
    pub traffic: TrafficPlan,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AdminChange {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// `ready`, `rejected`, `failed`, `unloaded`, `removed`, `card_rejected` or `rolled_back`.
    pub action: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}
