//! The Prometheus series of model quality: ground-truth feedback, live accuracy / error, and
//! drift. Registered in the same registry as everything in `metrics.rs`; label values are closed
//! sets (model names and versions from the repository, feature names from model cards, fixed
//! result strings).

use prometheus::core::Collector;
use prometheus::{
    Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts,
};

use super::drift::{DriftReport, DriftThresholds};
use super::quality::{QualitySummary, Score};
use super::retire::drop_series;
use super::webhook::Delivery;

/// Absolute error buckets: wide, since targets range from fractions to hundreds.
const ERROR_BUCKETS: &[f64] = &[
    0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 1000.0,
];

const MODEL: &[&str] = &["model", "version"];

fn gauge(name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    GaugeVec::new(Opts::new(name, help), labels).expect("static gauge definition")
}

/// The metric families.
pub struct QualityFamilies {
    feedback: IntCounterVec,
    unseen_categories: IntCounterVec,
    outcomes: IntCounterVec,
    abs_error: HistogramVec,
    accuracy: GaugeVec,
    mae: GaugeVec,
    samples: GaugeVec,
    accuracy_target: GaugeVec,
    mae_target: GaugeVec,
    feature_psi: GaugeVec,
    feature_ks: GaugeVec,
    feature_unseen: GaugeVec,
    prediction_psi: GaugeVec,
    prediction_ks: GaugeVec,
    drift_status: IntGaugeVec,
    psi_threshold: GaugeVec,
    drift_instances: GaugeVec,
    webhook: IntCounterVec,
}

impl QualityFamilies {
    pub fn new() -> QualityFamilies {
        QualityFamilies {
            unseen_categories: IntCounterVec::new(
                Opts::new(
                    "infera_unseen_categories_total",
                    "Values outside a feature's categories served because the model card allows unknown categories (features from model cards)",
                ),
                &["model", "feature"],
            )
            .expect("static counter definition"),
            feedback: IntCounterVec::new(
                Opts::new(
                    "infera_feedback_total",
                    "Ground-truth feedback received, by result: matched, unknown (never seen, evicted or expired), other_model, invalid",
                ),
                &["model", "result"],
            )
            .expect("static counter definition"),
            outcomes: IntCounterVec::new(
                Opts::new(
                    "infera_prediction_outcomes_total",
                    "Classifier predictions scored against ground truth, by outcome (correct, incorrect)",
                ),
                &["model", "version", "outcome"],
            )
            .expect("static counter definition"),
            abs_error: HistogramVec::new(
                HistogramOpts::new(
                    "infera_prediction_abs_error",
                    "Absolute error of regression predictions scored against ground truth",
                )
                .buckets(ERROR_BUCKETS.to_vec()),
                MODEL,
            )
            .expect("static histogram definition"),
            accuracy: gauge(
                "infera_model_accuracy",
                "Share of correct predictions among the last scored ones (rolling window)",
                MODEL,
            ),
            mae: gauge(
                "infera_model_mae",
                "Mean absolute error of the last scored predictions (rolling window)",
                MODEL,
            ),
            samples: gauge(
                "infera_model_quality_samples",
                "Scored predictions in the rolling quality window",
                MODEL,
            ),
            accuracy_target: gauge(
                "infera_model_accuracy_target",
                "Least acceptable live accuracy, from the model card",
                MODEL,
            ),
            mae_target: gauge(
                "infera_model_mae_target",
                "Largest acceptable live mean absolute error, from the model card",
                MODEL,
            ),
            feature_psi: gauge(
                "infera_feature_drift_psi",
                "Population stability index of a feature's live values against the training profile",
                &["model", "version", "feature"],
            ),
            feature_ks: gauge(
                "infera_feature_drift_ks",
                "Kolmogorov-Smirnov distance (over the profile's bins) of a feature's live values against the training profile",
                &["model", "version", "feature"],
            ),
            feature_unseen: gauge(
                "infera_feature_drift_unseen_share",
                "Share of a categorical feature's live values (latest drift window) outside the training profile's categories",
                &["model", "version", "feature"],
            ),
            prediction_psi: gauge(
                "infera_prediction_drift_psi",
                "Population stability index of the live prediction distribution against the training profile",
                MODEL,
            ),
            prediction_ks: gauge(
                "infera_prediction_drift_ks",
                "Kolmogorov-Smirnov distance of the live prediction distribution against the training profile",
                MODEL,
            ),
            drift_status: IntGaugeVec::new(
                Opts::new(
                    "infera_model_drift_status",
                    "Worst drift status of a model version: 0 ok, 1 warning, 2 drifting; -1 no reference profile",
                ),
                MODEL,
            )
            .expect("static gauge definition"),
            psi_threshold: gauge(
                "infera_drift_psi_threshold",
                "PSI at which a model version's drift status turns warning or drifting (from the model card)",
                &["model", "version", "level"],
            ),
            drift_instances: gauge(
                "infera_drift_window_instances",
                "Instances compared with the reference in the latest drift window",
                MODEL,
            ),
            webhook: IntCounterVec::new(
                Opts::new(
                    "infera_webhook_events_total",
                    "Model state-change events for the webhook, by result: delivered, failed (after retries), dropped (queue full)",
                ),
                &["result"],
            )
            .expect("static counter definition"),
        }
    }

