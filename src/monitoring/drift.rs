//! Data drift: live inputs and predictions of one model version compared with the reference
//! profile of its training data (`profile.json` beside the model).
//!
//! Each feature's reference is a set of quantile bin edges with the share of training rows in
//! each bin. Live instances are counted into the same bins with one atomic add per feature, so the
//! request path takes no lock. Counts go into sub-windows of `window / 4` instances; whenever one
//! fills, the last four (a sliding window of `window` instances, advancing by a quarter) are
//! compared with the reference: the population stability index (PSI) and the Kolmogorov-Smirnov
//! distance over the bins, per feature and for the prediction distribution. A categorical
//! feature (its profile lists `categories`) is counted per category plus an unseen bucket (see
//! `categorical.rs`).

use std::path::Path;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::categorical::{categorical_distance, CategoryIndex, Cell, EPSILON};

/// Sub-windows in one window.
const SLICES: usize = 4;
/// The reference profile of one model version, written by `models/make_models.py`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReferenceProfile {
    /// What the profile was computed from, e.g. "training split (1257 rows)".
    pub source: String,
    /// Rows in that data.
    pub rows: u64,
    /// One entry per model input column, in column order.
    pub features: Vec<BinnedDistribution>,
    /// Distribution of the model's own predictions on that data.
    pub predictions: PredictionDistribution,
}

/// Bins `(-inf, e0], (e0, e1], ..., (e_last, inf)` and the reference share in each; or, for a
/// categorical feature, its categories and the reference share of each.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BinnedDistribution {
    pub name: String,
    /// Increasing bin edges (one fewer than the shares); empty for a categorical feature.
    #[serde(default)]
    pub edges: Vec<f64>,
    /// A categorical feature's categories (one per share); values outside them count as unseen.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub categories: Vec<String>,
    /// Share of reference rows per bin (or category); sums to 1.
    pub shares: Vec<f64>,
}

/// The reference distribution of predictions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum PredictionDistribution {
    /// Share of each predicted class, by class index.
    Classes { shares: Vec<f64> },
    /// Predicted values, binned like a feature.
    Values { edges: Vec<f64>, shares: Vec<f64> },
}

impl BinnedDistribution {
    fn check(&self) -> Result<(), String> {
        if !self.categories.is_empty() {
            return self.check_categories();
        }
        if self.shares.len() != self.edges.len() + 1 {
            return Err(format!(
                "{}: {} edges need {} shares, got {}",
                self.name,
                self.edges.len(),
                self.edges.len() + 1,
                self.shares.len()
            ));
        }
        if self.edges.iter().any(|e| !e.is_finite()) || self.edges.windows(2).any(|w| w[0] >= w[1])
        {
            return Err(format!(
                "{}: edges must be finite and increasing",
                self.name
            ));
        }
        check_shares(&self.name, &self.shares)
    }

    fn check_categories(&self) -> Result<(), String> {
        if !self.edges.is_empty() || self.shares.len() != self.categories.len() {
            return Err(format!(
                "{}: a categorical feature takes one share per category ({} categories, {} \
                 shares) and no edges",
                self.name,
                self.categories.len(),
                self.shares.len()
            ));
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(dup) = self.categories.iter().find(|c| !seen.insert(*c)) {
            return Err(format!("{}: category {dup:?} is listed twice", self.name));
        }
        check_shares(&self.name, &self.shares)
    }

    /// The bin of `x`: the number of edges below it.
    fn bin(&self, x: f64) -> usize {
        self.edges.partition_point(|e| *e < x)
    }
}

fn check_shares(name: &str, shares: &[f64]) -> Result<(), String> {
    let sum: f64 = shares.iter().sum();
    if shares.iter().any(|s| !(0.0..=1.0).contains(s)) || (sum - 1.0).abs() > 1e-3 {
        return Err(format!(
            "{name}: shares must be in [0, 1] and sum to 1 (sum {sum})"
        ));
    }
    Ok(())
}

impl ReferenceProfile {
    /// Reads and checks `profile.json`.
    pub fn read(path: &Path) -> Result<ReferenceProfile, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let profile: ReferenceProfile =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        profile
            .check()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(profile)
    }

