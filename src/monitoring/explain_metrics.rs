//! The Prometheus series of explanations. Registered in the same registry as `metrics.rs`;
//! labels are model names and versions from the repository, method names and failure reasons
//! from fixed sets.

use std::time::Duration;

use prometheus::core::Collector;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts};

/// Explanation latency, 100 us to 10 s: tiny models explain in about a millisecond, sampled
/// ones over many features in tens to hundreds.
const EXPLAIN_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

const LABELS: &[&str] = &["model", "version", "method"];

/// The explanation metric families.
pub struct ExplainFamilies {
    duration: HistogramVec,
    coalitions: IntCounterVec,
    failures: IntCounterVec,
    running: IntGauge,
}

/// Counts one explanation as running until dropped.
pub struct Running(IntGauge);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl ExplainFamilies {
    pub fn new() -> ExplainFamilies {
        ExplainFamilies {
            duration: HistogramVec::new(
                HistogramOpts::new(
                    "infera_explain_duration_seconds",
                    "Time to explain one request (all its instances), queueing included",
                )
                .buckets(EXPLAIN_BUCKETS.to_vec()),
                LABELS,
            )
            .expect("static histogram definition"),
            coalitions: IntCounterVec::new(
                Opts::new(
                    "infera_explain_coalitions_total",
                    "Feature coalitions evaluated by explanations (each one model row per background row)",
                ),
                LABELS,
            )
            .expect("static counter definition"),
            failures: IntCounterVec::new(
                Opts::new(
                    "infera_explain_failures_total",
                    "Explain requests that failed, by reason (busy: every explanation slot taken)",
                ),
                &["reason"],
            )
            .expect("static counter definition"),
            running: IntGauge::new(
                "infera_explain_running",
                "Explanations holding a slot (running) right now",
            )
            .expect("static gauge definition"),
        }
    }

    pub(super) fn collectors(&self) -> Vec<Box<dyn Collector>> {
        vec![
            Box::new(self.duration.clone()),
            Box::new(self.coalitions.clone()),
            Box::new(self.failures.clone()),
            Box::new(self.running.clone()),
        ]
    }

    /// A request explained successfully.
    pub fn finished(
        &self,
        model: &str,
        version: u64,
        method: &str,
        took: Duration,
        coalitions: usize,
    ) {
        let version = version.to_string();
        let labels = [model, version.as_str(), method];
        self.duration
            .with_label_values(&labels)
            .observe(took.as_secs_f64());
        self.coalitions
            .with_label_values(&labels)
            .inc_by(coalitions as u64);
    }

    /// An explanation took a slot; it counts as running until the guard is dropped.
    pub fn running(&self) -> Running {
        self.running.inc();
        Running(self.running.clone())
    }

    /// A request failed; `reason` is a fixed string.
    pub fn failed(&self, reason: &str) {
        self.failures.with_label_values(&[reason]).inc();
    }
}

impl Default for ExplainFamilies {
    fn default() -> Self {
        ExplainFamilies::new()
    }
}
