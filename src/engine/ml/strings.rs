//! String tensors in ai.onnx.ml graphs: string class labels on every classifier
//! (`classlabels_strings`), LabelEncoder with string keys or values, and OneHotEncoder with
//! string categories (`cats_strings`), following onnxruntime (`label_encoder.cc`,
//! `onehotencoder.cc`). CategoryMapper is tract's own, which handles strings.
//!
//! A classifier with string labels runs its numeric kernel with the class indices `0..C` as
//! integer labels; [`StringLabels`] then turns the index output into the class names.

use std::sync::Arc;

use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

use super::attrs;
use super::kernel::{rejected, Kernel, MlOp, OutShape};

type Built = TractResult<(Box<dyn InferenceOp>, Vec<String>)>;

/// The classes of a classifier node: integer labels from `ints_attr`, or, when the node has
/// `classlabels_strings`, the indices `0..C` plus the names.
pub fn class_labels(
    node: &NodeProto,
    ints_attr: &str,
) -> TractResult<(Vec<i64>, Option<Vec<String>>)> {
    let strings = attrs::strings(node, "classlabels_strings")?;
    let ints = attrs::ints(node, ints_attr)?;
    if strings.is_empty() {
        return Ok((ints, None));
    }
    ensure!(
        ints.is_empty(),
        "{}: both classlabels_strings and {ints_attr}",
        node.name
    );
    let indices = (0..strings.len() as i64).collect();
    Ok((indices, Some(strings)))
}

/// The op of a classifier kernel whose first output is the label: as is, or naming its classes.
pub fn classifier(kernel: impl Kernel, names: Option<Vec<String>>) -> Box<dyn InferenceOp> {
    match names {
        None => MlOp::boxed(kernel),
        Some(labels) => MlOp::boxed(StringLabels {
            inner: Arc::new(kernel),
            labels,
        }),
    }
}

/// A classifier kernel whose integer label output (class indices) leaves as class names.
#[derive(Debug)]
struct StringLabels {
    inner: Arc<dyn Kernel>,
    labels: Vec<String>,
}

impl Kernel for StringLabels {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn arity(&self) -> usize {
        self.inner.arity()
    }

    fn outputs(&self) -> Vec<(DatumType, OutShape)> {
        let mut outputs = self.inner.outputs();
        if let Some(first) = outputs.first_mut() {
            first.0 = String::datum_type();
        }
        outputs
    }

    fn eval(&self, inputs: &[TValue]) -> TractResult<TVec<TValue>> {
        let mut outputs = self.inner.eval(inputs)?;
        let Some(first) = outputs.first_mut() else {
            bail!("{}: no label output", self.name());
        };
        let indices = first.cast_to::<i64>()?;
        let names: Vec<String> = indices
            .to_plain_array_view::<i64>()?
            .iter()
            .map(|i| {
                usize::try_from(*i)
                    .ok()
                    .and_then(|i| self.labels.get(i))
                    .cloned()
                    .ok_or_else(|| format_err!("{}: class index {i} out of range", self.name()))
            })
            .collect::<TractResult<_>>()?;
        *first = strings_tensor(first.shape(), names)?;
        Ok(outputs)
    }
}

/// A string tensor of `shape`.
pub fn strings_tensor(shape: &[usize], data: Vec<String>) -> TractResult<TValue> {
    Ok(tract_ndarray::ArrayD::from_shape_vec(shape, data)?
        .into_tensor()
        .into_tvalue())
}

/// The elements of a string input.
fn strings_of(input: &TValue) -> TractResult<Vec<String>> {
    ensure!(
        input.datum_type() == String::datum_type(),
        "expected a string tensor, got {:?}",
        input.datum_type()
    );
    Ok(input
        .to_plain_array_view::<String>()?
        .iter()
        .cloned()
        .collect())
}

// ---------------------------------------------------------------- LabelEncoder

/// Keys or values of a LabelEncoder.
#[derive(Debug, Clone)]
enum Column {
    Ints(Vec<i64>),
    Floats(Vec<f32>),
    Strings(Vec<String>),
}

impl Column {
    fn read(node: &NodeProto, prefix: &str) -> TractResult<Option<Column>> {
        let ints = attrs::ints(node, &format!("{prefix}_int64s"))?;
        let floats = attrs::floats(node, &format!("{prefix}_floats"))?;
        let strings = attrs::strings(node, &format!("{prefix}_strings"))?;
        Ok(match (ints.is_empty(), floats, strings.is_empty()) {
            (false, None, true) => Some(Column::Ints(ints)),
            (true, Some(f), true) => Some(Column::Floats(f.iter().map(|v| *v as f32).collect())),
            (true, None, false) => Some(Column::Strings(strings)),
            _ => None,
        })
    }

    fn len(&self) -> usize {
        match self {
            Column::Ints(v) => v.len(),
            Column::Floats(v) => v.len(),
            Column::Strings(v) => v.len(),
        }
    }
}

