//! Reading JSON instances into input tensors, checked against the model's contract. Every
//! rejection names the instance, the field and the limit it broke.

use serde_json::Value;

use super::json_instance::Instance;
use super::{FeatureSpec, InputContract};
use crate::engine::{DataType, Tensor, TensorData, TensorSpec};

/// Which rule an instance broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViolationKind {
    WrongFeatureCount,
    UnknownFeature,
    MissingFeature,
    NonFinite,
    OutOfRange,
    WrongType,
    WrongShape,
    /// A value outside a feature's `categories` (the card does not allow unknowns).
    UnknownCategory,
}

impl ViolationKind {
    /// Stable identifier, used as `error_type` in API errors.
    pub fn as_str(self) -> &'static str {
        match self {
            ViolationKind::WrongFeatureCount => "wrong_feature_count",
            ViolationKind::UnknownFeature => "unknown_feature",
            ViolationKind::MissingFeature => "missing_feature",
            ViolationKind::NonFinite => "non_finite_value",
            ViolationKind::OutOfRange => "out_of_range",
            ViolationKind::WrongType => "wrong_type",
            ViolationKind::WrongShape => "wrong_shape",
            ViolationKind::UnknownCategory => "unknown_category",
        }
    }
}

/// An input that does not fit the model's input contract.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct ContractViolation {
    pub kind: ViolationKind,
    /// The offending instance, when the problem is in one instance.
    pub instance: Option<usize>,
    pub message: String,
}

