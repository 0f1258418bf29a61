//! What an explanation needs to know about a model version: the kind of input (named
//! features of one input, one input per named feature with strings among them, or one tensor),
//! its element type, the output columns, and how rows go in and outputs come out.
//!
//! Rows are numbers: a string column's cell is a code of [`Codes`], turned back into the string
//! only when a chunk's tensors are built.

use super::error::PredictError;
use super::explain_error::ExplainError;
use super::{InputContract, ModelContract, OutputContract};
use crate::contract::decode_instances as decode;
use crate::contract::{Column, FeatureType, Instance};
use crate::engine::{Cell, DataType, Dim, Tensor, TensorData, TensorSpec};
use crate::explain::Codes;
use crate::repository::LoadedVersion;

/// The model-facing facts an explanation needs, checked once per request.
pub(super) struct Subject<'a> {
    pub(super) input: Input,
    pub(super) dtype: DataType,
    /// Output columns per row: classes, or 1 for a value.
    pub(super) columns: usize,
    pub(super) labels: &'a [String],
}

/// What one instance of the model's input is.
pub(super) enum Input {
    /// Named features in column order.
    Tabular { features: Vec<String> },
    /// One tensor input; one instance's shape (at least two axes: height and width last).
    Tensor { shape: Vec<usize> },
    /// One string input of free text (a text classifier): explained token by token.
    Text { spec: TensorSpec },
    /// One graph input per named feature (a DataFrame export), numbers and strings, in the
    /// card's order.
    Columns {
        features: Vec<String>,
        inputs: Vec<TensorSpec>,
    },
}

impl Input {
    /// The named features (None for a tensor input).
    pub(super) fn features(&self) -> Option<&[String]> {
        match self {
            Input::Tabular { features } | Input::Columns { features, .. } => Some(features),
            Input::Tensor { .. } | Input::Text { .. } => None,
        }
    }
}

/// Every instance's values (row-major, one instance after the other), checked against the
/// contract; strings become codes of `codes`.
pub(super) fn instance_rows(
    loaded: &LoadedVersion,
    instances: &[Instance],
    codes: &mut Codes<'_>,
) -> Result<Vec<f64>, ExplainError> {
    let inputs = decode(&loaded.contract.input, instances).map_err(PredictError::from)?;
    crate::contract::check_columns(&loaded.contract.columns, &inputs)
        .map_err(PredictError::from)?;
    if loaded.contract.one_input_per_column() {
        return column_rows(&loaded.contract.columns, &inputs, instances.len(), codes);
    }
    let data = &inputs[0].data;
    (0..data.len())
        .map(|i| {
            data.get_f64(i)
                .ok_or_else(|| ExplainError::Output("decoded input too short".into()))
        })
        .collect()
}

/// The rows of a one-input-per-column model: cell `j` of row `i` is input `j`'s value `i`.
fn column_rows(
    columns: &[Column],
    inputs: &[Tensor],
    rows: usize,
    codes: &mut Codes<'_>,
) -> Result<Vec<f64>, ExplainError> {
    let mut out = Vec::with_capacity(rows.saturating_mul(columns.len()));
    for i in 0..rows {
        for (j, column) in columns.iter().enumerate() {
            out.push(match (column.cell(inputs, i), codes.is_text(j)) {
                (Cell::Number(v), false) => v,
                (Cell::Text(s), true) => codes.encode(j, s),
                _ => {
                    return Err(ExplainError::Output(format!(
                        "feature {:?}: decoded value {i} does not match its type",
                        column.spec.name
                    )))
                }
            });
        }
    }
    Ok(out)
}

