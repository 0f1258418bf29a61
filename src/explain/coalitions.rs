//! Which coalitions of features to evaluate, and how their values become attributions.
//!
//! A coalition is a mask over the features: a feature in the coalition takes the explained
//! instance's value, one outside it the background row's value. The value `v(S)` of a coalition is
//! the model output averaged over the background rows (interventional Shapley values).
//!
//! - Exact Shapley: every one of the `2^F` coalitions, combined with the Shapley weights
//!   `|S|! (F - |S| - 1)! / F!`.
//! - KernelSHAP (Lundberg & Lee, 2017): a budget of coalitions. Whole coalition sizes are
//!   enumerated while the budget covers them (smallest and largest sizes first, where the Shapley
//!   kernel puts most weight), the rest are sampled from the kernel's size distribution with a
//!   seeded generator; the attributions are the weighted least-squares fit of `v(S) - v(∅)` on the
//!   masks, constrained to sum to `f(x) - v(∅)`. When the budget covers all `2^F` coalitions the
//!   fit reproduces the exact Shapley values.

use std::collections::HashMap;

use super::linalg::solve;
use super::rng::SplitMix64;

/// How attributions are computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    ExactShapley,
    KernelShap,
    /// Patches of a tensor input set to a baseline, one at a time (see `Occlusion`).
    Occlusion,
}

impl Method {
    /// Name in responses and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::ExactShapley => "exact_shapley",
            Method::KernelShap => "kernel_shap",
            Method::Occlusion => "occlusion",
        }
    }
}

/// Features and the coalitions over them to evaluate.
#[derive(Debug, Clone)]
pub struct Coalitions {
    width: usize,
    /// One mask of `width` flags per coalition (true: the instance's value).
    masks: Vec<bool>,
    /// KernelSHAP regression weight per coalition (unused for the two anchors and for exact).
    weights: Vec<f64>,
    /// All `2^width` coalitions in bit order (exact Shapley), else KernelSHAP's.
    exact: bool,
}

/// What the attributions explain.
#[derive(Debug, Clone, PartialEq)]
pub struct Attribution {
    /// `E[f(background)]`: the value of the empty coalition.
    pub base_value: f64,
    /// `f(x)`: the value of the full coalition.
    pub output: f64,
    /// One attribution per feature; they sum to `output - base_value`.
    pub values: Vec<f64>,
}

/// Number of ways to choose `k` of `n`, as a float (exact up to 2^53).
pub fn binomial(n: usize, k: usize) -> f64 {
    let k = k.min(n - k.min(n));
    (0..k).fold(1.0, |acc, i| acc * (n - i) as f64 / (i + 1) as f64)
}

impl Coalitions {
    /// All `2^width` coalitions; coalition `m` holds feature `j` when bit `j` of `m` is set.
    /// The caller bounds `width` (the count is `2^width`).
    pub fn exact(width: usize) -> Coalitions {
        let count = 1usize << width;
        let mut masks = Vec::with_capacity(count * width);
        for m in 0..count {
            masks.extend((0..width).map(|j| m >> j & 1 == 1));
        }
        Coalitions {
            width,
            masks,
            weights: Vec::new(),
            exact: true,
        }
    }

    /// At most `budget` coalitions (at least 2: the empty and the full one come first), chosen
    /// as KernelSHAP does, with sampling seeded by `seed`.
    pub fn kernel(width: usize, budget: usize, seed: u64) -> Coalitions {
        let mut c = Coalitions {
            width,
            masks: Vec::new(),
            weights: Vec::new(),
            exact: false,
        };
        c.push(&vec![false; width], 0.0);
        c.push(&vec![true; width], 0.0);
        if width >= 2 {
            let left = budget.saturating_sub(2);
            let (full_sizes, left) = c.enumerate_sizes(left);
            c.sample_sizes(full_sizes, left, seed);
        }
        c
    }

    fn push(&mut self, mask: &[bool], weight: f64) {
        self.masks.extend_from_slice(mask);
        self.weights.push(weight);
    }

    /// Kernel weight mass of each coalition size 1..=ceil((F-1)/2), counting a size and its
    /// complement together, normalised to sum to 1.
    fn size_weights(&self) -> Vec<f64> {
        let f = self.width;
        let w: Vec<f64> = (1..=f / 2)
            .map(|s| {
                let paired = if s != f - s { 2.0 } else { 1.0 };
                paired * (f - 1) as f64 / (s * (f - s)) as f64
            })
            .collect();
        let total: f64 = w.iter().sum();
        w.into_iter().map(|x| x / total).collect()
    }

