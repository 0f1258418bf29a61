//! LinearClassifier, LinearRegressor and Normalizer kernels, following onnxruntime
//! (`linearclassifier.cc`, `linearregressor.cc`, `normalizer.cc`). tract has its own versions,
//! built from generic graph ops; these direct loops are several times faster on small batches.

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

use super::attrs;
use super::kernel::{dot, output, rows_f32, Kernel, MlOp, OutShape};
use super::post::{logistic, PostTransform};
use super::strings;

type Built = TractResult<(Box<dyn InferenceOp>, Vec<String>)>;

/// `rows x width` times the transposed `[outputs, width]` coefficients, plus intercepts.
fn affine(
    x: &[f32],
    rows: usize,
    width: usize,
    coef: &[f32],
    intercepts: &[f32],
    out: &mut Vec<f64>,
) {
    let outputs = coef.len() / width.max(1);
    out.clear();
    for r in 0..rows {
        let xr = &x[r * width..(r + 1) * width];
        for c in 0..outputs {
            let w = &coef[c * width..(c + 1) * width];
            out.push(f64::from(
                dot(xr, w) + intercepts.get(c).copied().unwrap_or(0.0),
            ));
        }
    }
}

// ---------------------------------------------------------------- LinearClassifier

#[derive(Debug)]
struct LinearClassifier {
    coefficients: Vec<f32>,
    intercepts: Vec<f32>,
    labels: Vec<i64>,
    post: PostTransform,
    features: usize,
}

pub fn linear_classifier(_: &ParsingContext, node: &NodeProto) -> Built {
    let name = format!("{} (LinearClassifier)", node.name);
    let (labels, names) = strings::class_labels(node, "classlabels_ints")?;
    let coefficients: Vec<f32> = attrs::required_f32s(node, "coefficients")?;
    let intercepts: Vec<f32> = attrs::f32s(node, "intercepts")?;
    let classes = intercepts.len();
    ensure!(
        classes >= 1,
        "{name}: intercepts are required (one per class score)"
    );
    ensure!(
        coefficients.len().is_multiple_of(classes),
        "{name}: coefficients do not divide into {classes} rows"
    );
    if classes == 1 {
        ensure!(
            labels.len() == 2,
            "{name}: one score needs exactly two class labels, got {}",
            labels.len()
        );
    } else {
        ensure!(
            labels.len() >= classes,
            "{name}: {} class labels for {classes} scores",
            labels.len()
        );
    }
    let post = PostTransform::parse(node.get_attr_opt::<&str>("post_transform")?)?;
    ensure!(
        !(classes == 1 && post == PostTransform::Probit),
        "{name}: PROBIT with a single score is not supported"
    );
    let features = coefficients.len() / classes;
    Ok((
        strings::classifier(
            LinearClassifier {
                coefficients,
                intercepts,
                labels,
                post,
                features,
            },
            names,
        ),
        vec![],
    ))
}

impl LinearClassifier {
    fn width(&self) -> usize {
        self.intercepts.len().max(2)
    }
}

impl Kernel for LinearClassifier {
    fn name(&self) -> &'static str {
        "LinearClassifier"
    }

    fn outputs(&self) -> Vec<(DatumType, OutShape)> {
        vec![
            (i64::datum_type(), OutShape::Rows(vec![])),
            (f32::datum_type(), OutShape::Rows(vec![self.width()])),
        ]
    }

    fn eval(&self, inputs: &[TValue]) -> TractResult<TVec<TValue>> {
        let (x, rows, width) = rows_f32(&inputs[0])?;
        ensure!(
            width == self.features,
            "LinearClassifier: {width} features per instance, the model takes {}",
            self.features
        );
        let classes = self.intercepts.len();
        let mut scores = Vec::with_capacity(rows * classes);
        affine(
            &x,
            rows,
            width,
            &self.coefficients,
            &self.intercepts,
            &mut scores,
        );
        let w = self.width();
        let mut labels = Vec::with_capacity(rows);
        let mut z = vec![0f32; rows * w];
        for r in 0..rows {
            let row = &mut scores[r * classes..(r + 1) * classes];
            let out = &mut z[r * w..(r + 1) * w];
            if classes == 1 {
                let s = row[0];
                labels.push(if s > 0.0 {
                    self.labels[1]
                } else {
                    self.labels[0]
                });
                let p = match self.post {
                    PostTransform::Logistic => logistic(s),
                    _ => s,
                };
                out[0] = (1.0 - p) as f32;
                out[1] = p as f32;
            } else {
                let mut best = 0;
                for c in 1..classes {
                    if row[c] > row[best] {
                        best = c;
                    }
                }
                labels.push(self.labels[best]);
                self.post.apply(row);
                for (o, v) in out.iter_mut().zip(row.iter()) {
                    *o = *v as f32;
                }
            }
        }
        Ok(tvec!(output(rows, &[], &labels)?, output(rows, &[w], &z)?))
    }
}

