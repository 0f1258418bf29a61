//! Tensors between the gRPC messages and the engine. Input: every declared shape is checked
//! against the elements or bytes actually sent (checked arithmetic) before any tensor buffer
//! exists; typed contents of the model's own type are moved, not copied. Output: raw little-endian
//! bytes (`raw_output_contents`) or typed `contents`, as the client asked.

use std::collections::HashMap;

use axum::http::StatusCode;
use prost::bytes::Bytes;

use super::proto::infer_parameter::ParameterChoice;
use super::proto::model_infer_request::{InferInputTensor, InferRequestedOutputTensor};
use super::proto::model_infer_response::InferOutputTensor;
use super::proto::{InferParameter, InferTensorContents};
use crate::api::v2::datatype;
use crate::api::ApiError;
use crate::engine::{DataType, Tensor, TensorData, TensorSpec};
use crate::inference::InputTensor;

fn bad(error_type: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, error_type, message)
}

/// The request's input tensors as engine tensors, in the order sent. `raw` is the request's
/// `raw_input_contents`: empty, or one entry per input.
pub fn decode_inputs(
    inputs: Vec<InferInputTensor>,
    raw: Vec<Bytes>,
    specs: &[TensorSpec],
) -> Result<Vec<InputTensor>, ApiError> {
    if !raw.is_empty() && raw.len() != inputs.len() {
        return Err(bad(
            "bad_request",
            format!(
                "raw_input_contents has {} entries but the request has {} inputs",
                raw.len(),
                inputs.len()
            ),
        ));
    }
    let mut raw = raw.into_iter();
    let mut tensors = Vec::with_capacity(inputs.len());
    for input in inputs {
        let datatype::InputHeader {
            dtype: dt,
            shape,
            count,
        } = datatype::input_header(specs, &input.name, &input.datatype, &input.shape)
            .map_err(|(kind, m)| bad(kind, m))?;
        let data = match raw.next() {
            Some(_) if input.contents.is_some() => Err(format!(
                "input {:?} has typed contents and raw_input_contents; send one of them",
                input.name
            )),
            Some(bytes) => datatype::from_bytes(dt, count, &bytes, &input.name),
            None => typed(dt, count, input.contents.unwrap_or_default(), &input.name),
        }
        .map_err(|m| bad("wrong_shape", m))?;
        let tensor = Tensor::new(shape, data).ok_or_else(|| {
            bad(
                "wrong_shape",
                format!("input {:?}: data does not fill its shape", input.name),
            )
        })?;
        tensors.push(InputTensor {
            name: input.name,
            tensor,
        });
    }
    Ok(tensors)
}

/// The contents field that carries `dt`, by its protocol name.
fn field(dt: DataType) -> &'static str {
    match dt {
        DataType::Bool => "bool_contents",
        DataType::U8 | DataType::U16 | DataType::U32 => "uint_contents",
        DataType::U64 => "uint64_contents",
        DataType::I8 | DataType::I16 | DataType::I32 => "int_contents",
        DataType::I64 => "int64_contents",
        // The protocol has no typed field for FP16: only raw contents carry it.
        DataType::F16 => "raw_input_contents",
        DataType::F32 => "fp32_contents",
        DataType::F64 => "fp64_contents",
        DataType::String => "bytes_contents",
    }
}