/// True when a LabelEncoder node maps from or to strings (this module's LabelEncoder).
pub fn has_strings(node: &NodeProto) -> TractResult<bool> {
    Ok(!attrs::strings(node, "keys_strings")?.is_empty()
        || !attrs::strings(node, "values_strings")?.is_empty())
}

#[derive(Debug)]
struct StringLabelEncoder {
    keys: Column,
    values: Column,
    default_int: i64,
    default_float: f32,
    default_string: String,
}

pub fn label_encoder(node: &NodeProto) -> Built {
    let name = format!("{} (LabelEncoder)", node.name);
    let keys = Column::read(node, "keys")?
        .ok_or_else(|| format_err!("{name}: needs exactly one of keys_int64s/floats/strings"))?;
    let values = Column::read(node, "values")?
        .ok_or_else(|| format_err!("{name}: needs exactly one of values_int64s/floats/strings"))?;
    ensure!(
        keys.len() == values.len(),
        "{name}: {} keys but {} values",
        keys.len(),
        values.len()
    );
    Ok((
        MlOp::boxed(StringLabelEncoder {
            keys,
            values,
            default_int: node.get_attr_opt::<i64>("default_int64")?.unwrap_or(-1),
            default_float: node.get_attr_opt::<f32>("default_float")?.unwrap_or(-0.0),
            default_string: node
                .get_attr_opt::<String>("default_string")?
                .unwrap_or_else(|| "_Unused".into()),
        }),
        vec![],
    ))
}

impl StringLabelEncoder {
    /// The key index of every input element (None: not a key).
    fn positions(&self, input: &TValue) -> TractResult<Vec<Option<usize>>> {
        Ok(match &self.keys {
            Column::Strings(keys) => {
                let index: std::collections::HashMap<&str, usize> = keys
                    .iter()
                    .enumerate()
                    .rev()
                    .map(|(i, k)| (k.as_str(), i))
                    .collect();
                strings_of(input)?
                    .iter()
                    .map(|s| index.get(s.as_str()).copied())
                    .collect()
            }
            Column::Ints(keys) => {
                let cast = input.cast_to::<i64>()?;
                let x = cast.to_plain_array_view::<i64>()?;
                x.iter().map(|v| keys.iter().position(|k| k == v)).collect()
            }
            Column::Floats(keys) => {
                let cast = input.cast_to::<f32>()?;
                let x = cast.to_plain_array_view::<f32>()?;
                x.iter().map(|v| keys.iter().position(|k| k == v)).collect()
            }
        })
    }
}

impl Kernel for StringLabelEncoder {
    fn name(&self) -> &'static str {
        "LabelEncoder"
    }

    fn outputs(&self) -> Vec<(DatumType, OutShape)> {
        let dt = match self.values {
            Column::Ints(_) => i64::datum_type(),
            Column::Floats(_) => f32::datum_type(),
            Column::Strings(_) => String::datum_type(),
        };
        vec![(dt, OutShape::SameAsInput)]
    }

    fn eval(&self, inputs: &[TValue]) -> TractResult<TVec<TValue>> {
        let shape = inputs[0].shape().to_vec();
        let at = self.positions(&inputs[0])?;
        let out = match &self.values {
            Column::Ints(v) => {
                let data: Vec<i64> = at
                    .iter()
                    .map(|p| p.map_or(self.default_int, |i| v[i]))
                    .collect();
                Tensor::from_shape(&shape, &data)?.into_tvalue()
            }
            Column::Floats(v) => {
                let data: Vec<f32> = at
                    .iter()
                    .map(|p| p.map_or(self.default_float, |i| v[i]))
                    .collect();
                Tensor::from_shape(&shape, &data)?.into_tvalue()
            }
            Column::Strings(v) => {
                let data: Vec<String> = at
                    .iter()
                    .map(|p| p.map_or_else(|| self.default_string.clone(), |i| v[i].clone()))
                    .collect();
                strings_tensor(&shape, data)?
            }
        };
        Ok(tvec!(out))
    }
}

// ---------------------------------------------------------------- OneHotEncoder

#[derive(Debug)]
struct StringOneHotEncoder {
    cats: Vec<String>,
    zeros: bool,
}

pub fn one_hot_encoder(node: &NodeProto, cats: Vec<String>) -> Built {
    let zeros = node.get_attr_opt::<i64>("zeros")?.unwrap_or(1) != 0;
    Ok((MlOp::boxed(StringOneHotEncoder { cats, zeros }), vec![]))
}

