//! Data capture for retraining: what the model saw, what it said and what turned out to be
//! true, written to rotating Parquet files by a writer thread, and `infera export`, which joins
//! them into one training-ready file. See docs/capture.md.
//!
//! The request path only samples and tries to push one message per request into a bounded
//! queue: a full queue drops the message and counts it; capture never slows or fails a request.
//! No HTTP types here; no dependency on `inference` (it hands plain records in).

mod cloudevents;
mod export;
mod export_read;
mod file;
mod jsonl;
mod record;
mod schema;
mod sink;
mod spare;
mod time;
mod writer;

use std::cell::Cell;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{bounded, unbounded, Sender};

pub use cloudevents::{HttpSinkSettings, SinkUrl, REQUEST_TYPE, RESPONSE_TYPE};
pub use export::{export, ExportOptions, ExportSummary};
pub use record::{
    CapturedOutput, ColumnType, Columns, FeedbackBatch, FeedbackItem, PredictionBatch, Record,
    Value,
};
pub use schema::{FEATURE_NAMES_KEY, FEATURE_PREFIX, FEATURE_TYPES_KEY, KIND_KEY};
pub use spare::{fill_outputs, Answer, Spare};
pub use time::{date_of, now_ms, parse_date_ms};

/// Which fields are written (unselected ones are null columns, so every file has one schema).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fields {
    pub inputs: bool,
    pub outputs: bool,
    pub ids: bool,
    pub timestamps: bool,
    pub version: bool,
    pub latency: bool,
}

impl Fields {
    pub const NAMES: [&'static str; 6] = [
        "inputs",
        "outputs",
        "ids",
        "timestamps",
        "version",
        "latency",
    ];

    /// From names out of [`Fields::NAMES`].
    pub fn parse<S: AsRef<str>>(names: &[S]) -> Result<Fields, String> {
        let mut f = Fields {
            inputs: false,
            outputs: false,
            ids: false,
            timestamps: false,
            version: false,
            latency: false,
        };
        for n in names {
            let slot = match n.as_ref().trim() {
                "inputs" => &mut f.inputs,
                "outputs" => &mut f.outputs,
                "ids" => &mut f.ids,
                "timestamps" => &mut f.timestamps,
                "version" => &mut f.version,
                "latency" => &mut f.latency,
                other => {
                    return Err(format!(
                        "unknown capture field {other:?} (known: {})",
                        Fields::NAMES.join(", ")
                    ))
                }
            };
            *slot = true;
        }
        Ok(f)
    }
}

/// The format of capture files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// `<name>.parquet`: Snappy-compressed Parquet.
    #[default]
    Parquet,
    /// `<name>.jsonl.gz`: gzip-compressed JSON lines.
    Jsonl,
}

