//! The one path from JSON instances to predictions: resolve the model version, check the
//! instances against its contract, run them on the worker pool, present the outputs, and record
//! the model's metrics. Every protocol front-end calls this.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::capture_hook::CaptureHook;
use super::error::PredictError;
pub use super::target::Target;
use super::traffic::{Routed, Traffic};
use crate::auth::Access;
use crate::capture::Capture;
use crate::contract::decode_instances as decode;
use crate::contract::map_elements;
use crate::contract::Instance;
use crate::contract::{check_columns, Unseen};
use crate::contract::{check_tensors, protocol_outputs, InputTensor};
use crate::contract::{predictions, Prediction};
use crate::contract::{DecodeBudget, ListLimits};
use crate::engine::Tensor;
use crate::monitoring::{Cell, Observed, PredictionLog, Protocol};
use crate::repository::{LoadedVersion, ModelStore};

/// Per-request limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Instances one request may carry.
    pub max_instances: usize,
    /// Tensor elements one request may carry across all its inputs, checked before decoding.
    pub max_elements: usize,
    /// Tensors, dimensions and parameters of a named-tensor request, held while it is decoded.
    pub lists: ListLimits,
    /// Time from the start of prediction (body parsed) to the answer; past it a queued job is
    /// dropped and the caller told so.
    pub timeout: Duration,
}

/// A successful prediction with its provenance and timings.
#[derive(Debug)]
pub struct PredictOutcome {
    pub model: String,
    pub version: u64,
    pub predictions: Vec<Prediction>,
    pub queue_wait: Duration,
    pub compute: Duration,
}

#[derive(Debug)]
pub struct Predictor {
    store: Arc<ModelStore>,
    limits: Limits,
    /// Recent predictions, for joining with ground-truth feedback.
    log: Arc<PredictionLog>,
    /// Per-model rate limits, applied once the model is resolved.
    access: Option<Access>,
    /// Data capture for retraining, when on.
    capture: Option<CaptureHook>,
    /// Canary and shadow routing (`traffic.rs`); None: every request goes to the default.
    traffic: Option<Arc<Traffic>>,
}

impl Predictor {
    pub fn new(store: Arc<ModelStore>, limits: Limits, log: Arc<PredictionLog>) -> Predictor {
        Predictor {
            store,
            limits,
            log,
            access: None,
            capture: None,
            traffic: None,
        }
    }

    /// Splits requests that name no version by each model's canary and shadow.
    pub fn with_traffic(mut self, traffic: Arc<Traffic>) -> Predictor {
        self.traffic = Some(traffic);
        self
    }

    pub fn traffic(&self) -> Option<&Arc<Traffic>> {
        self.traffic.as_ref()
    }

    /// The version a request goes to (split by the traffic plan when there is one).
    fn route(&self, target: Target<'_>) -> Result<Routed, PredictError> {
        let catalog = self.store.snapshot();
        Ok(match &self.traffic {
            Some(traffic) => traffic.route(&catalog, target)?,
            None => Routed::plain(catalog.resolve(target.model, target.version)?),
        })
    }

    /// Applies `access`'s per-model rate limit to every request.
    pub fn with_model_limits(mut self, access: Access) -> Predictor {
        self.access = Some(access);
        self
    }

    /// Captures sampled requests (inputs, predictions) into `capture`.
    pub fn with_capture(mut self, capture: Capture) -> Predictor {
        self.capture = Some(CaptureHook::new(capture));
        self
    }

    /// Data capture, when on (feedback is captured through it too).
    pub fn capture(&self) -> Option<&Capture> {
        self.capture.as_ref().map(CaptureHook::capture)
    }

    fn admit_model(&self, loaded: &LoadedVersion) -> Result<(), PredictError> {
        match &self.access {
            Some(access) => Ok(access.admit_model(&loaded.model)?),
            None => Ok(()),
        }
    }

    /// Recent predictions kept for feedback.
    pub fn log(&self) -> &Arc<PredictionLog> {
        &self.log
    }

