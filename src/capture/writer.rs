//! The capture writer thread: takes queued records, appends them to one open file per
//! partition (`<model>/<version>/date=…` or `<model>/feedback/date=…`), flushes a row group
//! every `flush_every`, rotates files by size and age, applies retention, and on shutdown
//! drains the queue and closes every file.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_schema::SchemaRef;
use crossbeam_channel::{select, Receiver};

use super::file::{enforce_retention, OpenFile};
use super::record::{FeedbackBatch, PredictionBatch, Record};
use super::schema::{feedback_rows, feedback_schema, prediction_rows, predictions_schema};
use super::time::{date_of, now_ms};
use super::{CaptureObserver, CaptureSettings};

/// Where a record goes: one open file per key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    model: String,
    /// Version number, or None for feedback.
    version: Option<u64>,
    date: String,
}

impl Key {
    fn dir(&self, root: &std::path::Path) -> PathBuf {
        let sub = match self.version {
            Some(v) => v.to_string(),
            None => "feedback".into(),
        };
        root.join(&self.model)
            .join(sub)
            .join(format!("date={}", self.date))
    }
}

/// Rows waiting for the next row group.
enum Pending {
    Predictions(Vec<PredictionBatch>),
    Feedback(Vec<FeedbackBatch>),
}

struct Partition {
    file: OpenFile,
    schema: SchemaRef,
    /// Feature names the file was opened with: a batch with other names goes to a new file.
    names: Option<Arc<[String]>>,
    pending: Pending,
    pending_rows: usize,
}

pub struct Writer {
    settings: CaptureSettings,
    observer: Arc<dyn CaptureObserver>,
    open: HashMap<Key, Partition>,
    /// Strictly increasing file sequence (milliseconds at open, bumped on collision).
    seq: i64,
    last_tick: Instant,
}

/// Rows buffered before a row group is written regardless of time.
const ROW_GROUP_ROWS: usize = 16_384;

impl Writer {
    pub fn new(settings: CaptureSettings, observer: Arc<dyn CaptureObserver>) -> Writer {
        Writer {
            settings,
            observer,
            open: HashMap::new(),
            seq: 0,
            last_tick: Instant::now(),
        }
    }

    /// Runs until `stop` fires (or every sender is gone), then drains and closes.
    pub fn run(mut self, records: Receiver<Record>, stop: Receiver<()>) {
        let tick = self.settings.flush_every.min(Duration::from_millis(200));
        loop {
            select! {
                recv(records) -> r => match r {
                    Ok(record) => self.take(record),
                    Err(_) => break,
                },
                recv(stop) -> _ => break,
                default(tick) => {},
            }
            if self.last_tick.elapsed() >= self.settings.flush_every {
                self.tick();
            }
        }
        while let Ok(record) = records.try_recv() {
            self.take(record);
        }
        let keys: Vec<Key> = self.open.keys().cloned().collect();
        for key in keys {
            self.close(&key);
        }
    }

    fn take(&mut self, record: Record) {
        let rows = record.rows();
        let time = match &record {
            Record::Predictions(b) => b.time_ms,
            Record::Feedback(b) => b.time_ms,
        };
        let key = Key {
            model: record.model().to_string(),
            version: match &record {
                Record::Predictions(b) => Some(b.version),
                Record::Feedback(_) => None,
            },
            date: date_of(time),
        };
        if let Record::Predictions(b) = &record {
            let same = self
                .open
                .get(&key)
                .and_then(|p| p.names.as_ref())
                .is_none_or(|n| **n == *b.names);
            if !same {
                self.close(&key);
            }
        }
        if !self.open.contains_key(&key) {
            match self.open_partition(&key, &record) {
                Ok(p) => {
                    self.open.insert(key.clone(), p);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "capture: cannot open a file; records dropped");
                    self.observer.write_failed(rows);
                    return;
                }
            }
        }
        let Some(p) = self.open.get_mut(&key) else {
            return;
        };
        match (&mut p.pending, record) {
            (Pending::Predictions(v), Record::Predictions(b)) => v.push(b),
            (Pending::Feedback(v), Record::Feedback(b)) => v.push(b),
            _ => return,
        }
        p.pending_rows += rows;
        if p.pending_rows >= ROW_GROUP_ROWS {
            self.flush(&key);
            self.rotate_if_due(&key);
        }
    }

    fn open_partition(&mut self, key: &Key, record: &Record) -> std::io::Result<Partition> {
        self.seq = self.seq.max(now_ms()).saturating_add(1);
        let name = format!("{}-{}", self.settings.replica, self.seq);
        let dir = key.dir(&self.settings.dir);
        let (schema, pending, names) = match record {
            Record::Predictions(b) => (
                predictions_schema(&b.names),
                Pending::Predictions(Vec::new()),
                Some(b.names.clone()),
            ),
            Record::Feedback(_) => (feedback_schema(), Pending::Feedback(Vec::new()), None),
        };
        let file = OpenFile::create(&dir, &name, schema.clone())?;
        Ok(Partition {
            file,
            schema,
            names,
            pending,
            pending_rows: 0,
        })
    }

    /// Writes a partition's pending rows as one row group.
    fn flush(&mut self, key: &Key) {
        let Some(p) = self.open.get_mut(key) else {
            return;
        };
        if p.pending_rows == 0 {
            return;
        }
        let rows = p.pending_rows;
        let batch = match &mut p.pending {
            Pending::Predictions(v) => {
                let b = prediction_rows(&p.schema, v);
                v.clear();
                b
            }
            Pending::Feedback(v) => {
                let b = feedback_rows(&p.schema, v);
                v.clear();
                b
            }
        };
        p.pending_rows = 0;
        let written = batch
            .map_err(std::io::Error::other)
            .and_then(|b| p.file.append(&b));
        match written {
            Ok(()) => self.observer.written(rows),
            Err(e) => {
                tracing::warn!(error = %e, "capture: writing a row group failed; rows dropped");
                self.observer.write_failed(rows);
            }
        }
    }

    /// Closes a partition's file once it is past the size or age limit.
    fn rotate_if_due(&mut self, key: &Key) {
        let due = self.open.get(key).is_some_and(|p| {
            p.file.bytes() >= self.settings.max_file_bytes
                || p.file.opened.elapsed() >= self.settings.max_file_age
        });
        if due {
            self.close(key);
        }
    }

    /// Flushes every partition and closes the files past their size or age.
    fn tick(&mut self) {
        self.last_tick = Instant::now();
        let keys: Vec<Key> = self.open.keys().cloned().collect();
        for key in &keys {
            self.flush(key);
            self.rotate_if_due(key);
        }
    }

    fn close(&mut self, key: &Key) {
        self.flush(key);
        let Some(p) = self.open.remove(key) else {
            return;
        };
        match p.file.close() {
            Ok((path, bytes)) => {
                tracing::debug!(path = %path.display(), bytes, "capture: file closed");
                self.observer.file_closed(bytes);
            }
            Err(e) => {
                tracing::warn!(error = %e, "capture: closing a file failed");
                self.observer.write_failed(0);
            }
        }
        let deleted = enforce_retention(&self.settings.dir, self.settings.max_total_bytes);
        if deleted > 0 {
            self.observer.files_deleted(deleted);
        }
    }
}
