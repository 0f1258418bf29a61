//! Why an explanation could not be made.

use std::time::Duration;

use thiserror::Error;

use super::error::PredictError;

#[derive(Debug, Error)]
pub enum ExplainError {
    /// Resolving the model, checking the instances against its contract, or running the engine.
    #[error(transparent)]
    Predict(#[from] PredictError),

    /// Every explanation slot is taken: the caller should retry later.
    #[error("{limit} explanations are already running; retry later")]
    Busy { limit: usize, retry_after: Duration },

    #[error("{count} instances in one explain request; the limit is {limit}")]
    TooManyInstances { count: usize, limit: usize },

    /// Explanations need a tabular model (one float input of named features).
    #[error(
        "model {model:?} does not take tabular features; only tabular models can be explained"
    )]
    NotTabular { model: String },

    /// A string column holds free text (no known set of values): a value left out of a
    /// coalition has no replacement that means "absent".
    #[error(
        "model {model:?} takes free text in column {column:?} (a string feature without \
         categories): attributions are computed for numeric and categorical columns only; list \
         the column's categories in the card, or give background rows with its values, if it is \
         categorical"
    )]
    FreeText { model: String, column: String },

    /// The model's outputs are neither class probabilities nor one value.
    #[error("model {model:?} has raw outputs; only classifiers and regressors can be explained")]
    RawOutputs { model: String },

    /// No background set could be built for the version.
    #[error("model {model:?} version {version} has no background data: {reason}")]
    NoBackground {
        model: String,
        version: u64,
        reason: String,
    },

    /// A request option that contradicts the model or the limits; the message names both.
    #[error("{0}")]
    BadOption(String),

    /// The sampled coalitions did not determine every attribution.
    #[error("{coalitions} coalitions did not determine the attributions of {features} features; raise budget")]
    Underdetermined { coalitions: usize, features: usize },

    /// The model's outputs could not be read (a server fault).
    #[error("cannot read the model's outputs: {0}")]
    Output(String),
}

impl ExplainError {
    /// Closed-set reason for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            ExplainError::Predict(e) => e.reason(),
            ExplainError::Busy { .. } => "busy",
            ExplainError::TooManyInstances { .. } => "too_many_instances",
            ExplainError::NotTabular { .. } => "not_tabular",
            ExplainError::FreeText { .. } => "free_text",
            ExplainError::RawOutputs { .. } => "raw_outputs",
            ExplainError::NoBackground { .. } => "no_background",
            ExplainError::BadOption(_) => "bad_option",
            ExplainError::Underdetermined { .. } => "underdetermined",
            ExplainError::Output(_) => "output",
        }
    }
}