    pub fn collectors(&self) -> Vec<Box<dyn Collector>> {
        vec![
            Box::new(self.feedback.clone()),
            Box::new(self.outcomes.clone()),
            Box::new(self.abs_error.clone()),
            Box::new(self.accuracy.clone()),
            Box::new(self.mae.clone()),
            Box::new(self.samples.clone()),
            Box::new(self.accuracy_target.clone()),
            Box::new(self.mae_target.clone()),
            Box::new(self.feature_psi.clone()),
            Box::new(self.feature_ks.clone()),
            Box::new(self.feature_unseen.clone()),
            Box::new(self.unseen_categories.clone()),
            Box::new(self.prediction_psi.clone()),
            Box::new(self.prediction_ks.clone()),
            Box::new(self.drift_status.clone()),
            Box::new(self.psi_threshold.clone()),
            Box::new(self.drift_instances.clone()),
            Box::new(self.webhook.clone()),
        ]
    }

    /// One feedback item for `model`; `result` is a fixed identifier.
    pub fn feedback(&self, model: &str, result: &'static str) {
        self.feedback.with_label_values(&[model, result]).inc();
    }

    pub fn webhook(&self, result: Delivery) {
        self.webhook.with_label_values(&[result.as_str()]).inc();
    }

    /// Removes every series of one model version (see `Metrics::forget`).
    pub(super) fn forget(&self, model: &str, version: &str) {
        drop_series(&self.outcomes, model, version);
        drop_series(&self.abs_error, model, version);
        drop_series(&self.accuracy, model, version);
        drop_series(&self.mae, model, version);
        drop_series(&self.samples, model, version);
        drop_series(&self.accuracy_target, model, version);
        drop_series(&self.mae_target, model, version);
        drop_series(&self.feature_psi, model, version);
        drop_series(&self.feature_ks, model, version);
        drop_series(&self.feature_unseen, model, version);
        drop_series(&self.prediction_psi, model, version);
        drop_series(&self.prediction_ks, model, version);
        drop_series(&self.drift_status, model, version);
        drop_series(&self.psi_threshold, model, version);
        drop_series(&self.drift_instances, model, version);
    }

    /// Per card column, the unseen-category counter of a feature whose card allows unknowns
    /// (`allowed[i]` is its name), None for the others.
    pub fn unseen_counters(
        &self,
        model: &str,
        allowed: &[Option<&str>],
    ) -> Vec<Option<IntCounter>> {
        allowed
            .iter()
            .map(|f| f.map(|f| self.unseen_categories.with_label_values(&[model, f])))
            .collect()
    }

