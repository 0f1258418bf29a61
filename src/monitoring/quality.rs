//! Live model quality from ground truth: each matched feedback is scored against what was
//! predicted, and a rolling window of the last scores gives the live accuracy (classifiers) or
//! mean absolute error (regressors), compared with the model card's target.

use std::collections::VecDeque;
use std::sync::Mutex;

use serde::Serialize;
use utoipa::ToSchema;

use super::drift::Observed;

/// What a model predicts, for scoring.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum QualityKind {
    Classification { classes: usize },
    Regression,
}

/// The ground truth of one prediction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Truth {
    Class(usize),
    Value(f64),
}

/// One scored prediction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Score {
    Correct(bool),
    AbsError(f64),
}

/// The rolling window's view.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, ToSchema)]
pub struct QualitySummary {
    /// Scored predictions in the window (at most `window`).
    pub samples: usize,
    pub window: usize,
    /// Share of correct predictions in the window (classifiers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accuracy: Option<f64>,
    /// Mean absolute error in the window (regressors).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mae: Option<f64>,
    /// The card's target: least accuracy, or largest MAE.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<f64>,
    /// The window holds enough scores (`min_samples`) and misses the target.
    pub below_target: bool,
}

/// Quality tracking of one model version.
pub struct QualityMonitor {
    model: String,
    version: u64,
    kind: QualityKind,
    window: usize,
    target: Option<f64>,
    /// Scores needed before the target is judged.
    min_samples: usize,
    scores: Mutex<Window>,
}

#[derive(Default)]
struct Window {
    values: VecDeque<f64>,
    sum: f64,
}

impl std::fmt::Debug for QualityMonitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "QualityMonitor({}:{})", self.model, self.version)
    }
}

impl QualityMonitor {
    pub fn new(
        model: &str,
        version: u64,
        kind: QualityKind,
        window: usize,
        target: Option<f64>,
    ) -> QualityMonitor {
        let window = window.max(1);
        QualityMonitor {
            model: model.to_string(),
            version,
            kind,
            window,
            target,
            min_samples: window.min(50),
            scores: Mutex::new(Window::default()),
        }
    }

    pub fn model(&self) -> &str {
        &self.model
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn kind(&self) -> QualityKind {
        self.kind
    }

    /// Scores `truth` against `predicted` and returns the score and the updated window.
    pub fn score(
        &self,
        predicted: Observed,
        truth: Truth,
    ) -> Result<(Score, QualitySummary), String> {
        let score = match (self.kind, predicted, truth) {
            (QualityKind::Classification { classes }, Observed::Class(p), Truth::Class(t)) => {
                if t >= classes {
                    return Err(format!("class index {t} is out of range (0..{classes})"));
                }
                Score::Correct(p == t)
            }
            (QualityKind::Regression, Observed::Value(p), Truth::Value(t)) => {
                if !t.is_finite() {
                    return Err(format!("value {t} is not finite"));
                }
                Score::AbsError((p - t).abs())
            }
            (QualityKind::Classification { .. }, _, _) => {
                return Err("this model is a classifier: give a label".into())
            }
            (QualityKind::Regression, _, _) => {
                return Err("this model is a regressor: give a value".into())
            }
        };
        let value = match score {
            Score::Correct(c) => f64::from(u8::from(c)),
            Score::AbsError(e) => e,
        };
        let mut w = self.scores.lock().unwrap_or_else(|e| e.into_inner());
        w.values.push_back(value);
        w.sum += value;
        if w.values.len() > self.window {
            if let Some(old) = w.values.pop_front() {
                w.sum -= old;
            }
        }
        Ok((score, self.summarise(&w)))
    }

    pub fn summary(&self) -> QualitySummary {
        let w = self.scores.lock().unwrap_or_else(|e| e.into_inner());
        self.summarise(&w)
    }

    fn summarise(&self, w: &Window) -> QualitySummary {
        let samples = w.values.len();
        // Recomputed from the window, not the running sum, to keep rounding from drifting.
        let mean = (samples > 0).then(|| w.values.iter().sum::<f64>() / samples as f64);
        let (accuracy, mae) = match self.kind {
            QualityKind::Classification { .. } => (mean, None),
            QualityKind::Regression => (None, mean),
        };
        let below_target = samples >= self.min_samples
            && match (self.kind, self.target, mean) {
                (QualityKind::Classification { .. }, Some(t), Some(m)) => m < t,
                (QualityKind::Regression, Some(t), Some(m)) => m > t,
                _ => false,
            };
        QualitySummary {
            samples,
            window: self.window,
            accuracy,
            mae,
            target: self.target,
            below_target,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_labels_give_exactly_the_expected_accuracy() {
        let q = QualityMonitor::new(
            "m",
            1,
            QualityKind::Classification { classes: 3 },
            10,
            Some(0.9),
        );
        for i in 0..10 {
            // 7 of 10 right.
            let truth = if i < 7 { 1 } else { 2 };
            q.score(Observed::Class(1), Truth::Class(truth)).unwrap();
        }
        let s = q.summary();
        assert_eq!(s.samples, 10);
        assert_eq!(s.accuracy, Some(0.7));
        assert!(s.below_target);
        // The window rolls: ten more right answers push the wrong ones out.
        for _ in 0..10 {
            q.score(Observed::Class(0), Truth::Class(0)).unwrap();
        }
        assert_eq!(q.summary().accuracy, Some(1.0));
        assert!(!q.summary().below_target);
        assert!(q.score(Observed::Class(0), Truth::Class(3)).is_err());
        assert!(q.score(Observed::Class(0), Truth::Value(1.0)).is_err());
    }

    #[test]
    fn regression_tracks_mean_absolute_error() {
        let q = QualityMonitor::new("m", 1, QualityKind::Regression, 100, Some(10.0));
        q.score(Observed::Value(100.0), Truth::Value(90.0)).unwrap();
        q.score(Observed::Value(100.0), Truth::Value(104.0))
            .unwrap();
        let s = q.summary();
        assert_eq!(s.mae, Some(7.0));
        assert_eq!(s.accuracy, None);
        assert!(!s.below_target, "two samples are too few to judge");
    }
}
