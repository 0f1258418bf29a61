//! The one path from JSON instances to predictions: resolve the model version, check the
//! instances against its contract, run them on the worker pool, present the outputs, and record
//! the model's metrics. Every protocol front-end calls this.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::error::PredictError;
use super::instances::decode;
use super::prediction::{predictions, Prediction};
use crate::engine::WorkerPool;
use crate::repository::{LoadedVersion, ModelStore};

/// Per-request limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Instances one request may carry.
    pub max_instances: usize,
    /// Time from the start of prediction (body parsed) to the answer; past it a queued job is
    /// dropped and the caller told so.
    pub timeout: Duration,
}

/// Which model version a request means: None picks the default model / highest version.
#[derive(Debug, Clone, Copy, Default)]
pub struct Target<'a> {
    pub model: Option<&'a str>,
    pub version: Option<u64>,
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
    pool: Arc<WorkerPool>,
    limits: Limits,
}

impl Predictor {
    pub fn new(store: Arc<ModelStore>, pool: Arc<WorkerPool>, limits: Limits) -> Predictor {
        Predictor {
            store,
            pool,
            limits,
        }
    }

    pub fn store(&self) -> &Arc<ModelStore> {
        &self.store
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Predicts every instance with the target model version.
    pub async fn predict(
        &self,
        target: Target<'_>,
        instances: &[Value],
    ) -> Result<PredictOutcome, PredictError> {
        let started = Instant::now();
        let loaded = self
            .store
            .snapshot()
            .resolve(target.model, target.version)?;
        let result = self.run(&loaded, instances, started).await;
        match &result {
            Ok(outcome) => loaded
                .metrics
                .succeeded(outcome.predictions.len(), started.elapsed()),
            Err(e) => loaded.metrics.failed(e.reason()),
        }
        result
    }

    async fn run(
        &self,
        loaded: &Arc<LoadedVersion>,
        instances: &[Value],
        started: Instant,
    ) -> Result<PredictOutcome, PredictError> {
        if instances.len() > self.limits.max_instances {
            return Err(PredictError::TooManyInstances {
                count: instances.len(),
                limit: self.limits.max_instances,
            });
        }
        let inputs = decode(&loaded.contract.input, instances)?;
        let deadline = started + self.limits.timeout;
        let run = self
            .pool
            .run(
                loaded.compiled.clone(),
                inputs,
                deadline,
                loaded.metrics.clone(),
            )
            .await?;
        let predictions = predictions(&loaded.contract, &run.outputs, instances.len())
            .map_err(PredictError::Output)?;
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
        Ok(PredictOutcome {
            model: loaded.model.clone(),
            version: loaded.version,
            predictions,
            queue_wait: run.queue_wait,
            compute: run.compute,
        })
    }
}