/// Typed contents as tensor data: the field of the tensor's datatype must hold exactly `count`
/// elements. The field's vector is moved (UINT8 alone is narrowed, after the count check).
fn typed(
    dt: DataType,
    count: usize,
    contents: InferTensorContents,
    input: &str,
) -> Result<TensorData, String> {
    let sent = match dt {
        DataType::Bool => contents.bool_contents.len(),
        DataType::U8 | DataType::U16 | DataType::U32 => contents.uint_contents.len(),
        DataType::U64 => contents.uint64_contents.len(),
        DataType::I8 | DataType::I16 | DataType::I32 => contents.int_contents.len(),
        DataType::I64 => contents.int64_contents.len(),
        DataType::F16 => {
            return Err(format!(
                "input {input:?}: FP16 has no typed contents field; send it in raw_input_contents"
            ))
        }
        DataType::F32 => contents.fp32_contents.len(),
        DataType::F64 => contents.fp64_contents.len(),
        DataType::String => contents.bytes_contents.len(),
    };
    if sent != count {
        return Err(format!(
            "input {input:?}: shape holds {count} elements but {} has {sent}",
            field(dt)
        ));
    }
    /// Narrows a wider typed field to the input's type, naming the first value that does not fit.
    fn narrow<W: Copy + std::fmt::Display, T: TryFrom<W>>(
        values: &[W],
        input: &str,
        protocol: &str,
    ) -> Result<Vec<T>, String> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                T::try_from(*v).map_err(|_| {
                    format!("input {input:?} element {i}: {v} is not a {protocol} value")
                })
            })
            .collect()
    }
    Ok(match dt {
        DataType::Bool => TensorData::Bool(contents.bool_contents),
        DataType::U8 => TensorData::U8(narrow(&contents.uint_contents, input, "UINT8")?),
        DataType::U16 => TensorData::U16(narrow(&contents.uint_contents, input, "UINT16")?),
        DataType::U32 => TensorData::U32(contents.uint_contents),
        DataType::U64 => TensorData::U64(contents.uint64_contents),
        DataType::I8 => TensorData::I8(narrow(&contents.int_contents, input, "INT8")?),
        DataType::I16 => TensorData::I16(narrow(&contents.int_contents, input, "INT16")?),
        DataType::F16 => unreachable!("refused above: FP16 has no typed contents"),
        DataType::I32 => TensorData::I32(contents.int_contents),
        DataType::I64 => TensorData::I64(contents.int64_contents),
        DataType::F32 => TensorData::F32(contents.fp32_contents),
        DataType::F64 => TensorData::F64(contents.fp64_contents),
        DataType::String => TensorData::String(crate::api::v2::bytes::from_entries(
            &contents.bytes_contents,
            input,
        )?),
    })
}

/// Whether outputs go back as `raw_output_contents`: the `binary_data_output` parameter when
/// sent, else as the inputs came (raw inputs get raw outputs, as Triton clients expect).
pub fn raw_outputs(parameters: &HashMap<String, InferParameter>, raw_inputs: bool) -> bool {
    match parameters
        .get("binary_data_output")
        .and_then(|p| p.parameter_choice.as_ref())
    {
        Some(ParameterChoice::BoolParam(raw)) => *raw,
        _ => raw_inputs,
    }
}

/// The response's output tensors (the requested ones, in the order asked; all when none are
/// asked for) and, when `raw`, their bytes in the same order.
pub fn encode_outputs(
    outputs: Vec<(String, Tensor)>,
    wanted: &[InferRequestedOutputTensor],
    raw: bool,
) -> Result<(Vec<InferOutputTensor>, Vec<Bytes>), ApiError> {
    let order: Vec<usize> = if wanted.is_empty() {
        (0..outputs.len()).collect()
    } else {
        wanted
            .iter()
            .map(|w| {
                outputs
                    .iter()
                    .position(|(n, _)| *n == w.name)
                    .ok_or_else(|| {
                        let names: Vec<&str> = outputs.iter().map(|(n, _)| n.as_str()).collect();
                        bad(
                            "unknown_output",
                            format!(
                                "unknown output {:?}; the model's outputs are {names:?}",
                                w.name
                            ),
                        )
                    })
            })
            .collect::<Result<_, _>>()?
    };
    let mut tensors = Vec::with_capacity(order.len());
    let mut bytes = Vec::with_capacity(if raw { order.len() } else { 0 });
    for at in order {
        let (name, tensor) = &outputs[at];
        if !raw && tensor.dtype() == DataType::F16 {
            return Err(bad(
                "wrong_type",
                format!("output {name:?} is FP16, which the protocol carries only as raw contents: ask for binary_data_output"),
            ));
        }
        let contents = if raw {
            let mut buf = Vec::with_capacity(tensor.data.len() * datatype::size(tensor.dtype()));
            datatype::to_bytes(&tensor.data, &mut buf);
            bytes.push(Bytes::from(buf));
            None
        } else {
            Some(contents(&tensor.data))
        };
        tensors.push(InferOutputTensor {
            name: name.clone(),
            datatype: datatype::name(tensor.dtype()).to_string(),
            shape: tensor.shape.iter().map(|d| *d as i64).collect(),
            parameters: HashMap::new(),
            contents,
        });
    }
    Ok((tensors, bytes))
}

