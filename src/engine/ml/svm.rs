//! SVMClassifier and SVMRegressor kernels, following onnxruntime's `svmclassifier.cc` and
//! `svmregressor.cc` (libsvm one-vs-one voting, Platt scaling with pairwise coupling).

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

use super::attrs;
use super::kernel::{dot, output, rows_f32, squared_distance, Kernel, MlOp, OutShape};
use super::post::{logistic, PostTransform};
use super::strings;

type Built = TractResult<(Box<dyn InferenceOp>, Vec<String>)>;

#[derive(Debug, Clone, Copy, PartialEq)]
enum KernelType {
    Linear,
    Poly { gamma: f32, coef0: f32, degree: f32 },
    Rbf { gamma: f32 },
    Sigmoid { gamma: f32, coef0: f32 },
}

impl KernelType {
    fn parse(node: &NodeProto) -> TractResult<KernelType> {
        let params = attrs::floats(node, "kernel_params")?.unwrap_or_default();
        let p = |i: usize| params.get(i).copied().unwrap_or(0.0) as f32;
        Ok(
            match node
                .get_attr_opt::<&str>("kernel_type")?
                .unwrap_or("LINEAR")
            {
                "LINEAR" => KernelType::Linear,
                "POLY" => KernelType::Poly {
                    gamma: p(0),
                    coef0: p(1),
                    degree: p(2),
                },
                "RBF" => KernelType::Rbf { gamma: p(0) },
                "SIGMOID" => KernelType::Sigmoid {
                    gamma: p(0),
                    coef0: p(1),
                },
                other => bail!(
                    "{} ({}): unknown kernel_type {other}",
                    node.name,
                    node.op_type
                ),
            },
        )
    }

    fn eval(self, x: &[f32], v: &[f32]) -> f32 {
        let xv = || dot(x, v);
        match self {
            KernelType::Linear => xv(),
            KernelType::Poly {
                gamma,
                coef0,
                degree,
            } => {
                let base = gamma * xv() + coef0;
                if degree == 2.0 {
                    base * base
                } else if degree == 3.0 {
                    base * base * base
                } else {
                    base.powf(degree)
                }
            }
            KernelType::Rbf { gamma } => (-gamma * squared_distance(x, v)).exp(),
            KernelType::Sigmoid { gamma, coef0 } => fast_tanh(gamma * xv() + coef0),
        }
    }
}

/// tanh by the rational approximation onnxruntime's MLAS (and Eigen) use: within about 1e-7 of
/// the exact value, several times faster than `f32::tanh`.
fn fast_tanh(x: f32) -> f32 {
    const ALPHA: [f32; 7] = [
        4.893_524_6e-3,
        6.372_619_3e-4,
        1.485_722_4e-5,
        5.122_297e-8,
        -8.604_672e-11,
        2.000_188e-13,
        -2.760_768_5e-16,
    ];
    const BETA: [f32; 4] = [4.893_525e-3, 2.268_434_6e-3, 1.185_347_1e-4, 1.198_258_4e-6];
    let x = x.clamp(-9.0, 9.0);
    let x2 = x * x;
    let mut p = ALPHA[6];
    for a in ALPHA[..6].iter().rev() {
        p = p * x2 + a;
    }
    let mut q = BETA[3];
    for b in BETA[..3].iter().rev() {
        q = q * x2 + b;
    }
    x * p / q
}

// ---------------------------------------------------------------- classifier

#[derive(Debug)]
struct SvmClassifier {
    labels: Vec<i64>,
    kernel: KernelType,
    /// SVC mode: support vectors [V, F], per-class counts and starts; empty in linear mode.
    support: Vec<f32>,
    per_class: Vec<usize>,
    starts: Vec<usize>,
    coefficients: Vec<f32>,
    rho: Vec<f32>,
    prob_a: Vec<f32>,
    prob_b: Vec<f32>,
    features: usize,
    post: PostTransform,
    weights_all_positive: bool,
}

