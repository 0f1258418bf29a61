//! What the writer appends rows to: one open capture file, Parquet or gzip-compressed JSON
//! lines. Both follow the same rules: written under a hidden `.<name>.<ext>.tmp` name, closed
//! (completed, fsynced) and renamed to `<name>.<ext>`, so a file with its final name is always
//! complete.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::record::{FeedbackBatch, PredictionBatch};

/// Rows to append, all of one partition.
pub enum Rows<'a> {
    Predictions(&'a [PredictionBatch]),
    Feedback(&'a [FeedbackBatch]),
}

/// An open, growing capture file.
pub trait SinkFile: Send {
    /// Writes rows (on disk when this returns; readable only once closed).
    fn append(&mut self, rows: Rows<'_>) -> io::Result<()>;
    /// Bytes written so far.
    fn bytes(&self) -> u64;
    fn opened(&self) -> Instant;
    /// Completes the file, syncs it and renames it to its final name. Returns the final path
    /// and the file's size.
    fn close(self: Box<Self>) -> io::Result<(PathBuf, u64)>;
}

/// Syncs a finished temporary file, renames it to its final name and syncs the directory (so
/// the rename itself is durable). Returns the size.
pub fn commit(file: std::fs::File, tmp: &Path, path: &Path) -> io::Result<u64> {
    file.sync_all()?;
    let bytes = file.metadata()?.len();
    drop(file);
    std::fs::rename(tmp, path)?;
    if let Some(dir) = path.parent() {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(bytes)
}