/// Typed contents holding `data`.
fn contents(data: &TensorData) -> InferTensorContents {
    let mut c = InferTensorContents::default();
    match data {
        TensorData::Bool(v) => c.bool_contents = v.clone(),
        TensorData::U8(v) => c.uint_contents = v.iter().map(|x| u32::from(*x)).collect(),
        TensorData::U16(v) => c.uint_contents = v.iter().map(|x| u32::from(*x)).collect(),
        TensorData::U32(v) => c.uint_contents = v.clone(),
        TensorData::U64(v) => c.uint64_contents = v.clone(),
        TensorData::I8(v) => c.int_contents = v.iter().map(|x| i32::from(*x)).collect(),
        TensorData::I16(v) => c.int_contents = v.iter().map(|x| i32::from(*x)).collect(),
        // No typed field for FP16 (encode_outputs refuses it unless the outputs are raw).
        TensorData::F16(_) => {}
        TensorData::I32(v) => c.int_contents = v.clone(),
        TensorData::I64(v) => c.int64_contents = v.clone(),
        TensorData::F32(v) => c.fp32_contents = v.clone(),
        TensorData::F64(v) => c.fp64_contents = v.clone(),
        TensorData::String(v) => {
            c.bytes_contents = v.iter().map(|s| s.as_bytes().to_vec().into()).collect()
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Dim;

    fn spec() -> Vec<TensorSpec> {
        vec![TensorSpec {
            name: "x".into(),
            dtype: DataType::F32,
            shape: vec![Dim::Batch, Dim::Fixed(2)],
        }]
    }

    fn input(shape: Vec<i64>, contents: Option<InferTensorContents>) -> InferInputTensor {
        InferInputTensor {
            name: "x".into(),
            datatype: "FP32".into(),
            shape,
            parameters: HashMap::new(),
            contents,
        }
    }

    fn fp32(values: &[f32]) -> InferTensorContents {
        InferTensorContents {
            fp32_contents: values.to_vec(),
            ..Default::default()
        }
    }

    fn le(values: &[f32]) -> Bytes {
        values
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect::<Vec<u8>>()
            .into()
    }

    #[test]
    fn typed_and_raw_contents_decode_to_the_same_tensor() {
        let values = [1.5, -2.0, 3.25, 4.0];
        let typed = decode_inputs(
            vec![input(vec![2, 2], Some(fp32(&values)))],
            vec![],
            &spec(),
        )
        .unwrap();
        let raw = decode_inputs(vec![input(vec![2, 2], None)], vec![le(&values)], &spec()).unwrap();
        assert_eq!(typed[0].tensor, raw[0].tensor);
        assert_eq!(typed[0].tensor.shape, vec![2, 2]);
        assert_eq!(typed[0].tensor.data, TensorData::F32(values.to_vec()));
    }

    #[test]
    fn declared_shapes_must_match_what_was_sent_before_anything_is_allocated() {
        let reject = |shape: Vec<i64>, contents, raw: Vec<Bytes>| {
            decode_inputs(vec![input(shape, contents)], raw, &spec()).unwrap_err()
        };
        // A huge declared shape with four values: refused by count, never allocated.
        let e = reject(vec![1 << 40, 2], Some(fp32(&[1.0; 4])), vec![]);
        assert!(e.message.contains("shape holds"), "{}", e.message);
        // A product that overflows usize.
        let e = reject(vec![i64::MAX, i64::MAX], None, vec![le(&[1.0])]);
        assert!(e.message.contains("too large"), "{}", e.message);
        // Raw bytes whose length is not count * 4, including when count * 4 would overflow.
        let e = reject(vec![1, 2], None, vec![le(&[1.0; 3])]);
        assert!(e.message.contains("does not match"), "{}", e.message);
        let e = reject(vec![1 << 61, 1], None, vec![le(&[1.0, 2.0])]);
        assert_eq!(e.error_type, "wrong_shape", "{}", e.message);
        let e = reject(vec![-1, 2], Some(fp32(&[1.0; 2])), vec![]);
        assert!(e.message.contains("negative"), "{}", e.message);
        // Both kinds of contents for one input; a raw entry count that does not match inputs.
        let e = reject(vec![1, 2], Some(fp32(&[1.0; 2])), vec![le(&[1.0; 2])]);
        assert!(e.message.contains("one of them"), "{}", e.message);
        let e = reject(vec![1, 2], None, vec![le(&[1.0; 2]), le(&[1.0; 2])]);
        assert!(e.message.contains("2 entries"), "{}", e.message);
    }

    #[test]
    fn datatypes_and_names_are_checked() {
        let mut wrong = input(vec![1, 2], Some(fp32(&[1.0; 2])));
        wrong.datatype = "FP64".into();
        let e = decode_inputs(vec![wrong], vec![], &spec()).unwrap_err();
        assert_eq!(e.error_type, "wrong_type");
        let mut unknown = input(vec![1, 2], Some(fp32(&[1.0; 2])));
        unknown.name = "y".into();
        let e = decode_inputs(vec![unknown], vec![], &spec()).unwrap_err();
        assert_eq!(e.error_type, "unknown_input");
    }

    #[test]
    fn uint8_typed_contents_are_range_checked() {
        let specs = vec![TensorSpec {
            name: "x".into(),
            dtype: DataType::U8,
            shape: vec![Dim::Batch, Dim::Fixed(2)],
        }];
        let mut x = input(vec![1, 2], None);
        x.datatype = "UINT8".into();
        x.contents = Some(InferTensorContents {
            uint_contents: vec![7, 255],
            ..Default::default()
        });
        let ok = decode_inputs(vec![x.clone()], vec![], &specs).unwrap();
        assert_eq!(ok[0].tensor.data, TensorData::U8(vec![7, 255]));
        x.contents.as_mut().unwrap().uint_contents[1] = 256;
        assert!(decode_inputs(vec![x], vec![], &specs).is_err());
    }

    #[test]
    fn outputs_are_selected_and_encoded_raw_or_typed() {
        let outputs = vec![
            (
                "label".to_string(),
                Tensor::new(vec![2], TensorData::I64(vec![1, 2])).unwrap(),
            ),
            (
                "probabilities".to_string(),
                Tensor::new(vec![2, 1], TensorData::F32(vec![0.25, 0.5])).unwrap(),
            ),
        ];
        let want = |name: &str| InferRequestedOutputTensor {
            name: name.into(),
            parameters: HashMap::new(),
        };
        let (typed, raw) = encode_outputs(outputs.clone(), &[], false).unwrap();
        assert!(raw.is_empty());
        assert_eq!(typed.len(), 2);
        assert_eq!(typed[1].shape, vec![2, 1]);
        assert_eq!(
            typed[1].contents.as_ref().unwrap().fp32_contents,
            vec![0.25, 0.5]
        );
        let (picked, raw) =
            encode_outputs(outputs.clone(), &[want("probabilities")], true).unwrap();
        assert_eq!(picked.len(), 1);
        assert_eq!(picked[0].datatype, "FP32");
        assert!(picked[0].contents.is_none());
        assert_eq!(raw, vec![le(&[0.25, 0.5])]);
        let e = encode_outputs(outputs, &[want("nope")], true).unwrap_err();
        assert_eq!(e.error_type, "unknown_output");
    }

    #[test]
    fn raw_outputs_follow_the_inputs_unless_the_client_says() {
        let mut p = HashMap::new();
        assert!(raw_outputs(&p, true));
        assert!(!raw_outputs(&p, false));
        p.insert(
            "binary_data_output".to_string(),
            InferParameter {
                parameter_choice: Some(ParameterChoice::BoolParam(true)),
            },
        );
        assert!(raw_outputs(&p, false));
    }
}
