//! The Prometheus series of traffic splitting (docs/model-updates.md): how a shadow version
//! compares with the serving one, how requests split between a canary and the stable version,
//! and rollbacks. Labels: model names and versions from the repository, and fixed words.

use std::time::Duration;

use prometheus::core::Collector;
use prometheus::{GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, Opts};

use super::retire::drop_series;

/// Per-instance absolute differences: probabilities live in [0, 1], regression values in any
/// unit, hence the wide top.
const DIFFERENCE_BUCKETS: &[f64] = &[
    1e-6, 1e-4, 1e-3, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 10.0, 100.0, 1000.0,
];

/// Why a mirrored request did not yield a comparison, or that it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShadowOutcome {
    /// Ran, and its answers were compared.
    Compared,
    /// The shadow version failed on it (contract, engine or output error).
    Failed,
    /// Not run: too many mirrored requests in flight, or the serving version had a backlog.
    Dropped,
}

impl ShadowOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            ShadowOutcome::Compared => "compared",
            ShadowOutcome::Failed => "failed",
            ShadowOutcome::Dropped => "dropped",
        }
    }
}

/// The metric families.
pub struct TrafficFamilies {
    shadow_requests: IntCounterVec,
    shadow_instances: IntCounterVec,
    shadow_agreements: IntCounterVec,
    shadow_difference: HistogramVec,
    shadow_duration: HistogramVec,
    canary_requests: IntCounterVec,
    canary_agreement: GaugeVec,
    rollbacks: IntCounterVec,
}

const MODEL: &[&str] = &["model", "version"];

fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels).expect("static counter definition")
}

fn histogram(name: &str, help: &str, buckets: &[f64]) -> HistogramVec {
    HistogramVec::new(
        HistogramOpts::new(name, help).buckets(buckets.to_vec()),
        MODEL,
    )
    .expect("static histogram definition")
}

impl TrafficFamilies {
    /// The families, with the shared latency buckets for the shadow's latency.
    pub fn new(latency_buckets: &[f64]) -> TrafficFamilies {
        TrafficFamilies {
            shadow_requests: counter(
                "infera_shadow_requests_total",
                "Requests mirrored to a shadow version, by outcome (compared, failed, dropped)",
                &["model", "version", "outcome"],
            ),
            shadow_instances: counter(
                "infera_shadow_instances_total",
                "Instances a shadow version answered and that were compared with the served answer",
                MODEL,
            ),
            shadow_agreements: counter(
                "infera_shadow_agreements_total",
                "Compared instances on which the shadow's label (or value) agreed with the served one",
                MODEL,
            ),
            shadow_difference: histogram(
                "infera_shadow_abs_difference",
                "Per compared instance: mean absolute difference of the class probabilities, or \
                 absolute difference of the value, shadow vs served",
                DIFFERENCE_BUCKETS,
            ),
            shadow_duration: histogram(
                "infera_shadow_duration_seconds",
                "Time a shadow version took for a mirrored request (decode, queue, inference)",
                latency_buckets,
            ),
            canary_requests: counter(
                "infera_canary_requests_total",
                "Requests routed while a canary is active, by the route taken (canary, stable); \
                 version is the canary's",
                &["model", "version", "route"],
            ),
            canary_agreement: GaugeVec::new(
                Opts::new(
                    "infera_canary_agreement_ratio",
                    "Share of canary instances agreeing with the stable version over the rollback \
                     window (only with a min_agreement rule)",
                ),
                MODEL,
            )
            .expect("static gauge definition"),
            rollbacks: counter(
                "infera_canary_rollbacks_total",
                "Canary versions rolled back, by trigger (errors, latency, agreement, manual)",
                &["model", "version", "trigger"],
            ),
        }
    }

    pub fn collectors(&self) -> Vec<Box<dyn Collector>> {
        vec![
            Box::new(self.shadow_requests.clone()),
            Box::new(self.shadow_instances.clone()),
            Box::new(self.shadow_agreements.clone()),
            Box::new(self.shadow_difference.clone()),
            Box::new(self.shadow_duration.clone()),
            Box::new(self.canary_requests.clone()),
            Box::new(self.canary_agreement.clone()),
            Box::new(self.rollbacks.clone()),
        ]
    }

    /// Counts one mirrored request of the shadow `version` of `model`.
    pub fn shadow_request(&self, model: &str, version: u64, outcome: ShadowOutcome) {
        self.shadow_requests
            .with_label_values(&[model, &version.to_string(), outcome.as_str()])
            .inc();
    }

    /// Records a compared request: its instances, how many agreed, each instance's difference,
    /// and the shadow's latency.
    pub fn shadow_compared(
        &self,
        model: &str,
        version: u64,
        comparison: &Comparison,
        took: Duration,
    ) {
        let v = version.to_string();
        let labels = [model, v.as_str()];
        self.shadow_request(model, version, ShadowOutcome::Compared);
        self.shadow_instances
            .with_label_values(&labels)
            .inc_by(comparison.differences.len() as u64);
        self.shadow_agreements
            .with_label_values(&labels)
            .inc_by(comparison.agreed as u64);
        let difference = self.shadow_difference.with_label_values(&labels);
        for d in &comparison.differences {
            difference.observe(*d);
        }
        self.shadow_duration
            .with_label_values(&labels)
            .observe(took.as_secs_f64());
    }

    /// Counts a request routed to the canary `version` (`canary`) or to the stable version.
    pub fn canary_routed(&self, model: &str, version: u64, to_canary: bool) {
        let route = if to_canary { "canary" } else { "stable" };
        self.canary_requests
            .with_label_values(&[model, &version.to_string(), route])
            .inc();
    }

    /// The canary's agreement with the stable version over its window.
    pub fn canary_agreement(&self, model: &str, version: u64, ratio: f64) {
        self.canary_agreement
            .with_label_values(&[model, &version.to_string()])
            .set(ratio);
    }

    /// Counts a rollback of the canary `version`.
    pub fn rolled_back(&self, model: &str, version: u64, trigger: &'static str) {
        self.rollbacks
            .with_label_values(&[model, &version.to_string(), trigger])
            .inc();
    }

    /// Removes the series of a version that no longer serves; rollback counts stay.
    pub fn forget(&self, model: &str, version: &str) {
        drop_series(&self.shadow_requests, model, version);
        drop_series(&self.shadow_instances, model, version);
        drop_series(&self.shadow_agreements, model, version);
        drop_series(&self.shadow_difference, model, version);
        drop_series(&self.shadow_duration, model, version);
        drop_series(&self.canary_requests, model, version);
        drop_series(&self.canary_agreement, model, version);
    }
}

/// How one request's answers from two versions compare, instance by instance.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Comparison {
    /// Instances whose label (or value, within 1e-6 relative) agreed.
    pub agreed: usize,
    /// Per instance: mean absolute difference of the probabilities, or of the value.
    pub differences: Vec<f64>,
}
