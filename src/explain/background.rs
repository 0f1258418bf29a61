//! The background set: the rows whose average output is the base value, and from which the
//! features outside a coalition take their values.
//!
//! Read from `background.json` beside the model (`{"source", "features", "rows"}`, a sample of
//! training rows written by `models/make_models.py`), or, when there is none, built from the
//! reference profile's quantile bins: an approximation (see docs/explain.md).

use std::path::Path;

use serde::Deserialize;

/// `background.json`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BackgroundFile {
    /// Where the rows come from, e.g. "training split, 32 rows sampled with seed 0".
    source: String,
    /// Feature names in column order; must match the model card.
    features: Vec<String>,
    rows: Vec<Vec<f64>>,
}

/// Background rows, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Background {
    width: usize,
    data: Vec<f64>,
    source: String,
}

impl Background {
    /// Checks that `rows` is non-empty, rectangular with `width` finite values per row.
    pub fn new(width: usize, rows: &[Vec<f64>], source: String) -> Result<Background, String> {
        if rows.is_empty() || width == 0 {
            return Err("the background needs at least one row and one feature".into());
        }
        let mut data = Vec::with_capacity(rows.len().saturating_mul(width));
        for (i, row) in rows.iter().enumerate() {
            if row.len() != width {
                return Err(format!(
                    "background row {i} has {} values; the model takes {width}",
                    row.len()
                ));
            }
            if let Some(j) = row.iter().position(|v| !v.is_finite()) {
                return Err(format!(
                    "background row {i}, column {j}: not a finite number"
                ));
            }
            data.extend_from_slice(row);
        }
        Ok(Background {
            width,
            data,
            source,
        })
    }

    /// Reads `background.json`, checking its feature names against the model's, and keeps at
    /// most `max_rows` rows (the first ones; the source then says so).
    pub fn read(path: &Path, features: &[String], max_rows: usize) -> Result<Background, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut file: BackgroundFile =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        if file.features != features {
            return Err(format!(
                "{}: features {:?} differ from the model card's {:?}",
                path.display(),
                file.features,
                features
            ));
        }
        let mut source = file.source;
        if file.rows.len() > max_rows {
            source = format!("{source}; first {max_rows} of {} rows", file.rows.len());
            file.rows.truncate(max_rows);
        }
        Background::new(features.len(), &file.rows, source)
            .map_err(|e| format!("{}: {e}", path.display()))
    }

    /// An approximate background from per-feature quantile bins (edges `e0 < e1 < ...` and the
    /// share of rows in `(-inf, e0], (e0, e1], ..., (e_last, inf)`): row `k` of `rows` holds every
    /// feature at its `(k + 0.5) / rows` quantile, interpolated inside its bin (the open outer bins
    /// are clamped to the outer edges). It keeps each feature's spread but not how features vary
    /// together.
    pub fn from_quantiles(
        features: &[(Vec<f64>, Vec<f64>)],
        rows: usize,
        source: String,
    ) -> Result<Background, String> {
        let table: Vec<Vec<f64>> = (0..rows)
            .map(|k| {
                let q = (k as f64 + 0.5) / rows as f64;
                features
                    .iter()
                    .map(|(edges, shares)| quantile(edges, shares, q))
                    .collect()
            })
            .collect();
        Background::new(features.len(), &table, source)
    }

    pub fn width(&self) -> usize {
        self.width
    }

    pub fn rows(&self) -> usize {
        self.data.len() / self.width
    }

    pub fn row(&self, i: usize) -> &[f64] {
        &self.data[i * self.width..(i + 1) * self.width]
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// The first `n` rows.
    pub fn first(&self, n: usize) -> Background {
        let n = n.min(self.rows());
        Background {
            width: self.width,
            data: self.data[..n * self.width].to_vec(),
            source: format!("{}; first {n} rows", self.source),
        }
    }

    /// The mean of each column.
    pub fn mean(&self) -> Vec<f64> {
        let mut m = vec![0.0; self.width];
        for i in 0..self.rows() {
            for (acc, v) in m.iter_mut().zip(self.row(i)) {
                *acc += v;
            }
        }
        let n = self.rows() as f64;
        m.into_iter().map(|x| x / n).collect()
    }
}

/// The `q` quantile of a binned distribution (see [`Background::from_quantiles`]).
fn quantile(edges: &[f64], shares: &[f64], q: f64) -> f64 {
    let Some((&first, &last)) = edges.first().zip(edges.last()) else {
        return 0.0;
    };
    let mut below = 0.0;
    for (bin, share) in shares.iter().enumerate() {
        if q <= below + share || bin + 1 == shares.len() {
            let lo = if bin == 0 { first } else { edges[bin - 1] };
            let hi = if bin >= edges.len() { last } else { edges[bin] };
            let t = if *share > 0.0 {
                ((q - below) / share).clamp(0.0, 1.0)
            } else {
                0.5
            };
            return lo + t * (hi - lo);
        }
        below += share;
    }
    last
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_checked() {
        assert!(Background::new(2, &[vec![1.0, 2.0]], "t".into()).is_ok());
        assert!(Background::new(2, &[vec![1.0]], "t".into())
            .unwrap_err()
            .contains("row 0"));
        assert!(Background::new(2, &[vec![1.0, f64::NAN]], "t".into()).is_err());
        assert!(Background::new(2, &[], "t".into()).is_err());
    }

    #[test]
    fn quantile_rows_follow_the_bins() {
        // Uniform on [0, 10] in bins (-inf,2], (2,4], ..., (8, inf) of 0.2 each (outer clamped).
        let edges = vec![2.0, 4.0, 6.0, 8.0];
        let shares = vec![0.2; 5];
        let b = Background::from_quantiles(&[(edges, shares)], 5, "profile".into()).unwrap();
        let col: Vec<f64> = (0..5).map(|i| b.row(i)[0]).collect();
        // Middles of the inner bins; the outer bins collapse onto their edge.
        for (got, want) in col.iter().zip([2.0, 3.0, 5.0, 7.0, 8.0]) {
            assert!((got - want).abs() < 1e-9, "{col:?}");
        }
        assert!((b.mean()[0] - 5.0).abs() < 1e-12);
    }

    #[test]
    fn a_file_with_other_features_is_refused_and_long_files_are_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("background.json");
        std::fs::write(
            &path,
            r#"{"source": "s", "features": ["a", "b"], "rows": [[1, 2], [3, 4], [5, 6]]}"#,
        )
        .unwrap();
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(Background::read(&path, &names(&["a", "c"]), 10)
            .unwrap_err()
            .contains("differ"));
        let b = Background::read(&path, &names(&["a", "b"]), 2).unwrap();
        assert_eq!(b.rows(), 2);
        assert!(b.source().contains("first 2 of 3"));
    }
}