pub fn svm_classifier(_: &ParsingContext, node: &NodeProto) -> Built {
    let name = format!("{} (SVMClassifier)", node.name);
    let (labels, names) = strings::class_labels(node, "classlabels_ints")?;
    let k = labels.len();
    ensure!(k >= 2, "{name}: needs at least two class labels");
    let per_class = attrs::indices(node, "vectors_per_class")?;
    let support: Vec<f32> = attrs::f32s(node, "support_vectors")?;
    let coefficients: Vec<f32> = attrs::required_f32s(node, "coefficients")?;
    let rho: Vec<f32> = attrs::required_f32s(node, "rho")?;
    let prob_a: Vec<f32> = attrs::f32s(node, "prob_a")?;
    let prob_b: Vec<f32> = attrs::f32s(node, "prob_b")?;
    let post = PostTransform::parse(node.get_attr_opt::<&str>("post_transform")?)?;
    let vectors: usize = per_class.iter().sum();
    let pairs = k * (k - 1) / 2;
    let (kernel, features, starts) = if vectors > 0 {
        ensure!(
            per_class.len() == k,
            "{name}: vectors_per_class has {} entries for {k} classes",
            per_class.len()
        );
        ensure!(
            support.len().is_multiple_of(vectors),
            "{name}: support_vectors do not divide into {vectors} vectors"
        );
        ensure!(
            coefficients.len() >= (k - 1) * vectors,
            "{name}: too few coefficients"
        );
        ensure!(
            rho.len() >= pairs,
            "{name}: rho has {} values for {pairs} class pairs",
            rho.len()
        );
        ensure!(
            prob_a.is_empty() || (prob_a.len() >= pairs && prob_b.len() >= pairs),
            "{name}: prob_a/prob_b too short"
        );
        let starts = per_class.iter().scan(0, |acc, n| {
            let s = *acc;
            *acc += n;
            Some(s)
        });
        (
            KernelType::parse(node)?,
            support.len() / vectors,
            starts.collect(),
        )
    } else {
        ensure!(
            coefficients.len().is_multiple_of(k),
            "{name}: coefficients do not divide into {k} classes"
        );
        ensure!(!rho.is_empty(), "{name}: rho is empty");
        (KernelType::Linear, coefficients.len() / k, Vec::new())
    };
    let svc = vectors > 0;
    if post == PostTransform::Probit && (k == 2 && svc && prob_a.is_empty()) {
        bail!("{name}: PROBIT on a two-class SVM without probabilities is not supported");
    }
    let weights_all_positive = coefficients.iter().all(|c| *c >= 0.0);
    let op = SvmClassifier {
        labels,
        kernel,
        support,
        per_class,
        starts,
        coefficients,
        rho,
        prob_a,
        prob_b,
        features,
        post,
        weights_all_positive,
    };
    Ok((strings::classifier(op, names), vec![]))
}

impl SvmClassifier {
    fn svc(&self) -> bool {
        !self.per_class.is_empty()
    }

    fn score_width(&self) -> usize {
        let k = self.labels.len();
        match (self.svc(), self.prob_a.is_empty()) {
            (true, true) if k > 2 => k * (k - 1) / 2,
            (true, true) => 2,
            _ => k,
        }
    }

    /// Label and scores of one instance.
    fn predict(&self, x: &[f32], kernels: &mut [f32], out: &mut [f32]) -> i64 {
        let k = self.labels.len();
        if !self.svc() {
            let mut scores: Vec<f64> = (0..k)
                .map(|c| {
                    let w = &self.coefficients[c * self.features..(c + 1) * self.features];
                    f64::from(KernelType::Linear.eval(x, w) + self.rho[0])
                })
                .collect();
            let (best, max) = first_max(&scores);
            let positive = if self.weights_all_positive {
                max >= 0.5
            } else {
                max > 0.0
            };
            let label = if k == 2 && positive {
                self.labels[1]
            } else {
                self.labels[best]
            };
            self.post.apply(&mut scores);
            write(out, &scores);
            return label;
        }
        let vectors = kernels.len();
        for (v, kv) in kernels.iter_mut().enumerate() {
            *kv = self
                .kernel
                .eval(x, &self.support[v * self.features..(v + 1) * self.features]);
        }
        let mut votes = vec![0usize; k];
        let mut decisions = Vec::with_capacity(k * (k - 1) / 2);
        let mut pair = 0;
        for i in 0..k {
            for j in i + 1..k {
                let (si, sj) = (self.starts[i], self.starts[j]);
                let mut sum = 0f64;
                for m in 0..self.per_class[i] {
                    sum +=
                        f64::from(self.coefficients[(j - 1) * vectors + si + m] * kernels[si + m]);
                }
                for m in 0..self.per_class[j] {
                    sum += f64::from(self.coefficients[i * vectors + sj + m] * kernels[sj + m]);
                }
                sum += f64::from(self.rho[pair]);
                decisions.push(sum as f32);
                votes[if sum > 0.0 { i } else { j }] += 1;
                pair += 1;
            }
        }
        let mut winner = 0;
        for c in 1..k {
            if votes[c] > votes[winner] {
                winner = c;
            }
        }
        let label = self.labels[winner];
        if !self.prob_a.is_empty() {
            let mut r = vec![0f32; k * k];
            let mut pair = 0;
            for i in 0..k {
                for j in i + 1..k {
                    let v = f64::from(decisions[pair] * self.prob_a[pair] + self.prob_b[pair]);
                    let p = (1.0 - logistic(v) as f32).clamp(1e-7, 1.0 - 1e-7);
                    r[i * k + j] = p;
                    r[j * k + i] = 1.0 - p;
                    pair += 1;
                }
            }
            let mut probs: Vec<f64> = pairwise_coupling(k, &r)
                .into_iter()
                .map(f64::from)
                .collect();
            self.post.apply(&mut probs);
            write(out, &probs);
        } else if k == 2 {
            let s = f64::from(decisions[0]);
            let values = match self.post {
                PostTransform::None => [-s, s],
                PostTransform::Logistic => [1.0 - logistic(s), logistic(s)],
                _ => [1.0 - s, s],
            };
            write(out, &values);
        } else {
            let mut values: Vec<f64> = decisions.iter().map(|d| f64::from(*d)).collect();
            self.post.apply(&mut values);
            write(out, &values);
        }
        label
    }
}