    pub fn check(&self) -> Result<(), String> {
        for f in &self.features {
            f.check()?;
        }
        match &self.predictions {
            PredictionDistribution::Classes { shares } => check_shares("predictions", shares),
            PredictionDistribution::Values { edges, shares } => BinnedDistribution {
                name: "predictions".into(),
                edges: edges.clone(),
                categories: Vec::new(),
                shares: shares.clone(),
            }
            .check(),
        }
    }
}

/// When a distance counts as a warning or as drift.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DriftThresholds {
    pub psi_warning: f64,
    pub psi_drifting: f64,
    /// Instances in one comparison window.
    pub window: usize,
}

impl Default for DriftThresholds {
    /// PSI 0.1 / 0.25: the usual credit-scoring rule of thumb (below 0.1 stable, above 0.25 a
    /// significant shift).
    fn default() -> Self {
        DriftThresholds {
            psi_warning: 0.1,
            psi_drifting: 0.25,
            window: 1000,
        }
    }
}

/// ok / warning / drifting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DriftStatus {
    Ok,
    Warning,
    Drifting,
}

impl DriftStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DriftStatus::Ok => "ok",
            DriftStatus::Warning => "warning",
            DriftStatus::Drifting => "drifting",
        }
    }

    /// 0, 1, 2: for a gauge.
    pub fn level(self) -> i64 {
        self as i64
    }

    fn of(psi: f64, t: &DriftThresholds) -> DriftStatus {
        if psi >= t.psi_drifting {
            DriftStatus::Drifting
        } else if psi >= t.psi_warning {
            DriftStatus::Warning
        } else {
            DriftStatus::Ok
        }
    }
}

/// The comparison of one window with the reference.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct DriftReport {
    /// Instances the comparison covers.
    pub instances: u64,
    /// When the compared window started and ended, seconds since the Unix epoch (the
    /// predictions captured between them are the ones that drifted).
    pub window_start: f64,
    pub window_end: f64,
    pub features: Vec<FeatureDrift>,
    pub predictions: FeatureDrift,
    /// The worst status of any feature or of the predictions.
    pub status: DriftStatus,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct FeatureDrift {
    pub name: String,
    pub psi: f64,
    /// KS distance over the bins; for a categorical feature, the largest gap between one
    /// category's live and reference shares.
    pub ks: f64,
    pub status: DriftStatus,
    /// Categorical features: the share of live values outside the profile's categories.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unseen_share: Option<f64>,
}

/// Counts of one sub-window: feature bins back to back, then prediction bins.
struct Slice {
    counts: Vec<AtomicU32>,
    seen: AtomicU64,
    /// When the slice started filling, seconds since the Unix epoch.
    started: f64,
}

impl Slice {
    fn new(len: usize) -> Slice {
        Slice {
            counts: (0..len).map(|_| AtomicU32::new(0)).collect(),
            seen: AtomicU64::new(0),
            started: super::webhook::now(),
        }
    }

    fn snapshot(&self) -> Vec<u32> {
        self.counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect()
    }
}

/// Live drift tracking of one model version.
pub struct DriftMonitor {
    profile: ReferenceProfile,
    thresholds: DriftThresholds,
    /// Where each feature's bins start in a slice; the predictions' bins follow the last.
    offsets: Vec<usize>,
    /// Per feature: its category index when it is categorical.
    categories: Vec<Option<CategoryIndex>>,
    prediction_bins: usize,
    current: ArcSwap<Slice>,
    /// The last completed slices (up to `SLICES`) with their instance counts, summed for each
    /// comparison.
    done: Mutex<Vec<(Vec<u32>, u64, f64)>>,
    report: ArcSwap<Option<DriftReport>>,
}

impl std::fmt::Debug for DriftMonitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DriftMonitor")
            .field("thresholds", &self.thresholds)
            .finish()
    }
}

