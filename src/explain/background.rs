//! The background set: the rows whose average output is the base value, and from which the
//! features outside a coalition take their values.
//!
//! Read from `background.json` beside the model (`{"source", "features", "rows"}`, a sample of
//! training rows written by `models/make_models.py`), or, when there is none, built from the
//! reference profile's quantile bins: an approximation (see docs/explain.md). A string column's
//! values are held as codes into the background's [`Vocabulary`].

use std::path::Path;

use serde::Deserialize;

use super::vocabulary::{Value, Vocabulary};

/// `background.json`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BackgroundFile {
    /// Where the rows come from, e.g. "training split, 32 rows sampled with seed 0".
    source: String,
    /// Feature names in column order; must match the model card.
    features: Vec<String>,
    /// Numbers, and strings in the string columns.
    rows: Vec<Vec<Value>>,
}

/// One column's distribution in the reference profile.
#[derive(Debug, Clone, PartialEq)]
pub enum Bins {
    /// Increasing edges and the share of rows in each of the `edges.len() + 1` bins.
    Numbers { edges: Vec<f64>, shares: Vec<f64> },
    /// A categorical column's categories and the share of rows in each.
    Categories {
        categories: Vec<String>,
        shares: Vec<f64>,
    },
}

/// Background rows, row-major (a string column's cells are codes into `vocabulary`).
#[derive(Debug, Clone, PartialEq)]
pub struct Background {
    width: usize,
    data: Vec<f64>,
    source: String,
    vocabulary: Vocabulary,
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
            vocabulary: Vocabulary::numbers(width),
        })
    }

    /// Rows of numbers and strings: column `j` holds strings when `text[j]`, numbers otherwise.
    pub fn with_text(
        text: &[bool],
        rows: &[Vec<Value>],
        source: String,
    ) -> Result<Background, String> {
        let mut vocabulary = Vocabulary::with_text(text);
        let mut coded = Vec::with_capacity(rows.len());
        for (i, row) in rows.iter().enumerate() {
            if row.len() != text.len() {
                return Err(format!(
                    "background row {i} has {} values; the model takes {}",
                    row.len(),
                    text.len()
                ));
            }
            let mut out = Vec::with_capacity(row.len());
            for (j, (value, &is_text)) in row.iter().zip(text).enumerate() {
                out.push(match (value, is_text) {
                    (Value::Text(s), true) => vocabulary.intern(j, s),
                    (Value::Number(v), false) => *v,
                    (_, true) => {
                        return Err(format!("background row {i}, column {j}: expected a string"))
                    }
                    (_, false) => {
                        return Err(format!("background row {i}, column {j}: expected a number"))
                    }
                });
            }
            coded.push(out);
        }
        let mut background = Background::new(text.len(), &coded, source)?;
        background.vocabulary = vocabulary;
        Ok(background)
    }

    /// Reads `background.json`, checking its feature names against the model's (column `j`
    /// holds strings when `text[j]`), and keeps at most `max_rows` rows (the first ones; the
    /// source then says so).
    pub fn read(
        path: &Path,
        features: &[String],
        text: &[bool],
        max_rows: usize,
    ) -> Result<Background, String> {
        let json = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut file: BackgroundFile =
            serde_json::from_str(&json).map_err(|e| format!("{}: {e}", path.display()))?;
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
        Background::with_text(text, &file.rows, source)
            .map_err(|e| format!("{}: {e}", path.display()))
    }

    /// An approximate background from per-feature quantile bins (edges `e0 < e1 < ...` and the
    /// share of rows in `(-inf, e0], (e0, e1], ..., (e_last, inf)`): row `k` of `rows` holds every
    /// feature at its `(k + 0.5) / rows` quantile, interpolated inside its bin (the open outer bins
    /// are clamped to the outer edges). A categorical feature takes the category whose cumulative
    /// share (in the profile's order) first reaches that quantile, so each category fills about
    /// its share of the rows. It keeps each feature's spread but not how features vary together.
    pub fn from_quantiles(
        features: &[Bins],
        rows: usize,
        source: String,
    ) -> Result<Background, String> {
        let table: Vec<Vec<Value>> = (0..rows)
            .map(|k| {
                let q = (k as f64 + 0.5) / rows as f64;
                features
                    .iter()
                    .map(|bins| match bins {
                        Bins::Numbers { edges, shares } => {
                            Value::Number(quantile(edges, shares, q))
                        }
                        Bins::Categories { categories, shares } => {
                            Value::Text(category(categories, shares, q).to_string())
                        }
                    })
                    .collect()
            })
            .collect();
        let text: Vec<bool> = features
            .iter()
            .map(|b| matches!(b, Bins::Categories { .. }))
            .collect();
        Background::with_text(&text, &table, source)
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

    /// The strings of the string columns (the codes in their cells index them).
    pub fn vocabulary(&self) -> &Vocabulary {
        &self.vocabulary
    }

    /// The first `n` rows.
    pub fn first(&self, n: usize) -> Background {
        let n = n.min(self.rows());
        Background {
            width: self.width,
            data: self.data[..n * self.width].to_vec(),
            source: format!("{}; first {n} rows", self.source),
            vocabulary: self.vocabulary.clone(),
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

/// The category at quantile `q` of a categorical distribution (see
/// [`Background::from_quantiles`]); categories are not empty (the profile is checked).
fn category<'a>(categories: &'a [String], shares: &[f64], q: f64) -> &'a str {
    let mut below = 0.0;
    for (c, share) in categories.iter().zip(shares) {
        below += share;
        if q <= below {
            return c;
        }
    }
    categories.last().map_or("", String::as_str)
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
        let b = Background::from_quantiles(&[Bins::Numbers { edges, shares }], 5, "profile".into())
            .unwrap();
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
        assert!(
            Background::read(&path, &names(&["a", "c"]), &[false, false], 10)
                .unwrap_err()
                .contains("differ")
        );
        let b = Background::read(&path, &names(&["a", "b"]), &[false, false], 2).unwrap();
        assert_eq!(b.rows(), 2);
        assert!(b.source().contains("first 2 of 3"));
    }

    #[test]
    fn string_columns_are_read_as_codes_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("background.json");
        std::fs::write(
            &path,
            r#"{"source": "s", "features": ["city", "n"], "rows": [["rome", 2], ["oslo", 3], ["rome", 4]]}"#,
        )
        .unwrap();
        let names = vec!["city".to_string(), "n".to_string()];
        let b = Background::read(&path, &names, &[true, false], 10).unwrap();
        assert_eq!(b.vocabulary().strings(0), ["rome", "oslo"]);
        let col: Vec<f64> = (0..3).map(|i| b.row(i)[0]).collect();
        assert_eq!(col, [0.0, 1.0, 0.0]);
        assert_eq!(b.row(2)[1], 4.0);
        let e = Background::read(&path, &names, &[false, false], 10).unwrap_err();
        assert!(e.contains("row 0, column 0: expected a number"), "{e}");
        let e = Background::read(&path, &names, &[true, true], 10).unwrap_err();
        assert!(e.contains("column 1: expected a string"), "{e}");
    }

    #[test]
    fn categories_fill_rows_in_proportion_to_their_shares() {
        let bins = Bins::Categories {
            categories: vec!["a".into(), "b".into(), "c".into()],
            shares: vec![0.5, 0.36, 0.14],
        };
        let b = Background::from_quantiles(&[bins], 10, "profile".into()).unwrap();
        let got: Vec<&str> = (0..10)
            .map(|i| b.vocabulary().strings(0)[b.row(i)[0] as usize].as_str())
            .collect();
        assert_eq!(got, ["a", "a", "a", "a", "a", "b", "b", "b", "b", "c"]);
    }
}
