//! Feature transforms of ai.onnx.ml: Scaler, Imputer, Binarizer, ZipMap, OneHotEncoder,
//! LabelEncoder (numeric) and FeatureVectorizer.

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

use super::attrs;
use super::kernel::{output, rows_f32, Kernel, MlOp, OutShape};

type Built = TractResult<(Box<dyn InferenceOp>, Vec<String>)>;

/// Broadcasts a per-feature parameter given as one value or one per feature.
fn per_feature(values: &[f64], feature: usize) -> f64 {
    if values.len() == 1 {
        values[0]
    } else {
        values.get(feature).copied().unwrap_or(0.0)
    }
}

fn check_width(name: &str, values: &[f64], width: usize, attr: &str) -> TractResult<()> {
    ensure!(
        values.len() <= 1 || values.len() == width,
        "{name}: attribute {attr} has {} values but the input has {width} features",
        values.len()
    );
    Ok(())
}

// ---------------------------------------------------------------- Scaler

#[derive(Debug)]
struct Scaler {
    offset: Vec<f64>,
    scale: Vec<f64>,
}

pub fn scaler(_: &ParsingContext, node: &NodeProto) -> Built {
    let offset = attrs::floats(node, "offset")?.unwrap_or_else(|| vec![0.0]);
    let scale = attrs::floats(node, "scale")?.unwrap_or_else(|| vec![1.0]);
    Ok((MlOp::boxed(Scaler { offset, scale }), vec![]))
}

impl Kernel for Scaler {
    fn name(&self) -> &'static str {
        "Scaler"
    }

    fn outputs(&self) -> Vec<(DatumType, OutShape)> {
        vec![(f32::datum_type(), OutShape::SameAsInput)]
    }

    fn eval(&self, inputs: &[TValue]) -> TractResult<TVec<TValue>> {
        let shape = inputs[0].shape().to_vec();
        let (x, _, width) = rows_f32(&inputs[0])?;
        check_width("Scaler", &self.offset, width, "offset")?;
        check_width("Scaler", &self.scale, width, "scale")?;
        let y: Vec<f32> = x
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let f = i % width.max(1);
                ((f64::from(*v) - per_feature(&self.offset, f)) * per_feature(&self.scale, f))
                    as f32
            })
            .collect();
        Ok(tvec!(Tensor::from_shape(&shape, &y)?.into_tvalue()))
    }
}

// ---------------------------------------------------------------- Imputer

#[derive(Debug)]
struct Imputer {
    floats: Vec<f64>,
    replaced: f64,
    ints: Vec<i64>,
    replaced_int: i64,
}

pub fn imputer(_: &ParsingContext, node: &NodeProto) -> Built {
    let floats = attrs::floats(node, "imputed_value_floats")?.unwrap_or_default();
    let ints = attrs::ints(node, "imputed_value_int64s")?;
    ensure!(
        !floats.is_empty() || !ints.is_empty(),
        "{} (Imputer): needs imputed_value_floats or imputed_value_int64s",
        node.name
    );
    let replaced = node
        .get_attr_opt::<f32>("replaced_value_float")?
        .map(f64::from)
        .unwrap_or(0.0);
    let replaced_int = node
        .get_attr_opt::<i64>("replaced_value_int64")?
        .unwrap_or(0);
    Ok((
        MlOp::boxed(Imputer {
            floats,
            replaced,
            ints,
            replaced_int,
        }),
        vec![],
    ))
}

impl Kernel for Imputer {
    fn name(&self) -> &'static str {
        "Imputer"
    }

    /// The ONNX Imputer takes float, double, int64 and int32 only. skl2onnx imputes string
    /// columns with LabelEncoder, ArrayFeatureExtractor and Where instead, which infera runs.
    fn check_input(&self, dt: DatumType) -> TractResult<()> {
        ensure!(
            dt != String::datum_type(),
            "Imputer: string input is not supported (the ONNX operator takes numbers only; \
             skl2onnx exports SimpleImputer on strings as LabelEncoder + Where)"
        );
        Ok(())
    }

    fn outputs(&self) -> Vec<(DatumType, OutShape)> {
        let dt = if self.floats.is_empty() {
            i64::datum_type()
        } else {
            f32::datum_type()
        };
        vec![(dt, OutShape::SameAsInput)]
    }

    fn eval(&self, inputs: &[TValue]) -> TractResult<TVec<TValue>> {
        let shape = inputs[0].shape().to_vec();
        let width = shape.iter().skip(1).product::<usize>().max(1);
        if self.floats.is_empty() {
            let cast = inputs[0].cast_to::<i64>()?;
            let x = cast.to_plain_array_view::<i64>()?;
            let values: Vec<f64> = self.ints.iter().map(|v| *v as f64).collect();
            check_width("Imputer", &values, width, "imputed_value_int64s")?;
            let y: Vec<i64> = x
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    if *v == self.replaced_int {
                        per_feature(&values, i % width) as i64
                    } else {
                        *v
                    }
                })
                .collect();
            return Ok(tvec!(Tensor::from_shape(&shape, &y)?.into_tvalue()));
        }
        let (x, _, width) = rows_f32(&inputs[0])?;
        check_width("Imputer", &self.floats, width, "imputed_value_floats")?;
        let replaced = self.replaced as f32;
        let y: Vec<f32> = x
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let missing = if replaced.is_nan() {
                    v.is_nan()
                } else {
                    *v == replaced
                };
                if missing {
                    per_feature(&self.floats, i % width.max(1)) as f32
                } else {
                    *v
                }
            })
            .collect();
        Ok(tvec!(Tensor::from_shape(&shape, &y)?.into_tvalue()))
    }
}