pub(super) fn subject(loaded: &LoadedVersion) -> Result<Subject<'_>, ExplainError> {
    let not_explainable = || ExplainError::NotTabular {
        model: loaded.model.clone(),
    };
    let (input, dtype) = match &loaded.contract.input {
        InputContract::Tabular {
            features, dtype, ..
        } if !features.is_empty() => (
            Input::Tabular {
                features: features.iter().map(|f| f.name.clone()).collect(),
            },
            *dtype,
        ),
        InputContract::Tensors { inputs } if loaded.contract.one_input_per_column() => {
            match (free_text(loaded), inputs.as_slice()) {
                // A text classifier: its one input is the document.
                (Some(_), [spec]) => (Input::Text { spec: spec.clone() }, DataType::String),
                (Some(column), _) => {
                    return Err(ExplainError::FreeText {
                        model: loaded.model.clone(),
                        column: column.to_string(),
                    })
                }
                (None, _) => (
                    Input::Columns {
                        features: loaded
                            .contract
                            .columns
                            .iter()
                            .map(|c| c.spec.name.clone())
                            .collect(),
                        inputs: inputs.clone(),
                    },
                    DataType::F32,
                ),
            }
        }
        InputContract::Tensors { inputs } => match inputs.as_slice() {
            [only]
                if only.dtype.is_float()
                    && only.is_batched()
                    && !only.has_variable_rows()
                    && only.row_shape().len() >= 2 =>
            {
                (
                    Input::Tensor {
                        shape: only.row_shape(),
                    },
                    only.dtype,
                )
            }
            _ => return Err(not_explainable()),
        },
        InputContract::Tabular { .. } => return Err(not_explainable()),
    };
    let (columns, labels) = match &loaded.contract.output {
        OutputContract::Classification { labels, .. } => (labels.len(), labels.as_slice()),
        OutputContract::Regression { .. } => (1, &[][..]),
        OutputContract::Raw => {
            return Err(ExplainError::RawOutputs {
                model: loaded.model.clone(),
            })
        }
    };
    Ok(Subject {
        input,
        dtype,
        columns,
        labels,
    })
}

/// The first string column whose values have no known set (no `categories` in the card, and
/// no strings for it in the background): it holds free text, and a value absent from a
/// coalition has no replacement but the empty text. A model whose one input is such a column is
/// explained token by token; one with other columns beside it is refused, naming the column.
fn free_text(loaded: &LoadedVersion) -> Option<&str> {
    let vocabulary = loaded.background.as_ref().ok().map(|b| b.vocabulary());
    loaded
        .contract
        .columns
        .iter()
        .enumerate()
        .find(|(j, c)| {
            c.spec.kind == FeatureType::String
                && c.spec.categories.is_none()
                && vocabulary.is_none_or(|v| v.strings(*j).is_empty())
        })
        .map(|(_, c)| c.spec.name.as_str())
}

/// Every instance's document (a text model's one string input), checked against the contract.
pub(super) fn instance_texts(
    loaded: &LoadedVersion,
    instances: &[Instance],
) -> Result<Vec<String>, ExplainError> {
    let mut inputs = decode(&loaded.contract.input, instances).map_err(PredictError::from)?;
    crate::contract::check_columns(&loaded.contract.columns, &inputs)
        .map_err(PredictError::from)?;
    match inputs.pop().map(|t| t.data) {
        Some(TensorData::String(texts)) if texts.len() == instances.len() => Ok(texts),
        _ => Err(ExplainError::Output(
            "a text model's input did not decode to one string per instance".into(),
        )),
    }
}

/// A batch-first string tensor of `texts` shaped like `spec`.
pub(super) fn text_tensor(texts: Vec<String>, spec: &TensorSpec) -> Tensor {
    let shape = match spec.shape.as_slice() {
        [Dim::Batch] => vec![texts.len()],
        _ => vec![texts.len(), 1],
    };
    Tensor {
        shape,
        data: TensorData::String(texts),
    }
}

/// The model's input tensors for row-major `values` (batch first).
pub(super) fn tensors(
    values: &[f64],
    input: &Input,
    dtype: DataType,
    codes: &Codes<'_>,
) -> Vec<Tensor> {
    match input {
        Input::Columns { inputs, .. } => column_tensors(values, inputs, codes),
        _ => vec![tensor(values, input, dtype)],
    }
}

/// One tensor per column input: strings decoded, numbers in the input's element type.
fn column_tensors(values: &[f64], inputs: &[TensorSpec], codes: &Codes<'_>) -> Vec<Tensor> {
    let width = inputs.len().max(1);
    let rows = values.len() / width;
    inputs
        .iter()
        .enumerate()
        .map(|(j, spec)| {
            let column = values.iter().skip(j).step_by(width);
            let data = if spec.dtype == DataType::String {
                TensorData::String(column.map(|&c| codes.decode(j, c).to_string()).collect())
            } else {
                numbers(spec.dtype, column.copied())
            };
            let shape = match spec.shape.as_slice() {
                [Dim::Batch] => vec![rows],
                _ => vec![rows, 1],
            };
            Tensor { shape, data }
        })
        .collect()
}

