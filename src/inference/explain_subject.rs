//! What an explanation needs to know about a model version: the kind of input (named
//! features or one tensor), its element type, the output columns, and how rows go in and
//! outputs come out.

use super::error::PredictError;
use super::explain_error::ExplainError;
use super::{InputContract, ModelContract, OutputContract};
use crate::contract::decode_instances as decode;
use crate::contract::Instance;
use crate::engine::{DataType, Tensor, TensorData};
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
}

/// Every instance's values (row-major, one instance after the other), checked against the
/// contract.
pub(super) fn instance_rows(
    loaded: &LoadedVersion,
    instances: &[Instance],
) -> Result<Vec<f64>, ExplainError> {
    let inputs = decode(&loaded.contract.input, instances).map_err(PredictError::from)?;
    crate::contract::check_columns(&loaded.contract.columns, &inputs)
        .map_err(PredictError::from)?;
    let data = &inputs[0].data;
    (0..data.len())
        .map(|i| {
            data.get_f64(i)
                .ok_or_else(|| ExplainError::Output("decoded input too short".into()))
        })
        .collect()
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

/// A batch-first input tensor of the model's float type.
pub(super) fn tensor(values: &[f64], input: &Input, dtype: DataType) -> Tensor {
    let row: Vec<usize> = match input {
        Input::Tabular { features } => vec![features.len()],
        Input::Tensor { shape } => shape.clone(),
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
