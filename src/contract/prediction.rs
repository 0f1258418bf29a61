//! Turning output tensors into per-instance answers: label and probabilities for classifiers,
//! a value for regressors, the tensors themselves for raw models.

use super::{ModelContract, OutputContract};
use crate::engine::{DataType, Tensor, TensorData};

/// One instance's answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Prediction {
    Classification {
        class_index: usize,
        label: String,
        /// Probability of the predicted class.
        confidence: f32,
        /// One probability per class, in class-index order.
        probabilities: Vec<f32>,
    },
    Regression {
        value: f64,
    },
    Raw {
        outputs: Vec<RawOutput>,
    },
}

/// One output tensor's slice for one instance.
#[derive(Debug, Clone, PartialEq)]
pub struct RawOutput {
    pub name: String,
    pub dtype: DataType,
    pub shape: Vec<usize>,
    pub data: TensorData,
}

/// Splits batched outputs into one prediction per instance.
pub fn predictions(
    contract: &ModelContract,
    outputs: &[Tensor],
    rows: usize,
) -> Result<Vec<Prediction>, String> {
    for (t, spec) in outputs.iter().zip(&contract.signature.outputs) {
        if t.rows() != rows {
            return Err(format!(
                "output {} has {} rows for {rows} instances",
                spec.name,
                t.rows()
            ));
        }
    }
    match &contract.output {
        OutputContract::Classification {
            label,
            probabilities,
            labels,
        } => {
            let probs = &outputs[*probabilities];
            let classes = probs.row_len();
            (0..rows)
                .map(|row| {
                    let p: Vec<f32> = (0..classes)
                        .map(|c| probs.data.get_f64(row * classes + c).unwrap_or(f64::NAN) as f32)
                        .collect();
                    let (class_index, name) = match label {
                        Some(ix) => class_from_label(&outputs[*ix], row, labels, &p)?,
                        None => (argmax(&p), None),
                    };
                    Ok(Prediction::Classification {
                        class_index,
                        label: name.unwrap_or_else(|| labels[class_index].clone()),
                        confidence: p[class_index],
                        probabilities: p,
                    })
                })
                .collect()
        }
        OutputContract::Regression { value } => {
            let t = &outputs[*value];
            (0..rows)
                .map(|row| {
                    let v = match &t.data {
                        TensorData::F32(v) => shortest(v[row * t.row_len().max(1)]),
                        other => other.get_f64(row * t.row_len().max(1)).unwrap_or(f64::NAN),
                    };
                    Ok(Prediction::Regression { value: v })
                })
                .collect()
        }
        OutputContract::Raw => Ok((0..rows)
            .map(|row| Prediction::Raw {
                outputs: outputs
                    .iter()
                    .zip(&contract.signature.outputs)
                    .map(|(t, spec)| RawOutput {
                        name: spec.name.clone(),
                        dtype: t.dtype(),
                        shape: t.shape[1..].to_vec(),
                        data: row_slice(t, row),
                    })
                    .collect(),
            })
            .collect()),
    }
}

/// The class a label output gives: for integer labels the index itself; for string labels the
/// position of the name among the labels, and the name. A name the labels do not list (a graph
/// whose class names infera could not read, e.g. a KNeighbors export without ZipMap) keeps the
/// model's name, with the most probable class as its index.
fn class_from_label(
    t: &Tensor,
    row: usize,
    labels: &[String],
    p: &[f32],
) -> Result<(usize, Option<String>), String> {
    let classes = labels.len();
    let at = row * t.row_len().max(1);
    if let Some(name) = t.data.get_str(at) {
        let index = labels.iter().position(|l| l == name);
        return Ok((index.unwrap_or_else(|| argmax(p)), Some(name.to_string())));
    }
    let v = t.data.get_f64(at).unwrap_or(f64::NAN);
    if v >= 0.0 && v < classes as f64 && v.fract() == 0.0 {
        Ok((v as usize, None))
    } else {
        Err(format!("label output gave class {v}, outside 0..{classes}"))
    }
}