/// Numbers in element type `dtype` (integers rounded; background quantiles may fall between
/// them).
fn numbers(dtype: DataType, v: impl Iterator<Item = f64>) -> TensorData {
    match dtype {
        DataType::F64 => TensorData::F64(v.collect()),
        DataType::F16 => TensorData::F16(v.map(half::f16::from_f64).collect()),
        DataType::Bool => TensorData::Bool(v.map(|x| x != 0.0).collect()),
        DataType::U8 => TensorData::U8(v.map(|x| x.round() as u8).collect()),
        DataType::U16 => TensorData::U16(v.map(|x| x.round() as u16).collect()),
        DataType::U32 => TensorData::U32(v.map(|x| x.round() as u32).collect()),
        DataType::U64 => TensorData::U64(v.map(|x| x.round() as u64).collect()),
        DataType::I8 => TensorData::I8(v.map(|x| x.round() as i8).collect()),
        DataType::I16 => TensorData::I16(v.map(|x| x.round() as i16).collect()),
        DataType::I32 => TensorData::I32(v.map(|x| x.round() as i32).collect()),
        DataType::I64 => TensorData::I64(v.map(|x| x.round() as i64).collect()),
        DataType::F32 | DataType::String => TensorData::F32(v.map(|x| x as f32).collect()),
    }
}

/// A batch-first input tensor of the model's float type.
fn tensor(values: &[f64], input: &Input, dtype: DataType) -> Tensor {
    let row: Vec<usize> = match input {
        Input::Tabular { features } | Input::Columns { features, .. } => vec![features.len()],
        Input::Tensor { shape } => shape.clone(),
        Input::Text { .. } => vec![1],
    };
    let rows = values.len() / row.iter().product::<usize>().max(1);
    let data = match dtype {
        DataType::F64 => TensorData::F64(values.to_vec()),
        _ => TensorData::F32(values.iter().map(|v| *v as f32).collect()),
    };
    Tensor {
        shape: std::iter::once(rows).chain(row).collect(),
        data,
    }
}

/// The explained output of each row: class probabilities or the value, row-major.
pub(super) fn output_table(
    contract: &ModelContract,
    outputs: &[Tensor],
    rows: usize,
    columns: usize,
) -> Result<Vec<f64>, String> {
    let index = match &contract.output {
        OutputContract::Classification { probabilities, .. } => *probabilities,
        OutputContract::Regression { value } => *value,
        OutputContract::Raw => return Err("raw outputs cannot be explained".into()),
    };
    let t = outputs
        .get(index)
        .ok_or_else(|| format!("output {index} missing"))?;
    if t.rows() != rows || t.row_len().max(1) != columns {
        return Err(format!(
            "output shape {:?} for {rows} rows of {columns} columns",
            t.shape
        ));
    }
    (0..rows * columns)
        .map(|i| {
            t.data
                .get_f64(i)
                .ok_or_else(|| "output too short".to_string())
        })
        .collect()
}

/// The output column to explain and its name: the requested class (or "value"), else the class
/// the model predicts for the instance (`table` row `instance`: its own output).
pub(super) fn target_column(
    subject: &Subject<'_>,
    target: Option<&str>,
    table: &[f64],
    instance: usize,
) -> Result<(usize, String), ExplainError> {
    let (labels, columns) = (subject.labels, subject.columns);
    if labels.is_empty() {
        return match target {
            None | Some("value") => Ok((0, "value".to_string())),
            Some(other) => Err(ExplainError::BadOption(format!(
                "target: {other:?} is not an output of this regressor (use \"value\")"
            ))),
        };
    }
    let column = match target {
        Some(label) => labels.iter().position(|l| l == label).ok_or_else(|| {
            ExplainError::BadOption(format!(
                "target: {label:?} is not a class of this model (classes: {})",
                labels.join(", ")
            ))
        })?,
        None => argmax(&table[instance * columns..(instance + 1) * columns]),
    };
    Ok((column, labels[column].clone()))
}

fn argmax(row: &[f64]) -> usize {
    row.iter()
        .enumerate()
        .fold((0, f64::NEG_INFINITY), |best, (i, &x)| {
            if x > best.1 {
                (i, x)
            } else {
                best
            }
        })
        .0
}
