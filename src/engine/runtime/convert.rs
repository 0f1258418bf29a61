//! Tensor conversion at the engine seam: infera's plain tensors to and from tract's, element
//! types, and the one-copy stacking and splitting used when several callers share a call.

use tract_onnx::prelude::{self as tract, *};

use crate::engine::error::EngineError;
use crate::engine::tensor::{DataType, Tensor, TensorData, TensorSpec};

/// The engine type of a tract element type; None for types infera does not serve (complex
/// numbers, blobs...).
pub(super) fn data_type(dt: DatumType) -> Option<DataType> {
    match dt {
        DatumType::Bool => Some(DataType::Bool),
        DatumType::U8 => Some(DataType::U8),
        DatumType::U16 => Some(DataType::U16),
        DatumType::U32 => Some(DataType::U32),
        DatumType::U64 => Some(DataType::U64),
        DatumType::I8 => Some(DataType::I8),
        DatumType::I16 => Some(DataType::I16),
        DatumType::I32 => Some(DataType::I32),
        DatumType::I64 => Some(DataType::I64),
        DatumType::F16 => Some(DataType::F16),
        DatumType::F32 => Some(DataType::F32),
        DatumType::F64 => Some(DataType::F64),
        DatumType::String => Some(DataType::String),
        _ => None,
    }
}

/// Output element types: as the graph declares them, except tract's symbolic dimensions (TDim,
/// from shape computations), which leave as i64 like ONNX's own shape outputs.
pub(super) fn output_type(dt: DatumType) -> Option<DataType> {
    data_type(dt).or(match dt {
        DatumType::TDim => Some(DataType::I64),
        _ => None,
    })
}

pub(super) fn to_tract(t: &Tensor, strip_axis: bool) -> Result<tract::Tensor, EngineError> {
    let shape: &[usize] = if strip_axis { &t.shape[1..] } else { &t.shape };
    let built = match &t.data {
        TensorData::Bool(v) => tract::Tensor::from_shape(shape, v),
        TensorData::U8(v) => tract::Tensor::from_shape(shape, v),
        TensorData::U16(v) => tract::Tensor::from_shape(shape, v),
        TensorData::U32(v) => tract::Tensor::from_shape(shape, v),
        TensorData::U64(v) => tract::Tensor::from_shape(shape, v),
        TensorData::I8(v) => tract::Tensor::from_shape(shape, v),
        TensorData::I16(v) => tract::Tensor::from_shape(shape, v),
        TensorData::I32(v) => tract::Tensor::from_shape(shape, v),
        TensorData::I64(v) => tract::Tensor::from_shape(shape, v),
        TensorData::F16(v) => tract::Tensor::from_shape(shape, v),
        TensorData::F32(v) => tract::Tensor::from_shape(shape, v),
        TensorData::F64(v) => tract::Tensor::from_shape(shape, v),
        TensorData::String(v) => strings_tensor(shape, v.clone()),
    };
    built.map_err(|e| EngineError::Inference(format!("{e:#}")))
}

pub(super) fn from_tract(
    value: &tract::Tensor,
    spec: &TensorSpec,
    add_axis: bool,
) -> Result<Tensor, EngineError> {
    fn collect<T: Datum + Copy>(t: &tract::Tensor) -> TractResult<Vec<T>> {
        let cast = t.cast_to::<T>()?;
        Ok(cast.to_plain_array_view::<T>()?.iter().copied().collect())
    }
    let fail =
        |e: tract::TractError| EngineError::Inference(format!("output {}: {e:#}", spec.name));
    let data = match spec.dtype {
        DataType::Bool => TensorData::Bool(collect::<bool>(value).map_err(fail)?),
        DataType::U8 => TensorData::U8(collect::<u8>(value).map_err(fail)?),
        DataType::U16 => TensorData::U16(collect::<u16>(value).map_err(fail)?),
        DataType::U32 => TensorData::U32(collect::<u32>(value).map_err(fail)?),
        DataType::U64 => TensorData::U64(collect::<u64>(value).map_err(fail)?),
        DataType::I8 => TensorData::I8(collect::<i8>(value).map_err(fail)?),
        DataType::I16 => TensorData::I16(collect::<i16>(value).map_err(fail)?),
        DataType::I32 => TensorData::I32(collect::<i32>(value).map_err(fail)?),
        DataType::I64 => TensorData::I64(collect::<i64>(value).map_err(fail)?),
        DataType::F16 => TensorData::F16(collect::<f16>(value).map_err(fail)?),
        DataType::F32 => TensorData::F32(collect::<f32>(value).map_err(fail)?),
        DataType::F64 => TensorData::F64(collect::<f64>(value).map_err(fail)?),
        DataType::String => TensorData::String(strings_of(value).map_err(fail)?),
    };
    let mut shape = value.shape().to_vec();
    if add_axis {
        shape.insert(0, 1);
    }
    if shape.is_empty() {
        shape.push(1);
    }
    Tensor::new(shape, data).ok_or_else(|| {
        EngineError::Inference(format!("output {} has an inconsistent shape", spec.name))
    })
}

