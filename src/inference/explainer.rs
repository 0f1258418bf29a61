//! Explanations as a service: resolve the model version, check the instances against its
//! contract, pick the coalitions, run their perturbed rows through the same worker pool and
//! queue as predictions, and turn the outputs into attributions (see `crate::explain`).
//!
//! Explanations cannot starve predictions: at most `max_concurrent` run at once (one more is
//! refused with `Busy`, a 429), and each keeps at most two chunks of at most `chunk_rows` rows in
//! the model's queue at a time (one per worker on a two-core machine), so a prediction queued
//! behind an explanation waits for the chunks already taken, not for the whole explanation.

use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use super::error::PredictError;
use super::explain_error::ExplainError;
use super::explain_subject::{
    instance_rows, output_table, subject, target_column, tensors, Input, Subject,
};
use super::predictor::Target;
use crate::contract::Instance;
use crate::engine::Tensor;
use crate::explain::{self, Background, Coalitions, Codes, Method, Occlusion, Vocabulary};
use crate::monitoring::Metrics;
use crate::repository::{LoadedVersion, ModelStore};

/// Bounds on explanations (from `ExplainArgs`).
#[derive(Debug, Clone, Copy)]
pub struct ExplainLimits {
    /// Explanations running at once; one more is refused.
    pub max_concurrent: usize,
    /// Instances in one explain request.
    pub max_instances: usize,
    /// Coalitions per instance when the request sets no budget.
    pub default_budget: usize,
    /// Largest budget a request may set.
    pub max_budget: usize,
    /// Most features for exact Shapley values (2^F coalitions).
    pub exact_max_features: usize,
    /// Background rows used (the first ones of the version's background).
    pub max_background_rows: usize,
    /// Rows per model call: the unit in which explanations share the workers.
    pub chunk_rows: usize,
    /// Time budget of one explain request.
    pub timeout: Duration,
    /// What a refused caller is told to wait.
    pub retry_after: Duration,
}

/// Which method a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MethodChoice {
    /// Exact when `2^F` fits the budget and the feature limit, KernelSHAP otherwise.
    #[default]
    Auto,
    Exact,
    Kernel,
    /// Tensor inputs (the default, and the only method, for them).
    Occlusion,
}

/// What to explain and how.
#[derive(Debug, Clone, Default)]
pub struct ExplainOptions {
    /// Class label to explain (classifiers; default: the predicted class) or `"value"`.
    pub target: Option<String>,
    pub method: MethodChoice,
    /// Coalitions per instance (KernelSHAP), default `default_budget`.
    pub budget: Option<usize>,
    /// Seed of KernelSHAP's sampling.
    pub seed: u64,
    /// Occlusion patch side (tensor inputs), default [`DEFAULT_PATCH`].
    pub patch: Option<usize>,
    /// Value an occluded patch is set to (tensor inputs).
    pub baseline: f64,
}

/// Occlusion patch side when the request sets none.
pub const DEFAULT_PATCH: usize = 8;
/// Most elements in one chunk of tensor rows (4 MB of f32), whatever `chunk_rows` says.
const CHUNK_ELEMENTS: usize = 1 << 20;
/// Most bytes of strings in one chunk of rows (string columns: each row holds a copy of the
/// instance's or a background row's string), whatever `chunk_rows` says.
const CHUNK_TEXT_BYTES: usize = 8 << 20;

/// One instance's explanation.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceExplanation {
    /// The class label explained, or "value" for a regressor.
    pub target: String,
    /// Model output for the target (class probability or value).
    pub output: f64,
    /// Mean output over the background.
    pub base_value: f64,
    /// Feature name and attribution, in feature order.
    pub attributions: Vec<(String, f64)>,
    pub method: Method,
    /// Coalitions evaluated.
    pub samples: usize,
}

#[derive(Debug)]
pub struct ExplainOutcome {
    pub model: String,
    pub version: u64,
    /// Where the background rows come from.
    pub background: String,
    pub background_rows: usize,
    pub explanations: Vec<InstanceExplanation>,
}

#[derive(Debug)]
pub struct Explainer {
    store: Arc<ModelStore>,
    limits: ExplainLimits,
    slots: Arc<Semaphore>,
    metrics: Arc<Metrics>,
}

