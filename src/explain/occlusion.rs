//! Occlusion attributions for tensor inputs (images): the input's last two axes are cut into a
//! grid of square patches; each patch in turn is set to a baseline value (across every leading
//! axis, e.g. every colour channel), and the patch's attribution is how much the output drops:
//! `f(x) - f(x with the patch occluded)`. Unlike Shapley values these do not sum to anything in
//! particular; they rank regions by how much the model relies on them.

/// The patch grid over one instance's shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Occlusion {
    /// One instance's shape; the last two axes are height and width.
    shape: Vec<usize>,
    patch: usize,
    grid: (usize, usize),
}

impl Occlusion {
    /// A grid of `patch x patch` patches over the last two axes of `shape` (edge patches are
    /// cut short). None when `shape` has fewer than two axes or `patch` is 0.
    pub fn new(shape: &[usize], patch: usize) -> Option<Occlusion> {
        let [.., h, w] = shape else { return None };
        if patch == 0 || *h == 0 || *w == 0 {
            return None;
        }
        Some(Occlusion {
            shape: shape.to_vec(),
            patch,
            grid: (h.div_ceil(patch), w.div_ceil(patch)),
        })
    }

    /// Patches in the grid.
    pub fn patches(&self) -> usize {
        self.grid.0 * self.grid.1
    }

    /// Rows to evaluate: the instance itself, one per patch, and the all-baseline input.
    pub fn len(&self) -> usize {
        self.patches() + 2
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    pub fn patch(&self) -> usize {
        self.patch
    }

    /// Patch names, row-major over the grid: `patch_<row>_<column>`.
    pub fn names(&self) -> Vec<String> {
        (0..self.grid.0)
            .flat_map(|r| (0..self.grid.1).map(move |c| format!("patch_{r}_{c}")))
            .collect()
    }

    /// Appends rows `range` (0: the instance; `1..=patches`: patch `k - 1` occluded with
    /// `baseline`; `patches + 1`: every value the baseline).
    pub fn rows(
        &self,
        range: std::ops::Range<usize>,
        x: &[f64],
        baseline: f64,
        out: &mut Vec<f64>,
    ) {
        let [.., h, w] = self.shape[..] else { return };
        for k in range {
            let start = out.len();
            if k == self.patches() + 1 {
                out.extend(std::iter::repeat_n(baseline, x.len()));
                continue;
            }
            out.extend_from_slice(x);
            let Some(p) = k.checked_sub(1) else { continue };
            let (r0, c0) = (
                (p / self.grid.1) * self.patch,
                (p % self.grid.1) * self.patch,
            );
            let (r1, c1) = ((r0 + self.patch).min(h), (c0 + self.patch).min(w));
            let plane = h * w;
            for lead in 0..x.len() / plane {
                for r in r0..r1 {
                    let at = start + lead * plane + r * w;
                    out[at + c0..at + c1].iter_mut().for_each(|v| *v = baseline);
                }
            }
        }
    }

    /// Attributions from the output of every row (`len()` values, in row order).
    pub fn attribute(&self, values: &[f64]) -> Vec<f64> {
        values[1..=self.patches()]
            .iter()
            .map(|v| values[0] - v)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patches_cover_every_channel_and_edge_patches_are_cut_short() {
        // 2 channels of 3x3, patch 2: a 2x2 grid, the edge patches 1 wide.
        let o = Occlusion::new(&[2, 3, 3], 2).unwrap();
        assert_eq!(o.len(), 6);
        assert_eq!(o.names()[3], "patch_1_1");
        let x: Vec<f64> = (1..=18).map(f64::from).collect();
        let mut out = Vec::new();
        o.rows(0..6, &x, 0.0, &mut out);
        assert!(out[5 * 18..].iter().all(|v| *v == 0.0));
        assert_eq!(&out[..18], &x[..]);
        // Patch 3 (bottom right): element (2, 2) of each channel.
        let last = &out[4 * 18..5 * 18];
        let zeroed: Vec<usize> = (0..18).filter(|&i| last[i] == 0.0).collect();
        assert_eq!(zeroed, vec![8, 17]);
        // Patch 0 (top left): rows 0-1, columns 0-1 of each channel.
        let first = &out[18..36];
        let zeroed: Vec<usize> = (0..18).filter(|&i| first[i] == 0.0).collect();
        assert_eq!(zeroed, vec![0, 1, 3, 4, 9, 10, 12, 13]);
        assert!(Occlusion::new(&[5], 2).is_none());
        assert!(Occlusion::new(&[3, 3], 0).is_none());
    }

    #[test]
    fn a_model_reading_one_region_gets_attributions_only_there() {
        // f = sum of the top-left 2x2 block of a 4x4 image.
        let o = Occlusion::new(&[4, 4], 2).unwrap();
        let x = vec![1.0; 16];
        let mut rows = Vec::new();
        o.rows(0..o.len(), &x, 0.0, &mut rows);
        let f = |r: &[f64]| r[0] + r[1] + r[4] + r[5];
        let values: Vec<f64> = rows.chunks(16).map(f).collect();
        assert_eq!(o.attribute(&values), vec![4.0, 0.0, 0.0, 0.0]);
    }
}