impl DriftMonitor {
    /// `width`: the model's named input columns (a tabular input's, or a one-input-per-column
    /// model's), which must match the profile's features; 0 for tensor models (and for a
    /// one-input-per-column model whose profile leaves its columns out: the loader's choice), whose
    /// profile has no features: only the predictions are tracked.
    pub fn new(
        profile: ReferenceProfile,
        thresholds: DriftThresholds,
        width: usize,
    ) -> Result<DriftMonitor, String> {
        if profile.features.len() != width {
            return Err(format!(
                "the profile describes {} features but the model takes {width} named columns",
                profile.features.len()
            ));
        }
        let mut offsets = Vec::with_capacity(profile.features.len());
        let categories: Vec<Option<CategoryIndex>> = profile
            .features
            .iter()
            .map(|f| CategoryIndex::of(&f.categories))
            .collect();
        let mut at = 0;
        for (f, index) in profile.features.iter().zip(&categories) {
            offsets.push(at);
            at += index
                .as_ref()
                .map_or(f.shares.len(), CategoryIndex::buckets);
        }
        let prediction_bins = match &profile.predictions {
            PredictionDistribution::Classes { shares } => shares.len(),
            PredictionDistribution::Values { shares, .. } => shares.len(),
        };
        let total = at + prediction_bins;
        Ok(DriftMonitor {
            profile,
            thresholds: DriftThresholds {
                window: thresholds.window.max(SLICES),
                ..thresholds
            },
            offsets,
            categories,
            prediction_bins,
            current: ArcSwap::from_pointee(Slice::new(total)),
            done: Mutex::new(Vec::new()),
            report: ArcSwap::from_pointee(None),
        })
    }

    pub fn profile(&self) -> &ReferenceProfile {
        &self.profile
    }

    pub fn thresholds(&self) -> DriftThresholds {
        self.thresholds
    }

    /// The latest comparison (None until the first window fills).
    pub fn report(&self) -> Option<DriftReport> {
        self.report.load().as_ref().clone()
    }

    /// Instances counted in the slice being filled.
    pub fn pending(&self) -> u64 {
        self.current.load().seen.load(Ordering::Relaxed)
    }

    /// Counts one instance: its prediction and its input row (see `observe_row`).
    pub fn observe(&self, row: impl Fn(usize) -> f64, prediction: Observed) -> Option<DriftReport> {
        self.observe_prediction(prediction);
        self.observe_row(|j| Cell::Number(row(j)))
    }

