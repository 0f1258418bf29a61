//! Builds a version's contract: the model card checked against the ONNX graph. It decides how
//! instances are read and how outputs are presented, and rejects cards that contradict the graph.

use std::collections::HashMap;

use super::manifest::{Feature, Manifest, Task};
use crate::contract::{
    Column, FeatureSpec, FeatureType, InputContract, ModelContract, OutputContract,
};
use crate::engine::{Dim, ModelSignature, TensorSpec};

/// Checks `manifest` against `signature` and builds the contract. The error says what
/// contradicts what.
pub fn build_contract(
    manifest: Option<&Manifest>,
    signature: &ModelSignature,
) -> Result<ModelContract, String> {
    let empty = Manifest::default();
    let manifest = manifest.unwrap_or(&empty);
    let (input, columns) = input_contract(manifest, signature)?;
    let task = manifest
        .task
        .unwrap_or_else(|| infer_task(manifest, signature));
    let output = output_contract(task, manifest, signature)?;
    Ok(ModelContract {
        task,
        input,
        output,
        signature: signature.clone(),
        columns,
    })
}

fn is_tabular(spec: &TensorSpec) -> bool {
    spec.dtype.is_float() && matches!(spec.shape.as_slice(), [Dim::Batch, Dim::Fixed(_)])
}

fn input_contract(
    manifest: &Manifest,
    sig: &ModelSignature,
) -> Result<(InputContract, Vec<Column>), String> {
    let tabular = match sig.inputs.as_slice() {
        [only] if is_tabular(only) => Some(only),
        _ => None,
    };
    match (tabular, manifest.features.is_empty()) {
        (Some(spec), true) => Ok((
            InputContract::Tabular {
                features: (0..spec.row_len())
                    .map(|i| FeatureSpec::unnamed(format!("f{i}")))
                    .collect(),
                index: HashMap::new(),
                dtype: spec.dtype,
            },
            Vec::new(),
        )),
        (Some(spec), false) => {
            if manifest.features.len() != spec.row_len() {
                return Err(format!(
                    "the manifest lists {} features but input {} takes {} values per instance (shape {:?})",
                    manifest.features.len(),
                    spec.name,
                    spec.row_len(),
                    spec.shape_i64()
                ));
            }
            if let Some(f) = manifest
                .features
                .iter()
                .find(|f| f.kind == FeatureType::String)
            {
                return Err(format!(
                    "feature {:?} has type = \"string\" but it is a column of input {:?}, a {} \
                     tensor of shape {:?}",
                    f.name,
                    spec.name,
                    spec.dtype,
                    spec.shape_i64()
                ));
            }
            let features: Vec<FeatureSpec> = manifest.features.iter().map(Feature::spec).collect();
            let index = features
                .iter()
                .enumerate()
                .map(|(i, f)| (f.name.clone(), i))
                .collect();
            let columns = Column::tabular(&features);
            Ok((
                InputContract::Tabular {
                    features,
                    index,
                    dtype: spec.dtype,
                },
                columns,
            ))
        }
        (None, true) => Ok((
            InputContract::Tensors {
                inputs: sig.inputs.clone(),
            },
            Vec::new(),
        )),
        (None, false) => {
            let columns =
                Column::per_input(&card_specs(manifest), &sig.inputs).ok_or_else(|| {
                    format!(
                        "the manifest lists named features, but the graph takes neither one float \
                     input of shape [batch, features] nor one input per feature, named as the \
                     features, each one value per instance (inputs: {})",
                        describe(&sig.inputs)
                    )
                })??;
            Ok((
                InputContract::Tensors {
                    inputs: sig.inputs.clone(),
                },
                columns,
            ))
        }
    }
}

fn card_specs(manifest: &Manifest) -> Vec<FeatureSpec> {
    manifest.features.iter().map(Feature::spec).collect()
}

