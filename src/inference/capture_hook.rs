//! The predictor's side of data capture: for a sampled request, copy the inputs before they
//! move to a worker, and after the answer hand one record to the capture queue. Plain data
//! only; the writing happens on the capture thread (src/capture).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

use arc_swap::ArcSwap;

use crate::capture::{
    now_ms, sampled_at, Capture, CapturedOutput, Fields, Format, PredictionBatch, Record,
};
use crate::contract::InputContract;
use crate::contract::Prediction;
use crate::engine::Tensor;
use crate::repository::LoadedVersion;

/// Inputs kept for a sampled request (empty when inputs are not captured).
pub struct Sampled {
    features: Vec<f64>,
    policy: Arc<VersionPolicy>,
}

/// What is captured of one model version at one row width: the server's settings with the
/// card's `[capture]` applied, and the feature names (built once, then shared by every record).
#[derive(Debug)]
struct VersionPolicy {
    /// The version it was built for (a reloaded card makes a new `LoadedVersion`); held so its
    /// address stays unique while this entry is cached.
    _loaded: Weak<LoadedVersion>,
    /// The model's name, shared by every record (no allocation per request).
    model: Arc<str>,
    sample_rate: f64,
    fields: Fields,
    format: Format,
    names: Arc<[String]>,
    redacted: Arc<[bool]>,
}

/// Policies per (loaded version's address, row width): looked up on every request without
/// allocating or locking (an immutable map behind an `ArcSwap`, replaced whole on the rare
/// insert under `insert_lock`). An entry's `Weak` keeps its version's allocation, so an address
/// is never reused while its entry exists. Row widths can vary for tensor models with free
/// dimensions, so the map is bounded: past [`MAX_POLICIES`] it starts again empty.
type PolicyMap = HashMap<(usize, usize), Arc<VersionPolicy>>;
const MAX_POLICIES: usize = 1024;

/// Capture plus each model version's policy.
#[derive(Debug)]
pub struct CaptureHook {
    capture: Capture,
    policies: ArcSwap<PolicyMap>,
    insert_lock: Mutex<()>,
}

impl CaptureHook {
    pub fn new(capture: Capture) -> CaptureHook {
        CaptureHook {
            capture,
            policies: ArcSwap::from_pointee(HashMap::new()),
            insert_lock: Mutex::new(()),
        }
    }

    pub fn capture(&self) -> &Capture {
        &self.capture
    }

    /// Decides whether this request is captured and, if so, copies its inputs (row-major, the
    /// inputs of one instance side by side).
    pub fn sample(&self, loaded: &Arc<LoadedVersion>, inputs: &[Tensor]) -> Option<Sampled> {
        let width: usize = inputs.iter().map(Tensor::row_len).sum();
        let policy = self.policy(loaded, inputs, width);
        if !sampled_at(policy.sample_rate) {
            return None;
        }
        let rows = inputs.first().map_or(0, Tensor::rows);
        let mut features = Vec::new();
        if policy.fields.inputs {
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
        Some(Sampled { features, policy })
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
        let policy = sampled.policy;
        self.capture.push(Record::Predictions(PredictionBatch {
            model: policy.model.clone(),
            version: loaded.version,
            id: id.filter(|id| capturable_id(id)).map(str::to_string),
            time_ms: now_ms(),
            latency: started.elapsed().as_secs_f64(),
            names: policy.names.clone(),
            features: sampled.features,
            outputs,
            fields: policy.fields,
            redacted: policy.redacted.clone(),
            format: policy.format,
        }));
    }

    fn policy(
        &self,
        loaded: &Arc<LoadedVersion>,
        inputs: &[Tensor],
        width: usize,
    ) -> Arc<VersionPolicy> {
        let key = (Arc::as_ptr(loaded) as usize, width);
        if let Some(p) = self.policies.load().get(&key) {
            return p.clone();
        }
        let _guard = self.insert_lock.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.policies.load_full();
        if let Some(p) = current.get(&key) {
            return p.clone();
        }
        let mut next = if current.len() >= MAX_POLICIES {
            HashMap::new()
        } else {
            (*current).clone()
        };
        let policy = Arc::new(self.build_policy(loaded, inputs, width));
        next.insert(key, policy.clone());
        self.policies.store(Arc::new(next));
        policy
    }

    fn build_policy(
        &self,
        loaded: &Arc<LoadedVersion>,
        inputs: &[Tensor],
        width: usize,
    ) -> VersionPolicy {
        let card = loaded.capture.as_ref();
        let names = feature_names(loaded, inputs, width);
        let redact = |n: &String| {
            self.capture.redact().contains(n) || card.is_some_and(|c| c.redact.contains(n))
        };
        VersionPolicy {
            _loaded: Arc::downgrade(loaded),
            model: loaded.model.as_str().into(),
            sample_rate: card
                .and_then(|c| c.sample_rate)
                .unwrap_or(self.capture.sample_rate()),
            // The card's fields were checked when it was parsed.
            fields: card
                .and_then(|c| c.fields.as_ref())
                .and_then(|f| Fields::parse(f).ok())
                .unwrap_or(self.capture.fields()),
            format: card
                .and_then(|c| c.format.as_deref())
                .and_then(|f| Format::parse(f).ok())
                .unwrap_or(self.capture.format()),
            redacted: names.iter().map(redact).collect(),
            names,
        }
    }
}

/// Whether a client's request id is kept in capture files: 1-128 characters of
/// `[A-Za-z0-9._:/-]` (the rule REST request ids follow); V2 and gRPC ids are free text.
fn capturable_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'/' | b'-'))
}

/// Feature names: the card's for tabular models, `<input>_<j>` for tensor models.
fn feature_names(loaded: &LoadedVersion, inputs: &[Tensor], width: usize) -> Arc<[String]> {
    match &loaded.contract.input {
        InputContract::Tabular { features, .. } if features.len() == width => {
            features.iter().map(|f| f.name.clone()).collect()
        }
        InputContract::Tabular { .. } => (0..width).map(|j| format!("x{j}")).collect(),
        InputContract::Tensors { inputs: specs } => specs
            .iter()
            .zip(inputs)
            .flat_map(|(s, t)| (0..t.row_len()).map(move |j| format!("{}_{j}", s.name)))
            .collect(),
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
