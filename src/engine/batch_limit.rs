//! How many rows dynamic batching may merge into one call of a model, learned from what its calls
//! cost. Merging pays when a call of many rows costs less per row than calls of one row (classic
//! ML models, whose calls are mostly fixed overhead); for some graphs it costs more per row (a
//! convolution net whose batched plan loses tract's fast path) or the same (then merging only
//! adds latency and keeps the other workers idle). So a queue merges requests only up to the
//! largest batch size whose measured cost per row is clearly below the cost per row of the
//! smallest calls.
//!
//! - Costs are kept per power-of-two bucket of rows (1, 2, 3-4, 5-8, ...), each as the minimum of
//!   its last [`WINDOW`] calls (other users of the machine only ever add time), in two tables:
//!   calls on one thread (calls under load) and calls on several (a lone call on an idle server
//!   may use every core). A size is judged within a table, against that table's calls of one
//!   row, so a batch that ran on two threads is never compared with a row that ran on one.
//! - The reference is the cost of calls of one row (the load's warm-up is one). Until it is
//!   measured, requests are not merged, and a lone request of several rows runs its first row
//!   alone first. A size is good when its cost per row is at most [`GAIN`] times the reference
//!   (or its calls cost under [`JUDGED_CALL`]), bad once [`BAD_SAMPLES`] calls say it is not.
//! - A model whose reference is under [`CHEAP_ROW`] (a wrongly merged batch costs little) merges
//!   up to the policy's `max_batch_size` at once while no size has proved bad; otherwise the
//!   merge size doubles (2, 4, 8, ...) only after the size below it proved good.
//! - A bad size caps both merging and lone requests at the largest size proved good below it (1
//!   when none): a lone request with more rows than the cap runs in chunks of the cap
//!   (`split.rs`). The bad size is measured again after [`RETRY_CALLS`] calls (doubled each time
//!   it is confirmed bad, at most [`MAX_RETRY_CALLS`]), so a measurement spoiled by a burst of
//!   load does not disable batching for good.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Measurements kept per bucket; the bucket's cost is their minimum.
pub const WINDOW: usize = 4;
/// A merge size is used when its cost per row is at most this fraction of the reference.
pub const GAIN: f64 = 0.8;
/// Below this cost per row (reference), merging may go to the full `max_batch_size` at once.
pub const CHEAP_ROW: Duration = Duration::from_millis(1);
/// A size whose calls cost less than this is never judged bad: at a few microseconds a call,
/// timer and scheduling noise is larger than any difference merging makes (classic ML models).
pub const JUDGED_CALL: Duration = Duration::from_micros(200);
/// Calls of a size, all slow, before it is judged bad (the bucket's cost is their minimum): one
/// call stretched by a preemption must not turn merging off.
pub const BAD_SAMPLES: usize = 2;
/// Calls after which a bad merge size is tried again (doubled while it stays bad).
pub const RETRY_CALLS: u64 = 64;
/// Longest wait, in calls, before a bad merge size is tried again.
pub const MAX_RETRY_CALLS: u64 = 8192;

/// Buckets: 1 row, 2, 3-4, ..., up to 2^16 rows (the largest `max_batch_size`).
const BUCKETS: usize = 17;

/// The sample tables: calls on one thread, and calls on several.
const TABLES: usize = 2;

#[derive(Debug, Default, Clone)]
struct Bucket {
    /// Cost per row (wall time x threads), in nanoseconds, of its last calls (newest last), per
    /// table.
    samples: [Vec<u64>; TABLES],
    /// Call count when it was last judged bad, and the calls to wait before trying it again.
    bad_at: Option<u64>,
    retry: u64,
}

impl Bucket {
    /// Its cost per row in `table`: the minimum of the last calls.
    fn cost(&self, table: usize) -> Option<u64> {
        self.samples[table].iter().copied().min()
    }
}

#[derive(Debug)]
struct State {
    buckets: Vec<Bucket>,
    calls: u64,
}