    /// Adds every coalition of each size (and its complement) while the budget covers the size's
    /// share; returns how many sizes were enumerated and the budget left.
    fn enumerate_sizes(&mut self, mut left: usize) -> (usize, usize) {
        let f = self.width;
        let weight = self.size_weights();
        let mut remaining = weight.clone();
        let mut full = 0;
        for (i, &w) in weight.iter().enumerate() {
            let s = i + 1;
            let paired = s != f - s;
            let count = binomial(f, s) * if paired { 2.0 } else { 1.0 };
            if (left as f64) * remaining[i] / count < 1.0 - 1e-8 {
                break;
            }
            full += 1;
            left -= count as usize;
            if remaining[i] < 1.0 {
                let rest = 1.0 - remaining[i];
                remaining.iter_mut().for_each(|r| *r /= rest);
            }
            let each = w / count;
            for_each_subset(f, s, |mask| {
                self.push(mask, each);
                if paired {
                    let complement: Vec<bool> = mask.iter().map(|b| !b).collect();
                    self.push(&complement, each);
                }
            });
        }
        (full, left)
    }

    /// Samples `left` more coalitions from the sizes not enumerated, each with its complement;
    /// a coalition drawn twice counts twice. Their weights are scaled to the mass of those sizes.
    fn sample_sizes(&mut self, full: usize, mut left: usize, seed: u64) {
        let f = self.width;
        let weight = self.size_weights();
        if full >= weight.len() || left == 0 {
            return;
        }
        let mut dist: Vec<f64> = weight
            .iter()
            .enumerate()
            .skip(full)
            .map(|(i, w)| if i + 1 != f - i - 1 { w / 2.0 } else { *w })
            .collect();
        let total: f64 = dist.iter().sum();
        dist.iter_mut().for_each(|d| *d /= total);
        let first = self.weights.len();
        let mut seen: HashMap<Vec<bool>, usize> = HashMap::new();
        let mut rng = SplitMix64::new(seed);
        let mut draws = 4 * left;
        while left > 0 && draws > 0 {
            draws -= 1;
            let s = full + 1 + pick(&dist, rng.next_f64());
            let mask = random_subset(f, s, &mut rng);
            let complement: Vec<bool> = mask.iter().map(|b| !b).collect();
            let paired = s != f - s;
            for (m, take) in [(mask, true), (complement, paired)] {
                if !take || left == 0 {
                    continue;
                }
                match seen.get(&m) {
                    Some(&k) => self.weights[k] += 1.0,
                    None => {
                        seen.insert(m.clone(), self.weights.len());
                        self.push(&m, 1.0);
                        left -= 1;
                    }
                }
            }
        }
        let mass: f64 = weight[full..].iter().sum();
        let drawn: f64 = self.weights[first..].iter().sum();
        if drawn > 0.0 {
            self.weights[first..]
                .iter_mut()
                .for_each(|w| *w *= mass / drawn);
        }
    }

    pub fn method(&self) -> Method {
        if self.exact {
            Method::ExactShapley
        } else {
            Method::KernelShap
        }
    }

    pub fn width(&self) -> usize {
        self.width
    }