/// One tract tensor of `shape` holding `parts` back to back (all of one element type).
pub(super) fn stack_into_tract<'a>(
    shape: &[usize],
    mut parts: impl Iterator<Item = &'a TensorData>,
) -> Result<tract::Tensor, EngineError> {
    fn fill<'p, T: Datum + Copy>(
        shape: &[usize],
        first: &'p [T],
        rest: impl Iterator<Item = Option<&'p [T]>>,
    ) -> Result<tract::Tensor, EngineError> {
        let mut tensor = tract::Tensor::zero_dt(T::datum_type(), shape)
            .map_err(|e| EngineError::Inference(format!("{e:#}")))?;
        let mut view = tensor
            .try_as_plain_ram_mut()
            .map_err(|e| EngineError::Inference(format!("{e:#}")))?;
        let out = view
            .as_slice_mut::<T>()
            .map_err(|e| EngineError::Inference(format!("{e:#}")))?;
        let mut at = 0;
        for part in std::iter::once(Some(first)).chain(rest) {
            let part = part.ok_or_else(|| EngineError::bad_input("*", "mixed element types"))?;
            let end = at + part.len();
            if end > out.len() {
                return Err(EngineError::bad_input(
                    "*",
                    "batch parts overflow the batch",
                ));
            }
            out[at..end].copy_from_slice(part);
            at = end;
        }
        if at != out.len() {
            return Err(EngineError::bad_input(
                "*",
                "batch parts do not fill the batch",
            ));
        }
        Ok(tensor)
    }
    macro_rules! stack {
        ($variant:ident, $first:expr) => {
            fill(
                shape,
                $first,
                parts.map(|p| match p {
                    TensorData::$variant(v) => Some(v.as_slice()),
                    _ => None,
                }),
            )
        };
    }
    match parts.next() {
        Some(TensorData::Bool(v)) => stack!(Bool, v),
        Some(TensorData::U8(v)) => stack!(U8, v),
        Some(TensorData::U16(v)) => stack!(U16, v),
        Some(TensorData::U32(v)) => stack!(U32, v),
        Some(TensorData::U64(v)) => stack!(U64, v),
        Some(TensorData::I8(v)) => stack!(I8, v),
        Some(TensorData::I16(v)) => stack!(I16, v),
        Some(TensorData::I32(v)) => stack!(I32, v),
        Some(TensorData::I64(v)) => stack!(I64, v),
        Some(TensorData::F16(v)) => stack!(F16, v),
        Some(TensorData::F32(v)) => stack!(F32, v),
        Some(TensorData::F64(v)) => stack!(F64, v),
        Some(TensorData::String(v)) => stack_strings(shape, v, parts),
        None => Err(EngineError::bad_input("*", "an empty batch")),
    }
}

