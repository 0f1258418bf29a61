//! TreeEnsembleClassifier and TreeEnsembleRegressor kernels: the forest walk from `tree.rs`
//! plus onnxruntime's score finalisation (base values, binary handling, post-transforms,
//! labels).

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

use super::attrs;
use super::kernel::{output, rows_f32, Kernel, MlOp, OutShape};
use super::post::{logistic, PostTransform};
use super::strings;
use super::tree::{Aggregate, Forest, Score};

type Built = TractResult<(Box<dyn InferenceOp>, Vec<String>)>;

fn check_width(op: &str, forest: &Forest, width: usize) -> TractResult<()> {
    ensure!(
        forest.max_feature < width,
        "{op}: the trees read feature {} but instances have {width} features",
        forest.max_feature
    );
    Ok(())
}

// ---------------------------------------------------------------- classifier

#[derive(Debug)]
struct TreeClassifier {
    forest: Forest,
    labels: Vec<i64>,
    base: Vec<f64>,
    post: PostTransform,
    /// Two classes, leaves write to one class only: the other is derived.
    binary_case: bool,
    weights_all_positive: bool,
}

pub fn tree_classifier(_: &ParsingContext, node: &NodeProto) -> Built {
    let (labels, names) = strings::class_labels(node, "classlabels_int64s")?;
    ensure!(
        !labels.is_empty(),
        "{} (TreeEnsembleClassifier): no classlabels_int64s or classlabels_strings",
        node.name
    );
    let forest = Forest::parse(node, "class", labels.len())?;
    let base = attrs::floats(node, "base_values")?.unwrap_or_default();
    ensure!(
        base.is_empty() || base.len() == labels.len() || (labels.len() == 2 && base.len() == 1),
        "{} (TreeEnsembleClassifier): {} base_values for {} classes",
        node.name,
        base.len(),
        labels.len()
    );
    let post = PostTransform::parse(node.get_attr_opt::<&str>("post_transform")?)?;
    let class_ids = attrs::indices(node, "class_ids")?;
    let weights = attrs::required_floats(node, "class_weights")?;
    let mut distinct = class_ids.clone();
    distinct.sort_unstable();
    distinct.dedup();
    let binary_case = labels.len() == 2 && distinct.len() == 1;
    let weights_all_positive = weights.iter().all(|w| *w >= 0.0);
    if labels.len() == 2 && post == PostTransform::Probit {
        bail!(
            "{} (TreeEnsembleClassifier): PROBIT on a binary classifier is not supported",
            node.name
        );
    }
    Ok((
        strings::classifier(
            TreeClassifier {
                forest,
                labels,
                base,
                post,
                binary_case,
                weights_all_positive,
            },
            names,
        ),
        vec![],
    ))
}

impl TreeClassifier {
    /// Label and probabilities of one instance from its per-class scores, as onnxruntime's
    /// `FinalizeScores` (see docs/ml-operators.md).
    fn finalize(&self, scores: &mut [Score], probs: &mut [f32], values: &mut Vec<f64>) -> i64 {
        let value = |s: &Score| if s.set { s.value } else { 0.0 };
        if self.labels.len() != 2 {
            for (s, b) in scores.iter_mut().zip(&self.base) {
                s.value = if s.set { s.value + b } else { *b };
                s.set = true;
            }
            // The first class with the largest score, among classes some leaf (or base) reached.
            let mut best: Option<(usize, f64)> = None;
            for (c, s) in scores.iter().enumerate() {
                if s.set && best.is_none_or(|(_, w)| s.value > w) {
                    best = Some((c, s.value));
                }
            }
            values.clear();
            values.extend(scores.iter().map(value));
            self.post.apply(values);
            write(probs, values);
            return self.labels[best.map(|b| b.0).unwrap_or(0)];
        }
        let (mut p0, mut p1) = (scores[0], scores[1]);
        let mut code = -1;
        let mut two_scores = true;
        match self.base.len() {
            2 if p1.set => {
                p1.value = self.base[1] + p0.value;
                p0.value = -p1.value;
            }
            2 => {
                p1.value += self.base[1];
                p0.value += self.base[0];
            }
            1 => {
                p0.value += self.base[0];
                two_scores = p1.set;
            }
            _ => {
                code = 3;
                two_scores = p1.set;
            }
        }
        let pos = if p1.set {
            p1.value
        } else if p0.set {
            p0.value
        } else {
            0.0
        };
        let label = if self.binary_case {
            let (won, c) = if self.weights_all_positive {
                (pos > 0.5, 0)
            } else {
                (pos > 0.0, 2)
            };
            code = if won { c } else { c + 1 };
            self.labels[usize::from(won)]
        } else {
            // onnxruntime answers the raw positive / negative label here, not a class label.
            i64::from(pos > 0.0)
        };
        let values = if two_scores {
            let mut v = [value(&p0), value(&p1)];
            self.post.apply(&mut v);
            v
        } else {
            let s = p0.value;
            let logistic_post = self.post == PostTransform::Logistic;
            match code {
                0 | 1 if logistic_post => [1.0 - logistic(s), logistic(s)],
                0 | 1 => [1.0 - s, s],
                2 | 3 if logistic_post => [logistic(-s), logistic(s)],
                2 | 3 => [-s, s],
                _ => [s, 0.0],
            }
        };
        write(probs, &values);
        label
    }
}

