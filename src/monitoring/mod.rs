//! Observability: every Prometheus metric, and (later) accuracy and drift signals.

mod metrics;

pub use metrics::{Metrics, ModelMetrics};