/// One tract output split into consecutive row blocks of `rows` (one per caller), each copied
/// once into an infera tensor of the spec's element type.
pub(super) fn split_from_tract(
    value: &tract::Tensor,
    spec: &TensorSpec,
    rows: &[usize],
) -> Result<Vec<Tensor>, EngineError> {
    fn split<T: Datum + Copy>(
        value: &tract::Tensor,
        rows: &[usize],
        wrap: fn(Vec<T>) -> TensorData,
    ) -> TractResult<Vec<(usize, TensorData)>> {
        let cast = value.cast_to::<T>()?;
        let view = cast.try_as_plain_ram()?;
        let all = view.as_slice::<T>()?;
        let total: usize = rows.iter().sum();
        let row_len = all.len() / total.max(1);
        let mut at = 0;
        Ok(rows
            .iter()
            .map(|&r| {
                let part = wrap(all[at * row_len..(at + r) * row_len].to_vec());
                at += r;
                (r, part)
            })
            .collect())
    }
    let fail =
        |e: tract::TractError| EngineError::Inference(format!("output {}: {e:#}", spec.name));
    let parts = match spec.dtype {
        DataType::Bool => split::<bool>(value, rows, TensorData::Bool),
        DataType::U8 => split::<u8>(value, rows, TensorData::U8),
        DataType::U16 => split::<u16>(value, rows, TensorData::U16),
        DataType::U32 => split::<u32>(value, rows, TensorData::U32),
        DataType::U64 => split::<u64>(value, rows, TensorData::U64),
        DataType::I8 => split::<i8>(value, rows, TensorData::I8),
        DataType::I16 => split::<i16>(value, rows, TensorData::I16),
        DataType::I32 => split::<i32>(value, rows, TensorData::I32),
        DataType::I64 => split::<i64>(value, rows, TensorData::I64),
        DataType::F16 => split::<f16>(value, rows, TensorData::F16),
        DataType::F32 => split::<f32>(value, rows, TensorData::F32),
        DataType::F64 => split::<f64>(value, rows, TensorData::F64),
        DataType::String => split_strings(value, rows),
    }
    .map_err(fail)?;
    parts
        .into_iter()
        .map(|(r, data)| {
            let shape: Vec<usize> = std::iter::once(r)
                .chain(value.shape().iter().skip(1).copied())
                .collect();
            Tensor::new(shape, data).ok_or_else(|| {
                EngineError::Inference(format!("output {} has an inconsistent shape", spec.name))
            })
        })
        .collect()
}

/// A tract string tensor of `shape` (strings are not `Copy`, so they take their own path).
fn strings_tensor(shape: &[usize], data: Vec<String>) -> TractResult<tract::Tensor> {
    Ok(tract_ndarray::ArrayD::from_shape_vec(shape, data)?.into_tensor())
}

/// Every element of a tensor as a string (numbers are formatted by tract's cast).
fn strings_of(value: &tract::Tensor) -> TractResult<Vec<String>> {
    let cast = value.cast_to::<String>()?;
    Ok(cast
        .to_plain_array_view::<String>()?
        .iter()
        .cloned()
        .collect())
}

/// [`stack_into_tract`] for string parts.
fn stack_strings<'a>(
    shape: &[usize],
    first: &[String],
    rest: impl Iterator<Item = &'a TensorData>,
) -> Result<tract::Tensor, EngineError> {
    let total: usize = shape.iter().product();
    let mut all = Vec::with_capacity(total.min(first.len().saturating_mul(64)));
    all.extend_from_slice(first);
    for part in rest {
        let TensorData::String(v) = part else {
            return Err(EngineError::bad_input("*", "mixed element types"));
        };
        if all.len() + v.len() > total {
            return Err(EngineError::bad_input(
                "*",
                "batch parts overflow the batch",
            ));
        }
        all.extend_from_slice(v);
    }
    if all.len() != total {
        return Err(EngineError::bad_input(
            "*",
            "batch parts do not fill the batch",
        ));
    }
    strings_tensor(shape, all).map_err(|e| EngineError::Inference(format!("{e:#}")))
}

/// [`split_from_tract`] for string outputs.
fn split_strings(value: &tract::Tensor, rows: &[usize]) -> TractResult<Vec<(usize, TensorData)>> {
    let all = strings_of(value)?;
    let total: usize = rows.iter().sum();
    let row_len = all.len() / total.max(1);
    let mut at = 0;
    Ok(rows
        .iter()
        .map(|&r| {
            let part = TensorData::String(all[at * row_len..(at + r) * row_len].to_vec());
            at += r;
            (r, part)
        })
        .collect())
}