// ---------------------------------------------------------------- Binarizer

#[derive(Debug)]
struct Binarizer {
    threshold: f32,
}

pub fn binarizer(_: &ParsingContext, node: &NodeProto) -> Built {
    let threshold = node.get_attr_opt::<f32>("threshold")?.unwrap_or(0.0);
    Ok((MlOp::boxed(Binarizer { threshold }), vec![]))
}

impl Kernel for Binarizer {
    fn name(&self) -> &'static str {
        "Binarizer"
    }

    fn outputs(&self) -> Vec<(DatumType, OutShape)> {
        vec![(f32::datum_type(), OutShape::SameAsInput)]
    }

    fn eval(&self, inputs: &[TValue]) -> TractResult<TVec<TValue>> {
        let shape = inputs[0].shape().to_vec();
        let (x, _, _) = rows_f32(&inputs[0])?;
        let y: Vec<f32> = x
            .iter()
            .map(|v| if *v > self.threshold { 1.0 } else { 0.0 })
            .collect();
        Ok(tvec!(Tensor::from_shape(&shape, &y)?.into_tvalue()))
    }
}

// ---------------------------------------------------------------- ZipMap

/// ZipMap turns probabilities into a sequence of maps; infera serves the probabilities tensor
/// itself (class index order), so ZipMap is the identity here.
#[derive(Debug)]
struct ZipMap {
    classes: usize,
}

pub fn zipmap(_: &ParsingContext, node: &NodeProto) -> Built {
    let ints = attrs::ints(node, "classlabels_int64s")?;
    let strings = attrs::strings(node, "classlabels_strings")?;
    let classes = ints.len().max(strings.len());
    ensure!(classes > 0, "{} (ZipMap): no class labels", node.name);
    Ok((MlOp::boxed(ZipMap { classes }), vec![]))
}

impl Kernel for ZipMap {
    fn name(&self) -> &'static str {
        "ZipMap"
    }

    fn outputs(&self) -> Vec<(DatumType, OutShape)> {
        vec![(f32::datum_type(), OutShape::Rows(vec![self.classes]))]
    }

    fn eval(&self, inputs: &[TValue]) -> TractResult<TVec<TValue>> {
        let (x, rows, width) = rows_f32(&inputs[0])?;
        ensure!(
            width == self.classes,
            "ZipMap: {width} probabilities per row for {} classes",
            self.classes
        );
        Ok(tvec!(output(rows, &[self.classes], &x)?))
    }

    /// Probabilities that already are `[N, classes]` f32 pass through without a copy.
    fn eval_owned(&self, mut inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let passes = inputs.len() == 1
            && inputs[0].datum_type() == f32::datum_type()
            && inputs[0].rank() == 2
            && inputs[0].shape()[1] == self.classes;
        if passes {
            return Ok(tvec!(inputs.swap_remove(0)));
        }
        self.eval(&inputs)
    }
}

// ---------------------------------------------------------------- OneHotEncoder

#[derive(Debug)]
struct OneHotEncoder {
    cats: Vec<i64>,
    zeros: bool,
}

pub fn one_hot_encoder(_: &ParsingContext, node: &NodeProto) -> Built {
    let strings = attrs::strings(node, "cats_strings")?;
    if !strings.is_empty() {
        return super::strings::one_hot_encoder(node, strings);
    }
    let cats = attrs::ints(node, "cats_int64s")?;
    ensure!(
        !cats.is_empty(),
        "{} (OneHotEncoder): no cats_int64s",
        node.name
    );
    let zeros = node.get_attr_opt::<i64>("zeros")?.unwrap_or(1) != 0;
    Ok((MlOp::boxed(OneHotEncoder { cats, zeros }), vec![]))
}