    /// Counts one instance's inputs (`row(j)` = column j; not called when the profile has no
    /// features) and returns a new report when this instance completed a slice. The request path
    /// counts inputs before inference and the prediction after it, so a prediction may land in
    /// the slice after its inputs'.
    pub fn observe_row<'a>(&self, row: impl Fn(usize) -> Cell<'a>) -> Option<DriftReport> {
        let slice = self.current.load();
        let features = self.profile.features.iter().zip(&self.categories);
        for (j, ((feature, index), offset)) in features.zip(&self.offsets).enumerate() {
            let bin = match (index, row(j)) {
                (Some(index), cell) => index.bucket(cell),
                (None, Cell::Number(x)) => feature.bin(x),
                (None, Cell::Text(_) | Cell::Missing) => feature.bin(f64::NAN),
            };
            slice.counts[offset + bin].fetch_add(1, Ordering::Relaxed);
        }
        let seen = slice.seen.fetch_add(1, Ordering::AcqRel) + 1;
        (seen == (self.thresholds.window / SLICES) as u64).then(|| self.rotate(&slice))?
    }

    /// Counts one prediction (a class index, or a value).
    pub fn observe_prediction(&self, prediction: Observed) {
        let slice = self.current.load();
        let base = slice.counts.len() - self.prediction_bins;
        let bin = match (&self.profile.predictions, prediction) {
            (PredictionDistribution::Classes { .. }, Observed::Class(c)) => Some(c),
            (PredictionDistribution::Values { edges, .. }, Observed::Value(v)) => {
                Some(edges.partition_point(|e| *e < v))
            }
            _ => None,
        };
        if let Some(bin) = bin.filter(|b| *b < self.prediction_bins) {
            slice.counts[base + bin].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Closes the full slice, starts a new one and compares the last window with the reference.
    fn rotate(&self, full: &Arc<Slice>) -> Option<DriftReport> {
        let mut done = self.done.lock().unwrap_or_else(|e| e.into_inner());
        self.current.store(Arc::new(Slice::new(full.counts.len())));
        done.push((
            full.snapshot(),
            full.seen.load(Ordering::Acquire),
            full.started,
        ));
        if done.len() > SLICES {
            done.remove(0);
        }
        let mut sum = vec![0u64; full.counts.len()];
        for (slice, _, _) in done.iter() {
            for (s, c) in sum.iter_mut().zip(slice) {
                *s += u64::from(*c);
            }
        }
        let instances = done.iter().map(|(_, seen, _)| seen).sum();
        let mut report = self.compare(&sum, instances);
        report.window_start = done.first().map_or(full.started, |(_, _, at)| *at);
        report.window_end = super::webhook::now();
        self.report.store(Arc::new(Some(report.clone())));
        Some(report)
    }

    fn compare(&self, counts: &[u64], instances: u64) -> DriftReport {
        let t = &self.thresholds;
        let mut features = Vec::with_capacity(self.profile.features.len());
        let all = self.profile.features.iter().zip(&self.categories);
        for ((f, index), offset) in all.zip(&self.offsets) {
            features.push(match index {
                Some(index) => {
                    let live = &counts[*offset..offset + index.buckets()];
                    let (psi, gap, unseen) = categorical_distance(&f.shares, live);
                    FeatureDrift {
                        name: f.name.clone(),
                        psi,
                        ks: gap,
                        status: DriftStatus::of(psi, t),
                        unseen_share: Some(unseen),
                    }
                }
                None => distance(
                    &f.name,
                    &f.shares,
                    &counts[*offset..offset + f.shares.len()],
                    t,
                ),
            });
        }
        let base = counts.len() - self.prediction_bins;
        let shares = match &self.profile.predictions {
            PredictionDistribution::Classes { shares } => shares,
            PredictionDistribution::Values { shares, .. } => shares,
        };
        let predictions = distance("predictions", shares, &counts[base..], t);
        let status = features
            .iter()
            .map(|f| f.status)
            .chain(std::iter::once(predictions.status))
            .max()
            .unwrap_or(DriftStatus::Ok);
        DriftReport {
            instances,
            window_start: 0.0,
            window_end: 0.0,
            features,
            predictions,
            status,
        }
    }
}

/// A prediction as drift tracking sees it.
#[derive(Debug, Clone, Copy)]
pub enum Observed {
    Class(usize),
    Value(f64),
    None,
}

/// PSI and KS distance of live bin counts against reference shares.
fn distance(name: &str, reference: &[f64], live: &[u64], t: &DriftThresholds) -> FeatureDrift {
    let n: u64 = live.iter().sum();
    let (mut psi, mut ks, mut cdf_ref, mut cdf_live) = (0.0, 0.0f64, 0.0, 0.0);
    if n > 0 {
        for (r, l) in reference.iter().zip(live) {
            let q = *l as f64 / n as f64;
            let (p, qs) = (r.max(EPSILON), q.max(EPSILON));
            psi += (qs - p) * (qs / p).ln();
            cdf_ref += r;
            cdf_live += q;
            ks = ks.max((cdf_ref - cdf_live).abs());
        }
    }
    FeatureDrift {
        name: name.to_string(),
        psi,
        ks,
        status: DriftStatus::of(psi, t),
        unseen_share: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A profile of `f` features, each uniform on [0, 1) with decile edges, and 2 classes.
    fn uniform_profile(f: usize) -> ReferenceProfile {
        ReferenceProfile {
            source: "test".into(),
            rows: 1000,
            features: (0..f)
                .map(|j| BinnedDistribution {
                    name: format!("f{j}"),
                    edges: (1..10).map(|k| k as f64 / 10.0).collect(),
                    categories: vec![],
                    shares: vec![0.1; 10],
                })
                .collect(),
            predictions: PredictionDistribution::Classes {
                shares: vec![0.5, 0.5],
            },
        }
    }

    /// A deterministic stream of uniform numbers (xorshift).
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> f64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    #[test]
    fn the_reference_distribution_stays_ok_and_a_shifted_feature_drifts_alone() {
        let monitor = DriftMonitor::new(uniform_profile(3), DriftThresholds::default(), 3).unwrap();
        let mut rng = Rng(42);
        let mut last = None;
        for i in 0..2000 {
            let row: Vec<f64> = (0..3).map(|_| rng.next()).collect();
            if let Some(r) = monitor.observe(|j| row[j], Observed::Class(i % 2)) {
                last = Some(r);
            }
        }
        let report = last.clone().expect("two windows completed");
        assert_eq!(report.status, DriftStatus::Ok, "{report:?}");
        assert_eq!(report.instances, 1000);
        // Feature 1 shifted by 2 standard deviations of U(0,1) (2 * 0.289).
        for i in 0..1000 {
            let row: Vec<f64> = (0..3).map(|_| rng.next()).collect();
            let shifted = [row[0], row[1] + 2.0 * 0.2887, row[2]];
            if let Some(r) = monitor.observe(|j| shifted[j], Observed::Class(i % 2)) {
                last = Some(r);
            }
        }
        let report = last.unwrap();
        assert_eq!(
            report.features[1].status,
            DriftStatus::Drifting,
            "{report:?}"
        );
        assert_eq!(report.features[0].status, DriftStatus::Ok, "{report:?}");
        assert_eq!(report.features[2].status, DriftStatus::Ok, "{report:?}");
        assert_eq!(report.predictions.status, DriftStatus::Ok);
        assert_eq!(report.status, DriftStatus::Drifting);
        assert!(report.features[1].ks > 0.5, "{report:?}");
    }

    #[test]
    fn prediction_drift_is_measured_on_classes() {
        let monitor = DriftMonitor::new(uniform_profile(0), DriftThresholds::default(), 0).unwrap();
        let mut last = None;
        for _ in 0..1000 {
            last = monitor.observe(|_| 0.0, Observed::Class(0)).or(last);
        }
        let report = last.unwrap();
        assert_eq!(report.predictions.status, DriftStatus::Drifting);
        // All mass in class 0 against 50/50: KS 0.5.
        assert!((report.predictions.ks - 0.5).abs() < 1e-9);
    }

    #[test]
    fn psi_over_categories_and_the_unseen_bucket() {
        let mut profile = uniform_profile(1);
        profile.features.insert(
            0,
            BinnedDistribution {
                name: "city".into(),
                edges: vec![],
                categories: vec!["rome".into(), "oslo".into(), "lima".into()],
                shares: vec![0.5, 0.25, 0.25],
            },
        );
        let t = DriftThresholds {
            window: 4,
            ..DriftThresholds::default()
        };
        let monitor = DriftMonitor::new(profile, t, 2).unwrap();
        let mut last = None;
        for city in ["rome", "rome", "oslo", "atlantis"] {
            let row = [Cell::Text(city), Cell::Number(0.5)];
            monitor.observe_prediction(Observed::Class(0));
            last = monitor.observe_row(|j| row[j]).or(last);
        }
        let city = &last.unwrap().features[0];
        // live: rome 0.5, oslo 0.25, lima 0 (-> 1e-4), unseen 0.25 against 0 (-> 1e-4).
        let edge = (0.25 - 1e-4) * (0.25f64 / 1e-4).ln();
        let want = 0.0 + 0.0 + edge + edge;
        assert!((city.psi - want).abs() < 1e-12, "{city:?} vs {want}");
        assert_eq!(city.unseen_share, Some(0.25));
        assert!((city.ks - 0.25).abs() < 1e-12, "{city:?}");
        assert_eq!(city.status, DriftStatus::Drifting);
    }

    #[test]
    fn malformed_profiles_are_rejected() {
        let mut p = uniform_profile(1);
        p.features[0].shares.pop();
        assert!(p.check().unwrap_err().contains("need 10 shares"));
        let mut p = uniform_profile(1);
        p.features[0].edges.swap(0, 1);
        assert!(p.check().unwrap_err().contains("increasing"));
        assert!(
            DriftMonitor::new(uniform_profile(2), DriftThresholds::default(), 3)
                .unwrap_err()
                .contains("2 features")
        );
    }
}
