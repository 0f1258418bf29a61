//! The Prometheus series of data capture (src/capture): rows queued, dropped (queue full) and
//! written, write errors, files closed and deleted by retention. Labels are closed sets.

use prometheus::core::Collector;
use prometheus::{IntCounter, IntCounterVec, Opts};

use crate::capture::CaptureObserver;

/// The metric families; the capture writer's observer.
pub struct CaptureFamilies {
    rows: IntCounterVec,
    /// The series the request path adds to, resolved once (no label hashing per request).
    prediction_queued: IntCounter,
    prediction_dropped: IntCounter,
    files_closed: IntCounter,
    bytes_closed: IntCounter,
    files_deleted: IntCounter,
    events: IntCounterVec,
    truncated: IntCounter,
}

impl Default for CaptureFamilies {
    fn default() -> Self {
        CaptureFamilies::new()
    }
}

impl CaptureFamilies {
    pub fn new() -> CaptureFamilies {
        let counter = |name: &str, help: &str| {
            IntCounter::with_opts(Opts::new(name, help)).expect("static counter definition")
        };
        let rows = IntCounterVec::new(
            Opts::new(
                "infera_capture_rows_total",
                "Captured rows by kind (prediction, feedback) and outcome: queued, dropped (queue full), written, failed (write error)",
            ),
            &["kind", "outcome"],
        )
        .expect("static counter definition");
        CaptureFamilies {
            prediction_queued: rows.with_label_values(&["prediction", "queued"]),
            prediction_dropped: rows.with_label_values(&["prediction", "dropped"]),
            rows,
            files_closed: counter(
                "infera_capture_files_closed_total",
                "Capture files completed (footer written, renamed to .parquet)",
            ),
            bytes_closed: counter(
                "infera_capture_closed_bytes_total",
                "Bytes of the capture files completed",
            ),
            files_deleted: counter(
                "infera_capture_files_deleted_total",
                "Capture files deleted by the retention limit (--capture-max-total-bytes)",
            ),
            events: IntCounterVec::new(
                Opts::new(
                    "infera_capture_events_total",
                    "CloudEvents of the --capture-url sink by outcome: sent, failed (refused, timed out, unreachable, after the retries), retried (a failed try tried again), dropped (queue full)",
                ),
                &["outcome"],
            )
            .expect("static counter definition"),
            truncated: counter(
                "infera_capture_values_truncated_total",
                "Captured string values cut to --capture-max-string-bytes",
            ),
        }
    }

    pub(super) fn collectors(&self) -> Vec<Box<dyn Collector>> {
        vec![
            Box::new(self.rows.clone()),
            Box::new(self.files_closed.clone()),
            Box::new(self.bytes_closed.clone()),
            Box::new(self.files_deleted.clone()),
            Box::new(self.events.clone()),
            Box::new(self.truncated.clone()),
        ]
    }

    fn add(&self, kind: &str, outcome: &str, rows: usize) {
        self.rows
            .with_label_values(&[kind, outcome])
            .inc_by(rows as u64);
    }
}

impl CaptureObserver for CaptureFamilies {
    fn queued(&self, kind: &'static str, rows: usize) {
        match kind {
            "prediction" => self.prediction_queued.inc_by(rows as u64),
            _ => self.add(kind, "queued", rows),
        }
    }

    fn dropped(&self, kind: &'static str, rows: usize) {
        match kind {
            "prediction" => self.prediction_dropped.inc_by(rows as u64),
            _ => self.add(kind, "dropped", rows),
        }
    }

    fn written(&self, rows: usize) {
        self.add("any", "written", rows);
    }

    fn write_failed(&self, rows: usize) {
        self.add("any", "failed", rows);
    }

    fn file_closed(&self, bytes: u64) {
        self.files_closed.inc();
        self.bytes_closed.inc_by(bytes);
    }

    fn files_deleted(&self, count: usize) {
        self.files_deleted.inc_by(count as u64);
    }

    fn events(&self, outcome: &'static str, count: usize) {
        self.events
            .with_label_values(&[outcome])
            .inc_by(count as u64);
    }

    fn truncated(&self, values: usize) {
        self.truncated.inc_by(values as u64);
    }
}