impl Kernel for StringOneHotEncoder {
    fn name(&self) -> &'static str {
        "OneHotEncoder"
    }

    fn outputs(&self) -> Vec<(DatumType, OutShape)> {
        vec![(f32::datum_type(), OutShape::InputPlus(self.cats.len()))]
    }

    fn eval(&self, inputs: &[TValue]) -> TractResult<TVec<TValue>> {
        let mut shape = inputs[0].shape().to_vec();
        let x = strings_of(&inputs[0])?;
        let n = self.cats.len();
        let index: std::collections::HashMap<&str, usize> = self
            .cats
            .iter()
            .enumerate()
            .rev()
            .map(|(i, c)| (c.as_str(), i))
            .collect();
        let mut y = vec![0f32; x.len() * n];
        for (i, v) in x.iter().enumerate() {
            match index.get(v.as_str()) {
                Some(c) => y[i * n + c] = 1.0,
                None if self.zeros => {}
                None => {
                    return Err(rejected(format!(
                        "OneHotEncoder: {v:?} is not a known category"
                    )))
                }
            }
        }
        shape.push(n);
        Ok(tvec!(Tensor::from_shape(&shape, &y)?.into_tvalue()))
    }
}

// ---------------------------------------------------------------- graph labels

/// The class names of a graph's classifier, when it has string labels (the first classifier
/// or ZipMap node with `classlabels_strings`).
pub fn graph_class_labels(graph: &tract_onnx::pb::GraphProto) -> Option<Vec<String>> {
    const CLASSIFIERS: [&str; 4] = [
        "LinearClassifier",
        "SVMClassifier",
        "TreeEnsembleClassifier",
        "ZipMap",
    ];
    graph
        .node
        .iter()
        .filter(|n| CLASSIFIERS.contains(&n.op_type.as_str()))
        .find_map(|n| {
            attrs::strings(n, "classlabels_strings")
                .ok()
                .filter(|s| !s.is_empty())
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_onnx::pb::AttributeProto;

    fn strings_attr(name: &str, values: &[&str]) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            r#type: 8,
            strings: values.iter().map(|s| s.as_bytes().to_vec()).collect(),
            ..Default::default()
        }
    }

    fn ints_attr(name: &str, values: &[i64]) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            r#type: 7,
            ints: values.to_vec(),
            ..Default::default()
        }
    }

    fn strings_in(values: &[&str]) -> TValue {
        let data: Vec<String> = values.iter().map(|s| s.to_string()).collect();
        strings_tensor(&[values.len(), 1], data).unwrap()
    }

    #[test]
    fn string_label_encoder_maps_with_defaults() {
        let node = NodeProto {
            name: "enc".into(),
            op_type: "LabelEncoder".into(),
            attribute: vec![
                strings_attr("keys_strings", &["rome", "oslo"]),
                ints_attr("values_int64s", &[0, 1]),
            ],
            ..Default::default()
        };
        assert!(has_strings(&node).unwrap());
        let keys = Column::read(&node, "keys").unwrap().unwrap();
        let values = Column::read(&node, "values").unwrap().unwrap();
        let enc = StringLabelEncoder {
            keys,
            values,
            default_int: -1,
            default_float: 0.0,
            default_string: "_Unused".into(),
        };
        let out = enc.eval(&[strings_in(&["oslo", "paris", "rome"])]).unwrap();
        let got: Vec<i64> = out[0]
            .to_plain_array_view::<i64>()
            .unwrap()
            .iter()
            .copied()
            .collect();
        assert_eq!(got, vec![1, -1, 0]);
        assert_eq!(out[0].shape(), &[3, 1]);
    }

    #[test]
    fn string_one_hot_sets_one_column_per_category() {
        let enc = StringOneHotEncoder {
            cats: vec!["a".into(), "b".into(), "c".into()],
            zeros: true,
        };
        let out = enc.eval(&[strings_in(&["c", "z"])]).unwrap();
        assert_eq!(out[0].shape(), &[2, 1, 3]);
        let got: Vec<f32> = out[0]
            .to_plain_array_view::<f32>()
            .unwrap()
            .iter()
            .copied()
            .collect();
        assert_eq!(got, vec![0.0, 0.0, 1.0, 0.0, 0.0, 0.0]);
        let strict = StringOneHotEncoder {
            cats: vec!["a".into()],
            zeros: false,
        };
        let err = strict.eval(&[strings_in(&["z"])]).unwrap_err();
        assert!(format!("{err:#}").contains("\"z\" is not a known category"));
    }

    #[test]
    fn class_labels_become_indices_and_names() {
        let node = NodeProto {
            name: "clf".into(),
            attribute: vec![strings_attr("classlabels_strings", &["no", "yes"])],
            ..Default::default()
        };
        let (ints, names) = class_labels(&node, "classlabels_ints").unwrap();
        assert_eq!(ints, vec![0, 1]);
        assert_eq!(names.unwrap(), vec!["no", "yes"]);
        let graph = tract_onnx::pb::GraphProto {
            node: vec![NodeProto {
                op_type: "LinearClassifier".into(),
                ..node
            }],
            ..Default::default()
        };
        assert_eq!(graph_class_labels(&graph).unwrap(), vec!["no", "yes"]);
    }
}
