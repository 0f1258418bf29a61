//! Helpers shared by the capture tests (capture*.rs): servers writing into a capture directory,
//! the files found there, Parquet files read back, and `infera export` run on them.

use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use infera::capture::{export, ExportOptions, ExportSummary};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::common::{loaded, shipped_models};

/// `--capture-dir dir` plus `extra`.
pub fn capture_flags<'a>(dir: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut flags = vec!["--capture-dir", dir.to_str().unwrap()];
    flags.extend_from_slice(extra);
    flags
}

/// A replica named `name` on the shipped models, capturing into `dir`.
pub fn replica(dir: &Path, name: &str, extra: &[&str]) -> infera::server::Infera {
    let mut flags = capture_flags(dir, &["--capture-replica", name]);
    flags.extend_from_slice(extra);
    loaded(&shipped_models(), &flags)
}

/// Every file under `dir`, sorted.
pub fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).unwrap().flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}

/// The predictions files of `model` (not its feedback).
pub fn prediction_files(dir: &Path, model: &str) -> Vec<PathBuf> {
    files(dir)
        .into_iter()
        .filter(|f| {
            let s = f.to_str().unwrap();
            s.contains(&format!("/{model}/")) && !s.contains("/feedback/")
        })
        .collect()
}

/// Every record batch of a Parquet file.
pub fn batches(path: &Path) -> Vec<RecordBatch> {
    let file = std::fs::File::open(path).unwrap();
    ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap()
        .map(|b| b.unwrap())
        .collect()
}

/// A small Parquet file's only record batch.
pub fn read(path: &Path) -> RecordBatch {
    let mut all = batches(path);
    assert_eq!(all.len(), 1, "one batch expected in {}", path.display());
    all.remove(0)
}

/// `infera export` of `model` from `dir` (no card labels), and its output's only batch.
pub fn export_model(dir: &Path, model: &str) -> (ExportSummary, RecordBatch) {
    let out = dir.join(format!("{model}-train.parquet"));
    let summary = export(&ExportOptions {
        capture: dir.to_path_buf(),
        model: model.into(),
        out: out.clone(),
        since_ms: None,
        labels: vec![],
    })
    .unwrap();
    (summary, read(&out))
}