/// The learned merge limit of one model version's queue.
#[derive(Debug)]
pub(crate) struct BatchLimit {
    max: usize,
    fixed: bool,
    /// Rows one call may merge now (read lock-free by `take_batch`).
    limit: AtomicUsize,
    /// Largest call a lone request may make: `max`, or the largest size proved good below a
    /// size proved bad (its rows then run in chunks of it).
    cap: AtomicUsize,
    state: Mutex<State>,
}

/// The bucket of a call of `rows` rows: ceil(log2(rows)).
fn bucket(rows: usize) -> usize {
    (rows.max(1).next_power_of_two().trailing_zeros() as usize).min(BUCKETS - 1)
}

impl BatchLimit {
    /// A limit under `max` rows; `fixed` keeps it at `max` (nothing learned).
    pub(crate) fn new(max: usize, fixed: bool) -> BatchLimit {
        let max = max.max(1);
        BatchLimit {
            max,
            fixed,
            limit: AtomicUsize::new(if fixed { max } else { 1 }),
            cap: AtomicUsize::new(max),
            state: Mutex::new(State {
                buckets: vec![Bucket::default(); BUCKETS],
                calls: 0,
            }),
        }
    }

    /// True when the limit is learned (not fixed at `max`).
    pub(crate) fn learned(&self) -> bool {
        !self.fixed
    }

    /// Rows one call may merge now.
    pub(crate) fn get(&self) -> usize {
        self.limit.load(Ordering::Relaxed)
    }

    /// Most rows one call of a lone request may take now (see `cap`).
    pub(crate) fn cap(&self) -> usize {
        self.cap.load(Ordering::Relaxed)
    }

    /// True when nothing has been measured yet, not even a call of one row.
    pub(crate) fn needs_reference(&self) -> bool {
        !self.fixed
            && self
                .state
                .lock()
                .map(|s| s.buckets[0].samples.iter().all(Vec::is_empty))
                .unwrap_or(false)
    }

    /// Records a call of `rows` rows that took `wall` on `threads` threads.
    pub(crate) fn record(&self, rows: usize, wall: Duration, threads: usize) {
        if rows == 0 || self.fixed {
            return;
        }
        let cost = wall.as_nanos().saturating_mul(threads.max(1) as u128);
        let per_row = (cost / rows as u128).min(u64::MAX as u128) as u64;
        let table = usize::from(threads > 1);
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.calls += 1;
        let at = bucket(rows);
        let samples = &mut state.buckets[at].samples[table];
        if samples.len() == WINDOW {
            samples.remove(0);
        }
        samples.push(per_row.max(1));
        state.judge(at);
        let (limit, cap) = state.limits(self.max);
        self.limit.store(limit, Ordering::Relaxed);
        self.cap.store(cap, Ordering::Relaxed);
    }
}

impl State {
    /// Whether bucket `at` is good: good when either table says so, bad when one says so and
    /// the other does not know; None when neither table has it and its reference measured.
    fn good(&self, at: usize) -> Option<bool> {
        let verdicts = (0..TABLES).filter_map(|table| self.good_in(table, at));
        verdicts.reduce(|a, b| a || b)
    }

    /// Whether bucket `at` is good by the calls of one table.
    fn good_in(&self, table: usize, at: usize) -> Option<bool> {
        if at == 0 {
            return None;
        }
        let reference = self.buckets[0].cost(table)?;
        let bucket = &self.buckets[at];
        let cost = bucket.cost(table)?;
        let call = u128::from(cost) << at;
        if call < JUDGED_CALL.as_nanos() || cost as f64 <= reference as f64 * GAIN {
            return Some(true);
        }
        // One slow call may be a preemption by the machine's other load: bad takes two.
        (bucket.samples[table].len() >= BAD_SAMPLES).then_some(false)
    }

    /// The cost per row of calls of one row: the smaller of the two tables' (None before any).
    fn reference(&self) -> Option<u64> {
        (0..TABLES).filter_map(|t| self.buckets[0].cost(t)).min()
    }

