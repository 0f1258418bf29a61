//! One open Parquet capture file: written under a hidden `.…parquet.tmp` name, row groups
//! flushed periodically, closed (footer written, fsync) and renamed to its final name. A reader
//! never sees a half-written `.parquet` file: the rename is the commit. Also, for every format,
//! start-up clean-up of files a killed process left open, and the retention limit.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use arrow_schema::SchemaRef;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::errors::ParquetError;
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;

use super::record::{ColumnType, Columns};
use super::schema::{
    feedback_rows, feedback_schema, prediction_rows, predictions_schema, FEATURE_PREFIX,
};
use super::sink::{commit, Rows, SinkFile};

/// Suffix of a file being written (any format).
pub const TMP_SUFFIX: &str = ".tmp";
/// Final suffixes of closed capture files.
pub const CLOSED_SUFFIXES: [&str; 2] = [".parquet", ".jsonl.gz"];

/// An open, growing Parquet file.
pub struct OpenFile {
    tmp: PathBuf,
    path: PathBuf,
    schema: SchemaRef,
    writer: ArrowWriter<File>,
    opened: Instant,
}

impl OpenFile {
    /// Creates `dir/.<name>.parquet.tmp`, to become `dir/<name>.parquet`: a predictions file
    /// with these feature columns, or a feedback file.
    pub fn create(dir: &Path, name: &str, columns: Option<&Columns>) -> io::Result<OpenFile> {
        let schema = match columns {
            Some(columns) => predictions_schema(columns),
            None => feedback_schema(),
        };
        let tmp = dir.join(format!(".{name}.parquet{TMP_SUFFIX}"));
        let path = dir.join(format!("{name}.parquet"));
        let file = File::create(&tmp)?;
        // Dictionaries only where values repeat (model name, class label, string features,
        // which are mostly categories): hashing every float of every row into a dictionary
        // the writer then abandons is the costliest part of encoding captured features.
        let mut props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_dictionary_enabled(false)
            .set_column_dictionary_enabled(ColumnPath::from("model"), true)
            .set_column_dictionary_enabled(ColumnPath::from("prediction"), true)
            .set_column_dictionary_enabled(ColumnPath::from("label"), true);
        for (n, t) in columns
            .map_or(&[][..], |c| c.names())
            .iter()
            .zip(columns.map_or(&[][..], |c| c.types()))
        {
            if *t == ColumnType::Utf8 {
                let path = ColumnPath::from(format!("{FEATURE_PREFIX}{n}"));
                props = props.set_column_dictionary_enabled(path, true);
            }
        }
        let props = props.build();
        let writer = ArrowWriter::try_new(file, schema.clone(), Some(props)).map_err(io_error)?;
        Ok(OpenFile {
            tmp,
            path,
            schema,
            writer,
            opened: Instant::now(),
        })
    }
}

impl SinkFile for OpenFile {
    /// Writes rows as one row group, on disk when this returns (not yet readable: no footer).
    fn append(&mut self, rows: Rows<'_>) -> io::Result<()> {
        let batch = match rows {
            Rows::Predictions(b) => prediction_rows(&self.schema, b),
            Rows::Feedback(b) => feedback_rows(&self.schema, b),
        }
        .map_err(io::Error::other)?;
        self.writer.write(&batch).map_err(io_error)?;
        self.writer.flush().map_err(io_error)
    }

    fn bytes(&self) -> u64 {
        self.writer.bytes_written() as u64
    }

    fn opened(&self) -> Instant {
        self.opened
    }

    /// Writes the footer, syncs and renames to the final name.
    fn close(self: Box<Self>) -> io::Result<(PathBuf, u64)> {
        let file = self.writer.into_inner().map_err(io_error)?;
        let bytes = commit(file, &self.tmp, &self.path)?;
        Ok((self.path, bytes))
    }
}

fn io_error(e: ParquetError) -> io::Error {
    io::Error::other(e)
}

/// Every file under `root` (recursively) whose name passes `keep`.
fn files_under(root: &Path, keep: &dyn Fn(&str) -> bool, out: &mut Vec<(PathBuf, fs::Metadata)>) {
    let Ok(entries) = fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(meta) = entry.metadata() else { continue };
        let path = entry.path();
        if meta.is_dir() {
            files_under(&path, keep, out);
        } else if entry.file_name().to_str().is_some_and(keep) {
            out.push((path, meta));
        }
    }
}

/// Removes the unfinished files a killed process of this replica left behind (they have no
/// footer and cannot be read). Returns how many.
pub fn remove_leftovers(root: &Path, replica: &str) -> usize {
    let prefix = format!(".{replica}-");
    let mut found = Vec::new();
    files_under(
        root,
        &|n| {
            // `.<replica>-<seq>.<ext>.tmp`: the digits keep replica `pod` off `pod-a`'s files.
            let seq = n
                .strip_prefix(&prefix)
                .and_then(|rest| rest.split('.').next());
            seq.is_some_and(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                && n.ends_with(TMP_SUFFIX)
        },
        &mut found,
    );
    found
        .iter()
        .filter(|(p, _)| fs::remove_file(p).is_ok())
        .count()
}

/// Deletes the oldest closed files until the closed files under `root` take at most
/// `max_bytes`. Returns how many were deleted.
pub fn enforce_retention(root: &Path, max_bytes: u64) -> usize {
    let mut found = Vec::new();
    let closed = |n: &str| !n.starts_with('.') && CLOSED_SUFFIXES.iter().any(|s| n.ends_with(s));
    files_under(root, &closed, &mut found);
    let mut total: u64 = found.iter().map(|(_, m)| m.len()).sum();
    if total <= max_bytes {
        return 0;
    }
    found.sort_by_key(|(_, m)| m.modified().unwrap_or(SystemTime::UNIX_EPOCH));
    let mut deleted = 0;
    for (path, meta) in found {
        if total <= max_bytes {
            break;
        }
        if fs::remove_file(&path).is_ok() {
            total = total.saturating_sub(meta.len());
            deleted += 1;
        }
    }
    deleted
}