    pub fn store(&self) -> &Arc<ModelStore> {
        &self.store
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The limits a request body is held to while it is parsed (`decode_budget.rs`).
    pub fn decode_budget(&self) -> DecodeBudget {
        DecodeBudget {
            max_instances: self.limits.max_instances,
            max_elements: self.limits.max_elements,
            lists: self.limits.lists,
        }
    }

    /// Predicts every instance with the target model version. Prediction `i` gets the id
    /// `"{id}/{i}"`, under which ground truth can be sent back (see `feedback`).
    pub async fn predict(
        &self,
        target: Target<'_>,
        instances: &[Instance],
        id: &str,
    ) -> Result<PredictOutcome, PredictError> {
        let started = Instant::now();
        let routed = self.route(target)?;
        let loaded = routed.loaded.clone();
        let result = async {
            self.admit_model(&loaded)?;
            self.check_count(instances.len())?;
            let elements = loaded
                .contract
                .input
                .row_elements()
                .checked_mul(instances.len());
            self.check_elements(elements)?;
            if let Some(elements) = map_elements(&loaded.contract.input, instances) {
                // Maps are padded to the request's largest: count the padded tensors first.
                self.check_elements(elements)?;
            }
            let inputs = decode(&loaded.contract.input, instances)?;
            if loaded.contract.input.has_variable_rows() {
                // The contract could only count the fixed dimensions: count what was read.
                self.check_elements(Some(inputs.iter().map(|t| t.data.len()).sum()))?;
            }
            let unseen = check_columns(&loaded.contract.columns, &inputs)?;
            self.observe_inputs(&loaded, &inputs);
            let sampled = self
                .capture
                .as_ref()
                .and_then(|c| c.sample(&loaded, &inputs));
            let run = self
                .execute(&loaded, inputs, instances.len(), started)
                .await?;
            count_unseen(&loaded, &unseen);
            self.observe_predictions(&loaded, &run.predictions, id);
            if let (Some(c), Some(s)) = (&self.capture, sampled) {
                c.record(&loaded, s, &run.predictions, Some(id), started);
            }
            Ok(run)
        }
        .await;
        self.record(&loaded, &result, target.protocol, started);
        if let (Some(traffic), false) = (&self.traffic, rate_limited(&result)) {
            let answers = result
                .as_ref()
                .map(|r| r.predictions.as_slice())
                .map_err(|_| ());
            traffic.answered(routed, answers, started.elapsed(), instances);
        }
        let run = result?;
        Ok(PredictOutcome {
            model: loaded.model.clone(),
            version: loaded.version,
            predictions: run.predictions,
            queue_wait: run.queue_wait,
            compute: run.compute,
        })
    }

    /// Runs named input tensors (batch first) through the target model version and returns the
    /// output tensors: the tensor protocols' path, with the same checks, limits and metrics.
    pub async fn infer(
        &self,
        target: Target<'_>,
        inputs: Vec<InputTensor>,
    ) -> Result<InferOutcome, PredictError> {
        self.infer_with_id(target, inputs, None).await
    }

    /// [`Predictor::infer`] for a request that carries an id (V2 and gRPC `id`): data capture
    /// records row `i` as `"{id}/{i}"`, the id ground truth can refer to.
    pub async fn infer_with_id(
        &self,
        target: Target<'_>,
        inputs: Vec<InputTensor>,
        id: Option<&str>,
    ) -> Result<InferOutcome, PredictError> {
        let started = Instant::now();
        let routed = self.route(target)?;
        let loaded = routed.loaded.clone();
        let result = async {
            self.admit_model(&loaded)?;
            let (tensors, rows) = check_tensors(&loaded.contract, inputs)?;
            self.check_count(rows)?;
            let unseen = check_columns(&loaded.contract.columns, &tensors)?;
            self.observe_inputs(&loaded, &tensors);
            let sampled = self
                .capture
                .as_ref()
                .and_then(|c| c.sample(&loaded, &tensors));
            let mirrored = routed.wants_mirror().then(|| (tensors.clone(), rows));
            let run = self.execute(&loaded, tensors, rows, started).await?;
            count_unseen(&loaded, &unseen);
            observe_prediction_drift(&loaded, &run.predictions);
            if let (Some(c), Some(s)) = (&self.capture, sampled) {
                c.record(&loaded, s, &run.predictions, id, started);
            }
            Ok((run, mirrored))
        }
        .await;
        let (result, mirrored) = match result {
            Ok((run, mirrored)) => (Ok(run), mirrored),
            Err(e) => (Err(e), None),
        };
        self.record(&loaded, &result, target.protocol, started);
        if let (Some(traffic), false) = (&self.traffic, rate_limited(&result)) {
            let answers = result
                .as_ref()
                .map(|r| r.predictions.as_slice())
                .map_err(|_| ());
            traffic.answered_tensors(routed, answers, started.elapsed(), mirrored);
        }
        let run = result?;
        let outputs = loaded
            .contract
            .signature
            .outputs
            .iter()
            .map(|s| s.name.clone())
            .zip(protocol_outputs(&loaded.contract, run.outputs))
            .collect();
        Ok(InferOutcome {
            model: loaded.model.clone(),
            version: loaded.version,
            loaded: loaded.clone(),
            outputs,
        })
    }

    /// Refuses at once (and counts the refusal) when the target version's queue is full, so an
    /// overloaded server does not read and parse a body it would refuse anyway. Anything else,
    /// including an unknown target, is left for `predict` / `infer` to report.
    pub fn admit(&self, target: Target<'_>) -> Result<(), PredictError> {
        let Ok(loaded) = self.store.snapshot().resolve(target.model, target.version) else {
            return Ok(());
        };
        loaded.queue.check_room().map_err(|e| {
            let e = PredictError::Engine(e);
            loaded.metrics.failed(target.protocol, e.reason());
            e
        })
    }

    /// Counts each instance's inputs for drift (before the tensors move to a worker; the rows
    /// are read in place, not copied): the columns of a tabular input, or of a model with one
    /// input per card feature (strings included). Every protocol's request passes here once:
    /// `/predict` and V1 through `predict`, V2 REST (JSON and binary) and gRPC through `infer`.
    fn observe_inputs(&self, loaded: &LoadedVersion, inputs: &[Tensor]) {
        if !loaded.monitor.tracks_drift() {
            return;
        }
        let columns = &loaded.contract.columns;
        let Some(input) = inputs.first() else { return };
        if loaded.contract.one_input_per_column() {
            for i in 0..input.rows() {
                loaded.monitor.observe_inputs(|j| {
                    columns.get(j).map_or(Cell::Missing, |c| c.cell(inputs, i))
                });
            }
            return;
        }
        let width = input.row_len();
        for i in 0..input.rows() {
            let at = i * width;
            loaded
                .monitor
                .observe_inputs(|j| Cell::Number(input.data.get_f64(at + j).unwrap_or(f64::NAN)));
        }
    }

    /// Counts the predictions for drift and keeps them for feedback.
    fn observe_predictions(&self, loaded: &LoadedVersion, predictions: &[Prediction], id: &str) {
        if loaded.monitor.quality().is_none() {
            return observe_prediction_drift(loaded, predictions);
        }
        let observed: Vec<Observed> = predictions.iter().map(observed).collect();
        for o in &observed {
            loaded.monitor.observe_prediction(*o);
        }
        self.log.insert(id, &loaded.monitor, &observed);
    }

    /// Refuses a request whose tensors would hold more than `max_elements` elements. `None`
    /// stands for a count that overflowed while being added up (declared sizes are untrusted).
    /// Front-ends that decode tensors themselves call this before allocating them.
    pub fn check_elements(&self, elements: Option<usize>) -> Result<(), PredictError> {
        match elements {
            Some(n) if n <= self.limits.max_elements => Ok(()),
            _ => Err(PredictError::TooManyElements {
                count: elements.map_or_else(|| "more than 2^64".into(), |n| n.to_string()),
                limit: self.limits.max_elements,
            }),
        }
    }

    fn check_count(&self, rows: usize) -> Result<(), PredictError> {
        if rows > self.limits.max_instances {
            return Err(PredictError::TooManyInstances {
                count: rows.to_string(),
                limit: self.limits.max_instances,
            });
        }
        Ok(())
    }

    fn record(
        &self,
        loaded: &LoadedVersion,
        result: &Result<Executed, PredictError>,
        protocol: Protocol,
        started: Instant,
    ) {
        match result {
            Ok(run) => loaded
                .metrics
                .succeeded(protocol, run.predictions.len(), started.elapsed()),
            Err(e) => loaded.metrics.failed(protocol, e.reason()),
        }
    }

    /// The one way into the engine: queue, run, present, record the prediction signals.
    async fn execute(
        &self,
        loaded: &Arc<LoadedVersion>,
        inputs: Vec<Tensor>,
        rows: usize,
        started: Instant,
    ) -> Result<Executed, PredictError> {
        let deadline = started + self.limits.timeout;
        let run = loaded.queue.run(inputs, deadline).await?;
        let predictions =
            predictions(&loaded.contract, &run.outputs, rows).map_err(PredictError::Output)?;
        for p in &predictions {
            if let Prediction::Classification {
                class_index,
                confidence,
                ..
            } = p
            {
                loaded
                    .metrics
                    .classified(*class_index, f64::from(*confidence));
            }
        }
        Ok(Executed {
            outputs: run.outputs,
            predictions,
            queue_wait: run.queue_wait,
            compute: run.compute,
        })
    }
}

/// What drift counts of one prediction.
fn observed(p: &Prediction) -> Observed {
    match p {
        Prediction::Classification { class_index, .. } => Observed::Class(*class_index),
        Prediction::Regression { value } => Observed::Value(*value),
        Prediction::Raw { .. } => Observed::None,
    }
}

/// Counts the predictions of a tensor-protocol request (V2 REST, gRPC) for drift. (Their
/// answers are tensors; the feedback log keeps only `/predict` and V1 predictions.)
fn observe_prediction_drift(loaded: &LoadedVersion, predictions: &[Prediction]) {
    if loaded.monitor.tracks_drift() {
        for p in predictions {
            loaded.monitor.observe_prediction(observed(p));
        }
    }
}

/// Unseen categories that were served (the card allows them), counted once the request is.
fn count_unseen(loaded: &LoadedVersion, unseen: &Unseen) {
    for (column, n) in unseen {
        loaded.monitor.unseen_categories(*column, *n);
    }
}

/// A refusal by the model's rate limit says nothing about the version that would have answered.
fn rate_limited(result: &Result<Executed, PredictError>) -> bool {
    matches!(result, Err(PredictError::RateLimited(_)))
}

/// What one engine run produced.
struct Executed {
    outputs: Vec<Tensor>,
    predictions: Vec<Prediction>,
    queue_wait: Duration,
    compute: Duration,
}

/// Output tensors of a tensor-protocol inference.
#[derive(Debug)]
pub struct InferOutcome {
    pub model: String,
    pub version: u64,
    /// The version that answered (its signature names the datatypes and shapes).
    pub loaded: Arc<LoadedVersion>,
    /// Output name -> tensor (batch first; for a model without a batch axis, the graph's own
    /// shape), in the model's output order.
    pub outputs: Vec<(String, Tensor)>,
}
