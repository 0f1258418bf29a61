//! Errors of the inference core.

use std::time::Duration;

use thiserror::Error;

use super::tensor::DataType;

#[derive(Debug, Error)]
pub enum EngineError {
    /// The ONNX file could not be read, parsed, typed or optimised.
    #[error("cannot load model {path}: {reason}")]
    Load { path: String, reason: String },

    /// The graph uses something infera cannot serve (e.g. a string input).
    #[error("unsupported model {path}: {reason}")]
    Unsupported { path: String, reason: String },

    /// Inputs handed to `run` do not match the signature. The layers above validate first, so
    /// this is a programming error when it reaches a caller.
    #[error("input {input}: {reason}")]
    BadInput { input: String, reason: String },

    /// The request's shapes fit the declared ones, but the graph cannot take them (its
    /// dimensions that must agree differ, or the plan cannot be specialised to them).
    #[error("the model cannot take input shapes {shapes}: {reason}")]
    ShapeRefused { shapes: String, reason: String },

    /// tract failed while running the plan.
    #[error("inference failed: {0}")]
    Inference(String),

    /// One of the model's own operators refused the values it was given (an `InputRejected`
    /// raised inside the plan): the caller's data, not a server fault.
    #[error("the model refused the input: {0}")]
    Rejected(String),

    /// The model produced an output type infera cannot hand back.
    #[error("output {output} has unsupported type {dtype}")]
    UnsupportedOutput { output: String, dtype: String },

    /// The worker queue is full: refused at once.
    #[error("the inference queue is full ({capacity} requests waiting)")]
    Overloaded {
        capacity: usize,
        retry_after: Duration,
    },

    /// The request's time budget ran out (queued jobs are then dropped; a running one finishes
    /// but its answer is discarded).
    #[error("the request did not finish within its time budget ({0:?})")]
    DeadlineExceeded(Duration),

    /// The worker pool is shutting down.
    #[error("the inference workers are shutting down")]
    ShuttingDown,

    /// A worker went away without answering (it panicked): a server fault.
    #[error("the inference worker dropped the request")]
    WorkerLost,
}

/// Raised by infera's own operators when the values they get cannot be computed (CastMap DENSE
/// maps of different sizes in one call, a category a strict OneHotEncoder does not know, ...):
/// the plan's failure becomes [`EngineError::Rejected`] instead of a server error.
#[derive(Debug, Error)]
#[error("{0}")]
pub struct InputRejected(pub String);

impl EngineError {
    /// A failed plan run: `Rejected` when an operator refused its values, else `Inference`.
    pub(crate) fn from_run(e: &tract_onnx::prelude::TractError) -> EngineError {
        match e.chain().find_map(|c| c.downcast_ref::<InputRejected>()) {
            Some(r) => EngineError::Rejected(r.0.clone()),
            None => EngineError::Inference(format!("{e:#}")),
        }
    }

    pub(crate) fn bad_input(input: &str, reason: impl Into<String>) -> EngineError {
        EngineError::BadInput {
            input: input.to_string(),
            reason: reason.into(),
        }
    }

    pub(crate) fn dtype_mismatch(input: &str, want: DataType, got: DataType) -> EngineError {
        EngineError::bad_input(input, format!("expected {want}, got {got}"))
    }

    /// Short, closed-set reason used as a metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            EngineError::Load { .. } => "load",
            EngineError::Unsupported { .. } => "unsupported",
            EngineError::BadInput { .. } => "bad_input",
            EngineError::ShapeRefused { .. } => "unsupported_shape",
            EngineError::Inference(_) => "inference",
            EngineError::Rejected(_) => "rejected",
            EngineError::UnsupportedOutput { .. } => "unsupported_output",
            EngineError::Overloaded { .. } => "overloaded",
            EngineError::DeadlineExceeded(_) => "deadline",
            EngineError::ShuttingDown => "shutting_down",
            EngineError::WorkerLost => "worker_lost",
        }
    }
}