impl Format {
    pub const NAMES: [&'static str; 2] = ["parquet", "jsonl"];

    pub fn parse(name: &str) -> Result<Format, String> {
        match name.trim() {
            "parquet" => Ok(Format::Parquet),
            "jsonl" => Ok(Format::Jsonl),
            other => Err(format!(
                "unknown capture format {other:?} (known: {})",
                Format::NAMES.join(", ")
            )),
        }
    }
}

/// Everything the writer needs to know.
#[derive(Debug, Clone)]
pub struct CaptureSettings {
    /// Where files go; None: no files (only the HTTP sink).
    pub dir: Option<PathBuf>,
    /// Fraction of requests captured, 0 to 1.
    pub sample_rate: f64,
    pub fields: Fields,
    /// Feature names whose values are written as null.
    pub redact: Vec<String>,
    /// Messages (requests) the queue holds before it drops.
    pub queue: usize,
    /// Bytes the queued messages may hold before new ones are dropped.
    pub queue_bytes: usize,
    /// A captured string value is cut to at most this many bytes (and counted).
    pub max_string_bytes: usize,
    pub max_file_bytes: u64,
    pub max_file_age: Duration,
    /// How often buffered rows are written as a row group.
    pub flush_every: Duration,
    /// Closed files under `dir` are deleted oldest first past this many bytes.
    pub max_total_bytes: u64,
    /// This replica's name in file names (`[A-Za-z0-9._-]`).
    pub replica: String,
    /// The server's file format (a model card may choose another for its predictions).
    pub format: Format,
    /// The CloudEvents HTTP sink (`--capture-url`), if any.
    pub http: Option<HttpSinkSettings>,
}

/// Where capture reports what it did (implemented by the metrics).
pub trait CaptureObserver: Send + Sync {
    /// Rows queued (`kind`: prediction or feedback).
    fn queued(&self, kind: &'static str, rows: usize);
    /// Rows dropped because the queue was full.
    fn dropped(&self, kind: &'static str, rows: usize);
    /// Rows written to disk.
    fn written(&self, rows: usize);
    /// Rows lost to a write error.
    fn write_failed(&self, rows: usize);
    fn file_closed(&self, bytes: u64);
    fn files_deleted(&self, count: usize);
    /// CloudEvents of the HTTP sink by outcome: `sent`, `failed` (refused, timed out,
    /// unreachable) or `dropped` (its queue was full).
    fn events(&self, outcome: &'static str, count: usize);
    /// String values cut to the length cap before they were queued.
    fn truncated(&self, values: usize);
}

/// What the writer's queue may hold: messages and bytes, both taken before a message is sent
/// and given back when the writer takes it, so the queue never holds more than either bound
/// (the channel itself is unbounded; this budget is its bound).
#[derive(Debug)]
pub(crate) struct QueueBudget {
    messages: AtomicUsize,
    bytes: AtomicUsize,
    max_messages: usize,
    max_bytes: usize,
}

impl QueueBudget {
    fn new(max_messages: usize, max_bytes: usize) -> QueueBudget {
        QueueBudget {
            messages: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            max_messages: max_messages.max(1),
            max_bytes: max_bytes.max(1),
        }
    }

    /// Takes room for one message of `bytes`, or none when either bound would be passed.
    fn try_take(&self, bytes: usize) -> bool {
        let messages = self.messages.fetch_add(1, Ordering::AcqRel);
        let held = self.bytes.fetch_add(bytes, Ordering::AcqRel);
        if messages < self.max_messages && held.saturating_add(bytes) <= self.max_bytes {
            return true;
        }
        self.give_back(bytes);
        false
    }

    /// Gives back one message's room.
    pub(crate) fn give_back(&self, bytes: usize) {
        self.messages.fetch_sub(1, Ordering::AcqRel);
        self.bytes.fetch_sub(bytes, Ordering::AcqRel);
    }
}

/// The request path's handle: cheap to clone.
#[derive(Clone)]
pub struct Capture {
    inner: Arc<Shared>,
}

struct Shared {
    /// The file writer's queue (None: no `--capture-dir`) and its bound.
    tx: Option<Sender<Record>>,
    budget: Arc<QueueBudget>,
    /// Written records' buffers, for the request path to fill again.
    spares: Arc<spare::Spares>,
    max_string_bytes: usize,
    /// The CloudEvents sink (None: no `--capture-url`).
    http: Option<cloudevents::HttpSink>,
    sample_rate: f64,
    fields: Fields,
    format: Format,
    redact: Arc<[String]>,
    observer: Arc<dyn CaptureObserver>,
    /// The writer thread and its stop signal, taken by `shutdown`.
    writer: Mutex<Option<(Sender<()>, JoinHandle<()>)>>,
}

impl std::fmt::Debug for Capture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Capture")
            .field("sample_rate", &self.inner.sample_rate)
            .finish()
    }
}

impl Capture {
    /// Creates the directory, removes this replica's unfinished files from an earlier crash,
    /// and starts the writer thread (and the HTTP sink's thread, with `--capture-url`).
    pub fn start(
        mut settings: CaptureSettings,
        observer: Arc<dyn CaptureObserver>,
    ) -> std::io::Result<Capture> {
        let (sample_rate, fields, format) =
            (settings.sample_rate, settings.fields, settings.format);
        let redact: Arc<[String]> = settings.redact.clone().into();
        let budget = Arc::new(QueueBudget::new(settings.queue, settings.queue_bytes));
        let spares = Arc::new(spare::Spares::new(writer::ROW_GROUP_ROWS));
        let max_string_bytes = settings.max_string_bytes;
        let http = match settings.http.take() {
            Some(h) => Some(cloudevents::HttpSink::start(h, observer.clone())?),
            None => None,
        };
        let (tx, writer) = match settings.dir.clone() {
            Some(dir) => {
                std::fs::create_dir_all(&dir)?;
                let leftovers = file::remove_leftovers(&dir, &settings.replica);
                if leftovers > 0 {
                    tracing::warn!(
                        files = leftovers,
                        "capture: removed unfinished files left by an earlier run (killed before closing)"
                    );
                }
                let (tx, rx) = unbounded();
                let (stop_tx, stop_rx) = bounded(1);
                let w = writer::Writer::new(
                    settings,
                    dir,
                    observer.clone(),
                    budget.clone(),
                    spares.clone(),
                );
                let handle = std::thread::Builder::new()
                    .name("infera-capture".into())
                    .spawn(move || w.run(rx, stop_rx))?;
                (Some(tx), Some((stop_tx, handle)))
            }
            None => (None, None),
        };
        Ok(Capture {
            inner: Arc::new(Shared {
                tx,
                budget,
                spares,
                max_string_bytes,
                http,
                sample_rate,
                fields,
                format,
                redact,
                observer,
                writer: Mutex::new(writer),
            }),
        })
    }

