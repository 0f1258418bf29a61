//! `model.toml`: the model card and input contract that sits beside a model's versions.

use std::path::Path;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use super::capture_card::CaptureCard;
use super::error::RepositoryError;
pub use super::feature_card::Feature;
pub use super::runtime_card::{Runtime, MAX_PLAN_CACHE};
use super::traffic::{Canary, Shadow};
pub use crate::contract::Task;

/// The model card: purpose, ownership, provenance, quality and the input/output contract.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// What the model is for and how success is measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Classification, regression or raw tensors. Inferred from the graph when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<Task>,
    /// Who answers for the model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license: Option<String>,
    /// Class index -> name, for classifiers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training_data: Option<TrainingData>,
    /// Offline evaluation results.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evaluation: Vec<Evaluation>,
    /// Which graph outputs carry the label, probabilities or value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs: Option<OutputNames>,
    /// Named tabular features, in input column order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub features: Vec<Feature>,
    /// Queueing and dynamic batching for this model; unset fields take the server's flags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batching: Option<Batching>,
    /// Live quality targets and drift thresholds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitoring: Option<Monitoring>,
    /// Which versions on disk are served (default: the latest one that passes the gate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub versions: Option<Versions>,
    /// What a new version must show before it serves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate: Option<Gate>,
    /// Batch axis and plans (shapes as the graph declares them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<Runtime>,
    /// Data capture for this model: sampling rate, fields, redacted features.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capture: Option<CaptureCard>,
    /// A version that receives a mirrored share of the requests (see `traffic.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<Shadow>,
    /// A version that answers a share of the requests, with its rollback rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<Canary>,
}

/// `[monitoring]`: what counts as good enough in production.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Monitoring {
    /// Least acceptable live accuracy (classifiers), 0..1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy_target: Option<f64>,
    /// Largest acceptable live mean absolute error (regressors).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mae_target: Option<f64>,
    /// PSI from which a feature or the predictions count as a warning (default 0.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub psi_warning: Option<f64>,
    /// PSI from which they count as drifting (default 0.25).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub psi_drifting: Option<f64>,
    /// Instances per drift comparison window (default 1000; compared every quarter window).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift_window: Option<usize>,
    /// Scored predictions in the rolling accuracy / MAE window (default 500).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality_window: Option<usize>,
}

impl Monitoring {
    fn check(&self) -> Result<(), String> {
        if let Some(t) = self.accuracy_target {
            if !(0.0..=1.0).contains(&t) {
                return Err(format!(
                    "monitoring.accuracy_target must be in [0, 1], got {t}"
                ));
            }
        }
        if let Some(t) = self.mae_target {
            if !(t.is_finite() && t >= 0.0) {
                return Err(format!(
                    "monitoring.mae_target must be a finite number >= 0, got {t}"
                ));
            }
        }
        for (name, v) in [
            ("psi_warning", self.psi_warning),
            ("psi_drifting", self.psi_drifting),
        ] {
            if let Some(v) = v {
                if !(v.is_finite() && v > 0.0) {
                    return Err(format!(
                        "monitoring.{name} must be a finite number > 0, got {v}"
                    ));
                }
            }
        }
        if let (Some(w), Some(d)) = (self.psi_warning, self.psi_drifting) {
            if w > d {
                return Err(format!(
                    "monitoring.psi_warning ({w}) must not exceed monitoring.psi_drifting ({d})"
                ));
            }
        }
        for (name, v) in [
            ("drift_window", self.drift_window),
            ("quality_window", self.quality_window),
        ] {
            if let Some(v) = v {
                if !(4..=1_000_000).contains(&v) {
                    return Err(format!(
                        "monitoring.{name} must be between 4 and 1000000, got {v}"
                    ));
                }
            }
        }
        Ok(())
    }
}

/// `[batching]`: per-model overrides of `--max-batch-size`, `--max-queue-delay-us` and
/// `--queue-capacity`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Batching {
    /// Most instances in one model call; 1 turns batching off. Set here, the size is used as it
    /// is (no merge limit learned from the model's costs below it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_batch_size: Option<usize>,
    /// Microseconds the oldest queued request may wait for its batch to fill (0: never wait).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_queue_delay_us: Option<u64>,
    /// Requests that may wait for this model before more are refused with 429.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_capacity: Option<usize>,
}