impl std::fmt::Display for ContractViolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.instance {
            Some(i) => write!(f, "instance {i}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

pub(super) fn violation(
    kind: ViolationKind,
    instance: usize,
    message: String,
) -> ContractViolation {
    ContractViolation {
        kind,
        instance: Some(instance),
        message,
    }
}

/// Turns `instances` into one tensor per model input (batch dimension first); a model whose
/// only input is a map is decoded by `map_instances.rs` instead (see `decode_instances`).
pub fn decode(
    contract: &InputContract,
    instances: &[Instance],
) -> Result<Vec<Tensor>, ContractViolation> {
    match contract {
        InputContract::Tabular {
            features,
            index,
            dtype,
        } => decode_tabular(features, index, *dtype, instances).map(|t| vec![t]),
        InputContract::Tensors { inputs } => decode_tensors(inputs, instances),
    }
}

pub(super) fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn decode_tabular(
    features: &[FeatureSpec],
    index: &std::collections::HashMap<String, usize>,
    dtype: DataType,
    instances: &[Instance],
) -> Result<Tensor, ContractViolation> {
    let width = features.len();
    let mut sink = Sink::with_capacity(dtype, width * instances.len());
    let mut row: Vec<Option<f64>> = vec![None; width];
    for (i, instance) in instances.iter().enumerate() {
        // The common case, an array of `width` numbers read straight from the body.
        if let Instance::Numbers { dims, values } = instance {
            if dims.as_slice() == [width] {
                for (value, feature) in values.iter().zip(features) {
                    sink.push_f64(*value)
                        .map_err(|e| e.at(i, &format!("feature {:?}", feature.name)))?;
                    check_range(*value, feature, i)?;
                }
                continue;
            }
        }
        let instance = instance.as_json();
        let instance = instance.as_ref();
        match instance {
            Value::Array(values) => {
                if values.len() != width {
                    return Err(violation(
                        ViolationKind::WrongFeatureCount,
                        i,
                        format!("expected {width} feature values, got {}", values.len()),
                    ));
                }
                for (slot, (value, feature)) in row.iter_mut().zip(values.iter().zip(features)) {
                    *slot = Some(number(value, feature, i)?);
                }
            }
            Value::Object(fields) if !index.is_empty() => {
                row.iter_mut().for_each(|slot| *slot = None);
                for (name, value) in fields {
                    let col = *index.get(name).ok_or_else(|| {
                        violation(
                            ViolationKind::UnknownFeature,
                            i,
                            format!(
                                "unknown feature {name:?}; this model takes {}",
                                names(features)
                            ),
                        )
                    })?;
                    row[col] = Some(number(value, &features[col], i)?);
                }
                if let Some(col) = row.iter().position(Option::is_none) {
                    return Err(violation(
                        ViolationKind::MissingFeature,
                        i,
                        format!(
                            "missing feature {:?} ({} of {width} given)",
                            features[col].name,
                            fields.len()
                        ),
                    ));
                }
            }
            other => {
                let expected = if index.is_empty() {
                    format!("an array of {width} numbers")
                } else {
                    format!("an array of {width} numbers or an object of named features")
                };
                return Err(violation(
                    ViolationKind::WrongType,
                    i,
                    format!("expected {expected}, got {}", json_kind(other)),
                ));
            }
        }
        for (value, feature) in row.iter().zip(features) {
            let value = value.unwrap_or_default();
            sink.push_f64(value)
                .map_err(|e| e.at(i, &format!("feature {:?}", feature.name)))?;
            check_range(value, feature, i)?;
        }
    }
    Ok(Tensor {
        shape: vec![instances.len(), width],
        data: sink.into_data(),
    })
}

fn names(features: &[FeatureSpec]) -> String {
    const SHOWN: usize = 8;
    let mut list: Vec<&str> = features
        .iter()
        .take(SHOWN)
        .map(|f| f.name.as_str())
        .collect();
    if features.len() > SHOWN {
        list.push("...");
    }
    format!("{} features: {}", features.len(), list.join(", "))
}

fn number(value: &Value, feature: &FeatureSpec, instance: usize) -> Result<f64, ContractViolation> {
    value.as_f64().ok_or_else(|| {
        violation(
            ViolationKind::WrongType,
            instance,
            format!(
                "feature {:?}: expected a number, got {}",
                feature.name,
                json_kind(value)
            ),
        )
    })
}

pub(super) fn check_range(
    value: f64,
    feature: &FeatureSpec,
    instance: usize,
) -> Result<(), ContractViolation> {
    let below = feature.min.is_some_and(|min| value < min);
    let above = feature.max.is_some_and(|max| value > max);
    if below || above {
        let range = match (feature.min, feature.max) {
            (Some(min), Some(max)) => format!("[{min}, {max}]"),
            (Some(min), None) => format!(">= {min}"),
            (None, Some(max)) => format!("<= {max}"),
            (None, None) => unreachable!("a bound was broken"),
        };
        return Err(violation(
            ViolationKind::OutOfRange,
            instance,
            format!(
                "feature {:?} = {value} is outside its valid range {range}",
                feature.name
            ),
        ));
    }
    Ok(())
}

fn decode_tensors(
    inputs: &[TensorSpec],
    instances: &[Instance],
) -> Result<Vec<Tensor>, ContractViolation> {
    let shapes: Vec<Vec<usize>> = inputs
        .iter()
        .map(|spec| instance_shape(inputs, spec, instances.first()))
        .collect::<Result<_, _>>()?;
    let mut sinks: Vec<Sink> = inputs
        .iter()
        .zip(&shapes)
        .map(|(spec, shape)| {
            // A variable shape is read from the first instance: reserve for that one only, the
            // others grow the buffer as their data is actually read.
            let rows = if spec.has_variable_rows() {
                1
            } else {
                instances.len()
            };
            Sink::with_capacity(spec.dtype, shape.iter().product::<usize>() * rows)
        })
        .collect();
    for (i, instance) in instances.iter().enumerate() {
        // The common case: one input, sent as a nested array of its row shape or a flat array.
        if let (Instance::Numbers { dims, values }, [spec]) = (instance, inputs) {
            let shape = &shapes[0];
            let total: usize = shape.iter().product();
            if dims == shape || (dims.as_slice() == [total] && values.len() == total) {
                let sink = &mut sinks[0];
                for (j, value) in values.iter().enumerate() {
                    sink.push_f64(*value).map_err(|e| {
                        e.at(i, &format!("input {:?}{}", spec.name, index_path(j, dims)))
                    })?;
                }
                continue;
            }
        }
        let instance = instance.as_json();
        let instance = instance.as_ref();
        match (instance, inputs) {
            (Value::Object(fields), _) => {
                if let Some(unknown) = fields
                    .keys()
                    .find(|k| !inputs.iter().any(|s| &s.name == *k))
                {
                    return Err(violation(
                        ViolationKind::UnknownFeature,
                        i,
                        format!(
                            "unknown input {unknown:?}; inputs are {}",
                            input_names(inputs)
                        ),
                    ));
                }
                for ((spec, shape), sink) in inputs.iter().zip(&shapes).zip(sinks.iter_mut()) {
                    let value = fields.get(&spec.name).ok_or_else(|| {
                        violation(
                            ViolationKind::MissingFeature,
                            i,
                            format!("missing input {:?}", spec.name),
                        )
                    })?;
                    fill(value, shape, sink, i, &spec.name)?;
                }
            }
            (value, [spec]) => fill(value, &shapes[0], &mut sinks[0], i, &spec.name)?,
            (Value::Array(items), _) if one_value_each(items, &shapes) => {
                for ((spec, item), sink) in inputs.iter().zip(items).zip(sinks.iter_mut()) {
                    sink.push(item)
                        .map_err(|e| e.at(i, &format!("input {:?}", spec.name)))?;
                }
            }
            (other, _) => {
                return Err(violation(
                    ViolationKind::WrongType,
                    i,
                    format!(
                    "this model has {} inputs: expected an object keyed by input name ({}), got {}",
                    inputs.len(),
                    input_names(inputs),
                    json_kind(other)
                ),
                ))
            }
        }
    }
    Ok(sinks
        .into_iter()
        .zip(shapes)
        .map(|(sink, shape)| {
            let shape = std::iter::once(instances.len()).chain(shape).collect();
            Tensor {
                shape,
                data: sink.into_data(),
            }
        })
        .collect())
}

/// The shape every instance of input `ix` must have: the spec's, or for a spec with variable
/// dimensions the first instance's own (nested array lengths), when it fits the spec. The
/// instances of one request share one shape, since they are stacked into one tensor.
fn instance_shape(
    inputs: &[TensorSpec],
    spec: &TensorSpec,
    first: Option<&Instance>,
) -> Result<Vec<usize>, ContractViolation> {
    if !spec.has_variable_rows() {
        return Ok(spec.row_shape());
    }
    let dims = match (first, inputs) {
        (None, _) => return Ok(spec.row_shape()),
        (Some(Instance::Numbers { dims, .. }), [_]) => dims.clone(),
        (Some(instance), _) => {
            let value = instance.as_json();
            let value = match (value.as_ref(), inputs.len()) {
                (Value::Object(fields), _) => fields.get(&spec.name).cloned(),
                (v, 1) => Some(v.clone()),
                _ => None,
            };
            match value {
                Some(v) => nested_dims(&v),
                None => return Ok(spec.row_shape()),
            }
        }
    };
    if !spec.accepts_row(&dims) {
        return Err(violation(
            ViolationKind::WrongShape,
            0,
            format!(
                "input {:?}: instance shape {dims:?} does not fit the model's {:?} (batch first)",
                spec.name,
                spec.shape_i64()
            ),
        ));
    }
    Ok(dims)
}

/// The lengths of a nested JSON array along its first elements.
fn nested_dims(mut value: &Value) -> Vec<usize> {
    let mut dims = Vec::new();
    while let Value::Array(items) = value {
        dims.push(items.len());
        match items.first() {
            Some(first) => value = first,
            None => break,
        }
    }
    dims
}

/// An instance of a model with one input per column (a DataFrame export) given as an array of
/// values in input order: one scalar per input, each input taking one value per instance.
fn one_value_each(items: &[Value], shapes: &[Vec<usize>]) -> bool {
    items.len() == shapes.len()
        && shapes.iter().all(|s| s.iter().product::<usize>() == 1)
        && items.iter().all(|v| !v.is_array() && !v.is_object())
}

/// `[a][b][c]`: the position of flat element `j` in an array of shape `dims`.
fn index_path(mut j: usize, dims: &[usize]) -> String {
    let mut parts = Vec::with_capacity(dims.len());
    for &d in dims.iter().rev() {
        parts.push(j % d.max(1));
        j /= d.max(1);
    }
    parts.iter().rev().map(|p| format!("[{p}]")).collect()
}

fn input_names(inputs: &[TensorSpec]) -> String {
    inputs
        .iter()
        .map(|s| format!("{:?}", s.name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Appends one instance of an input: a nested array of the row shape, or a flat array of its
/// element count.
fn fill(
    value: &Value,
    shape: &[usize],
    sink: &mut Sink,
    instance: usize,
    input: &str,
) -> Result<(), ContractViolation> {
    let total: usize = shape.iter().product();
    // One value per instance (a DataFrame column exported as an [N, 1] input): a bare scalar.
    if total == 1 && !shape.is_empty() && !value.is_array() && !value.is_object() {
        return sink
            .push(value)
            .map_err(|e| e.at(instance, &format!("input {input:?}")));
    }
    if shape.len() > 1 {
        if let Value::Array(items) = value {
            if items.len() == total && items.iter().all(|v| !v.is_array()) {
                return fill_flat(items, sink, instance, input);
            }
        }
    }
    fill_nested(value, shape, sink, instance, input, &mut String::new())
}

fn fill_flat(
    items: &[Value],
    sink: &mut Sink,
    instance: usize,
    input: &str,
) -> Result<(), ContractViolation> {
    for (j, item) in items.iter().enumerate() {
        sink.push(item)
            .map_err(|e| e.at(instance, &format!("input {input:?}[{j}]")))?;
    }
    Ok(())
}

fn fill_nested(
    value: &Value,
    shape: &[usize],
    sink: &mut Sink,
    instance: usize,
    input: &str,
    path: &mut String,
) -> Result<(), ContractViolation> {
    let Some((&len, rest)) = shape.split_first() else {
        return sink
            .push(value)
            .map_err(|e| e.at(instance, &format!("input {input:?}{path}")));
    };
    let items = match value {
        Value::Array(items) if items.len() == len => items,
        Value::Array(items) => {
            return Err(violation(
                ViolationKind::WrongShape,
                instance,
                format!(
                "input {input:?}{path}: expected {len} item(s) (instance shape {shape:?}), got {}",
                items.len()
            ),
            ))
        }
        other => {
            return Err(violation(
                ViolationKind::WrongType,
                instance,
                format!(
                    "input {input:?}{path}: expected an array of {len}, got {}",
                    json_kind(other)
                ),
            ))
        }
    };
    for (j, item) in items.iter().enumerate() {
        let before = path.len();
        path.push_str(&format!("[{j}]"));
        fill_nested(item, rest, sink, instance, input, path)?;
        path.truncate(before);
    }
    Ok(())
}

/// Why one element could not be stored.
pub(super) enum ElementError {
    WrongType(&'static str, &'static str),
    NonFinite(f64, DataType),
    OutOfTypeRange(String, DataType),
}

impl ElementError {
    pub(super) fn at(self, instance: usize, field: &str) -> ContractViolation {
        match self {
            ElementError::WrongType(want, got) => violation(
                ViolationKind::WrongType,
                instance,
                format!("{field}: expected {want}, got {got}"),
            ),
            ElementError::NonFinite(v, dt) => violation(
                ViolationKind::NonFinite,
                instance,
                format!("{field}: {v} is not a finite {dt} value"),
            ),
            ElementError::OutOfTypeRange(v, dt) => violation(
                ViolationKind::OutOfRange,
                instance,
                format!("{field}: {v} does not fit the input type {dt}"),
            ),
        }
    }
}

/// A growing column of one element type.
pub(super) enum Sink {
    Bool(Vec<bool>),
    U8(Vec<u8>),
    U16(Vec<u16>),
    U32(Vec<u32>),
    U64(Vec<u64>),
    I8(Vec<i8>),
    I16(Vec<i16>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    F16(Vec<half::f16>),
    F32(Vec<f32>),
    F64(Vec<f64>),
    String(Vec<String>),
}

impl Sink {
    pub(super) fn with_capacity(dtype: DataType, n: usize) -> Sink {
        match dtype {
            DataType::Bool => Sink::Bool(Vec::with_capacity(n)),
            DataType::U8 => Sink::U8(Vec::with_capacity(n)),
            DataType::U16 => Sink::U16(Vec::with_capacity(n)),
            DataType::U32 => Sink::U32(Vec::with_capacity(n)),
            DataType::U64 => Sink::U64(Vec::with_capacity(n)),
            DataType::I8 => Sink::I8(Vec::with_capacity(n)),
            DataType::I16 => Sink::I16(Vec::with_capacity(n)),
            DataType::I32 => Sink::I32(Vec::with_capacity(n)),
            DataType::I64 => Sink::I64(Vec::with_capacity(n)),
            DataType::F16 => Sink::F16(Vec::with_capacity(n)),
            DataType::F32 => Sink::F32(Vec::with_capacity(n)),
            DataType::F64 => Sink::F64(Vec::with_capacity(n)),
            DataType::String => Sink::String(Vec::with_capacity(n)),
        }
    }

    fn dtype(&self) -> DataType {
        match self {
            Sink::Bool(_) => DataType::Bool,
            Sink::U8(_) => DataType::U8,
            Sink::U16(_) => DataType::U16,
            Sink::U32(_) => DataType::U32,
            Sink::U64(_) => DataType::U64,
            Sink::I8(_) => DataType::I8,
            Sink::I16(_) => DataType::I16,
            Sink::I32(_) => DataType::I32,
            Sink::I64(_) => DataType::I64,
            Sink::F16(_) => DataType::F16,
            Sink::F32(_) => DataType::F32,
            Sink::F64(_) => DataType::F64,
            Sink::String(_) => DataType::String,
        }
    }

    /// Stores a JSON scalar.
    pub(super) fn push(&mut self, value: &Value) -> Result<(), ElementError> {
        match (self, value) {
            (Sink::Bool(v), Value::Bool(b)) => {
                v.push(*b);
                Ok(())
            }
            (Sink::Bool(_), other) => {
                Err(ElementError::WrongType("true or false", json_kind(other)))
            }
            (Sink::String(v), Value::String(s)) => {
                v.push(s.clone());
                Ok(())
            }
            (Sink::String(_), other) => Err(ElementError::WrongType("a string", json_kind(other))),
            (sink, Value::Number(n)) => match n.as_i64() {
                Some(i) if !sink.dtype().is_float() => sink.push_i64(i),
                _ => match n.as_f64() {
                    Some(f) => sink.push_f64(f),
                    None => Err(ElementError::OutOfTypeRange(n.to_string(), sink.dtype())),
                },
            },
            (sink, other) => {
                let want = if sink.dtype().is_float() {
                    "a number"
                } else {
                    "an integer"
                };
                Err(ElementError::WrongType(want, json_kind(other)))
            }
        }
    }

    pub(super) fn push_i64(&mut self, i: i64) -> Result<(), ElementError> {
        let dt = self.dtype();
        let range = || ElementError::OutOfTypeRange(i.to_string(), dt);
        match self {
            Sink::U8(v) => v.push(u8::try_from(i).map_err(|_| range())?),
            Sink::U16(v) => v.push(u16::try_from(i).map_err(|_| range())?),
            Sink::U32(v) => v.push(u32::try_from(i).map_err(|_| range())?),
            Sink::U64(v) => v.push(u64::try_from(i).map_err(|_| range())?),
            Sink::I8(v) => v.push(i8::try_from(i).map_err(|_| range())?),
            Sink::I16(v) => v.push(i16::try_from(i).map_err(|_| range())?),
            Sink::I32(v) => v.push(i32::try_from(i).map_err(|_| range())?),
            Sink::I64(v) => v.push(i),
            Sink::Bool(_) | Sink::F16(_) | Sink::F32(_) | Sink::F64(_) | Sink::String(_) => {
                return self.push_f64(i as f64)
            }
        }
        Ok(())
    }

    fn push_f64(&mut self, f: f64) -> Result<(), ElementError> {
        let dt = self.dtype();
        match self {
            Sink::F32(v) => {
                let x = f as f32;
                if !x.is_finite() {
                    return Err(ElementError::NonFinite(f, dt));
                }
                v.push(x);
            }
            Sink::F64(v) => {
                if !f.is_finite() {
                    return Err(ElementError::NonFinite(f, dt));
                }
                v.push(f);
            }
            Sink::F16(v) => {
                let x = half::f16::from_f64(f);
                if !x.is_finite() {
                    return Err(ElementError::NonFinite(f, dt));
                }
                v.push(x);
            }
            Sink::Bool(_) => return Err(ElementError::WrongType("true or false", "a number")),
            Sink::String(_) => return Err(ElementError::WrongType("a string", "a number")),
            Sink::U8(_)
            | Sink::U16(_)
            | Sink::U32(_)
            | Sink::U64(_)
            | Sink::I8(_)
            | Sink::I16(_)
            | Sink::I32(_)
            | Sink::I64(_) => {
                if f.fract() != 0.0 {
                    return Err(ElementError::WrongType("an integer", "a fractional number"));
                }
                if !f.is_finite() || f.abs() > 9.007_199_254_740_992e15 {
                    return Err(ElementError::OutOfTypeRange(format!("{f:e}"), dt));
                }
                return self.push_i64(f as i64);
            }
        }
        Ok(())
    }

    pub(super) fn into_data(self) -> TensorData {
        match self {
            Sink::Bool(v) => TensorData::Bool(v),
            Sink::U8(v) => TensorData::U8(v),
            Sink::U16(v) => TensorData::U16(v),
            Sink::U32(v) => TensorData::U32(v),
            Sink::U64(v) => TensorData::U64(v),
            Sink::I8(v) => TensorData::I8(v),
            Sink::I16(v) => TensorData::I16(v),
            Sink::I32(v) => TensorData::I32(v),
            Sink::I64(v) => TensorData::I64(v),
            Sink::F16(v) => TensorData::F16(v),
            Sink::F32(v) => TensorData::F32(v),
            Sink::F64(v) => TensorData::F64(v),
            Sink::String(v) => TensorData::String(v),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Dim;
    use serde_json::json;
    use std::collections::HashMap;

    fn tabular(named: bool) -> InputContract {
        let features: Vec<FeatureSpec> = ["a", "b"]
            .iter()
            .map(|n| FeatureSpec {
                min: Some(0.0),
                max: Some(10.0),
                ..FeatureSpec::unnamed(n.to_string())
            })
            .collect();
        let index: HashMap<String, usize> = if named {
            features
                .iter()
                .enumerate()
                .map(|(i, f)| (f.name.clone(), i))
                .collect()
        } else {
            HashMap::new()
        };
        InputContract::Tabular {
            features,
            index,
            dtype: DataType::F32,
        }
    }

    /// Decodes through both readings of a body, the fast numeric form and plain JSON values,
    /// and checks that they agree exactly (tensors, or error kind, instance and message).
    fn decode(
        contract: &InputContract,
        values: &[Value],
    ) -> Result<Vec<Tensor>, ContractViolation> {
        let fast: Vec<Instance> = values.iter().cloned().map(Instance::from).collect();
        let slow: Vec<Instance> = values.iter().cloned().map(Instance::Json).collect();
        let (a, b) = (
            super::decode(contract, &fast),
            super::decode(contract, &slow),
        );
        assert_eq!(a, b, "fast and JSON-value decoding differ for {values:?}");
        a
    }

    #[test]
    fn numeric_fast_path_names_nested_positions_like_the_json_path() {
        let spec = TensorSpec {
            name: "img".into(),
            dtype: DataType::U8,
            shape: vec![Dim::Batch, Dim::Fixed(2), Dim::Fixed(2)],
        };
        let c = InputContract::Tensors { inputs: vec![spec] };
        let err = decode(&c, &[json!([[1, 2], [3, 300]])]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "instance 0: input \"img\"[1][1]: 300 does not fit the input type u8"
        );
        let err = decode(&c, &[json!([1, 2, 3, -1])]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "instance 0: input \"img\"[3]: -1 does not fit the input type u8"
        );
    }

    fn kind(contract: &InputContract, instances: Value) -> ViolationKind {
        let instances = instances.as_array().unwrap().clone();
        decode(contract, &instances).unwrap_err().kind
    }

    #[test]
    fn arrays_and_named_objects_give_the_same_rows() {
        let c = tabular(true);
        let a = decode(&c, &[json!([1.0, 2.0]), json!({"b": 4, "a": 3})]).unwrap();
        assert_eq!(a[0].shape, vec![2, 2]);
        assert_eq!(a[0].data, TensorData::F32(vec![1.0, 2.0, 3.0, 4.0]));
    }

    #[test]
    fn each_rule_has_its_own_kind() {
        let c = tabular(true);
        assert_eq!(kind(&c, json!([[1.0]])), ViolationKind::WrongFeatureCount);
        assert_eq!(
            kind(&c, json!([{"a": 1, "c": 2}])),
            ViolationKind::UnknownFeature
        );
        assert_eq!(kind(&c, json!([{"a": 1}])), ViolationKind::MissingFeature);
        assert_eq!(kind(&c, json!([[1.0, 11.0]])), ViolationKind::OutOfRange);
        assert_eq!(kind(&c, json!([[1.0, "x"]])), ViolationKind::WrongType);
        assert_eq!(kind(&c, json!(["x"])), ViolationKind::WrongType);
        assert_eq!(
            kind(&tabular(false), json!([{"a": 1, "b": 2}])),
            ViolationKind::WrongType
        );
    }

    #[test]
    fn f32_overflow_is_non_finite() {
        let c = InputContract::Tabular {
            features: vec![FeatureSpec::unnamed("a".into())],
            index: HashMap::new(),
            dtype: DataType::F32,
        };
        let err = decode(&c, &[json!([1.0]), json!([1e39])]).unwrap_err();
        assert_eq!(err.kind, ViolationKind::NonFinite);
        assert_eq!(err.instance, Some(1));
        assert!(err.message.contains("feature \"a\""), "{}", err.message);
    }

    #[test]
    fn messages_name_instance_field_and_limit() {
        let err = decode(&tabular(true), &[json!([1, 2]), json!([3, 12.5])]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "instance 1: feature \"b\" = 12.5 is outside its valid range [0, 10]"
        );
    }

    #[test]
    fn nested_and_flat_tensors() {
        let spec = TensorSpec {
            name: "img".into(),
            dtype: DataType::I64,
            shape: vec![Dim::Batch, Dim::Fixed(2), Dim::Fixed(2)],
        };
        let c = InputContract::Tensors { inputs: vec![spec] };
        let t = decode(&c, &[json!([[1, 2], [3, 4]]), json!([5, 6, 7, 8])]).unwrap();
        assert_eq!(t[0].shape, vec![2, 2, 2]);
        assert_eq!(t[0].data, TensorData::I64(vec![1, 2, 3, 4, 5, 6, 7, 8]));
        assert_eq!(kind(&c, json!([[[1, 2], [3]]])), ViolationKind::WrongShape);
        assert_eq!(
            kind(&c, json!([[[1, 2], [3, 4.5]]])),
            ViolationKind::WrongType
        );
        assert_eq!(
            kind(&c, json!([{"other": 1}])),
            ViolationKind::UnknownFeature
        );
    }
}