    /// The server's fields (`--capture-fields`); a model card may choose others.
    pub fn fields(&self) -> Fields {
        self.inner.fields
    }

    /// The server's file format (`--capture-format`).
    pub fn format(&self) -> Format {
        self.inner.format
    }

    /// The longest captured string value, in bytes (`--capture-max-string-bytes`).
    pub fn max_string_bytes(&self) -> usize {
        self.inner.max_string_bytes
    }

    /// Counts string values cut to the cap.
    pub fn truncated(&self, values: usize) {
        if values > 0 {
            self.inner.observer.truncated(values);
        }
    }

    /// Buffers to fill for a prediction record: a written record's when one is spare (see
    /// `spare.rs`), else empty ones.
    pub fn spare(&self) -> Spare {
        self.inner.spares.take()
    }

    /// The server's sampling rate (`--capture-sample-rate`).
    pub fn sample_rate(&self) -> f64 {
        self.inner.sample_rate
    }

    /// The server's redacted feature names (`--capture-redact`).
    pub fn redact(&self) -> &[String] {
        &self.inner.redact
    }

    /// Whether to capture this request at the server's rate.
    pub fn sampled(&self) -> bool {
        sampled_at(self.inner.sample_rate)
    }

    /// Queues a record, or drops and counts it when the queue is full (in messages or bytes).
    /// Never blocks.
    pub fn push(&self, record: Record) {
        let record = match (&self.inner.http, record) {
            (Some(h), record) if self.inner.tx.is_none() => return h.push(record),
            (Some(h), record) => {
                h.push(record.clone());
                record
            }
            (None, record) => record,
        };
        let Some(tx) = &self.inner.tx else { return };
        let (kind, rows, bytes) = (record.kind(), record.rows(), record.bytes());
        if !self.inner.budget.try_take(bytes) {
            return self.inner.observer.dropped(kind, rows);
        }
        match tx.try_send(record) {
            Ok(()) => self.inner.observer.queued(kind, rows),
            Err(_) => {
                self.inner.budget.give_back(bytes);
                self.inner.observer.dropped(kind, rows)
            }
        }
    }

    /// Writes what is queued, closes every file, posts the queued events and stops the
    /// threads. Idempotent.
    pub fn shutdown(&self) {
        let taken = self
            .inner
            .writer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some((stop, handle)) = taken {
            let _ = stop.send(());
            let _ = handle.join();
        }
        if let Some(h) = &self.inner.http {
            h.shutdown();
        }
    }
}

thread_local! {
    static RNG: Cell<u64> = Cell::new({
        let local = 0u8;
        let addr = &local as *const u8 as u64;
        (addr ^ now_ms() as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1
    });
}

/// Whether to capture one request at `rate` (a per-thread xorshift draw).
pub fn sampled_at(rate: f64) -> bool {
    rate >= 1.0 || (rate > 0.0 && uniform() < rate)
}

/// A uniform draw in [0, 1) (xorshift64*; sampling needs speed, not quality).
fn uniform() -> f64 {
    RNG.with(|s| {
        let mut x = s.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        s.set(x);
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    })
}

/// A replica name safe in file names: `[A-Za-z0-9._-]`, at most 64 characters.
pub fn replica_name(raw: &str) -> String {
    let cleaned: String = raw
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        .take(64)
        .collect();
    if cleaned.is_empty() {
        "replica".into()
    } else {
        cleaned
    }
}

/// This machine's host name (the default replica name), from the kernel.
pub fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| replica_name(h.trim()))
        .unwrap_or_else(|| "replica".into())
}

#[cfg(test)]
mod tests;
