//! The predictor's side of data capture: for a sampled request, copy the inputs before they
//! move to a worker, and after the answer hand one record to the capture queue. Plain data
//! only; the writing happens on the capture thread (src/capture).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::contract::InputContract;
use super::prediction::Prediction;
use crate::capture::{now_ms, Capture, CapturedOutput, PredictionBatch, Record};
use crate::engine::Tensor;
use crate::repository::LoadedVersion;

/// Inputs kept for a sampled request (empty when inputs are not captured).
pub struct Sampled {
    features: Vec<f64>,
    names: Arc<[String]>,
}

/// Feature names per (model, version, row width).
type NameCache = Mutex<HashMap<(String, u64, usize), Arc<[String]>>>;

/// Capture plus the feature names of each model version, built once.
#[derive(Debug)]
pub struct CaptureHook {
    capture: Capture,
    names: NameCache,
}

impl CaptureHook {
    pub fn new(capture: Capture) -> CaptureHook {
        CaptureHook {
            capture,
            names: Mutex::new(HashMap::new()),
        }
    }

    pub fn capture(&self) -> &Capture {
        &self.capture
    }

    /// Decides whether this request is captured and, if so, copies its inputs (row-major, the
    /// inputs of one instance side by side).
    pub fn sample(&self, loaded: &LoadedVersion, inputs: &[Tensor]) -> Option<Sampled> {
        if !self.capture.sampled() {
            return None;
        }
        let width: usize = inputs.iter().map(Tensor::row_len).sum();
        let names = self.names(loaded, inputs, width);
        let rows = inputs.first().map_or(0, Tensor::rows);
        let mut features = Vec::new();
        if self.capture.fields().inputs {
            features.reserve(rows.saturating_mul(width));
            for row in 0..rows {
                for t in inputs {
                    let n = t.row_len();
                    features.extend(
                        (row * n..(row + 1) * n).map(|i| t.data.get_f64(i).unwrap_or(f64::NAN)),
                    );
                }
            }
        }
        Some(Sampled { features, names })
    }

    /// Queues the record of a sampled request.
    pub fn record(
        &self,
        loaded: &LoadedVersion,
        sampled: Sampled,
        predictions: &[Prediction],
        id: Option<&str>,
        started: Instant,
    ) {
        let outputs = predictions.iter().map(output).collect();
        self.capture.push(Record::Predictions(PredictionBatch {
            model: loaded.model.clone(),
            version: loaded.version,
            id: id.map(str::to_string),
            time_ms: now_ms(),
            latency: started.elapsed().as_secs_f64(),
            names: sampled.names,
            features: sampled.features,
            outputs,
        }));
    }

    /// Feature names: the card's for tabular models, `<input>_<j>` for tensor models.
    fn names(&self, loaded: &LoadedVersion, inputs: &[Tensor], width: usize) -> Arc<[String]> {
        let key = (loaded.model.clone(), loaded.version, width);
        let mut cache = self.names.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = cache.get(&key) {
            return n.clone();
        }
        let names: Arc<[String]> = match &loaded.contract.input {
            InputContract::Tabular { features, .. } if features.len() == width => {
                features.iter().map(|f| f.name.clone()).collect()
            }
            InputContract::Tabular { .. } => (0..width).map(|j| format!("x{j}")).collect(),
            InputContract::Tensors { inputs: specs } => specs
                .iter()
                .zip(inputs)
                .flat_map(|(s, t)| (0..t.row_len()).map(move |j| format!("{}_{j}", s.name)))
                .collect(),
        };
        cache.insert(key, names.clone());
        names
    }
}

fn output(p: &Prediction) -> CapturedOutput {
    match p {
        Prediction::Classification {
            class_index,
            label,
            confidence,
            ..
        } => CapturedOutput {
            label: Some(label.clone()),
            value: Some(*class_index as f64),
            confidence: Some(*confidence),
        },
        Prediction::Regression { value } => CapturedOutput {
            label: None,
            value: Some(*value),
            confidence: None,
        },
        Prediction::Raw { .. } => CapturedOutput {
            label: None,
            value: None,
            confidence: None,
        },
    }
}