/// Largest accepted `max_batch_size`.
pub const MAX_BATCH_SIZE: usize = 65_536;
/// Largest accepted `queue_capacity`.
pub const MAX_QUEUE_CAPACITY: usize = 1_000_000;
/// Largest accepted `max_queue_delay_us` (one second).
pub const MAX_QUEUE_DELAY_US: u64 = 1_000_000;

impl Batching {
    fn check(&self) -> Result<(), String> {
        if let Some(n) = self.max_batch_size {
            if !(1..=MAX_BATCH_SIZE).contains(&n) {
                return Err(format!(
                    "batching.max_batch_size must be between 1 and {MAX_BATCH_SIZE}, got {n}"
                ));
            }
        }
        if let Some(n) = self.queue_capacity {
            if !(1..=MAX_QUEUE_CAPACITY).contains(&n) {
                return Err(format!(
                    "batching.queue_capacity must be between 1 and {MAX_QUEUE_CAPACITY}, got {n}"
                ));
            }
        }
        if let Some(us) = self.max_queue_delay_us {
            if us > MAX_QUEUE_DELAY_US {
                return Err(format!(
                    "batching.max_queue_delay_us must be at most {MAX_QUEUE_DELAY_US}, got {us}"
                ));
            }
        }
        Ok(())
    }
}

/// `[versions]`: which versions on disk are served (Triton's version policy).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Versions {
    /// `latest` (default): the `latest` highest versions that pass the gate; `all`: every
    /// version that passes; `specific`: the versions listed in `specific`.
    #[serde(default)]
    pub policy: PolicyKind,
    /// How many versions `latest` serves (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest: Option<usize>,
    /// The versions `specific` serves.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub specific: Vec<u64>,
}

/// The kind of version policy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PolicyKind {
    #[default]
    Latest,
    All,
    Specific,
}

/// Largest accepted `versions.latest`.
pub const MAX_LATEST_VERSIONS: usize = 1_000;

impl Versions {
    fn check(&self) -> Result<(), String> {
        match self.policy {
            PolicyKind::Latest => {
                if let Some(n) = self.latest {
                    if !(1..=MAX_LATEST_VERSIONS).contains(&n) {
                        return Err(format!(
                            "versions.latest must be between 1 and {MAX_LATEST_VERSIONS}, got {n}"
                        ));
                    }
                }
                if !self.specific.is_empty() {
                    return Err("versions.specific needs policy = \"specific\"".into());
                }
            }
            PolicyKind::All => {
                if self.latest.is_some() || !self.specific.is_empty() {
                    return Err(
                        "policy = \"all\" takes neither versions.latest nor versions.specific"
                            .into(),
                    );
                }
            }
            PolicyKind::Specific => {
                if self.specific.is_empty() || self.specific.contains(&0) {
                    return Err(
                        "policy = \"specific\" needs versions.specific: a list of positive versions"
                            .into(),
                    );
                }
                if self.latest.is_some() {
                    return Err("versions.latest needs policy = \"latest\"".into());
                }
            }
        }
        Ok(())
    }
}

/// `[gate]`: what a candidate version must show before it serves (docs/model-updates.md).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Gate {
    /// Least accuracy on the version's `eval.json` (classifiers), 0..1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_accuracy: Option<f64>,
    /// Largest mean absolute error on the version's `eval.json` (regressors).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_mae: Option<f64>,
    /// How much lower than the serving version's accuracy (on the candidate's evaluation set)
    /// the candidate's may be (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_accuracy_drop: Option<f64>,
    /// How much higher than the serving version's MAE the candidate's may be (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_mae_increase: Option<f64>,
    /// A version without `eval.json` fails the gate (default false: the stage is skipped).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub require_eval: bool,
    /// A version without `golden.json` fails the gate (default false).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub require_golden: bool,
    /// Versions allowed to change the input/output contract (a declared breaking change).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub breaking_versions: Vec<u64>,
}

