//! The capture writer thread: takes queued records, appends them to one open file per
//! partition (`<model>/<version>/date=…` or `<model>/feedback/date=…`), flushes the buffered
//! rows every `flush_every`, rotates files by size and age, applies retention, and on shutdown
//! drains the queue and closes every file. The thread runs at a lower scheduling priority than
//! the request threads: under saturation it falls behind and the queue drops (counted) instead
//! of taking CPU from requests.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, TryRecvError};

use super::file::enforce_retention;
use super::file::OpenFile;
use super::jsonl::JsonlFile;
use super::record::{Columns, FeedbackBatch, PredictionBatch, Record};
use super::sink::{Rows, SinkFile};
use super::spare::Spares;
use super::time::{date_of, now_ms};
use super::{CaptureObserver, CaptureSettings, Format, QueueBudget};

/// Where a record goes: one open file per key.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Key {
    model: String,
    /// Version number, or None for feedback.
    version: Option<u64>,
    /// Days since the epoch (UTC) of the record's time.
    day: i64,
}

impl Key {
    fn matches(&self, model: &str, version: Option<u64>, day: i64) -> bool {
        self.day == day && self.version == version && self.model == model
    }

    fn dir(&self, root: &std::path::Path) -> std::path::PathBuf {
        let sub = match self.version {
            Some(v) => v.to_string(),
            None => "feedback".into(),
        };
        let date = date_of(self.day * 86_400_000);
        root.join(&self.model)
            .join(sub)
            .join(format!("date={date}"))
    }
}

/// Rows waiting for the next flush.
enum Pending {
    Predictions(Vec<PredictionBatch>),
    Feedback(Vec<FeedbackBatch>),
}

struct Partition {
    key: Key,
    format: Format,
    file: Box<dyn SinkFile>,
    /// Feature columns the file was opened with: a batch with other names or types goes to a
    /// new file.
    columns: Option<Arc<Columns>>,
    pending: Pending,
    pending_rows: usize,
}

pub struct Writer {
    settings: CaptureSettings,
    /// The capture directory.
    root: std::path::PathBuf,
    observer: Arc<dyn CaptureObserver>,
    /// The queue's bound: room is given back as records are taken.
    budget: Arc<QueueBudget>,
    /// Where written records' buffers go back to the request path.
    spares: Arc<Spares>,
    /// Open partitions (a handful: models x versions x days), searched linearly so that a
    /// record needs no allocation to find its file.
    open: Vec<Partition>,
    /// Strictly increasing file sequence (milliseconds at open, bumped on collision).
    seq: i64,
    last_tick: Instant,
}

/// How often the writer takes what is queued (at most; `flush_every` if shorter). At 20,000
/// requests per second this is 1,000 messages, well within the default queue of 65,536.
const DRAIN_EVERY: Duration = Duration::from_millis(50);

/// Rows buffered before they are written regardless of time.
pub(super) const ROW_GROUP_ROWS: usize = 16_384;

/// The nice value of the writer thread (0 is the request threads'; 19 the lowest priority).
/// At 5 the writer still yields to the request threads (about a third of their CPU weight)
/// but is not starved by other busy processes the way nice 10 was (see docs/benchmarks.md).
const WRITER_NICE: i32 = 5;

impl Writer {
    pub fn new(
        settings: CaptureSettings,
        root: std::path::PathBuf,
        observer: Arc<dyn CaptureObserver>,
        budget: Arc<QueueBudget>,
        spares: Arc<Spares>,
    ) -> Writer {
        Writer {
            settings,
            root,
            observer,
            budget,
            spares,
            open: Vec::new(),
            seq: 0,
            last_tick: Instant::now(),
        }
    }

    /// Runs until `stop` fires (or every sender is gone), then drains and closes.
    ///
    /// The thread never blocks on the record queue: it sleeps on `stop` for [`DRAIN_EVERY`],
    /// then takes everything queued. A blocked receiver would make every request's `try_send`
    /// wake this thread (a futex call and a context switch per request); with nobody waiting,
    /// a push is a few atomic operations.
    pub fn run(mut self, records: Receiver<Record>, stop: Receiver<()>) {
        lower_priority();
        let nap = self.settings.flush_every.min(DRAIN_EVERY);
        loop {
            let stopping = !matches!(stop.recv_timeout(nap), Err(RecvTimeoutError::Timeout));
            let mut gone = false;
            loop {
                match records.try_recv() {
                    Ok(record) => {
                        self.budget.give_back(record.bytes());
                        self.take(record)
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        gone = true;
                        break;
                    }
                }
            }
            if stopping || gone {
                break;
            }
            if self.last_tick.elapsed() >= self.settings.flush_every {
                self.tick();
            }
        }
        while !self.open.is_empty() {
            self.close(self.open.len() - 1);
        }
    }

