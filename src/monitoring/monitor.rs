//! Model-quality monitoring of one model version: drift against the reference profile, live
//! quality from ground truth, their metrics, and the webhook events when either crosses its
//! threshold. The predictor and the feedback route call this; nothing here knows about HTTP.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde::Serialize;
use utoipa::ToSchema;

use super::drift::{DriftMonitor, DriftReport, DriftStatus, DriftThresholds, Observed};
use super::quality::{QualityKind, QualityMonitor, QualitySummary, Score, Truth};
use super::quality_metrics::VersionQuality;
use super::webhook::{self, Event, Notifier};

/// Monitoring settings of one version (model card values applied over the defaults).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MonitorSettings {
    pub drift: DriftThresholds,
    /// Scores in the rolling quality window.
    pub quality_window: usize,
    pub accuracy_target: Option<f64>,
    pub mae_target: Option<f64>,
}

impl Default for MonitorSettings {
    fn default() -> Self {
        MonitorSettings {
            drift: DriftThresholds::default(),
            quality_window: 500,
            accuracy_target: None,
            mae_target: None,
        }
    }
}

/// Monitoring state of one model version.
pub struct ModelMonitor {
    model: String,
    version: u64,
    /// Class names, for feedback given as a label.
    labels: Vec<String>,
    drift: Option<DriftMonitor>,
    /// Why there is no drift tracking (no profile, or an unusable one).
    no_reference: Option<String>,
    quality: Option<Arc<QualityMonitor>>,
    metrics: VersionQuality,
    notifier: Notifier,
    /// Whether the last announced drift state is `drifting`.
    drifting: AtomicBool,
    below_target: AtomicBool,
    settings: MonitorSettings,
}

impl std::fmt::Debug for ModelMonitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ModelMonitor({}:{})", self.model, self.version)
    }
}

/// Which model version is monitored, and what it predicts.
#[derive(Debug, Clone)]
pub struct Subject {
    pub model: String,
    pub version: u64,
    /// None for models whose outputs cannot be scored (raw tensors).
    pub kind: Option<QualityKind>,
    /// Class names (classifiers), for feedback given as a label.
    pub labels: Vec<String>,
}

/// The true answer for one prediction, as a caller sends it.
#[derive(Debug, Clone, PartialEq)]
pub enum GroundTruth {
    /// A class name from the model card.
    Label(String),
    ClassIndex(usize),
    /// The true value (regression).
    Value(f64),
}

/// ok / warning / drifting / below_target, for the JSON view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OverallStatus {
    Ok,
    Warning,
    Drifting,
}

/// The JSON view of `GET /models/{name}/monitoring`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MonitoringView {
    pub model: String,
    pub version: u64,
    /// Worst of drift and quality: `drifting` when drifting, `warning` for a drift warning or
    /// live quality below the card's target, else `ok`.
    pub status: OverallStatus,
    pub drift: DriftView,
    /// Absent for models that are neither classifiers nor regressors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quality: Option<QualitySummary>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DriftView {
    /// The reference profile used (`source`, `rows`), or why there is none.
    pub reference: ReferenceView,
    /// Instances per comparison window.
    pub window: usize,
    /// Instances counted towards the next comparison (one quarter of a window).
    pub pending: u64,
    pub psi_warning: f64,
    pub psi_drifting: f64,
    /// The latest comparison; absent until the first quarter window fills.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latest: Option<DriftReport>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ReferenceView {
    Profile { source: String, rows: u64 },
    NoReference { reason: String },
}

impl ModelMonitor {
    pub fn new(
        subject: Subject,
        drift: Result<DriftMonitor, String>,
        settings: MonitorSettings,
        metrics: VersionQuality,
        notifier: Notifier,
    ) -> ModelMonitor {
        let Subject {
            model,
            version,
            kind,
            labels,
        } = subject;
        let model = model.as_str();
        metrics.targets(
            settings.accuracy_target,
            settings.mae_target,
            &settings.drift,
        );
        let target = match kind {
            Some(QualityKind::Classification { .. }) => settings.accuracy_target,
            Some(QualityKind::Regression) => settings.mae_target,
            None => None,
        };
        let (drift, no_reference) = match drift {
            Ok(d) => (Some(d), None),
            Err(reason) => (None, Some(reason)),
        };
        ModelMonitor {
            model: model.to_string(),
            version,
            labels,
            quality: kind.map(|k| {
                Arc::new(QualityMonitor::new(
                    model,
                    version,
                    k,
                    settings.quality_window,
                    target,
                ))
            }),
            drift,
            no_reference,
            metrics,
            notifier,
            drifting: AtomicBool::new(false),
            below_target: AtomicBool::new(false),
            settings,
        }
    }