// ---------------------------------------------------------------- LinearRegressor

#[derive(Debug)]
struct LinearRegressor {
    coefficients: Vec<f32>,
    intercepts: Vec<f32>,
    targets: usize,
    post: PostTransform,
}

pub fn linear_regressor(_: &ParsingContext, node: &NodeProto) -> Built {
    let name = format!("{} (LinearRegressor)", node.name);
    let targets = node.get_attr_opt::<i64>("targets")?.unwrap_or(1);
    ensure!(targets > 0, "{name}: targets must be positive");
    let targets = targets as usize;
    let coefficients: Vec<f32> = attrs::required_f32s(node, "coefficients")?;
    ensure!(
        coefficients.len().is_multiple_of(targets),
        "{name}: coefficients do not divide into {targets} targets"
    );
    let mut intercepts: Vec<f32> = attrs::f32s(node, "intercepts")?;
    if intercepts.len() != targets {
        // onnxruntime ignores intercepts of the wrong length.
        intercepts.clear();
    }
    let post = PostTransform::parse(node.get_attr_opt::<&str>("post_transform")?)?;
    Ok((
        MlOp::boxed(LinearRegressor {
            coefficients,
            intercepts,
            targets,
            post,
        }),
        vec![],
    ))
}

impl Kernel for LinearRegressor {
    fn name(&self) -> &'static str {
        "LinearRegressor"
    }

    fn outputs(&self) -> Vec<(DatumType, OutShape)> {
        vec![(f32::datum_type(), OutShape::Rows(vec![self.targets]))]
    }

    fn eval(&self, inputs: &[TValue]) -> TractResult<TVec<TValue>> {
        let (x, rows, width) = rows_f32(&inputs[0])?;
        let features = self.coefficients.len() / self.targets;
        ensure!(
            width == features,
            "LinearRegressor: {width} features per instance, the model takes {features}"
        );
        let mut y = Vec::with_capacity(rows * self.targets);
        affine(
            &x,
            rows,
            width,
            &self.coefficients,
            &self.intercepts,
            &mut y,
        );
        if self.targets > 1 || self.post == PostTransform::Probit {
            for row in y.chunks_mut(self.targets) {
                self.post.apply(row);
            }
        }
        let y: Vec<f32> = y.into_iter().map(|v| v as f32).collect();
        Ok(tvec!(output(rows, &[self.targets], &y)?))
    }
}

// ---------------------------------------------------------------- Normalizer

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Norm {
    Max,
    L1,
    L2,
}

#[derive(Debug)]
struct Normalizer {
    norm: Norm,
}

pub fn normalizer(_: &ParsingContext, node: &NodeProto) -> Built {
    let norm = match node.get_attr_opt::<&str>("norm")?.unwrap_or("MAX") {
        "MAX" => Norm::Max,
        "L1" => Norm::L1,
        "L2" => Norm::L2,
        other => bail!("{} (Normalizer): unknown norm {other}", node.name),
    };
    Ok((MlOp::boxed(Normalizer { norm }), vec![]))
}

impl Kernel for Normalizer {
    fn name(&self) -> &'static str {
        "Normalizer"
    }

    fn outputs(&self) -> Vec<(DatumType, OutShape)> {
        vec![(f32::datum_type(), OutShape::SameAsInput)]
    }

    fn eval(&self, inputs: &[TValue]) -> TractResult<TVec<TValue>> {
        let shape = inputs[0].shape().to_vec();
        let (x, rows, width) = rows_f32(&inputs[0])?;
        let mut y = vec![0f32; x.len()];
        for r in 0..rows {
            let (xr, yr) = (
                &x[r * width..(r + 1) * width],
                &mut y[r * width..(r + 1) * width],
            );
            match self.norm {
                Norm::Max => {
                    let m = xr.iter().fold(f32::MIN, |m, v| if m < *v { *v } else { m });
                    for (o, v) in yr.iter_mut().zip(xr) {
                        *o = if m != 0.0 { v / m } else { *v };
                    }
                }
                Norm::L1 => {
                    let s: f32 = xr.iter().map(|v| v.abs()).sum();
                    for (o, v) in yr.iter_mut().zip(xr) {
                        *o = if s != 0.0 { v / s } else { *v };
                    }
                }
                Norm::L2 => {
                    // One square root per row (onnxruntime takes one per element, as
                    // sign(v) * sqrt(v * v / s): the two differ by about one ulp).
                    let s: f32 = xr.iter().map(|v| v * v).sum();
                    if s == 0.0 {
                        yr.copy_from_slice(xr);
                    } else {
                        let norm = s.sqrt();
                        for (o, v) in yr.iter_mut().zip(xr) {
                            *o = v / norm;
                        }
                    }
                }
            }
        }
        Ok(tvec!(Tensor::from_shape(&shape, &y)?.into_tvalue()))
    }
}
