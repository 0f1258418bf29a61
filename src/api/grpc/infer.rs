//! `ModelInfer`: the request's tensors checked and decoded, run through `Predictor::infer` (the
//! same path, limits and model metrics as REST), and the outputs encoded.

use super::proto::{ModelInferRequest, ModelInferResponse};
use super::tensors::{decode_inputs, encode_outputs, raw_outputs};
use crate::api::access::Usage;
use crate::api::routes::predict::parse_version;
use crate::api::v2::datatype;
use crate::api::{ApiError, AppState};
use crate::inference::{Protocol, Target};

/// The version a request names: empty means the model's highest ready version.
pub fn version(model: &str, version: &str) -> Result<Option<u64>, ApiError> {
    if version.is_empty() {
        return Ok(None);
    }
    parse_version(model, version).map(Some)
}

/// Runs one inference request; also says which model answered how many instances (for the
/// per-caller usage series).
pub async fn model_infer(
    state: &AppState,
    request: ModelInferRequest,
) -> Result<(ModelInferResponse, Usage), ApiError> {
    let ModelInferRequest {
        model_name,
        model_version,
        id,
        parameters,
        inputs,
        outputs,
        raw_input_contents,
    } = request;
    let target = Target {
        model: Some(&model_name),
        version: version(&model_name, &model_version)?,
        protocol: Protocol::Grpc,
        route_key: None,
    };
    // Refuse at once when the model's queue is full, before decoding anything.
    state.predictor.admit(target)?;
    let loaded = state
        .predictor
        .store()
        .snapshot()
        .resolve(target.model, target.version)?;
    // Bounds first: the declared shapes, summed (checked), against --max-elements before any
    // input is decoded; decoding then checks each shape against the data actually sent.
    let declared = datatype::declared_elements(inputs.iter().map(|i| i.shape.as_slice()));
    state.predictor.check_elements(Some(declared))?;
    let raw = raw_outputs(&parameters, !raw_input_contents.is_empty());
    let tensors = decode_inputs(
        inputs,
        raw_input_contents,
        &loaded.contract.signature.inputs,
    )?;
    drop(loaded);
    let outcome = state
        .predictor
        .infer_with_id(
            target,
            tensors,
            Some(&id).filter(|id| !id.is_empty()).map(String::as_str),
        )
        .await?;
    let usage = Usage {
        model: outcome.model.clone(),
        instances: outcome.outputs.first().map_or(0, |(_, t)| t.rows()),
    };
    let (tensors, raw_output_contents) = encode_outputs(outcome.outputs, &outputs, raw)?;
    let response = ModelInferResponse {
        model_name: outcome.model,
        model_version: outcome.version.to_string(),
        id,
        parameters: Default::default(),
        outputs: tensors,
        raw_output_contents,
    };
    Ok((response, usage))
}
