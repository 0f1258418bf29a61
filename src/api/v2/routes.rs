//! Open Inference Protocol (KServe V2) REST endpoints, including the binary tensor data
//! extension. Inference goes through the same predictor as `/predict`.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::{Map, Value};

use super::datatype;
use super::types::{
    InferRequest, InferResponse, LiveBody, ModelIndexEntry, ModelMetadata, ModelReadyBody,
    ReadyBody, ResponseOutput, ServerMetadata, TensorMetadata, V2Error,
};
use crate::api::access::Usage;
use crate::api::error::ApiError;
use crate::api::extract::RawBody;
use crate::api::routes::predict::parse_version;
use crate::api::state::AppState;
use crate::engine::{ModelSignature, Tensor};
use crate::inference::{within, InputTensor, PredictError, Protocol, Target};
use crate::repository::{ResolveError, VersionState};

/// Header giving the length of the JSON part of a binary-extension body.
pub const HEADER_LENGTH: &str = "inference-header-content-length";

/// Protocol errors are 400 where infera's own API says 422 or 415.
fn v2(e: impl Into<ApiError>) -> ApiError {
    let mut e = e.into();
    if matches!(
        e.status,
        StatusCode::UNPROCESSABLE_ENTITY | StatusCode::UNSUPPORTED_MEDIA_TYPE
    ) {
        e.status = StatusCode::BAD_REQUEST;
    }
    e
}

fn bad(error_type: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, error_type, message)
}

/// Server name, version and protocol extensions.
#[utoipa::path(get, path = "/v2", tag = "v2", responses((status = 200, body = ServerMetadata)))]
pub async fn server_metadata() -> Json<ServerMetadata> {
    Json(ServerMetadata {
        name: "infera".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        extensions: vec!["binary_tensor_data".into(), "model_repository".into()],
    })
}

/// The server is up.
#[utoipa::path(get, path = "/v2/health/live", tag = "v2", responses((status = 200, body = LiveBody)))]
pub async fn live() -> Json<LiveBody> {
    Json(LiveBody { live: true })
}

/// Every model is loaded (503 while any is loading or failed, or while draining).
#[utoipa::path(
    get,
    path = "/v2/health/ready",
    tag = "v2",
    responses((status = 200, body = ReadyBody), (status = 503, body = ReadyBody))
)]
pub async fn ready(State(state): State<AppState>) -> (StatusCode, Json<ReadyBody>) {
    let draining = state.draining.load(std::sync::atomic::Ordering::Relaxed);
    let ready = !draining && state.predictor.store().snapshot().is_ready();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(ReadyBody { ready }))
}

/// Every model version and its state.
#[utoipa::path(get, path = "/v2/models", tag = "v2", responses((status = 200, body = Vec<ModelIndexEntry>)))]
pub async fn index(State(state): State<AppState>) -> Json<Vec<ModelIndexEntry>> {
    let catalog = state.predictor.store().snapshot();
    let entries = catalog
        .models
        .values()
        .flat_map(|m| {
            m.versions.iter().map(|(v, s)| ModelIndexEntry {
                name: m.name.clone(),
                version: v.to_string(),
                state: match s {
                    VersionState::Ready(_) => "READY",
                    VersionState::Loading => "LOADING",
                    VersionState::Failed(_)
                    | VersionState::Rejected { .. }
                    | VersionState::Unloaded => "UNAVAILABLE",
                }
                .into(),
            })
        })
        .collect();
    Json(entries)
}

/// Inputs (`output` false) or outputs as the protocol shows them: -1 for the batch axis and
/// variable dimensions; a model without a batch axis shows the graph's exact shapes.
fn tensor_metadata(signature: &ModelSignature, output: bool) -> Vec<TensorMetadata> {
    let specs = if output {
        &signature.outputs
    } else {
        &signature.inputs
    };
    specs
        .iter()
        .enumerate()
        .map(|(ix, s)| TensorMetadata {
            name: s.name.clone(),
            datatype: datatype::name(s.dtype).into(),
            shape: signature.protocol_shape(output, ix),
        })
        .collect()
}

/// A model version's metadata (the REST and gRPC answers).
pub(in crate::api) fn metadata(
    state: &AppState,
    name: &str,
    version: Option<u64>,
) -> Result<ModelMetadata, ApiError> {
    let catalog = state.predictor.store().snapshot();
    let loaded = catalog.resolve(Some(name), version).map_err(v2)?;
    let versions = catalog.models[name]
        .versions
        .keys()
        .map(u64::to_string)
        .collect();
    let signature = &loaded.contract.signature;
    Ok(ModelMetadata {
        name: name.to_string(),
        versions,
        platform: "onnx_onnxv1".into(),
        inputs: tensor_metadata(signature, false),
        outputs: tensor_metadata(signature, true),
    })
}