fn describe(specs: &[TensorSpec]) -> String {
    specs
        .iter()
        .map(|s| format!("{} {} {:?}", s.name, s.dtype, s.shape_i64()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn is_label_output(spec: &TensorSpec) -> bool {
    !spec.dtype.is_float() && spec.row_len() == 1 && spec.shape.len() <= 2
}

fn is_probability_output(spec: &TensorSpec) -> bool {
    spec.dtype.is_float() && matches!(spec.shape.as_slice(), [Dim::Batch, Dim::Fixed(c)] if *c >= 2)
}

fn is_value_output(spec: &TensorSpec) -> bool {
    spec.dtype.is_float()
        && matches!(
            spec.shape.as_slice(),
            [Dim::Batch] | [Dim::Batch, Dim::Fixed(1)]
        )
}

fn infer_task(manifest: &Manifest, sig: &ModelSignature) -> Task {
    if let Some(names) = &manifest.outputs {
        if names.probabilities.is_some() || names.label.is_some() {
            return Task::Classification;
        }
        if names.value.is_some() {
            return Task::Regression;
        }
    }
    let outputs = &sig.outputs;
    let probabilities = outputs.iter().filter(|o| is_probability_output(o)).count();
    let labels = outputs.iter().filter(|o| is_label_output(o)).count();
    if probabilities == 1 && (labels == 1 || !manifest.labels.is_empty()) {
        Task::Classification
    } else if outputs.len() == 1 && is_value_output(&outputs[0]) {
        Task::Regression
    } else {
        Task::Raw
    }
}

/// Finds the output named in the manifest, or the only output that fits.
fn pick(
    sig: &ModelSignature,
    named: Option<&String>,
    role: &str,
    fits: fn(&TensorSpec) -> bool,
) -> Result<Option<usize>, String> {
    if let Some(name) = named {
        let ix = sig
            .outputs
            .iter()
            .position(|o| &o.name == name)
            .ok_or_else(|| {
                format!(
                "the manifest names output {name:?} as the {role}, but the graph's outputs are: {}",
                describe(&sig.outputs)
            )
            })?;
        if !fits(&sig.outputs[ix]) {
            return Err(format!(
                "output {name:?} cannot be the {role}: {}",
                describe(&sig.outputs[ix..=ix])
            ));
        }
        return Ok(Some(ix));
    }
    let candidates: Vec<usize> = (0..sig.outputs.len())
        .filter(|&i| fits(&sig.outputs[i]))
        .collect();
    Ok(match candidates.as_slice() {
        [one] => Some(*one),
        _ => None,
    })
}

fn output_contract(
    task: Task,
    manifest: &Manifest,
    sig: &ModelSignature,
) -> Result<OutputContract, String> {
    let names = manifest.outputs.clone().unwrap_or_default();
    let misplaced = |what: &str| {
        Err(format!(
            "{what} only applies to {} models, but this model's task is {}",
            if what.contains("value") {
                "regression"
            } else {
                "classification"
            },
            task.as_str()
        ))
    };
    if task != Task::Classification {
        if !manifest.labels.is_empty() {
            return misplaced("labels");
        }
        if names.label.is_some() || names.probabilities.is_some() {
            return misplaced("[outputs] label/probabilities");
        }
    }
    if task != Task::Regression && names.value.is_some() {
        return misplaced("[outputs] value");
    }
    match task {
        Task::Classification => {
            let probabilities = pick(
                sig,
                names.probabilities.as_ref(),
                "probabilities",
                is_probability_output,
            )?
            .ok_or_else(|| {
                format!(
                    "a classifier needs one float output of shape [batch, classes]; outputs: {} \
                         (name it with [outputs] probabilities = \"...\")",
                    describe(&sig.outputs)
                )
            })?;
            let label = pick(sig, names.label.as_ref(), "label", is_label_output)?;
            let classes = sig.outputs[probabilities].row_len();
            let labels = if manifest.labels.is_empty() {
                (0..classes).map(|c| c.to_string()).collect()
            } else if manifest.labels.len() == classes {
                manifest.labels.clone()
            } else {
                return Err(format!(
                    "the manifest lists {} labels but output {} has {} classes",
                    manifest.labels.len(),
                    sig.outputs[probabilities].name,
                    classes
                ));
            };
            Ok(OutputContract::Classification {
                label,
                probabilities,
                labels,
            })
        }
        Task::Regression => {
            let value = pick(sig, names.value.as_ref(), "value", is_value_output)?.ok_or_else(|| {
                format!(
                    "a regressor needs one float output of shape [batch] or [batch, 1]; outputs: {} \
                     (name it with [outputs] value = \"...\")",
                    describe(&sig.outputs)
                )
            })?;
            Ok(OutputContract::Regression { value })
        }
        Task::Raw => Ok(OutputContract::Raw),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::DataType;

    fn spec(name: &str, dtype: DataType, shape: Vec<Dim>) -> TensorSpec {
        TensorSpec {
            name: name.into(),
            dtype,
            shape,
        }
    }

    fn classifier(features: usize, classes: usize) -> ModelSignature {
        ModelSignature {
            inputs: vec![spec(
                "x",
                DataType::F32,
                vec![Dim::Batch, Dim::Fixed(features)],
            )],
            outputs: vec![
                spec("label", DataType::I64, vec![Dim::Batch]),
                spec(
                    "probabilities",
                    DataType::F32,
                    vec![Dim::Batch, Dim::Fixed(classes)],
                ),
            ],
            batched: true,
            batching: Default::default(),
        }
    }

    fn features(n: usize) -> Vec<crate::repository::Feature> {
        (0..n)
            .map(|i| crate::repository::Feature::number(format!("x{i}")))
            .collect()
    }

    #[test]
    fn bare_classifier_is_inferred() {
        let c = build_contract(None, &classifier(4, 3)).unwrap();
        assert_eq!(c.task, Task::Classification);
        assert_eq!(c.labels(), ["0", "1", "2"]);
        assert!(matches!(&c.input, InputContract::Tabular { index, .. } if index.is_empty()));
    }

    #[test]
    fn feature_count_must_match_the_graph() {
        let m = Manifest {
            features: features(5),
            ..Manifest::default()
        };
        let err = build_contract(Some(&m), &classifier(4, 3)).unwrap_err();
        assert!(
            err.contains("lists 5 features but input x takes 4"),
            "{err}"
        );
    }

    #[test]
    fn label_count_must_match_the_graph() {
        let m = Manifest {
            labels: vec!["a".into(), "b".into()],
            ..Manifest::default()
        };
        let err = build_contract(Some(&m), &classifier(4, 3)).unwrap_err();
        assert!(
            err.contains("2 labels but output probabilities has 3 classes"),
            "{err}"
        );
    }

    #[test]
    fn named_outputs_must_exist() {
        let m = Manifest {
            task: Some(Task::Regression),
            outputs: Some(crate::repository::OutputNames {
                value: Some("nope".into()),
                ..Default::default()
            }),
            ..Manifest::default()
        };
        let err = build_contract(Some(&m), &classifier(4, 3)).unwrap_err();
        assert!(err.contains("\"nope\""), "{err}");
    }

    #[test]
    fn card_fields_of_another_task_are_rejected() {
        let sig = ModelSignature {
            inputs: vec![spec("x", DataType::F32, vec![Dim::Batch, Dim::Fixed(10)])],
            outputs: vec![spec(
                "variable",
                DataType::F32,
                vec![Dim::Batch, Dim::Fixed(1)],
            )],
            batched: true,
            batching: Default::default(),
        };
        let m = Manifest {
            labels: vec!["a".into()],
            ..Manifest::default()
        };
        let err = build_contract(Some(&m), &sig).unwrap_err();
        assert!(
            err.contains("labels only applies to classification"),
            "{err}"
        );
        let m = Manifest {
            task: Some(Task::Classification),
            outputs: Some(crate::repository::OutputNames {
                value: Some("variable".into()),
                ..Default::default()
            }),
            ..Manifest::default()
        };
        let err = build_contract(Some(&m), &classifier(4, 3)).unwrap_err();
        assert!(
            err.contains("[outputs] value only applies to regression"),
            "{err}"
        );
    }

    #[test]
    fn single_value_output_is_regression() {
        let sig = ModelSignature {
            inputs: vec![spec("x", DataType::F32, vec![Dim::Batch, Dim::Fixed(10)])],
            outputs: vec![spec(
                "variable",
                DataType::F32,
                vec![Dim::Batch, Dim::Fixed(1)],
            )],
            batched: true,
            batching: Default::default(),
        };
        let c = build_contract(None, &sig).unwrap();
        assert_eq!(c.output, OutputContract::Regression { value: 0 });
    }

    #[test]
    fn image_input_is_raw_tensors() {
        let sig = ModelSignature {
            inputs: vec![spec(
                "img",
                DataType::F32,
                vec![Dim::Batch, Dim::Fixed(3), Dim::Fixed(8), Dim::Fixed(8)],
            )],
            outputs: vec![spec(
                "logits",
                DataType::F32,
                vec![Dim::Batch, Dim::Fixed(10)],
            )],
            batched: true,
            batching: Default::default(),
        };
        let c = build_contract(None, &sig).unwrap();
        assert_eq!(c.task, Task::Raw);
        assert!(matches!(c.input, InputContract::Tensors { .. }));
        let m = Manifest {
            features: features(192),
            ..Manifest::default()
        };
        assert!(build_contract(Some(&m), &sig)
            .unwrap_err()
            .contains("named features"));
    }
}