    fn take(&mut self, record: Record) {
        let rows = record.rows();
        let (time, version, format) = match &record {
            Record::Predictions(b) => (b.time_ms, Some(b.version), b.format),
            Record::Feedback(b) => (b.time_ms, None, self.settings.format),
        };
        let day = time.div_euclid(86_400_000);
        let found = self
            .open
            .iter()
            .position(|p| p.key.matches(record.model(), version, day));
        let reusable = found.filter(|&i| {
            let p = &self.open[i];
            let same_names = match (&record, &p.columns) {
                (Record::Predictions(b), Some(c)) => {
                    Arc::ptr_eq(c, &b.columns) || c.same_schema(&b.columns)
                }
                _ => true,
            };
            same_names && p.format == format
        });
        let index = match (found, reusable) {
            (_, Some(i)) => i,
            (stale, None) => {
                if let Some(i) = stale {
                    self.close(i);
                }
                let key = Key {
                    model: record.model().to_string(),
                    version,
                    day,
                };
                match self.open_partition(key, format, &record) {
                    Ok(p) => {
                        self.open.push(p);
                        self.open.len() - 1
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "capture: cannot open a file; records dropped");
                        self.observer.write_failed(rows);
                        return;
                    }
                }
            }
        };
        let p = &mut self.open[index];
        match (&mut p.pending, record) {
            (Pending::Predictions(v), Record::Predictions(b)) => v.push(b),
            (Pending::Feedback(v), Record::Feedback(b)) => v.push(b),
            _ => return,
        }
        p.pending_rows += rows;
        if p.pending_rows >= ROW_GROUP_ROWS {
            self.flush(index);
            if self.due(index) {
                self.close(index);
            }
        }
    }

    fn open_partition(
        &mut self,
        key: Key,
        format: Format,
        record: &Record,
    ) -> std::io::Result<Partition> {
        self.seq = self.seq.max(now_ms()).saturating_add(1);
        let name = format!("{}-{}", self.settings.replica, self.seq);
        let dir = key.dir(&self.root);
        let (pending, columns) = match record {
            Record::Predictions(b) => (Pending::Predictions(Vec::new()), Some(b.columns.clone())),
            Record::Feedback(_) => (Pending::Feedback(Vec::new()), None),
        };
        let file = create(format, &dir, &name, columns.as_deref())?;
        Ok(Partition {
            key,
            format,
            file,
            columns,
            pending,
            pending_rows: 0,
        })
    }

    /// Writes a partition's pending rows (a row group, or compressed lines).
    fn flush(&mut self, index: usize) {
        let Some(p) = self.open.get_mut(index) else {
            return;
        };
        if p.pending_rows == 0 {
            return;
        }
        let rows = std::mem::take(&mut p.pending_rows);
        let written = match &mut p.pending {
            Pending::Predictions(v) => {
                let r = p.file.append(Rows::Predictions(v));
                v.drain(..).for_each(|b| self.spares.give(b));
                r
            }
            Pending::Feedback(v) => {
                let r = p.file.append(Rows::Feedback(v));
                v.clear();
                r
            }
        };
        match written {
            Ok(()) => self.observer.written(rows),
            Err(e) => {
                tracing::warn!(error = %e, "capture: writing rows failed; rows dropped");
                self.observer.write_failed(rows);
            }
        }
    }

    /// Whether a partition's file is past the size or age limit.
    fn due(&self, index: usize) -> bool {
        self.open.get(index).is_some_and(|p| {
            p.file.bytes() >= self.settings.max_file_bytes
                || p.file.opened().elapsed() >= self.settings.max_file_age
        })
    }

    /// Flushes every partition and closes the files past their size or age.
    fn tick(&mut self) {
        self.last_tick = Instant::now();
        for index in (0..self.open.len()).rev() {
            self.flush(index);
            if self.due(index) {
                self.close(index);
            }
        }
    }

    fn close(&mut self, index: usize) {
        self.flush(index);
        if index >= self.open.len() {
            return;
        }
        let p = self.open.swap_remove(index);
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
        let deleted = enforce_retention(&self.root, self.settings.max_total_bytes);
        if deleted > 0 {
            self.observer.files_deleted(deleted);
        }
    }
}

/// Creates `dir/.<name>.<ext>.tmp` (and `dir`): a predictions file when `columns` (the
/// feature columns) is given, else a feedback file.
fn create(
    format: Format,
    dir: &std::path::Path,
    name: &str,
    columns: Option<&Columns>,
) -> std::io::Result<Box<dyn SinkFile>> {
    std::fs::create_dir_all(dir)?;
    Ok(match format {
        Format::Parquet => Box::new(OpenFile::create(dir, name, columns)?),
        Format::Jsonl => Box::new(JsonlFile::create(dir, name, columns)?),
    })
}

/// Lowers the calling thread's scheduling priority (Linux: `setpriority` on a thread id
/// affects that thread only). Best effort: a refusal leaves the thread at normal priority.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: plain system calls on the calling thread's own id; no memory is passed.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        if libc::setpriority(libc::PRIO_PROCESS, tid, WRITER_NICE) != 0 {
            tracing::debug!("capture: could not lower the writer thread's priority");
        }
    }
}
