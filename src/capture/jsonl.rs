//! One open JSON-lines capture file, gzip-compressed (`<name>.jsonl.gz`): one JSON object per
//! row with the same fields as the Parquet files (`time` in milliseconds since the epoch, one
//! `feature_<name>` key per feature: a JSON number, integer or string by the column's type;
//! nulls written out so every line has the same keys). Same
//! rules as Parquet: written under a hidden `.tmp` name, flushed (a gzip sync flush) with every
//! batch of rows, finished, fsynced and renamed on close.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use flate2::write::GzEncoder;
use flate2::Compression;

use super::file::TMP_SUFFIX;
use super::record::{Columns, FeedbackBatch, PredictionBatch, Value};
use super::schema::FEATURE_PREFIX;
use super::sink::{commit, Rows, SinkFile};

/// A file that counts the bytes written to it.
struct Counted {
    file: File,
    bytes: u64,
}

impl Write for Counted {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

pub struct JsonlFile {
    tmp: PathBuf,
    path: PathBuf,
    out: GzEncoder<Counted>,
    /// `,"feature_<name>":` per feature, escaped once.
    keys: Vec<Vec<u8>>,
    /// One batch of lines, compressed in one call.
    line: Vec<u8>,
    opened: Instant,
}

impl JsonlFile {
    /// Creates `dir/.<name>.jsonl.gz.tmp`, to become `dir/<name>.jsonl.gz`.
    pub fn create(dir: &Path, name: &str, columns: Option<&Columns>) -> io::Result<JsonlFile> {
        let tmp = dir.join(format!(".{name}.jsonl.gz{TMP_SUFFIX}"));
        let path = dir.join(format!("{name}.jsonl.gz"));
        let file = File::create(&tmp)?;
        let keys = columns
            .map_or(&[][..], Columns::names)
            .iter()
            .map(|n| {
                let mut k = b",".to_vec();
                let _ = serde_json::to_writer(&mut k, &format!("{FEATURE_PREFIX}{n}"));
                k.push(b':');
                k
            })
            .collect();
        Ok(JsonlFile {
            tmp,
            path,
            // Level 1: capture runs beside the requests; speed matters more than the last
            // few percent of size.
            out: GzEncoder::new(Counted { file, bytes: 0 }, Compression::fast()),
            keys,
            line: Vec::new(),
            opened: Instant::now(),
        })
    }

    fn predictions(&mut self, batches: &[PredictionBatch]) {
        let out = &mut self.line;
        for b in batches {
            let f = b.fields;
            let same_width = b.columns.width() == self.keys.len();
            for (row, o) in b.outputs.iter().enumerate() {
                out.extend_from_slice(b"{\"id\":");
                match b.id.as_deref().filter(|_| f.ids) {
                    Some(id) => json(out, &format!("{id}/{row}")),
                    None => out.extend_from_slice(b"null"),
                }
                key(out, "time", &f.timestamps.then_some(b.time_ms));
                key(out, "model", &*b.model);
                key(out, "version", &f.version.then_some(b.version));
                key(out, "latency_seconds", &f.latency.then_some(b.latency));
                let shown = f.outputs;
                key(out, "prediction", &o.label.as_deref().filter(|_| shown));
                key(out, "prediction_value", &o.value.filter(|_| shown));
                key(out, "confidence", &o.confidence.filter(|_| shown));
                for (j, k) in self.keys.iter().enumerate() {
                    out.extend_from_slice(k);
                    match b.value(row, j) {
                        _ if !same_width => out.extend_from_slice(b"null"),
                        Value::Null => out.extend_from_slice(b"null"),
                        Value::Float(v) => json(out, &v),
                        Value::Int(v) => json(out, &v),
                        Value::Text(v) => json(out, v),
                    }
                }
                out.extend_from_slice(b"}\n");
            }
        }
    }

    fn feedback(&mut self, batches: &[FeedbackBatch]) {
        let out = &mut self.line;
        for b in batches {
            for item in &b.items {
                out.extend_from_slice(b"{\"id\":");
                json(out, &item.id);
                key(out, "time", &b.time_ms);
                key(out, "model", &b.model);
                key(out, "label", &item.label);
                key(out, "class_index", &item.class_index);
                key(out, "value", &item.value);
                out.extend_from_slice(b"}\n");
            }
        }
    }
}

/// Appends a JSON value (non-finite floats become null, as in serde_json).
fn json<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    if serde_json::to_writer(&mut *out, value).is_err() {
        out.extend_from_slice(b"null");
    }
}

/// Appends `,"name":value` (`name` needs no escaping).
fn key<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, name: &str, value: &T) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
    json(out, value);
}

impl SinkFile for JsonlFile {
    fn append(&mut self, rows: Rows<'_>) -> io::Result<()> {
        self.line.clear();
        match rows {
            Rows::Predictions(b) => self.predictions(b),
            Rows::Feedback(b) => self.feedback(b),
        }
        self.out.write_all(&self.line)?;
        // A sync flush: every complete line so far is on disk and decompressible.
        self.out.flush()
    }

    fn bytes(&self) -> u64 {
        self.out.get_ref().bytes
    }

    fn opened(&self) -> Instant {
        self.opened
    }

    fn close(self: Box<Self>) -> io::Result<(PathBuf, u64)> {
        let counted = self.out.finish()?;
        let bytes = commit(counted.file, &self.tmp, &self.path)?;
        Ok((self.path, bytes))
    }
}
