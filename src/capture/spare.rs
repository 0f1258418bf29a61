//! Buffers handed back by the writer for the request path to fill again.
//!
//! A captured request allocates its feature row, its answers, their labels and its id on a
//! request thread, and the writer thread frees them after writing. With mimalloc a free from
//! another thread is deferred to the owning thread, which collects it later: on digits at 100%
//! sampling that collection plus the frees were about half of capture's cost (`perf`: 5.2%
//! against 1.6% of the server's CPU in `_mi_page_free_collect` with and without capture). So
//! the writer gives small records' buffers back through a bounded queue instead, and the
//! request path refills them in place: in a steady state a captured small request allocates
//! and frees nothing. Large records (more than [`MAX_SPARE_BYTES`] of buffers) are freed as
//! before, so the spares hold at most `capacity * MAX_SPARE_BYTES` bytes (the writer keeps
//! as many as one row group's records: 16,384, so at most 16 MiB).

use crossbeam_queue::ArrayQueue;

use super::record::{CapturedOutput, PredictionBatch};

/// Buffers of a record larger than this are not kept.
pub const MAX_SPARE_BYTES: usize = 1024;

/// The reusable buffers of one prediction record.
#[derive(Debug, Default)]
pub struct Spare {
    pub features: Vec<f64>,
    pub ints: Vec<Option<i64>>,
    pub outputs: Vec<CapturedOutput>,
    pub id: String,
}

impl Spare {
    /// The heap bytes these buffers hold (capacities, labels included).
    fn bytes(&self) -> usize {
        let labels: usize = self
            .outputs
            .iter()
            .map(|o| o.label.as_ref().map_or(0, String::capacity))
            .sum();
        self.features.capacity() * 8
            + self.ints.capacity() * std::mem::size_of::<Option<i64>>()
            + self.outputs.capacity() * std::mem::size_of::<CapturedOutput>()
            + labels
            + self.id.capacity()
    }
}

/// A bounded pool of spares: the writer gives, the request path takes.
#[derive(Debug)]
pub struct Spares {
    queue: ArrayQueue<Spare>,
}

impl Spares {
    pub fn new(capacity: usize) -> Spares {
        Spares {
            queue: ArrayQueue::new(capacity.max(1)),
        }
    }

    /// A spare to fill (empty buffers when none is kept). Vectors come back empty with their
    /// capacity; `outputs` keeps its elements so their label strings can be overwritten in
    /// place (see [`fill_outputs`]).
    pub fn take(&self) -> Spare {
        let mut s = self.queue.pop().unwrap_or_default();
        s.features.clear();
        s.ints.clear();
        s.id.clear();
        s
    }

    /// Keeps a written record's buffers when they are small and the pool has room; drops them
    /// otherwise.
    pub fn give(&self, batch: PredictionBatch) {
        let spare = Spare {
            features: batch.features,
            ints: batch.ints,
            outputs: batch.outputs,
            id: batch.id.unwrap_or_default(),
        };
        if spare.bytes() <= MAX_SPARE_BYTES {
            let _ = self.queue.push(spare);
        }
    }
}

/// One answer to capture: label, value and confidence (see [`CapturedOutput`]).
pub type Answer<'a> = (Option<&'a str>, Option<f64>, Option<f32>);

/// Makes `outputs` hold exactly `answers`, reusing the elements (and their label strings)
/// already there.
pub fn fill_outputs<'a>(
    outputs: &mut Vec<CapturedOutput>,
    answers: impl IntoIterator<Item = Answer<'a>>,
) {
    let mut n = 0;
    for (label, value, confidence) in answers {
        if n == outputs.len() {
            outputs.push(CapturedOutput {
                label: None,
                value: None,
                confidence: None,
            });
        }
        let o = &mut outputs[n];
        match (label, &mut o.label) {
            (Some(new), Some(old)) => {
                old.clear();
                old.push_str(new);
            }
            (Some(new), slot) => *slot = Some(new.to_string()),
            (None, slot) => *slot = None,
        }
        o.value = value;
        o.confidence = confidence;
        n += 1;
    }
    outputs.truncate(n);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn batch(features: Vec<f64>, labels: &[&str]) -> PredictionBatch {
        let mut outputs = Vec::new();
        fill_outputs(
            &mut outputs,
            labels.iter().map(|l| (Some(*l), Some(1.0), Some(0.5))),
        );
        PredictionBatch {
            model: "m".into(),
            version: 1,
            id: Some("req".into()),
            time_ms: 0,
            latency: 0.0,
            columns: Arc::new(super::super::Columns::numbers(vec!["a".into()], vec![])),
            features,
            texts: Vec::new(),
            ints: Vec::new(),
            outputs,
            fields: super::super::Fields::parse(&super::super::Fields::NAMES).unwrap(),
            format: super::super::Format::Parquet,
        }
    }

    #[test]
    fn a_small_record_comes_back_empty_with_its_capacity() {
        let spares = Spares::new(2);
        spares.give(batch(vec![1.0; 64], &["seven"]));
        let s = spares.take();
        assert!(s.features.is_empty() && s.features.capacity() >= 64);
        assert!(s.id.is_empty() && s.id.capacity() >= 3);
        assert_eq!(s.outputs.len(), 1, "kept for its label string");
        assert!(spares.take().features.capacity() == 0, "only one was given");
    }

    #[test]
    fn large_records_and_a_full_pool_are_dropped() {
        let spares = Spares::new(1);
        spares.give(batch(vec![0.0; MAX_SPARE_BYTES / 8 + 1], &["a"]));
        assert_eq!(spares.take().features.capacity(), 0, "too large to keep");
        spares.give(batch(vec![0.0; 4], &["a"]));
        spares.give(batch(vec![0.0; 8], &["a"]));
        assert_eq!(
            spares.take().features.capacity(),
            4,
            "the pool held the first"
        );
    }

    #[test]
    fn outputs_are_overwritten_in_place() {
        let mut outputs = Vec::new();
        fill_outputs(
            &mut outputs,
            [
                (Some("cat"), Some(0.0), Some(0.9)),
                (Some("dog"), Some(1.0), Some(0.8)),
            ],
        );
        let kept = outputs[0].label.as_ref().unwrap().as_ptr();
        fill_outputs(&mut outputs, [(Some("emu"), Some(2.0), Some(0.7))]);
        assert_eq!(outputs.len(), 1);
        assert_eq!(outputs[0].label.as_deref(), Some("emu"));
        assert_eq!(
            outputs[0].label.as_ref().unwrap().as_ptr(),
            kept,
            "the string was reused"
        );
        fill_outputs(&mut outputs, [(None, Some(3.5), None)]);
        assert_eq!(
            outputs[0],
            CapturedOutput {
                label: None,
                value: Some(3.5),
                confidence: None
            }
        );
    }
}