fn first_max(values: &[f64]) -> (usize, f64) {
    let mut best = (0, values[0]);
    for (i, v) in values.iter().enumerate().skip(1) {
        if *v > best.1 {
            best = (i, *v);
        }
    }
    best
}

fn write(out: &mut [f32], values: &[f64]) {
    for (o, v) in out.iter_mut().zip(values) {
        *o = *v as f32;
    }
}

/// libsvm's `multiclass_probability` (pairwise coupling), in f32 like onnxruntime.
fn pairwise_coupling(k: usize, r: &[f32]) -> Vec<f32> {
    let mut q = vec![0f32; k * k];
    let mut qp = vec![0f32; k];
    let mut p = vec![1.0 / k as f32; k];
    let eps = 0.005f32 / k as f32;
    for t in 0..k {
        for j in 0..t {
            q[t * k + t] += r[j * k + t] * r[j * k + t];
            q[t * k + j] = q[j * k + t];
        }
        for j in t + 1..k {
            q[t * k + t] += r[j * k + t] * r[j * k + t];
            q[t * k + j] = -r[j * k + t] * r[t * k + j];
        }
    }
    for _ in 0..100 {
        let mut pqp = 0f32;
        for t in 0..k {
            qp[t] = (0..k).map(|j| q[t * k + j] * p[j]).sum();
            pqp += p[t] * qp[t];
        }
        let max_error = qp.iter().map(|v| (v - pqp).abs()).fold(0f32, f32::max);
        if max_error < eps {
            break;
        }
        for t in 0..k {
            let diff = (-qp[t] + pqp) / q[t * k + t];
            p[t] += diff;
            pqp = (pqp + diff * (diff * q[t * k + t] + 2.0 * qp[t])) / (1.0 + diff) / (1.0 + diff);
            for j in 0..k {
                qp[j] = (qp[j] + diff * q[t * k + j]) / (1.0 + diff);
                p[j] /= 1.0 + diff;
            }
        }
    }
    p
}

impl Kernel for SvmClassifier {
    fn name(&self) -> &'static str {
        "SVMClassifier"
    }

    fn outputs(&self) -> Vec<(DatumType, OutShape)> {
        vec![
            (i64::datum_type(), OutShape::Rows(vec![])),
            (f32::datum_type(), OutShape::Rows(vec![self.score_width()])),
        ]
    }

    fn eval(&self, inputs: &[TValue]) -> TractResult<TVec<TValue>> {
        let (x, rows, width) = rows_f32(&inputs[0])?;
        ensure!(
            width == self.features,
            "SVMClassifier: instances have {width} features, the model takes {}",
            self.features
        );
        let w = self.score_width();
        let mut labels = Vec::with_capacity(rows);
        let mut scores = vec![0f32; rows * w];
        let mut kernels = vec![0f32; self.per_class.iter().sum()];
        for r in 0..rows {
            labels.push(self.predict(
                &x[r * width..(r + 1) * width],
                &mut kernels,
                &mut scores[r * w..(r + 1) * w],
            ));
        }
        Ok(tvec!(
            output(rows, &[], &labels)?,
            output(rows, &[w], &scores)?
        ))
    }
}

// ---------------------------------------------------------------- regressor