impl Kernel for OneHotEncoder {
    fn name(&self) -> &'static str {
        "OneHotEncoder"
    }

    fn outputs(&self) -> Vec<(DatumType, OutShape)> {
        vec![(f32::datum_type(), OutShape::InputPlus(self.cats.len()))]
    }

    fn eval(&self, inputs: &[TValue]) -> TractResult<TVec<TValue>> {
        let mut shape = inputs[0].shape().to_vec();
        let (x, _, _) = rows_f32(&inputs[0])?;
        let n = self.cats.len();
        let mut y = vec![0f32; x.len() * n];
        for (i, v) in x.iter().enumerate() {
            match self.cats.iter().position(|c| *c == *v as i64) {
                Some(c) => y[i * n + c] = 1.0,
                None if self.zeros => {}
                None => bail!("OneHotEncoder: value {v} is not a known category"),
            }
        }
        shape.push(n);
        Ok(tvec!(Tensor::from_shape(&shape, &y)?.into_tvalue()))
    }
}

// ---------------------------------------------------------------- LabelEncoder

#[derive(Debug)]
struct LabelEncoder {
    keys: Vec<f64>,
    values: Vec<f64>,
    default: f64,
    int_out: bool,
}

pub fn label_encoder(_: &ParsingContext, node: &NodeProto) -> Built {
    if super::strings::has_strings(node)? {
        return super::strings::label_encoder(node);
    }
    let keys = match (
        attrs::ints(node, "keys_int64s")?,
        attrs::floats(node, "keys_floats")?,
    ) {
        (k, None) if !k.is_empty() => k.iter().map(|v| *v as f64).collect::<Vec<_>>(),
        (k, Some(f)) if k.is_empty() => f,
        _ => bail!(
            "{} (LabelEncoder): only numeric keys (keys_int64s or keys_floats) are supported",
            node.name
        ),
    };
    let (values, int_out) = match (
        attrs::ints(node, "values_int64s")?,
        attrs::floats(node, "values_floats")?,
    ) {
        (v, None) if !v.is_empty() => (v.iter().map(|x| *x as f64).collect::<Vec<_>>(), true),
        (v, Some(f)) if v.is_empty() => (f, false),
        _ => bail!(
            "{} (LabelEncoder): only numeric values (values_int64s or values_floats) are supported",
            node.name
        ),
    };
    ensure!(
        keys.len() == values.len(),
        "{} (LabelEncoder): {} keys but {} values",
        node.name,
        keys.len(),
        values.len()
    );
    let default = if int_out {
        node.get_attr_opt::<i64>("default_int64")?.unwrap_or(-1) as f64
    } else {
        node.get_attr_opt::<f32>("default_float")?
            .map(f64::from)
            .unwrap_or(-0.0)
    };
    Ok((
        MlOp::boxed(LabelEncoder {
            keys,
            values,
            default,
            int_out,
        }),
        vec![],
    ))
}

impl Kernel for LabelEncoder {
    fn name(&self) -> &'static str {
        "LabelEncoder"
    }

    fn outputs(&self) -> Vec<(DatumType, OutShape)> {
        let dt = if self.int_out {
            i64::datum_type()
        } else {
            f32::datum_type()
        };
        vec![(dt, OutShape::SameAsInput)]
    }

    fn eval(&self, inputs: &[TValue]) -> TractResult<TVec<TValue>> {
        let shape = inputs[0].shape().to_vec();
        let cast = inputs[0].cast_to::<f64>()?;
        let x = cast.to_plain_array_view::<f64>()?;
        let mapped = x.iter().map(|v| {
            self.keys
                .iter()
                .position(|k| k == v)
                .map(|i| self.values[i])
                .unwrap_or(self.default)
        });
        let t = if self.int_out {
            Tensor::from_shape(&shape, &mapped.map(|v| v as i64).collect::<Vec<_>>())?
        } else {
            Tensor::from_shape(&shape, &mapped.map(|v| v as f32).collect::<Vec<_>>())?
        };
        Ok(tvec!(t.into_tvalue()))
    }
}

// ---------------------------------------------------------------- FeatureVectorizer

#[derive(Debug)]
struct FeatureVectorizer {
    dims: Vec<usize>,
}

pub fn feature_vectorizer(_: &ParsingContext, node: &NodeProto) -> Built {
    let dims = attrs::indices(node, "inputdimensions")?;
    ensure!(
        !dims.is_empty(),
        "{} (FeatureVectorizer): no inputdimensions",
        node.name
    );
    ensure!(
        dims.len() == node.input.len(),
        "{} (FeatureVectorizer): {} inputdimensions for {} inputs",
        node.name,
        dims.len(),
        node.input.len()
    );
    Ok((MlOp::boxed(FeatureVectorizer { dims }), vec![]))
}