impl Explainer {
    pub fn new(store: Arc<ModelStore>, limits: ExplainLimits, metrics: Arc<Metrics>) -> Explainer {
        Explainer {
            store,
            slots: Arc::new(Semaphore::new(limits.max_concurrent)),
            limits,
            metrics,
        }
    }

    pub fn limits(&self) -> ExplainLimits {
        self.limits
    }

    /// Explains each instance with the target model version.
    pub async fn explain(
        &self,
        target: Target<'_>,
        instances: &[Instance],
        options: &ExplainOptions,
    ) -> Result<ExplainOutcome, ExplainError> {
        let started = Instant::now();
        let result = self.run(target, instances, options, started).await;
        match &result {
            Ok(outcome) => {
                let coalitions = outcome.explanations.iter().map(|e| e.samples).sum();
                let method = outcome
                    .explanations
                    .first()
                    .map_or(Method::KernelShap, |e| e.method);
                self.metrics.explain().finished(
                    &outcome.model,
                    outcome.version,
                    method.as_str(),
                    started.elapsed(),
                    coalitions,
                );
            }
            Err(e) => self.metrics.explain().failed(e.reason()),
        }
        result
    }

    async fn run(
        &self,
        target: Target<'_>,
        instances: &[Instance],
        options: &ExplainOptions,
        started: Instant,
    ) -> Result<ExplainOutcome, ExplainError> {
        let _slot = self
            .slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| ExplainError::Busy {
                limit: self.limits.max_concurrent,
                retry_after: self.limits.retry_after,
            })?;
        let _running = self.metrics.explain().running();
        let loaded = self
            .store
            .snapshot()
            .resolve(target.model, target.version)
            .map_err(PredictError::from)?;
        if instances.len() > self.limits.max_instances {
            return Err(ExplainError::TooManyInstances {
                count: instances.len(),
                limit: self.limits.max_instances,
            });
        }
        let subject = subject(&loaded)?;
        let job = Job {
            loaded: &loaded,
            subject: &subject,
            options,
            deadline: started + self.limits.timeout,
        };
        match (&subject.input, subject.input.features()) {
            (Input::Tensor { shape }, _) => self.occlusion(&job, shape, instances).await,
            (Input::Text { spec }, _) => self.tokens(&job, spec, instances).await,
            (_, Some(features)) => self.shapley(&job, features, instances).await,
            (_, None) => Err(ExplainError::NotTabular {
                model: loaded.model.clone(),
            }),
        }
    }

    /// Shapley values of tabular instances against the version's background.
    async fn shapley(
        &self,
        job: &Job<'_>,
        features: &[String],
        instances: &[Instance],
    ) -> Result<ExplainOutcome, ExplainError> {
        let background = self.background(job.loaded)?;
        let coalitions = self.coalitions(features.len(), job.options)?;
        let mut codes = Codes::new(background.vocabulary());
        let rows = instance_rows(job.loaded, instances, &mut codes)?;
        let subject = job.subject;
        let build = |values: &[f64]| tensors(values, &subject.input, subject.dtype, &codes);
        let mut explanations = Vec::with_capacity(instances.len());
        for x in rows.chunks(features.len()) {
            let fill =
                |range, out: &mut Vec<f64>| explain::rows(&coalitions, range, x, &background, out);
            let units = Units {
                count: coalitions.len(),
                per: background.rows(),
                width: x.len(),
                text_bytes: codes.row_text_bytes(),
            };
            let table = self.evaluate(job, units, &fill, &build).await?;
            let column = target_column(
                job.subject,
                job.options.target.as_deref(),
                &table,
                coalitions.full_index(),
            )?;
            let values = explain::column(&table, job.subject.columns, column.0);
            let a = coalitions
                .attribute(&values)
                .ok_or(ExplainError::Underdetermined {
                    coalitions: coalitions.len(),
                    features: coalitions.width(),
                })?;
            explanations.push(InstanceExplanation {
                target: column.1,
                output: a.output,
                base_value: a.base_value,
                attributions: features.iter().cloned().zip(a.values).collect(),
                method: coalitions.method(),
                samples: coalitions.len(),
            });
        }
        Ok(job.outcome(
            background.source().to_string(),
            background.rows(),
            explanations,
        ))
    }

    /// Occlusion attributions of tensor instances.
    async fn occlusion(
        &self,
        job: &Job<'_>,
        shape: &[usize],
        instances: &[Instance],
    ) -> Result<ExplainOutcome, ExplainError> {
        if matches!(
            job.options.method,
            MethodChoice::Exact | MethodChoice::Kernel
        ) {
            return Err(ExplainError::BadOption(
                "method: tensor inputs are explained by occlusion".into(),
            ));
        }
        let patch = job.options.patch.unwrap_or(DEFAULT_PATCH);
        let grid = Occlusion::new(shape, patch)
            .filter(|g| g.len() <= self.limits.max_budget)
            .ok_or_else(|| {
                ExplainError::BadOption(format!(
                    "patch: {patch} gives more than {} patches, or none, over an input of shape {shape:?}",
                    self.limits.max_budget
                ))
            })?;
        let baseline = job.options.baseline;
        let no_text = Vocabulary::default();
        let codes = Codes::new(&no_text);
        let rows = instance_rows(job.loaded, instances, &mut Codes::new(&no_text))?;
        let width: usize = shape.iter().product();
        let subject = job.subject;
        let build = |values: &[f64]| tensors(values, &subject.input, subject.dtype, &codes);
        let mut explanations = Vec::with_capacity(instances.len());
        for x in rows.chunks(width) {
            let fill = |range, out: &mut Vec<f64>| grid.rows(range, x, baseline, out);
            let units = Units {
                count: grid.len(),
                per: 1,
                width,
                text_bytes: 0,
            };
            let table = self.evaluate(job, units, &fill, &build).await?;
            let (column, target) =
                target_column(job.subject, job.options.target.as_deref(), &table, 0)?;
            let values = explain::column(&table, job.subject.columns, column);
            explanations.push(InstanceExplanation {
                target,
                output: values[0],
                base_value: values[grid.len() - 1],
                attributions: grid
                    .names()
                    .into_iter()
                    .zip(grid.attribute(&values))
                    .collect(),
                method: Method::Occlusion,
                samples: grid.len(),
            });
        }
        Ok(job.outcome(
            format!("occlusion: {patch}x{patch} patches set to {baseline}; base_value is the all-{baseline} input"),
            0,
            explanations,
        ))
    }

    /// The version's background, cut to `max_background_rows`.
    fn background(&self, loaded: &LoadedVersion) -> Result<Arc<Background>, ExplainError> {
        let background =
            loaded
                .background
                .as_ref()
                .map_err(|reason| ExplainError::NoBackground {
                    model: loaded.model.clone(),
                    version: loaded.version,
                    reason: reason.clone(),
                })?;
        let max = self.limits.max_background_rows;
        Ok(if background.rows() > max {
            Arc::new(background.first(max))
        } else {
            background.clone()
        })
    }

    /// The coalitions for `width` features under the request's method and budget, refused
    /// (before anything is built) when over the limits.
    pub(super) fn coalitions(
        &self,
        width: usize,
        options: &ExplainOptions,
    ) -> Result<Coalitions, ExplainError> {
        let limits = &self.limits;
        let budget = options.budget.unwrap_or(limits.default_budget);
        if budget > limits.max_budget {
            return Err(ExplainError::BadOption(format!(
                "budget: {budget} coalitions is over the limit of {}",
                limits.max_budget
            )));
        }
        let exact_fits = width <= limits.exact_max_features;
        // Every coalition, when that is a number worth naming (width < 63 here whenever it fits).
        let all = u32::try_from(width)
            .ok()
            .and_then(|w| 1usize.checked_shl(w))
            .filter(|_| width < 63);
        let exact = match options.method {
            MethodChoice::Exact if !exact_fits => {
                return Err(ExplainError::BadOption(format!(
                    "method: exact_shapley evaluates 2^F coalitions and is limited to {} features; \
                     this model has {width} (use kernel_shap)",
                    limits.exact_max_features
                )))
            }
            MethodChoice::Exact => true,
            MethodChoice::Kernel => false,
            MethodChoice::Occlusion => {
                return Err(ExplainError::BadOption(
                    "method: occlusion is for tensor inputs; tabular models use exact_shapley or kernel_shap".into(),
                ))
            }
            MethodChoice::Auto => exact_fits && all.is_some_and(|n| n <= budget),
        };
        if exact {
            return Ok(Coalitions::exact(width));
        }
        let least = all.map_or(2 * width + 2, |n| n.min(2 * width + 2));
        if budget < least {
            return Err(ExplainError::BadOption(format!(
                "budget: kernel_shap needs at least {least} coalitions for {width} features, got {budget}"
            )));
        }
        Ok(Coalitions::kernel(width, budget, options.seed))
    }

    /// Runs every unit's rows (`units.per` rows each, built by `fill`, made into the model's
    /// input tensors by `build`) through the model, two chunks in the queue at a time (so one
    /// explanation can use two workers), and returns each unit's mean output row
    /// (`units.count x columns`).
    pub(super) async fn evaluate(
        &self,
        job: &Job<'_>,
        units: Units,
        fill: &(dyn Fn(Range<usize>, &mut Vec<f64>) + Sync),
        build: &(dyn Fn(&[f64]) -> Vec<Tensor> + Sync),
    ) -> Result<Vec<f64>, ExplainError> {
        let (loaded, subject) = (job.loaded, job.subject);
        let rows_per_chunk = self
            .limits
            .chunk_rows
            .min(CHUNK_ELEMENTS / units.width.max(1))
            .min(
                CHUNK_TEXT_BYTES
                    .checked_div(units.text_bytes)
                    .unwrap_or(usize::MAX),
            )
            .max(1);
        let step = (rows_per_chunk / units.per).max(1);
        let chunk = |start: usize| -> Option<(usize, (usize, Vec<Tensor>))> {
            let end = (start + step).min(units.count);
            (start < end).then(|| {
                let n = (end - start) * units.per;
                let mut rows = Vec::with_capacity(n * units.width);
                fill(start..end, &mut rows);
                (end, (n, build(&rows)))
            })
        };
        let mut table = Vec::with_capacity(units.count * subject.columns);
        let mut start = 0;
        while let Some((middle, first)) = chunk(start) {
            let second = chunk(middle);
            let end = second.as_ref().map_or(middle, |(end, _)| *end);
            let run_second = async {
                match second {
                    Some((_, (n, inputs))) => {
                        Some((n, loaded.queue.run(inputs, job.deadline).await))
                    }
                    None => None,
                }
            };
            let run_first = async { (first.0, loaded.queue.run(first.1, job.deadline).await) };
            let (a, b) = tokio::join!(run_first, run_second);
            for (n, run) in std::iter::once(a).chain(b) {
                let run = run.map_err(PredictError::from)?;
                let outputs = output_table(&loaded.contract, &run.outputs, n, subject.columns)
                    .map_err(ExplainError::Output)?;
                explain::means(&outputs, subject.columns, units.per, &mut table);
            }
            start = end;
        }
        Ok(table)
    }
}

/// One explain request's fixed parts.
pub(super) struct Job<'a> {
    pub(super) loaded: &'a Arc<LoadedVersion>,
    pub(super) subject: &'a Subject<'a>,
    pub(super) options: &'a ExplainOptions,
    deadline: Instant,
}

impl Job<'_> {
    pub(super) fn outcome(
        &self,
        background: String,
        background_rows: usize,
        explanations: Vec<InstanceExplanation>,
    ) -> ExplainOutcome {
        ExplainOutcome {
            model: self.loaded.model.clone(),
            version: self.loaded.version,
            background,
            background_rows,
            explanations,
        }
    }
}

/// What `evaluate` runs: `count` units of `per` rows of `width` values, each row's strings
/// taking at most `text_bytes` bytes once decoded.
#[derive(Debug, Clone, Copy)]
pub(super) struct Units {
    pub(super) count: usize,
    pub(super) per: usize,
    pub(super) width: usize,
    pub(super) text_bytes: usize,
}