impl Gate {
    fn check(&self) -> Result<(), String> {
        if let Some(a) = self.min_accuracy {
            if !(0.0..=1.0).contains(&a) {
                return Err(format!("gate.min_accuracy must be in [0, 1], got {a}"));
            }
        }
        for (name, v) in [
            ("max_mae", self.max_mae),
            ("max_accuracy_drop", self.max_accuracy_drop),
            ("max_mae_increase", self.max_mae_increase),
        ] {
            if let Some(v) = v {
                if !(v.is_finite() && v >= 0.0) {
                    return Err(format!("gate.{name} must be a finite number >= 0, got {v}"));
                }
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TrainingData {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Number of training rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Evaluation {
    /// Metric name, e.g. `accuracy`, `r2`.
    pub metric: String,
    pub value: f64,
    /// The data the metric was measured on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OutputNames {
    /// Integer class-index output (classification).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// `[batch, classes]` probability output (classification).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probabilities: Option<String>,
    /// Value output (regression).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

impl Manifest {
    /// Reads and parses a manifest file.
    pub fn read(path: &Path) -> Result<Manifest, RepositoryError> {
        let text = std::fs::read_to_string(path).map_err(|e| RepositoryError::io(path, &e))?;
        Manifest::parse(&text).map_err(|reason| RepositoryError::Manifest {
            path: path.display().to_string(),
            reason,
        })
    }

    /// Parses manifest text and checks it for internal consistency (not against a graph: that is
    /// the contract's job).
    pub fn parse(text: &str) -> Result<Manifest, String> {
        let manifest: Manifest = toml::from_str(text).map_err(|e| e.message().to_string())?;
        manifest.check()?;
        Ok(manifest)
    }

    fn check(&self) -> Result<(), String> {
        if let Some(dup) = first_duplicate(self.features.iter().map(|f| f.name.as_str())) {
            return Err(format!("feature {dup:?} is listed twice"));
        }
        if let Some(dup) = first_duplicate(self.labels.iter().map(String::as_str)) {
            return Err(format!("label {dup:?} is listed twice"));
        }
        for f in &self.features {
            f.check()?;
        }
        if let Some(batching) = &self.batching {
            batching.check()?;
        }
        if let Some(runtime) = &self.runtime {
            runtime.check()?;
        }
        if let Some(monitoring) = &self.monitoring {
            monitoring.check()?;
        }
        if let Some(versions) = &self.versions {
            versions.check()?;
        }
        super::traffic::check_sections(self.shadow.as_ref(), self.canary.as_ref())?;
        if let Some(gate) = &self.gate {
            gate.check()?;
        }
        if let Some(capture) = &self.capture {
            let names: Vec<&str> = self.features.iter().map(|f| f.name.as_str()).collect();
            capture.check(&names)?;
        }
        if !self.labels.is_empty() && matches!(self.task, Some(Task::Regression | Task::Raw)) {
            return Err("labels are only meaningful for task = \"classification\"".into());
        }
        Ok(())
    }
}

fn first_duplicate<'a>(names: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let mut seen = std::collections::HashSet::new();
    names.into_iter().find(|n| !seen.insert(*n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_full_card() {
        let m = Manifest::parse(
            r#"
            description = "d"
            task = "classification"
            labels = ["a", "b"]
            [training_data]
            name = "t"
            rows = 10
            [[evaluation]]
            metric = "accuracy"
            value = 0.9
            [outputs]
            label = "label"
            probabilities = "probabilities"
            [[features]]
            name = "x"
            min = 0.0
            max = 1.0
            "#,
        )
        .unwrap();
        assert_eq!(m.task, Some(Task::Classification));
        assert_eq!(m.features[0].max, Some(1.0));
        assert_eq!(m.evaluation[0].value, 0.9);
    }

    #[test]
    fn rejects_unknown_fields_and_bad_ranges() {
        assert!(Manifest::parse("descripton = \"typo\"")
            .unwrap_err()
            .contains("descripton"));
        let err = Manifest::parse("[[features]]\nname = \"x\"\nmin = 2.0\nmax = 1.0").unwrap_err();
        assert!(err.contains("min 2 > max 1"), "{err}");
        let err = Manifest::parse("labels = [\"a\", \"a\"]").unwrap_err();
        assert!(err.contains("listed twice"), "{err}");
        let err = Manifest::parse("task = \"regression\"\nlabels = [\"a\"]").unwrap_err();
        assert!(err.contains("classification"), "{err}");
    }
}