impl Kernel for FeatureVectorizer {
    fn name(&self) -> &'static str {
        "FeatureVectorizer"
    }

    fn arity(&self) -> usize {
        self.dims.len()
    }

    fn outputs(&self) -> Vec<(DatumType, OutShape)> {
        vec![(
            f32::datum_type(),
            OutShape::Rows(vec![self.dims.iter().sum()]),
        )]
    }

    fn eval(&self, inputs: &[TValue]) -> TractResult<TVec<TValue>> {
        let total: usize = self.dims.iter().sum();
        let parts: Vec<(std::borrow::Cow<'_, [f32]>, usize, usize)> =
            inputs.iter().map(rows_f32).collect::<TractResult<_>>()?;
        let rows = parts.first().map(|p| p.1).unwrap_or(0);
        let mut y = vec![0f32; rows * total];
        for r in 0..rows {
            let mut at = r * total;
            for ((x, n, width), want) in parts.iter().zip(&self.dims) {
                ensure!(
                    *n == rows,
                    "FeatureVectorizer: inputs disagree on the number of rows"
                );
                let take = (*width).min(*want);
                y[at..at + take].copy_from_slice(&x[r * width..r * width + take]);
                at += want;
            }
        }
        Ok(tvec!(output(rows, &[total], &y)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input<T: Datum + Copy>(shape: &[usize], data: &[T]) -> TValue {
        Tensor::from_shape(shape, data).unwrap().into_tvalue()
    }

    fn values<T: Datum + Copy>(out: &TValue) -> (Vec<usize>, Vec<T>) {
        (
            out.shape().to_vec(),
            out.to_plain_array_view::<T>()
                .unwrap()
                .iter()
                .copied()
                .collect(),
        )
    }

    #[test]
    fn feature_vectorizer_truncates_and_pads() {
        let k = FeatureVectorizer { dims: vec![2, 3] };
        let out = k
            .eval(&[input(&[1, 3], &[1f32, 2.0, 3.0]), input(&[1, 1], &[7f32])])
            .unwrap();
        assert_eq!(
            values::<f32>(&out[0]),
            (vec![1, 5], vec![1.0, 2.0, 7.0, 0.0, 0.0])
        );
    }

    #[test]
    fn label_encoder_maps_numbers_with_a_default() {
        let k = LabelEncoder {
            keys: vec![1.0, 2.0],
            values: vec![10.0, 20.0],
            default: -1.0,
            int_out: true,
        };
        let out = k.eval(&[input(&[1, 3], &[1i64, 3, 2])]).unwrap();
        assert_eq!(values::<i64>(&out[0]), (vec![1, 3], vec![10, -1, 20]));
    }

    #[test]
    fn one_hot_truncates_to_integers_like_onnxruntime() {
        let k = OneHotEncoder {
            cats: vec![0, 2],
            zeros: true,
        };
        let out = k.eval(&[input(&[2, 1], &[2.9f32, 1.0])]).unwrap();
        assert_eq!(
            values::<f32>(&out[0]),
            (vec![2, 1, 2], vec![0.0, 1.0, 0.0, 0.0])
        );
        let strict = OneHotEncoder {
            cats: vec![0, 2],
            zeros: false,
        };
        assert!(strict.eval(&[input(&[1, 1], &[1f32])]).is_err());
    }

    #[test]
    fn imputer_refuses_strings_at_typing() {
        let imputer = Imputer {
            floats: vec![5.0],
            replaced: f64::NAN,
            ints: vec![],
            replaced_int: 0,
        };
        imputer.check_input(f32::datum_type()).unwrap();
        let error = imputer
            .check_input(String::datum_type())
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("Imputer: string input is not supported"),
            "{error}"
        );
    }

    #[test]
    fn imputer_scaler_and_binarizer() {
        let imputer = Imputer {
            floats: vec![5.0, 6.0],
            replaced: f64::NAN,
            ints: vec![],
            replaced_int: 0,
        };
        let out = imputer
            .eval(&[input(&[2, 2], &[f32::NAN, 1.0, 2.0, f32::NAN])])
            .unwrap();
        assert_eq!(values::<f32>(&out[0]).1, vec![5.0, 1.0, 2.0, 6.0]);
        let scaler = Scaler {
            offset: vec![1.0],
            scale: vec![2.0],
        };
        let out = scaler.eval(&[input(&[1, 2], &[1f32, 3.0])]).unwrap();
        assert_eq!(values::<f32>(&out[0]).1, vec![0.0, 4.0]);
        let binarizer = Binarizer { threshold: 0.5 };
        let out = binarizer
            .eval(&[input(&[1, 3], &[0.5f32, 0.6, -1.0])])
            .unwrap();
        assert_eq!(values::<f32>(&out[0]).1, vec![0.0, 1.0, 0.0]);
    }
}