    pub fn model(&self) -> &str {
        &self.model
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    /// Why the version has no drift reference, when it has none.
    pub fn reference_problem(&self) -> Option<&str> {
        self.no_reference.as_deref()
    }

    /// Whether drift is tracked (a usable profile is loaded).
    pub fn tracks_drift(&self) -> bool {
        self.drift.is_some()
    }

    /// The quality tracker predictions are logged against (None: nothing to score).
    pub fn quality(&self) -> Option<&Arc<QualityMonitor>> {
        self.quality.as_ref()
    }

    /// Counts one instance's inputs for drift, before inference. `row(j)` reads input column j.
    pub fn observe_inputs<'a>(&self, row: impl Fn(usize) -> super::Cell<'a>) {
        let Some(drift) = &self.drift else { return };
        if let Some(report) = drift.observe_row(row) {
            self.published(&report);
        }
    }

    /// Counts unseen categories of card column `column` that were served (the card allows them).
    pub fn unseen_categories(&self, column: usize, n: u64) {
        self.metrics.unseen_categories(column, n);
    }

    /// Counts one instance's prediction for drift, after inference.
    pub fn observe_prediction(&self, predicted: Observed) {
        if let Some(drift) = &self.drift {
            drift.observe_prediction(predicted);
        }
    }

    fn published(&self, report: &DriftReport) {
        self.metrics.drift(report);
        // One event when the version turns drifting, one when it is back to ok (a warning in
        // between changes nothing).
        let announce = match report.status {
            DriftStatus::Drifting => !self.drifting.swap(true, Ordering::AcqRel),
            DriftStatus::Ok => self.drifting.swap(false, Ordering::AcqRel),
            DriftStatus::Warning => false,
        };
        if announce {
            let drifting: Vec<_> = report
                .features
                .iter()
                .chain(std::iter::once(&report.predictions))
                .filter(|f| f.status == DriftStatus::Drifting)
                .map(|f| serde_json::json!({"name": f.name, "psi": f.psi, "ks": f.ks}))
                .collect();
            self.notify(
                "drift",
                report.status.as_str(),
                serde_json::json!({
                    "instances": report.instances,
                    "window": {"start": report.window_start, "end": report.window_end},
                    "drifting": drifting,
                }),
            );
        }
    }

    /// Scores one ground-truth answer against a logged prediction.
    pub fn scored(&self, score: Score, summary: &QualitySummary) {
        self.metrics.scored(score, summary);
        let was = self
            .below_target
            .swap(summary.below_target, Ordering::AcqRel);
        if was != summary.below_target {
            let status = if summary.below_target {
                "below_target"
            } else {
                "ok"
            };
            self.notify(
                "accuracy",
                status,
                serde_json::to_value(summary).unwrap_or_default(),
            );
        }
    }

    /// Scores ground truth for a prediction logged against this version.
    pub fn score(&self, predicted: Observed, truth: &GroundTruth) -> Result<(), String> {
        let quality = self
            .quality
            .as_ref()
            .ok_or("this model's outputs cannot be scored")?;
        let truth = match truth {
            GroundTruth::Label(name) => Truth::Class(
                self.labels
                    .iter()
                    .position(|l| l == name)
                    .ok_or_else(|| format!("unknown label {name:?}"))?,
            ),
            GroundTruth::ClassIndex(i) => Truth::Class(*i),
            GroundTruth::Value(v) => Truth::Value(*v),
        };
        let (score, summary) = quality.score(predicted, truth)?;
        self.scored(score, &summary);
        Ok(())
    }

    fn notify(&self, kind: &'static str, status: &'static str, detail: serde_json::Value) {
        if !self.notifier.enabled() {
            return;
        }
        let sent = self.notifier.send(Event {
            kind,
            model: self.model.clone(),
            version: self.version,
            status,
            detail,
            at: webhook::now(),
            capture: None,
        });
        if !sent {
            tracing::warn!(model = %self.model, version = self.version, kind, "webhook queue full; event dropped");
        }
    }

    pub fn view(&self) -> MonitoringView {
        let latest = self.drift.as_ref().and_then(DriftMonitor::report);
        let quality = self.quality.as_ref().map(|q| q.summary());
        let drift_status = latest.as_ref().map_or(DriftStatus::Ok, |r| r.status);
        let status = match drift_status {
            DriftStatus::Drifting => OverallStatus::Drifting,
            DriftStatus::Warning => OverallStatus::Warning,
            DriftStatus::Ok if quality.is_some_and(|q| q.below_target) => OverallStatus::Warning,
            DriftStatus::Ok => OverallStatus::Ok,
        };
        let reference = match (&self.drift, &self.no_reference) {
            (Some(d), _) => ReferenceView::Profile {
                source: d.profile().source.clone(),
                rows: d.profile().rows,
            },
            (None, reason) => ReferenceView::NoReference {
                reason: reason
                    .clone()
                    .unwrap_or_else(|| "no reference profile".into()),
            },
        };
        let t = self
            .drift
            .as_ref()
            .map_or(self.settings.drift, |d| d.thresholds());
        MonitoringView {
            model: self.model.clone(),
            version: self.version,
            status,
            drift: DriftView {
                reference,
                window: t.window,
                pending: self.drift.as_ref().map_or(0, DriftMonitor::pending),
                psi_warning: t.psi_warning,
                psi_drifting: t.psi_drifting,
                latest,
            },
            quality,
        }
    }
}