    /// After a measurement of bucket `at`: marks it bad (with its retry wait) or clears it.
    fn judge(&mut self, at: usize) {
        let calls = self.calls;
        let good = self.good(at);
        let bucket = &mut self.buckets[at];
        match good {
            Some(false) => {
                bucket.retry = if bucket.bad_at.is_some() {
                    (bucket.retry * 2).clamp(RETRY_CALLS, MAX_RETRY_CALLS)
                } else {
                    RETRY_CALLS
                };
                bucket.bad_at = Some(calls);
            }
            _ => {
                bucket.bad_at = None;
                bucket.retry = 0;
            }
        }
    }

    /// The merge limit and the split cap: see the module documentation.
    fn limits(&self, max: usize) -> (usize, usize) {
        let Some(reference) = self.reference() else {
            return (1, max);
        };
        // Optimistic only while the model is cheap and no size has proved bad.
        let careful = u128::from(reference) >= CHEAP_ROW.as_nanos()
            || self.buckets.iter().any(|b| b.bad_at.is_some());
        let mut good = 1;
        let mut merge = None;
        for i in 1..BUCKETS {
            let size = (1usize << i).min(max);
            let bucket = &self.buckets[i];
            match self.good(i) {
                Some(true) => good = size,
                Some(false) => {
                    let waiting = bucket
                        .bad_at
                        .is_some_and(|at| self.calls < at.saturating_add(bucket.retry));
                    if waiting {
                        // Capped at the largest size proved good below it.
                        return (merge.unwrap_or(good).min(good), good);
                    }
                    // Due to be tried again: merging may reach it once more.
                    merge.get_or_insert(size);
                }
                None if careful => {
                    merge.get_or_insert(size);
                }
                None => {}
            }
            if size >= max {
                break;
            }
        }
        (merge.unwrap_or(max), max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const US: Duration = Duration::from_micros(1);

    /// `calls` calls of `rows` rows at `per_row` each.
    fn feed(limit: &BatchLimit, rows: usize, per_row: Duration, calls: usize) {
        for _ in 0..calls {
            limit.record(rows, per_row * rows as u32, 1);
        }
    }

    #[test]
    fn buckets_are_powers_of_two() {
        let got: Vec<usize> = [1, 2, 3, 4, 5, 8, 9, 64, 65, 65_536, 1 << 20]
            .iter()
            .map(|&r| bucket(r))
            .collect();
        assert_eq!(got, [0, 1, 2, 2, 3, 3, 4, 6, 7, 16, 16]);
    }

    #[test]
    fn nothing_measured_runs_alone_and_a_fixed_limit_stays() {
        let limit = BatchLimit::new(64, false);
        assert_eq!((limit.get(), limit.cap()), (1, 64));
        assert!(limit.needs_reference());
        let fixed = BatchLimit::new(64, true);
        fixed.record(8, 100 * US, 1);
        assert_eq!((fixed.get(), fixed.cap()), (64, 64));
        assert!(!fixed.needs_reference());
    }

    #[test]
    fn a_cheap_model_that_batches_well_merges_up_to_the_maximum_at_once() {
        let limit = BatchLimit::new(64, false);
        feed(&limit, 1, 20 * US, 1);
        assert!(!limit.needs_reference());
        assert_eq!((limit.get(), limit.cap()), (64, 64));
        feed(&limit, 64, US, 1);
        assert_eq!((limit.get(), limit.cap()), (64, 64));
    }

    #[test]
    fn a_model_whose_rows_cost_more_in_a_batch_runs_row_by_row() {
        let limit = BatchLimit::new(64, false);
        feed(&limit, 1, 20 * US, 1);
        feed(&limit, 16, 200 * US, BAD_SAMPLES);
        assert_eq!((limit.get(), limit.cap()), (1, 1), "no size proved good");
    }

    #[test]
    fn a_costly_model_doubles_the_merge_only_after_the_size_below_proved_good() {
        let limit = BatchLimit::new(64, false);
        feed(&limit, 1, 2000 * US, 1);
        assert_eq!((limit.get(), limit.cap()), (2, 64));
        feed(&limit, 2, 1200 * US, 1);
        assert_eq!(limit.get(), 4);
        feed(&limit, 4, 900 * US, 1);
        assert_eq!(limit.get(), 8);
        // Batch 8 costs as much per row as one row alone: not worth merging (once two calls
        // said so: after one, merging stays at 8 to measure again).
        feed(&limit, 8, 2000 * US, 1);
        assert_eq!((limit.get(), limit.cap()), (8, 64));
        feed(&limit, 8, 2000 * US, 1);
        assert_eq!((limit.get(), limit.cap()), (4, 4));
    }

    #[test]
    fn a_size_proved_bad_caps_at_the_largest_size_proved_good_below_it() {
        let limit = BatchLimit::new(64, false);
        feed(&limit, 1, 20 * US, 1);
        feed(&limit, 2, 12 * US, 1);
        feed(&limit, 4, 8 * US, 1);
        feed(&limit, 16, 5 * US, 1);
        assert_eq!((limit.get(), limit.cap()), (64, 64));
        feed(&limit, 32, 30 * US, BAD_SAMPLES);
        // Merging explores the size never measured below the cap (5-8 rows) first.
        assert_eq!((limit.get(), limit.cap()), (8, 16));
    }

    #[test]
    fn a_bad_size_is_tried_again_later_and_waits_longer_each_time_it_stays_bad() {
        let limit = BatchLimit::new(64, false);
        feed(&limit, 1, 2000 * US, 1);
        feed(&limit, 2, 9000 * US, BAD_SAMPLES);
        assert_eq!((limit.get(), limit.cap()), (1, 1));
        feed(&limit, 1, 2000 * US, RETRY_CALLS as usize - 1);
        assert_eq!(limit.get(), 1);
        feed(&limit, 1, 2000 * US, 1);
        assert_eq!(
            (limit.get(), limit.cap()),
            (2, 64),
            "tried again after RETRY_CALLS"
        );
        feed(&limit, 2, 9000 * US, 1);
        feed(&limit, 1, 2000 * US, RETRY_CALLS as usize);
        assert_eq!(limit.get(), 1, "confirmed bad: waits twice as long");
        feed(&limit, 1, 2000 * US, RETRY_CALLS as usize);
        assert_eq!(limit.get(), 2);
        // A burst of load had spoiled the old figures: the size is good again.
        feed(&limit, 2, 1000 * US, 1);
        assert_eq!((limit.get(), limit.cap()), (4, 64));
    }

    #[test]
    fn calls_on_several_threads_are_judged_against_rows_on_several_threads() {
        // One row: 2 ms on one thread, 1.4 ms on two (2.8 ms of thread time).
        let limit = BatchLimit::new(64, false);
        limit.record(1, 2000 * US, 1);
        limit.record(1, 1400 * US, 2);
        // Two rows on two threads at 1.3 ms a row of thread time: good against the two-thread
        // row (2.8 ms), though it would be bad against the one-thread row only if both were
        // read as one table (2.6 > 0.8 x 2.0).
        limit.record(2, 1300 * US, 2);
        limit.record(2, 1300 * US, 2);
        assert_eq!(limit.get(), 4, "two rows proved good on two threads");
        // Four rows good; eight rows at 2.5 ms a row of thread time, twice: bad (2.5 > 0.8 x 2.8).
        limit.record(4, 2000 * US, 2);
        assert_eq!(limit.get(), 8);
        limit.record(8, 10_000 * US, 2);
        limit.record(8, 10_000 * US, 2);
        assert_eq!((limit.get(), limit.cap()), (4, 4));
    }

    #[test]
    fn a_batch_on_two_threads_alone_is_not_judged_without_a_row_on_two_threads() {
        let limit = BatchLimit::new(64, false);
        limit.record(1, 2000 * US, 1);
        for _ in 0..BAD_SAMPLES {
            limit.record(2, 3000 * US, 2);
        }
        // No two-thread row to compare with: two rows stay unjudged, merging still tries them.
        assert_eq!((limit.get(), limit.cap()), (2, 64));
    }

    #[test]
    fn the_limit_never_exceeds_the_maximum() {
        let limit = BatchLimit::new(3, false);
        feed(&limit, 1, 2000 * US, 1);
        assert_eq!(limit.get(), 2);
        feed(&limit, 2, 500 * US, 1);
        assert_eq!(limit.get(), 3);
        feed(&limit, 3, 400 * US, 1);
        assert_eq!(limit.get(), 3);
    }
}