#[derive(Debug)]
struct SvmRegressor {
    kernel: KernelType,
    /// Support vectors [n, F]; empty when the model is (or has been folded into) one weight
    /// vector in `coefficients`.
    support: Vec<f32>,
    coefficients: Vec<f32>,
    rho: f32,
    features: usize,
    one_class: bool,
}

pub fn svm_regressor(_: &ParsingContext, node: &NodeProto) -> Built {
    let name = format!("{} (SVMRegressor)", node.name);
    let n_supports = node.get_attr_opt::<i64>("n_supports")?.unwrap_or(0).max(0) as usize;
    let support: Vec<f32> = attrs::f32s(node, "support_vectors")?;
    let coefficients: Vec<f32> = attrs::required_f32s(node, "coefficients")?;
    let rho = attrs::required_floats(node, "rho")?
        .first()
        .copied()
        .unwrap_or(0.0) as f32;
    let one_class = node.get_attr_opt::<i64>("one_class")?.unwrap_or(0) != 0;
    let (kernel, features) = if n_supports > 0 {
        ensure!(
            support.len().is_multiple_of(n_supports),
            "{name}: support_vectors do not divide into {n_supports} vectors"
        );
        ensure!(
            coefficients.len() >= n_supports,
            "{name}: too few coefficients"
        );
        (KernelType::parse(node)?, support.len() / n_supports)
    } else {
        (KernelType::Linear, coefficients.len())
    };
    // A linear kernel sums to one weight vector: w = sum_v coef_v * sv_v.
    let (support, coefficients) = if kernel == KernelType::Linear && !support.is_empty() {
        let mut w = vec![0f32; features];
        for (sv, c) in support.chunks_exact(features).zip(&coefficients) {
            for (wi, s) in w.iter_mut().zip(sv) {
                *wi += c * s;
            }
        }
        (Vec::new(), w)
    } else {
        (support, coefficients)
    };
    Ok((
        MlOp::boxed(SvmRegressor {
            kernel,
            support,
            coefficients,
            rho,
            features,
            one_class,
        }),
        vec![],
    ))
}

impl Kernel for SvmRegressor {
    fn name(&self) -> &'static str {
        "SVMRegressor"
    }

    fn outputs(&self) -> Vec<(DatumType, OutShape)> {
        vec![(f32::datum_type(), OutShape::Rows(vec![1]))]
    }

    fn eval(&self, inputs: &[TValue]) -> TractResult<TVec<TValue>> {
        let (x, rows, width) = rows_f32(&inputs[0])?;
        ensure!(
            width == self.features,
            "SVMRegressor: instances have {width} features, the model takes {}",
            self.features
        );
        let f = self.features;
        let y: Vec<f32> = (0..rows)
            .map(|r| {
                let xr = &x[r * f..(r + 1) * f];
                let mut v = if self.support.is_empty() {
                    KernelType::Linear.eval(xr, &self.coefficients) + self.rho
                } else {
                    let mut sum = 0f32;
                    for (s, c) in self.support.chunks_exact(f).zip(&self.coefficients) {
                        sum += c * self.kernel.eval(xr, s);
                    }
                    sum + self.rho
                };
                if self.one_class {
                    v = if v > 0.0 { 1.0 } else { -1.0 };
                }
                v
            })
            .collect();
        Ok(tvec!(output(rows, &[1], &y)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coupling_of_two_classes_is_the_pairwise_probability() {
        let r = [0.0, 0.8, 0.2, 0.0];
        let p = pairwise_coupling(2, &r);
        assert!(
            (p[0] - 0.8).abs() < 1e-3 && (p[1] - 0.2).abs() < 1e-3,
            "{p:?}"
        );
    }

    #[test]
    fn fast_tanh_is_within_1e6_of_tanh() {
        for i in -2000..=2000 {
            let x = i as f32 / 100.0;
            assert!(
                (fast_tanh(x) - x.tanh()).abs() < 1e-6,
                "{x}: {} vs {}",
                fast_tanh(x),
                x.tanh()
            );
        }
    }

    #[test]
    fn kernels() {
        let (x, v) = ([1.0f32, 2.0], [3.0f32, -1.0]);
        assert_eq!(KernelType::Linear.eval(&x, &v), 1.0);
        assert_eq!(
            KernelType::Poly {
                gamma: 2.0,
                coef0: 1.0,
                degree: 2.0
            }
            .eval(&x, &v),
            9.0
        );
        assert!(
            (KernelType::Rbf { gamma: 0.5 }.eval(&x, &v) - (-0.5f32 * 13.0).exp()).abs() < 1e-7
        );
    }
}