fn write(out: &mut [f32], values: &[f64]) {
    for (o, v) in out.iter_mut().zip(values) {
        *o = *v as f32;
    }
}

impl Kernel for TreeClassifier {
    fn name(&self) -> &'static str {
        "TreeEnsembleClassifier"
    }

    fn outputs(&self) -> Vec<(DatumType, OutShape)> {
        vec![
            (i64::datum_type(), OutShape::Rows(vec![])),
            (f32::datum_type(), OutShape::Rows(vec![self.labels.len()])),
        ]
    }

    fn eval(&self, inputs: &[TValue]) -> TractResult<TVec<TValue>> {
        let (x, rows, width) = rows_f32(&inputs[0])?;
        check_width("TreeEnsembleClassifier", &self.forest, width)?;
        let classes = self.labels.len();
        let mut labels = Vec::with_capacity(rows);
        let mut probs = vec![0f32; rows * classes];
        let mut scores = vec![Score::default(); rows * classes];
        self.forest
            .score_batch(&x, rows, width, Aggregate::Sum, &mut scores);
        let mut values = Vec::with_capacity(classes);
        for r in 0..rows {
            let row = &mut scores[r * classes..(r + 1) * classes];
            let out = &mut probs[r * classes..(r + 1) * classes];
            labels.push(self.finalize(row, out, &mut values));
        }
        Ok(tvec!(
            output(rows, &[], &labels)?,
            output(rows, &[classes], &probs)?
        ))
    }
}

// ---------------------------------------------------------------- regressor

#[derive(Debug)]
struct TreeRegressor {
    forest: Forest,
    aggregate: Aggregate,
    base: Vec<f64>,
    post: PostTransform,
}

pub fn tree_regressor(_: &ParsingContext, node: &NodeProto) -> Built {
    let targets = node.get_attr_opt::<i64>("n_targets")?.unwrap_or(1);
    ensure!(
        targets > 0,
        "{} (TreeEnsembleRegressor): n_targets must be positive",
        node.name
    );
    let forest = Forest::parse(node, "target", targets as usize)?;
    let aggregate = Aggregate::parse(
        node.get_attr_opt::<&str>("aggregate_function")?
            .unwrap_or("SUM"),
    )?;
    let base = attrs::floats(node, "base_values")?.unwrap_or_default();
    ensure!(
        base.is_empty() || base.len() == targets as usize,
        "{} (TreeEnsembleRegressor): {} base_values for {targets} targets",
        node.name,
        base.len()
    );
    let post = PostTransform::parse(node.get_attr_opt::<&str>("post_transform")?)?;
    Ok((
        MlOp::boxed(TreeRegressor {
            forest,
            aggregate,
            base,
            post,
        }),
        vec![],
    ))
}

impl Kernel for TreeRegressor {
    fn name(&self) -> &'static str {
        "TreeEnsembleRegressor"
    }

    fn outputs(&self) -> Vec<(DatumType, OutShape)> {
        vec![(
            f32::datum_type(),
            OutShape::Rows(vec![self.forest.n_targets]),
        )]
    }

    fn eval(&self, inputs: &[TValue]) -> TractResult<TVec<TValue>> {
        let (x, rows, width) = rows_f32(&inputs[0])?;
        check_width("TreeEnsembleRegressor", &self.forest, width)?;
        let targets = self.forest.n_targets;
        let trees = self.forest.n_trees() as f64;
        let use_base = self.base.len() == targets;
        let mut y = vec![0f32; rows * targets];
        let mut all = vec![Score::default(); rows * targets];
        self.forest
            .score_batch(&x, rows, width, self.aggregate, &mut all);
        let mut values = vec![0f64; targets];
        for r in 0..rows {
            let scores = &all[r * targets..(r + 1) * targets];
            for (t, (v, s)) in values.iter_mut().zip(scores).enumerate() {
                let base = if use_base { self.base[t] } else { 0.0 };
                *v = match (self.aggregate, targets) {
                    // One target: every tree answered, so the base value always applies.
                    (Aggregate::Average, 1) => s.value / trees + base,
                    (Aggregate::Min | Aggregate::Max, 1) if !s.set => base,
                    (_, 1) => s.value + base,
                    // Several targets: a target no leaf wrote to stays 0, base value or not.
                    (_, _) if !s.set => 0.0,
                    (Aggregate::Average, _) => s.value / trees + base,
                    _ => s.value + base,
                };
            }
            if targets > 1 || self.post == PostTransform::Probit {
                self.post.apply(&mut values);
            }
            for (out, v) in y[r * targets..(r + 1) * targets].iter_mut().zip(&values) {
                *out = *v as f32;
            }
        }
        Ok(tvec!(output(rows, &[targets], &y)?))
    }
}
