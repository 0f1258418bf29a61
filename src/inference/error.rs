//! Why a prediction could not be made.

use thiserror::Error;

use crate::auth::RateLimited;
use crate::contract::{ContractViolation, Overrun, RequestList};
use crate::engine::EngineError;
use crate::repository::ResolveError;

#[derive(Debug, Error)]
pub enum PredictError {
    #[error(transparent)]
    Resolve(#[from] ResolveError),

    #[error("{count} instances in one request; the limit is {limit}")]
    TooManyInstances { count: String, limit: usize },

    /// The request's tensors hold more elements in total than `--max-elements`, checked before
    /// any buffer for them is allocated.
    #[error("the request holds {count} tensor elements; the limit is {limit}")]
    TooManyElements { count: String, limit: usize },

    /// A list of a named-tensor request (tensors, a shape, parameters) past its limit, stopped
    /// while the request was decoded.
    #[error("more than {limit} {}; the limit is {limit} ({})", .list.what(), .list.flag())]
    ListTooLong { list: RequestList, limit: usize },

    #[error(transparent)]
    Contract(#[from] ContractViolation),

    /// The model's own rate limit (`--model-rate-limit-rps`).
    #[error(transparent)]
    RateLimited(#[from] RateLimited),

    #[error(transparent)]
    Engine(#[from] EngineError),

    /// The model's outputs could not be turned into predictions: a server-side fault.
    #[error("cannot read the model's outputs: {0}")]
    Output(String),
}

impl PredictError {
    /// Closed-set reason for the failure metric.
    pub fn reason(&self) -> &'static str {
        match self {
            PredictError::Resolve(_) => "resolve",
            PredictError::TooManyInstances { .. } => "too_many_instances",
            PredictError::TooManyElements { .. } => "too_many_elements",
            PredictError::ListTooLong { list, .. } => list.error_type(),
            PredictError::Contract(v) => v.kind.as_str(),
            PredictError::RateLimited(_) => "rate_limited",
            PredictError::Engine(e) => e.reason(),
            PredictError::Output(_) => "output",
        }
    }
}

impl From<Overrun> for PredictError {
    /// A body stopped while it was parsed: the same refusals as after parsing, with the count
    /// known only as far as it was read.
    fn from(overrun: Overrun) -> PredictError {
        match overrun {
            Overrun::Instances { count, limit } => PredictError::TooManyInstances {
                count: count.map_or_else(|| format!("more than {}", limit + 1), |n| n.to_string()),
                limit,
            },
            Overrun::Elements { limit } => PredictError::TooManyElements {
                count: format!("more than {limit}"),
                limit,
            },
            Overrun::List { list, limit } => PredictError::ListTooLong { list, limit },
        }
    }
}
