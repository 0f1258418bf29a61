//! Drift of categorical features: a feature whose profile lists `categories` is counted per
//! category plus one "unseen" bucket (any value outside the profile's categories, or a missing
//! one). Its PSI runs over those buckets (the unseen bucket's reference share is 0, floored like
//! any empty bin); its distance in place of KS is the largest gap between one category's live and
//! reference shares (categories have no order, so a cumulative distance would depend on how the
//! profile happens to list them); and the unseen share is reported on its own.

use std::collections::HashMap;

pub use crate::engine::Cell;

/// Share given to an empty bin so that PSI stays finite.
pub(super) const EPSILON: f64 = 1e-4;

/// Category -> bucket of one categorical feature; the unseen bucket is `len()`.
#[derive(Debug, Clone)]
pub struct CategoryIndex {
    index: HashMap<String, usize>,
}

impl CategoryIndex {
    /// The index of a feature's profile categories, when it lists some (a categorical feature).
    pub fn of(categories: &[String]) -> Option<CategoryIndex> {
        (!categories.is_empty()).then(|| CategoryIndex {
            index: categories
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

/// PSI over categories + unseen, the largest per-category gap, and the unseen share, of live
/// bucket counts (categories, then unseen) against the reference shares of the categories.
pub fn categorical_distance(reference: &[f64], live: &[u64]) -> (f64, f64, f64) {
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
    (psi, gap, unseen_share)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_numbers_match_integer_categories() {
        let index = CategoryIndex::of(&["1".into(), "2".into(), "3".into()]).unwrap();
        assert_eq!(index.bucket(Cell::Number(2.0)), 1);
        assert_eq!(index.bucket(Cell::Number(2.5)), 3);
        assert_eq!(index.bucket(Cell::Text("3")), 2);
        assert_eq!(index.bucket(Cell::Missing), 3);
        assert_eq!(index.buckets(), 4);
    }
}
