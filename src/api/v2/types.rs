//! Request and response bodies of the Open Inference Protocol (KServe V2) REST API.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::api::types::TensorValues;

/// `GET /v2`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ServerMetadata {
    pub name: String,
    pub version: String,
    pub extensions: Vec<String>,
}

/// `GET /v2/health/live`.
#[derive(Debug, Serialize, ToSchema)]
pub struct LiveBody {
    pub live: bool,
}

/// `GET /v2/health/ready`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReadyBody {
    pub ready: bool,
}

/// `GET /v2/models/{name}/ready`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelReadyBody {
    pub name: String,
    pub ready: bool,
}

/// One entry of `GET /v2/models`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelIndexEntry {
    pub name: String,
    pub version: String,
    /// `READY`, `LOADING` or `UNAVAILABLE`.
    pub state: String,
}

/// Name, datatype and shape of a model input or output; -1 marks the batch dimension.
#[derive(Debug, Serialize, ToSchema)]
pub struct TensorMetadata {
    pub name: String,
    pub datatype: String,
    pub shape: Vec<i64>,
}

/// `GET /v2/models/{name}[/versions/{version}]`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelMetadata {
    pub name: String,
    pub versions: Vec<String>,
    pub platform: String,
    pub inputs: Vec<TensorMetadata>,
    pub outputs: Vec<TensorMetadata>,
}

/// One input tensor of an inference request.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RequestInput {
    pub name: String,
    /// At most `--max-rank` dimensions.
    #[serde(deserialize_with = "crate::inference::bounded_shape")]
    pub shape: Vec<i64>,
    pub datatype: String,
    #[serde(default, deserialize_with = "crate::inference::bounded_parameters")]
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<Map<String, Value>>,
    /// Row-major values, flat or nested. Absent when the tensor travels as binary data.
    #[serde(default, deserialize_with = "crate::inference::bounded_data")]
    #[schema(value_type = Option<Vec<f64>>)]
    pub data: Option<Value>,
}

/// An output the client asks for.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RequestOutput {
    pub name: String,
    #[serde(default, deserialize_with = "crate::inference::bounded_parameters")]
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<Map<String, Value>>,
}

/// `POST /v2/models/{name}[/versions/{version}]/infer`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"id": "42", "inputs": [{"name": "float_input", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]}))]
pub struct InferRequest {
    #[serde(default)]
    pub id: Option<String>,
    /// Parameters of the request and its tensors together: at most `--max-parameters`, each a
    /// boolean, a number or a string.
    #[serde(default, deserialize_with = "crate::inference::bounded_parameters")]
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<Map<String, Value>>,
    /// At most `--max-tensors`.
    #[serde(deserialize_with = "crate::inference::bounded_inputs")]
    pub inputs: Vec<RequestInput>,
    /// Outputs to return; absent means all. At most `--max-tensors`.
    #[serde(default, deserialize_with = "crate::inference::bounded_outputs")]
    pub outputs: Option<Vec<RequestOutput>>,
}

/// One output tensor of an inference response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ResponseOutput {
    pub name: String,
    pub datatype: String,
    pub shape: Vec<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<f64>>)]
    pub data: Option<TensorValues>,
}

/// The inference response.
#[derive(Debug, Serialize, ToSchema)]
pub struct InferResponse {
    pub model_name: String,
    pub model_version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub outputs: Vec<ResponseOutput>,
}

/// V2 error body: `{"error": "..."}` (infera adds `error_type`).
#[derive(Debug, Serialize, ToSchema)]
pub struct V2Error {
    pub error: String,
}