fn argmax(p: &[f32]) -> usize {
    p.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (i, &x)| {
            if x > best.1 {
                (i, x)
            } else {
                best
            }
        })
        .0
}

/// An f32 widened to the f64 with the same shortest decimal form (so 0.1f32 prints as 0.1).
fn shortest(x: f32) -> f64 {
    x.to_string().parse().unwrap_or(f64::from(x))
}

fn row_slice(t: &Tensor, row: usize) -> TensorData {
    let n = t.row_len();
    t.data.slice(row * n..(row + 1) * n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::{InputContract, Task};
    use crate::engine::{Dim, ModelSignature, TensorSpec};

    fn classifier(with_label: bool) -> ModelContract {
        let mut outputs = vec![TensorSpec {
            name: "p".into(),
            dtype: DataType::F32,
            shape: vec![Dim::Batch, Dim::Fixed(3)],
        }];
        if with_label {
            outputs.push(TensorSpec {
                name: "label".into(),
                dtype: DataType::I64,
                shape: vec![Dim::Batch],
            });
        }
        ModelContract {
            task: Task::Classification,
            input: InputContract::Tensors { inputs: vec![] },
            output: OutputContract::Classification {
                label: with_label.then_some(1),
                probabilities: 0,
                labels: vec!["a".into(), "b".into(), "c".into()],
            },
            signature: ModelSignature {
                inputs: vec![],
                outputs,
                batched: true,
                batching: Default::default(),
            },
            columns: Vec::new(),
        }
    }

    #[test]
    fn classification_uses_the_label_output_or_argmax() {
        let probs = Tensor::new(
            vec![2, 3],
            TensorData::F32(vec![0.1, 0.7, 0.2, 0.5, 0.3, 0.2]),
        )
        .unwrap();
        let got = predictions(&classifier(false), std::slice::from_ref(&probs), 2).unwrap();
        assert!(
            matches!(&got[0], Prediction::Classification { class_index: 1, label, confidence, .. } if label == "b" && *confidence == 0.7)
        );
        let label = Tensor::new(vec![2], TensorData::I64(vec![2, 0])).unwrap();
        let got = predictions(&classifier(true), &[probs.clone(), label], 2).unwrap();
        assert!(matches!(
            &got[0],
            Prediction::Classification { class_index: 2, .. }
        ));
        let bad = Tensor::new(vec![2], TensorData::I64(vec![7, 0])).unwrap();
        assert!(predictions(&classifier(true), &[probs, bad], 2)
            .unwrap_err()
            .contains("outside 0..3"));
    }

    #[test]
    fn string_labels_are_found_by_name() {
        let probs = Tensor::new(
            vec![2, 3],
            TensorData::F32(vec![0.1, 0.2, 0.7, 0.5, 0.3, 0.2]),
        )
        .unwrap();
        let names = |v: &[&str]| {
            Tensor::new(
                vec![2],
                TensorData::String(v.iter().map(|s| s.to_string()).collect()),
            )
            .unwrap()
        };
        let got = predictions(&classifier(true), &[probs.clone(), names(&["c", "a"])], 2).unwrap();
        assert!(matches!(
            &got[0],
            Prediction::Classification { class_index: 2, label, .. } if label == "c"
        ));
        assert!(matches!(
            &got[1],
            Prediction::Classification { class_index: 0, .. }
        ));
        // A name the labels do not list keeps the model's name, indexed by the top probability.
        let got = predictions(&classifier(true), &[probs, names(&["c", "zz"])], 2).unwrap();
        assert!(matches!(
            &got[1],
            Prediction::Classification { class_index: 0, label, .. } if label == "zz"
        ));
    }

    #[test]
    fn shortest_keeps_the_f32_digits() {
        assert_eq!(shortest(0.1), 0.1);
        assert_eq!(shortest(206.11668), 206.11668);
    }
}
