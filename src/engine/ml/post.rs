//! Score post-transforms shared by the classifiers and regressors (ONNX `post_transform`), with
//! onnxruntime's formulas.

use tract_onnx::tract_hir::internal::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostTransform {
    None,
    Softmax,
    Logistic,
    SoftmaxZero,
    Probit,
}

impl PostTransform {
    pub fn parse(s: Option<&str>) -> TractResult<PostTransform> {
        Ok(match s.unwrap_or("NONE") {
            "NONE" => PostTransform::None,
            "SOFTMAX" => PostTransform::Softmax,
            "LOGISTIC" => PostTransform::Logistic,
            "SOFTMAX_ZERO" => PostTransform::SoftmaxZero,
            "PROBIT" => PostTransform::Probit,
            other => bail!("unknown post_transform {other}"),
        })
    }

    /// Applies the transform to one instance's scores in place.
    pub fn apply(self, scores: &mut [f64]) {
        match self {
            PostTransform::None => {}
            PostTransform::Logistic => scores.iter_mut().for_each(|s| *s = logistic(*s)),
            PostTransform::Probit => scores.iter_mut().for_each(|s| *s = probit(*s)),
            PostTransform::Softmax => softmax(scores),
            PostTransform::SoftmaxZero => softmax_zero(scores),
        }
    }
}

/// onnxruntime's ComputeLogistic, in f32 like onnxruntime (so large negative inputs round the
/// same way).
pub fn logistic(x: f64) -> f64 {
    let x = x as f32;
    let v = 1.0f32 / (1.0 + (-x.abs()).exp());
    f64::from(if x < 0.0 { 1.0 - v } else { v })
}

/// onnxruntime's ComputeProbit: sqrt(2) * erfinv(2x - 1).
pub fn probit(x: f64) -> f64 {
    std::f64::consts::SQRT_2 * erf_inv(2.0 * x - 1.0)
}

/// onnxruntime's ErfInv approximation (Giles / Winitzki style, as in ml_common.h).
fn erf_inv(x: f64) -> f64 {
    let sgn = if x < 0.0 { -1.0 } else { 1.0 };
    let x = (1.0 - x) * (1.0 + x);
    let log = x.ln();
    let v = 2.0 / (std::f64::consts::PI * 0.147) + 0.5 * log;
    let v2 = 1.0 / 0.147 * log;
    let v3 = -v + (v * v - v2).sqrt();
    sgn * v3.sqrt()
}

pub fn softmax(scores: &mut [f64]) {
    let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut sum = 0.0;
    for s in scores.iter_mut() {
        *s = (*s - max).exp();
        sum += *s;
    }
    scores.iter_mut().for_each(|s| *s /= sum);
}

/// Softmax over the non-zero scores; zeros stay zero.
pub fn softmax_zero(scores: &mut [f64]) {
    let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut sum = 0.0;
    for s in scores.iter_mut() {
        if *s != 0.0 {
            *s = (*s - max).exp();
            sum += *s;
        }
    }
    if sum > 0.0 {
        scores.iter_mut().for_each(|s| *s /= sum);
    }
}
