//! Feature attributions: why a model gave the output it gave. Pure math, no I/O besides reading
//! a background file, no HTTP and no engine: the caller evaluates the rows built here (through
//! the worker pool) and hands the outputs back.
//!
//! For one instance `x` and a set of [`Coalitions`], [`rows`] builds every perturbed row (for
//! each coalition, one row per background row: `x` where the coalition holds the feature, the
//! background row elsewhere); the caller runs them through the model in chunks, [`means`] averages
//! each coalition's outputs over the background, and [`Coalitions::attribute`] turns one output
//! column's coalition values into attributions.

mod background;
mod coalitions;
mod linalg;
mod occlusion;
mod rng;
#[cfg(test)]
mod tests;
mod tokens;
mod vocabulary;

use std::ops::Range;

pub use background::{Background, Bins};
pub use coalitions::{binomial, Attribution, Coalitions, Method};
pub use occlusion::Occlusion;
pub use tokens::Tokens;
pub use vocabulary::{Codes, Value, Vocabulary};

/// Appends the perturbed rows of coalitions `range` for instance `x` to `out`: for each
/// coalition, `background.rows()` rows of `x.len()` values.
pub fn rows(
    coalitions: &Coalitions,
    range: Range<usize>,
    x: &[f64],
    background: &Background,
    out: &mut Vec<f64>,
) {
    for k in range {
        let mask = coalitions.mask(k);
        for b in 0..background.rows() {
            let row = background.row(b);
            out.extend(
                mask.iter()
                    .zip(x.iter().zip(row))
                    .map(|(&take, (&xi, &bi))| if take { xi } else { bi }),
            );
        }
    }
}

/// Averages model outputs (`columns` values per row, `per` consecutive rows per coalition) over
/// each coalition's rows and appends one `columns`-wide row per coalition to `out`.
pub fn means(outputs: &[f64], columns: usize, per: usize, out: &mut Vec<f64>) {
    let scale = 1.0 / per as f64;
    for block in outputs.chunks(columns * per) {
        let mut acc = vec![0.0; columns];
        for row in block.chunks(columns) {
            for (a, v) in acc.iter_mut().zip(row) {
                *a += v;
            }
        }
        out.extend(acc.into_iter().map(|a| a * scale));
    }
}

/// Column `column` of a table with `columns` values per row.
pub fn column(table: &[f64], columns: usize, column: usize) -> Vec<f64> {
    table
        .iter()
        .skip(column)
        .step_by(columns)
        .copied()
        .collect()
}

/// Explains `x` with a model given as a function (rows in, `columns` outputs per row out),
/// evaluating `chunk` coalitions per call: the synchronous path for tests and benchmarks.
/// Returns each column's coalition values (`coalitions.len() x columns`).
pub fn evaluate_with(
    model: &mut dyn FnMut(&[f64]) -> Vec<f64>,
    columns: usize,
    coalitions: &Coalitions,
    background: &Background,
    x: &[f64],
    chunk: usize,
) -> Vec<f64> {
    let mut table = Vec::with_capacity(coalitions.len() * columns);
    let mut buf = Vec::new();
    let mut start = 0;
    while start < coalitions.len() {
        let end = (start + chunk.max(1)).min(coalitions.len());
        buf.clear();
        rows(coalitions, start..end, x, background, &mut buf);
        let out = model(&buf);
        means(&out, columns, background.rows(), &mut table);
        start = end;
    }
    table
}
