//! Drift of categorical features: a feature whose profile lists `categories` is counted per
//! category plus one "unseen" bucket (any value outside the profile's categories, or a missing
//! one). Its PSI runs over those buckets (the unseen bucket's reference share is 0, floored like
//! any empty bin); its distance in place of KS is the largest gap between one category's live and
//! reference shares (categories have no order, so a cumulative distance would depend on how the
//! profile happens to list them); and the unseen share is reported on its own.

use std::collections::HashMap;

use super::drift::{BinnedDistribution, DriftStatus, DriftThresholds, FeatureDrift, EPSILON};

pub use crate::engine::Cell;

/// Category -> bucket of one categorical feature; the unseen bucket is `len()`.
#[derive(Debug, Clone)]
pub struct CategoryIndex {
    index: HashMap<String, usize>,
}

impl CategoryIndex {
    /// The index of a feature's profile, when the feature is categorical.
    pub fn of(feature: &BinnedDistribution) -> Option<CategoryIndex> {
        (!feature.categories.is_empty()).then(|| CategoryIndex {
            index: feature
                .categories
                .iter()
                .enumerate()
                .map(|(i, c)| (c.clone(), i))
                .collect(),
        })
    }

    /// Live buckets: the categories and the unseen bucket.
    pub fn buckets(&self) -> usize {
        self.index.len() + 1
    }

    /// The bucket of one value. A whole number matches the category written the same way
    /// (integer features profiled as `"3"`).
    pub fn bucket(&self, cell: Cell<'_>) -> usize {
        let unseen = self.index.len();
        match cell {
            Cell::Text(s) => self.index.get(s).copied().unwrap_or(unseen),
            Cell::Number(v) if v.fract() == 0.0 && v.is_finite() => self
                .index
                .get(&format!("{}", v as i64))
                .copied()
                .unwrap_or(unseen),
            Cell::Number(_) | Cell::Missing => unseen,
        }
    }
}

/// PSI over categories + unseen, the largest per-category gap, and the unseen share.
pub fn categorical_distance(
    name: &str,
    reference: &[f64],
    live: &[u64],
    t: &DriftThresholds,
) -> FeatureDrift {
    let n: u64 = live.iter().sum();
    let (mut psi, mut gap, mut unseen_share) = (0.0, 0.0f64, 0.0);
    if n > 0 {
        let shares = reference.iter().copied().chain(std::iter::once(0.0));
        for (p, l) in shares.zip(live) {
            let q = *l as f64 / n as f64;
            let (ps, qs) = (p.max(EPSILON), q.max(EPSILON));
            psi += (qs - ps) * (qs / ps).ln();
            gap = gap.max((q - p).abs());
        }
        unseen_share = live.last().map_or(0.0, |u| *u as f64 / n as f64);
    }
    FeatureDrift {
        name: name.to_string(),
        psi,
        ks: gap,
        status: DriftStatus::of(psi, t),
        unseen_share: Some(unseen_share),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitoring::{DriftMonitor, Observed, PredictionDistribution, ReferenceProfile};

    fn profile() -> ReferenceProfile {
        ReferenceProfile {
            source: "test".into(),
            rows: 4,
            features: vec![
                BinnedDistribution {
                    name: "city".into(),
                    edges: vec![],
                    categories: vec!["rome".into(), "oslo".into(), "lima".into()],
                    shares: vec![0.5, 0.25, 0.25],
                },
                BinnedDistribution {
                    name: "x".into(),
                    edges: vec![0.5],
                    categories: vec![],
                    shares: vec![0.5, 0.5],
                },
            ],
            predictions: PredictionDistribution::Classes {
                shares: vec![0.5, 0.5],
            },
        }
    }

    #[test]
    fn psi_over_categories_and_the_unseen_bucket() {
        let t = DriftThresholds {
            window: 4,
            ..DriftThresholds::default()
        };
        let monitor = DriftMonitor::new(profile(), t, 2).unwrap();
        let mut last = None;
        for city in ["rome", "rome", "oslo", "atlantis"] {
            let row = [Cell::Text(city), Cell::Number(0.0)];
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
    fn whole_numbers_match_integer_categories() {
        let mut f = profile().features.remove(0);
        f.categories = vec!["1".into(), "2".into(), "3".into()];
        let index = CategoryIndex::of(&f).unwrap();
        assert_eq!(index.bucket(Cell::Number(2.0)), 1);
        assert_eq!(index.bucket(Cell::Number(2.5)), 3);
        assert_eq!(index.bucket(Cell::Missing), 3);
        assert_eq!(index.buckets(), 4);
    }
}
