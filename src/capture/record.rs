//! What the request path hands to the capture writer: plain data, one message per request (a
//! batch of rows), so a busy server sends one queue message per request, not per instance.

use std::sync::Arc;

/// One request's predictions for one model version.
#[derive(Debug, Clone)]
pub struct PredictionBatch {
    /// The model's name (shared: built once per model version, not per request).
    pub model: Arc<str>,
    pub version: u64,
    /// Request id: row `i` is captured as `"{id}/{i}"`, the id feedback refers to. None when
    /// the protocol gives no id (V2 tensors).
    pub id: Option<String>,
    /// Milliseconds since the Unix epoch when the answer was ready.
    pub time_ms: i64,
    /// Seconds from the start of prediction to the answer (the whole request's).
    pub latency: f64,
    /// Feature names, one per column of `features` (cached per model version).
    pub names: Arc<[String]>,
    /// Row-major inputs, `rows * names.len()` values; empty when inputs are not captured.
    pub features: Vec<f64>,
    /// One answer per row.
    pub outputs: Vec<CapturedOutput>,
    /// Which fields are written (the server's, or the model card's `[capture] fields`).
    pub fields: super::Fields,
    /// Per column of `features`: written as null (redacted by the server or the card).
    pub redacted: Arc<[bool]>,
    /// The file format (the server's `--capture-format`, or the card's `[capture] format`).
    pub format: super::Format,
}

impl PredictionBatch {
    pub fn rows(&self) -> usize {
        self.outputs.len()
    }
}

/// One row's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct CapturedOutput {
    /// Class label (classifiers).
    pub label: Option<String>,
    /// Class index (classifiers) or the predicted value (regressors).
    pub value: Option<f64>,
    /// Probability of the predicted class (classifiers).
    pub confidence: Option<f32>,
}

/// The ground truth sent for earlier predictions of one model.
#[derive(Debug, Clone)]
pub struct FeedbackBatch {
    pub model: String,
    pub time_ms: i64,
    pub items: Vec<FeedbackItem>,
}

/// One ground-truth answer, as sent: exactly one of label, class index or value.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedbackItem {
    pub id: String,
    pub label: Option<String>,
    pub class_index: Option<i64>,
    pub value: Option<f64>,
}

/// A queued capture message.
#[derive(Debug)]
pub enum Record {
    Predictions(PredictionBatch),
    Feedback(FeedbackBatch),
}

impl Record {
    /// Closed-set label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Record::Predictions(_) => "prediction",
            Record::Feedback(_) => "feedback",
        }
    }

    /// Rows this message carries.
    pub fn rows(&self) -> usize {
        match self {
            Record::Predictions(b) => b.rows(),
            Record::Feedback(b) => b.items.len(),
        }
    }

    pub fn model(&self) -> &str {
        match self {
            Record::Predictions(b) => &b.model,
            Record::Feedback(b) => &b.model,
        }
    }
}