/// Model metadata: versions, platform, inputs and outputs.
#[utoipa::path(
    get,
    path = "/v2/models/{name}",
    tag = "v2",
    params(("name" = String, Path, example = "iris")),
    responses((status = 200, body = ModelMetadata), (status = 404, body = V2Error), (status = 503, body = V2Error))
)]
pub async fn model_metadata(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<ModelMetadata>, ApiError> {
    metadata(&state, &name, None).map(Json)
}

/// Metadata of one model version.
#[utoipa::path(
    get,
    path = "/v2/models/{name}/versions/{version}",
    tag = "v2",
    params(("name" = String, Path, example = "iris"), ("version" = String, Path, example = "1")),
    responses((status = 200, body = ModelMetadata), (status = 404, body = V2Error), (status = 503, body = V2Error))
)]
pub async fn version_metadata(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Json<ModelMetadata>, ApiError> {
    let version = parse_version(&name, &version)?;
    metadata(&state, &name, Some(version)).map(Json)
}

/// Whether a model version is ready; unknown models and versions are errors.
pub(in crate::api) fn model_is_ready(
    state: &AppState,
    name: &str,
    version: Option<u64>,
) -> Result<bool, ApiError> {
    match state
        .predictor
        .store()
        .snapshot()
        .resolve(Some(name), version)
    {
        Ok(_) => Ok(true),
        Err(ResolveError::Loading { .. } | ResolveError::Failed { .. }) => Ok(false),
        Err(e) => Err(v2(e)),
    }
}

fn model_ready_answer(
    state: &AppState,
    name: &str,
    version: Option<u64>,
) -> Result<Response, ApiError> {
    let ready = model_is_ready(state, name, version)?;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Ok((
        status,
        Json(ModelReadyBody {
            name: name.to_string(),
            ready,
        }),
    )
        .into_response())
}

/// Whether a model (its default version) is ready.
#[utoipa::path(
    get,
    path = "/v2/models/{name}/ready",
    tag = "v2",
    params(("name" = String, Path, example = "iris")),
    responses((status = 200, body = ModelReadyBody), (status = 503, body = ModelReadyBody), (status = 404, body = V2Error))
)]
pub async fn model_ready(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    model_ready_answer(&state, &name, None)
}

/// Whether one model version is ready.
#[utoipa::path(
    get,
    path = "/v2/models/{name}/versions/{version}/ready",
    tag = "v2",
    params(("name" = String, Path, example = "iris"), ("version" = String, Path, example = "1")),
    responses((status = 200, body = ModelReadyBody), (status = 503, body = ModelReadyBody), (status = 404, body = V2Error))
)]
pub async fn version_ready(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let version = parse_version(&name, &version)?;
    model_ready_answer(&state, &name, Some(version))
}

/// Run inference (JSON, or JSON header plus binary tensor data).
#[utoipa::path(
    post,
    path = "/v2/models/{name}/infer",
    tag = "v2",
    params(("name" = String, Path, example = "iris")),
    request_body = InferRequest,
    responses(
        (status = 200, body = InferResponse),
        (status = 400, body = V2Error),
        (status = 404, body = V2Error),
        (status = 413, body = V2Error),
        (status = 429, body = V2Error),
        (status = 503, body = V2Error),
    )
)]
pub async fn infer(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    run_infer(&state, &name, None, &headers, &body).await
}

/// Run inference on one model version.
#[utoipa::path(
    post,
    path = "/v2/models/{name}/versions/{version}/infer",
    tag = "v2",
    params(("name" = String, Path, example = "iris"), ("version" = String, Path, example = "1")),
    request_body = InferRequest,
    responses(
        (status = 200, body = InferResponse),
        (status = 400, body = V2Error),
        (status = 404, body = V2Error),
        (status = 413, body = V2Error),
        (status = 429, body = V2Error),
        (status = 503, body = V2Error),
    )
)]
pub async fn infer_version(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let version = parse_version(&name, &version)?;
    run_infer(&state, &name, Some(version), &headers, &body).await
}