    /// Number of coalitions.
    pub fn len(&self) -> usize {
        self.masks.len() / self.width.max(1)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Index of the full coalition (every feature from the instance): its value is `f(x)`.
    pub fn full_index(&self) -> usize {
        if self.exact {
            self.len() - 1
        } else {
            1
        }
    }

    /// Coalition `k`'s mask.
    pub fn mask(&self, k: usize) -> &[bool] {
        &self.masks[k * self.width..(k + 1) * self.width]
    }

    /// Attributions from the value of each coalition (in coalition order). None when the
    /// sampled coalitions cannot determine every attribution (a budget too small).
    pub fn attribute(&self, values: &[f64]) -> Option<Attribution> {
        debug_assert_eq!(values.len(), self.len());
        if self.exact {
            Some(self.exact_values(values))
        } else {
            self.kernel_values(values)
        }
    }

    fn exact_values(&self, v: &[f64]) -> Attribution {
        let f = self.width;
        let full = (1usize << f) - 1;
        // Shapley weight of a coalition of size s not holding the feature: 1 / (F C(F-1, s)).
        let w: Vec<f64> = (0..f)
            .map(|s| 1.0 / (f as f64 * binomial(f - 1, s)))
            .collect();
        let mut values = vec![0.0; f];
        for (m, &vm) in v.iter().enumerate() {
            let size = m.count_ones() as usize;
            for (j, phi) in values.iter_mut().enumerate() {
                if m >> j & 1 == 0 {
                    *phi += w[size] * (v[m | 1 << j] - vm);
                }
            }
        }
        Attribution {
            base_value: v[0],
            output: v[full],
            values,
        }
    }

    fn kernel_values(&self, v: &[f64]) -> Option<Attribution> {
        let f = self.width;
        let (base_value, output) = (v[0], v[1]);
        let delta = output - base_value;
        if f == 1 {
            return Some(Attribution {
                base_value,
                output,
                values: vec![delta],
            });
        }
        // Eliminate the last feature with the constraint sum(phi) = delta, then solve the normal
        // equations of the weighted least squares for the other F - 1.
        let n = f - 1;
        let mut a = vec![0.0; n * n];
        let mut b = vec![0.0; n];
        let mut row = vec![0.0; n];
        for (k, vk) in v.iter().enumerate().skip(2) {
            let mask = self.mask(k);
            let last = f64::from(u8::from(mask[n]));
            for (j, r) in row.iter_mut().enumerate() {
                *r = f64::from(u8::from(mask[j])) - last;
            }
            let y = vk - base_value - last * delta;
            let w = self.weights[k];
            for i in 0..n {
                if row[i] == 0.0 {
                    continue;
                }
                let wi = w * row[i];
                b[i] += wi * y;
                for j in 0..n {
                    a[i * n + j] += wi * row[j];
                }
            }
        }
        let mut values = solve(a, b)?;
        let rest: f64 = values.iter().sum();
        values.push(delta - rest);
        Some(Attribution {
            base_value,
            output,
            values,
        })
    }
}

/// Index of the bin of a cumulative distribution that `u` in [0, 1) falls into.
fn pick(dist: &[f64], u: f64) -> usize {
    let mut acc = 0.0;
    for (i, p) in dist.iter().enumerate() {
        acc += p;
        if u < acc {
            return i;
        }
    }
    dist.len() - 1
}

/// A uniformly random mask with `size` of `width` flags set (partial Fisher-Yates).
fn random_subset(width: usize, size: usize, rng: &mut SplitMix64) -> Vec<bool> {
    let mut order: Vec<usize> = (0..width).collect();
    let mut mask = vec![false; width];
    for i in 0..size {
        let j = i + rng.below(width - i);
        order.swap(i, j);
        mask[order[i]] = true;
    }
    mask
}

/// Calls `each` with every mask of `size` of `width` flags set, in lexicographic order.
fn for_each_subset(width: usize, size: usize, mut each: impl FnMut(&[bool])) {
    let mut idx: Vec<usize> = (0..size).collect();
    let mut mask = vec![false; width];
    loop {
        mask.iter_mut().for_each(|m| *m = false);
        idx.iter().for_each(|&i| mask[i] = true);
        each(&mask);
        // Advance to the next combination.
        let Some(i) = (0..size).rev().find(|&i| idx[i] != i + width - size) else {
            return;
        };
        idx[i] += 1;
        for k in i + 1..size {
            idx[k] = idx[k - 1] + 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subsets_are_all_distinct_and_of_the_right_size() {
        let mut seen = std::collections::HashSet::new();
        for_each_subset(6, 3, |m| {
            assert_eq!(m.iter().filter(|b| **b).count(), 3);
            assert!(seen.insert(m.to_vec()));
        });
        assert_eq!(seen.len(), 20);
        assert_eq!(binomial(30, 15), 155_117_520.0);
        assert_eq!(binomial(4, 0), 1.0);
    }

    #[test]
    fn kernel_with_a_full_budget_enumerates_every_coalition_once() {
        let c = Coalitions::kernel(5, 32, 0);
        assert_eq!(c.len(), 32);
        let distinct: std::collections::HashSet<&[bool]> =
            (0..c.len()).map(|k| c.mask(k)).collect();
        assert_eq!(distinct.len(), 32);
        let total: f64 = c.weights[2..].iter().sum();
        assert!((total - 1.0).abs() < 1e-12, "{total}");
    }

    #[test]
    fn kernel_respects_the_budget_and_the_seed() {
        let a = Coalitions::kernel(30, 200, 42);
        let b = Coalitions::kernel(30, 200, 42);
        let c = Coalitions::kernel(30, 200, 43);
        assert!(a.len() <= 200 && a.len() > 150, "{}", a.len());
        assert_eq!(a.masks, b.masks);
        assert_eq!(a.weights, b.weights);
        assert_ne!(a.masks, c.masks);
        let total: f64 = a.weights[2..].iter().sum();
        assert!((total - 1.0).abs() < 1e-9, "{total}");
    }
}