    /// Handles of one model version. `features` names the profile's features (empty without a
    /// profile or for non-tabular models), `categorical` those of them that are categorical.
    pub fn version(
        &self,
        model: &str,
        version: u64,
        features: &[String],
        categorical: &[String],
        has_profile: bool,
    ) -> VersionQuality {
        let v = version.to_string();
        let labels = [model, v.as_str()];
        let status = self.drift_status.with_label_values(&labels);
        status.set(if has_profile { 0 } else { -1 });
        VersionQuality {
            correct: self.outcomes.with_label_values(&[model, &v, "correct"]),
            incorrect: self.outcomes.with_label_values(&[model, &v, "incorrect"]),
            abs_error: self.abs_error.with_label_values(&labels),
            accuracy: self.accuracy.with_label_values(&labels),
            mae: self.mae.with_label_values(&labels),
            samples: self.samples.with_label_values(&labels),
            accuracy_target: self.accuracy_target.with_label_values(&labels),
            mae_target: self.mae_target.with_label_values(&labels),
            features: features
                .iter()
                .map(|f| {
                    (
                        self.feature_psi.with_label_values(&[model, &v, f]),
                        self.feature_ks.with_label_values(&[model, &v, f]),
                    )
                })
                .collect(),
            unseen_total: Vec::new(),
            unseen: categorical
                .iter()
                .map(|f| {
                    (
                        f.clone(),
                        self.feature_unseen.with_label_values(&[model, &v, f]),
                    )
                })
                .collect(),
            prediction_psi: self.prediction_psi.with_label_values(&labels),
            prediction_ks: self.prediction_ks.with_label_values(&labels),
            status,
            psi_warning: self
                .psi_threshold
                .with_label_values(&[model, &v, "warning"]),
            psi_drifting: self
                .psi_threshold
                .with_label_values(&[model, &v, "drifting"]),
            drift_instances: self.drift_instances.with_label_values(&labels),
        }
    }
}

impl Default for QualityFamilies {
    fn default() -> Self {
        QualityFamilies::new()
    }
}

/// Quality and drift series of one model version.
pub struct VersionQuality {
    correct: IntCounter,
    incorrect: IntCounter,
    abs_error: Histogram,
    accuracy: Gauge,
    mae: Gauge,
    samples: Gauge,
    accuracy_target: Gauge,
    mae_target: Gauge,
    features: Vec<(Gauge, Gauge)>,
    /// Per card column: unseen categories served (features whose card allows them).
    unseen_total: Vec<Option<IntCounter>>,
    /// Categorical features' unseen share, by feature name.
    unseen: Vec<(String, Gauge)>,
    prediction_psi: Gauge,
    prediction_ks: Gauge,
    status: IntGauge,
    psi_warning: Gauge,
    psi_drifting: Gauge,
    drift_instances: Gauge,
}

impl VersionQuality {
    /// Counts served unseen categories in `counters` (see `QualityFamilies::unseen_counters`).
    pub fn with_unseen_counters(mut self, counters: Vec<Option<IntCounter>>) -> VersionQuality {
        self.unseen_total = counters;
        self
    }

    /// `n` unseen categories of card column `column` were served.
    pub fn unseen_categories(&self, column: usize, n: u64) {
        if let Some(Some(c)) = self.unseen_total.get(column) {
            c.inc_by(n);
        }
    }

    /// The card's targets and thresholds, set once at load.
    pub fn targets(&self, accuracy: Option<f64>, mae: Option<f64>, drift: &DriftThresholds) {
        if let Some(t) = accuracy {
            self.accuracy_target.set(t);
        }
        if let Some(t) = mae {
            self.mae_target.set(t);
        }
        self.psi_warning.set(drift.psi_warning);
        self.psi_drifting.set(drift.psi_drifting);
    }

    pub fn scored(&self, score: Score, summary: &QualitySummary) {
        match score {
            Score::Correct(true) => self.correct.inc(),
            Score::Correct(false) => self.incorrect.inc(),
            Score::AbsError(e) => self.abs_error.observe(e),
        }
        if let Some(a) = summary.accuracy {
            self.accuracy.set(a);
        }
        if let Some(m) = summary.mae {
            self.mae.set(m);
        }
        self.samples.set(summary.samples as f64);
    }

    pub fn drift(&self, report: &DriftReport) {
        for ((psi, ks), f) in self.features.iter().zip(&report.features) {
            psi.set(f.psi);
            ks.set(f.ks);
        }
        for (name, gauge) in &self.unseen {
            let share = report.features.iter().find(|f| &f.name == name);
            if let Some(share) = share.and_then(|f| f.unseen_share) {
                gauge.set(share);
            }
        }
        self.prediction_psi.set(report.predictions.psi);
        self.prediction_ks.set(report.predictions.ks);
        self.status.set(report.status.level());
        self.drift_instances.set(report.instances as f64);
    }
}