fn flag(parameters: &Option<Map<String, Value>>, key: &str) -> bool {
    parameters
        .as_ref()
        .and_then(|p| p.get(key))
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

async fn run_infer(
    state: &AppState,
    name: &str,
    version: Option<u64>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    let json_len = match headers.get(HEADER_LENGTH) {
        Some(v) => {
            let n = v.to_str().ok().and_then(|s| s.parse::<usize>().ok());
            n.filter(|n| *n <= body.len()).ok_or_else(|| {
                bad(
                    "bad_request",
                    format!(
                        "{HEADER_LENGTH} must be a length within the body ({} bytes)",
                        body.len()
                    ),
                )
            })?
        }
        None => body.len(),
    };
    let (json, mut binary) = body.split_at(json_len);
    // The data arrays are counted while they are parsed: past --max-elements numbers the parse
    // stops (413 too_many_elements) without reading the rest.
    let budget = state.predictor.decode_budget();
    let request: InferRequest = within(budget, || serde_json::from_slice(json))
        .map_err(|overrun| v2(PredictError::from(overrun)))?
        .map_err(|e| bad("malformed_json", format!("invalid inference request: {e}")))?;
    let loaded = state
        .predictor
        .store()
        .snapshot()
        .resolve(Some(name), version)
        .map_err(v2)?;
    let specs = &loaded.contract.signature.inputs;
    // Bounds first: every declared shape is counted (checked) and the total held against
    // --max-elements before any input is decoded; each decoder then also checks its count
    // against the data actually sent before allocating. A shape whose count overflows is
    // refused by name in the loop below.
    let declared = datatype::declared_elements(request.inputs.iter().map(|i| i.shape.as_slice()));
    state.predictor.check_elements(Some(declared)).map_err(v2)?;
    let mut inputs = Vec::with_capacity(specs.len().min(request.inputs.len()));
    for input in &request.inputs {
        let datatype::InputHeader {
            dtype: dt,
            shape,
            count,
        } = datatype::input_header(specs, &input.name, &input.datatype, &input.shape)
            .map_err(|(kind, m)| bad(kind, m))?;
        let binary_size = input
            .parameters
            .as_ref()
            .and_then(|p| p.get("binary_data_size"))
            .and_then(Value::as_u64);
        let data = match (binary_size, &input.data) {
            (Some(size), _) => {
                let size = size as usize;
                if size > binary.len() {
                    return Err(bad(
                        "bad_request",
                        format!(
                            "input {:?}: binary_data_size {size} exceeds the binary data left ({})",
                            input.name,
                            binary.len()
                        ),
                    ));
                }
                let (mine, rest) = binary.split_at(size);
                binary = rest;
                datatype::from_bytes(dt, count, mine, &input.name)
            }
            (None, Some(data)) => datatype::from_json(dt, count, data, &input.name),
            (None, None) => Err(format!(
                "input {:?} has neither data nor binary_data_size",
                input.name
            )),
        }
        .map_err(|m| bad("wrong_shape", m))?;
        let tensor = Tensor::new(shape, data).ok_or_else(|| {
            bad(
                "wrong_shape",
                format!("input {:?}: data does not fill its shape", input.name),
            )
        })?;
        inputs.push(InputTensor {
            name: input.name.clone(),
            tensor,
        });
    }
    if !binary.is_empty() {
        return Err(bad(
            "bad_request",
            format!(
                "{} bytes of binary data are not claimed by any input",
                binary.len()
            ),
        ));
    }
    let outcome = state
        .predictor
        .infer_with_id(
            Target {
                model: Some(name),
                version,
                protocol: Protocol::Http,
                route_key: None,
            },
            inputs,
            request.id.as_deref(),
        )
        .await
        .map_err(v2)?;

    let all_binary = flag(&request.parameters, "binary_data_output");
    let wanted: Vec<(String, bool)> = match &request.outputs {
        None => outcome
            .outputs
            .iter()
            .map(|(n, _)| (n.clone(), all_binary))
            .collect(),
        Some(list) => list
            .iter()
            .map(|o| {
                (
                    o.name.clone(),
                    all_binary || flag(&o.parameters, "binary_data"),
                )
            })
            .collect(),
    };
    let mut outputs = Vec::with_capacity(wanted.len());
    let mut tail = Vec::new();
    for (wanted_name, as_binary) in wanted {
        let (_, tensor) = outcome
            .outputs
            .iter()
            .find(|(n, _)| *n == wanted_name)
            .ok_or_else(|| {
                let names: Vec<&str> = outcome.outputs.iter().map(|(n, _)| n.as_str()).collect();
                bad(
                    "unknown_output",
                    format!("unknown output {wanted_name:?}; the model's outputs are {names:?}"),
                )
            })?;
        let dt = datatype::name(tensor.dtype()).to_string();
        let output = if as_binary {
            let start = tail.len();
            datatype::to_bytes(&tensor.data, &mut tail);
            let mut parameters = Map::new();
            parameters.insert("binary_data_size".into(), Value::from(tail.len() - start));
            ResponseOutput {
                name: wanted_name,
                datatype: dt,
                shape: tensor.shape.clone(),
                parameters: Some(parameters),
                data: None,
            }
        } else {
            ResponseOutput {
                name: wanted_name,
                datatype: dt,
                shape: tensor.shape.clone(),
                parameters: None,
                data: Some(tensor.data.clone().into()),
            }
        };
        outputs.push(output);
    }
    let usage = Usage {
        model: outcome.model.clone(),
        instances: outcome.outputs.first().map_or(0, |(_, t)| t.rows()),
    };
    let response = InferResponse {
        model_name: outcome.model,
        model_version: outcome.version.to_string(),
        id: request.id,
        outputs,
    };
    if tail.is_empty() {
        return Ok((Extension(usage), Json(response)).into_response());
    }
    let mut body = serde_json::to_vec(&response).map_err(ApiError::internal)?;
    let header_len = body.len();
    body.extend_from_slice(&tail);
    let mut reply = body.into_response();
    reply.extensions_mut().insert(usage);
    reply.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    reply
        .headers_mut()
        .insert(HEADER_LENGTH, HeaderValue::from(header_len));
    Ok(reply)
}
