//! Intra-op threads: how many threads one plan call may use. A lone request on an idle server
//! runs with tract's multithreaded matrix products over every core, as long as that is measured
//! to pay for this model; under load each call keeps to its worker's thread (parallelism then
//! comes from the workers). Models whose calls are cheap never go multithreaded: waking a thread
//! pool costs tens of microseconds, more than the whole call of a classic ML model. Nor do
//! models whose many small products lose more to the hand-offs than they gain (the PP-OCR angle
//! classifier takes twice as long on two threads): each model keeps the time per row of its
//! last calls on one thread and on several, and an idle call goes multithreaded only while the
//! several-thread calls are clearly faster. A model card (`[runtime] threads`) or the server
//! flag (`--intra-op-threads`) can pin the count.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use tract_onnx::prelude::multithread::{multithread_tract_scope, Executor};

use super::CompiledModel;
use crate::engine::error::EngineError;
use crate::engine::tensor::Tensor;

/// Threads one plan call may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IntraOpThreads {
    /// Every core when the pool is otherwise idle and the model's calls are costly enough
    /// ([`MULTI_THREAD_MIN_COST`]); one thread otherwise.
    #[default]
    Auto,
    /// Always this many (1: always the worker's own thread).
    Fixed(usize),
}

/// Largest thread count a card or flag may pin.
pub const MAX_INTRA_OP_THREADS: usize = 64;

/// A call must have cost at least this much (wall time x threads it used) for the next call to
/// go multithreaded under `Auto`. Classic ML models take 1-50 µs a call, the benchmark CNN and
/// the zoo's image models several milliseconds; dispatching to the thread pool costs ~5-50 µs
/// per matrix product.
pub const MULTI_THREAD_MIN_COST: Duration = Duration::from_millis(1);

/// Several threads are kept for idle calls while their time per row is at most this fraction of
/// the time per row on one thread.
pub const MULTI_THREAD_GAIN: f64 = 0.9;
/// Calls on several threads measured before they can be judged not to pay (the first call on a
/// thread pool that slept is slower).
const MULTI_SAMPLES: usize = 2;
/// Calls on each side whose minimum is compared.
const TIME_WINDOW: usize = 4;
/// While several threads do not pay, one idle call in this many tries them again (the shapes
/// or the machine's load may have changed).
const MULTI_RETRY: u64 = 64;

/// What the worker pool looks like when a call starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolLoad {
    /// No other model call is running and no work waits: this call may take every core.
    Idle,
    /// Other calls run or wait: this one keeps to its worker's thread.
    Busy,
}

/// Per-model record of the cost of its calls and of the thread counts it ran with.
#[derive(Debug, Default)]
pub(super) struct CallCost {
    /// Wall time x threads of the last plan call, in nanoseconds (0: none measured yet).
    last_ns: AtomicU64,
    /// Threads the last plan call ran on.
    last_threads: AtomicUsize,
    multi_calls: AtomicU64,
    single_calls: AtomicU64,
    /// Wall time per row of the last calls on one thread and on several.
    times: Mutex<RowTimes>,
}

/// Wall time per row, in nanoseconds, of a model's last calls (newest last).
#[derive(Debug, Default)]
struct RowTimes {
    single: VecDeque<u64>,
    multi: VecDeque<u64>,
    /// Idle, costly calls that asked whether to go multithreaded.
    asked: u64,
}

impl RowTimes {
    fn push(&mut self, per_row: u64, threads: usize) {
        let side = if threads > 1 {
            &mut self.multi
        } else {
            &mut self.single
        };
        if side.len() == TIME_WINDOW {
            side.pop_front();
        }
        side.push_back(per_row);
    }

    /// Whether the next idle call should use several threads: yes until several-thread calls
    /// have been measured, then only while their best time per row beats one thread's best by
    /// [`MULTI_THREAD_GAIN`]; otherwise once every [`MULTI_RETRY`] idle calls.
    fn multi_pays(&mut self) -> bool {
        self.asked += 1;
        let (Some(single), Some(multi)) = (self.single.iter().min(), self.multi.iter().min())
        else {
            return true;
        };
        self.multi.len() < MULTI_SAMPLES
            || *multi as f64 <= *single as f64 * MULTI_THREAD_GAIN
            || self.asked.is_multiple_of(MULTI_RETRY)
    }
}

impl CallCost {
    pub(super) fn record(&self, wall: Duration, threads: usize, rows: usize) {
        let ns = wall
            .as_nanos()
            .saturating_mul(threads.max(1) as u128)
            .min(u64::MAX as u128) as u64;
        // Only calls costly enough to be multithreaded inform that decision: the calls of a
        // classic ML model (microseconds, at tens of thousands a second) take no lock here.
        if u128::from(ns) >= MULTI_THREAD_MIN_COST.as_nanos() {
            let per_row = wall.as_nanos() / rows.max(1) as u128;
            self.times
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(per_row.min(u64::MAX as u128) as u64, threads);
        }
        self.last_ns.store(ns.max(1), Ordering::Relaxed);
        self.last_threads.store(threads.max(1), Ordering::Relaxed);
    }

    fn last(&self) -> Duration {
        Duration::from_nanos(self.last_ns.load(Ordering::Relaxed))
    }
}

/// The cores this process may use.
pub fn available_cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// The decision, apart from the model: how many threads a call takes given the setting, the
/// pool's load, the model's last measured call cost, the cores there are, and whether several
/// threads are measured to pay for this model (asked only for an idle, costly call under `Auto`).
pub fn decide_threads(
    setting: IntraOpThreads,
    load: PoolLoad,
    last_cost: Duration,
    cores: usize,
    multi_pays: impl FnOnce() -> bool,
) -> usize {
    match setting {
        IntraOpThreads::Fixed(n) => n.clamp(1, MAX_INTRA_OP_THREADS),
        IntraOpThreads::Auto => {
            if load == PoolLoad::Idle
                && last_cost >= MULTI_THREAD_MIN_COST
                && cores > 1
                && multi_pays()
            {
                cores
            } else {
                1
            }
        }
    }
}

/// The process-wide tract executor with `n` threads (built on first use and kept: a rayon pool
/// whose threads sleep when unused).
fn executor(n: usize) -> Executor {
    static POOLS: OnceLock<Mutex<Vec<(usize, Executor)>>> = OnceLock::new();
    let pools = POOLS.get_or_init(|| Mutex::new(Vec::new()));
    let mut pools = pools.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, e)) = pools.iter().find(|(k, _)| *k == n) {
        return e.clone();
    }
    let built = Executor::multithread_with_name(n, "infera-intra-op");
    pools.push((n, built.clone()));
    built
}

/// Threads the current scope's executor runs matrix products with.
pub(super) fn scope_threads() -> usize {
    match tract_onnx::prelude::multithread::current_tract_executor() {
        Executor::MultiThread(pool) => pool.current_num_threads(),
        _ => 1,
    }
}

impl CompiledModel {
    /// Threads a call of this model takes under `load` (see [`decide_threads`]).
    pub fn intra_op_threads(&self, load: PoolLoad) -> usize {
        decide_threads(
            self.threads,
            load,
            self.cost.last(),
            available_cores(),
            || {
                self.cost
                    .times
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .multi_pays()
            },
        )
    }

    /// The setting this model was loaded with.
    pub fn intra_op_setting(&self) -> IntraOpThreads {
        self.threads
    }

    /// Plan calls run so far with several threads and with one.
    pub fn threaded_calls(&self) -> (u64, u64) {
        (
            self.cost.multi_calls.load(Ordering::Relaxed),
            self.cost.single_calls.load(Ordering::Relaxed),
        )
    }

    /// [`CompiledModel::run_callers`] with the intra-op thread count chosen for `load`.
    pub fn run_callers_under(
        &self,
        parts: &[Vec<Tensor>],
        load: PoolLoad,
    ) -> Result<Vec<Vec<Tensor>>, EngineError> {
        self.run_callers_on(parts, self.intra_op_threads(load))
    }

    /// [`CompiledModel::run_callers`] inside tract's executor for `threads` threads (1: the
    /// calling thread): the worker pool's entry point, after [`CompiledModel::intra_op_threads`].
    pub fn run_callers_on(
        &self,
        parts: &[Vec<Tensor>],
        threads: usize,
    ) -> Result<Vec<Vec<Tensor>>, EngineError> {
        if threads <= 1 {
            self.cost.single_calls.fetch_add(1, Ordering::Relaxed);
            return multithread_tract_scope(Executor::SingleThread, || self.run_callers(parts));
        }
        self.cost.multi_calls.fetch_add(1, Ordering::Relaxed);
        multithread_tract_scope(executor(threads), || self.run_callers(parts))
    }

    /// Wall time of the last plan call and the threads it ran on (the load's warm-up, until a
    /// request ran).
    pub fn last_call(&self) -> Option<(Duration, usize)> {
        let threads = self.cost.last_threads.load(Ordering::Relaxed).max(1);
        Some(self.cost.last())
            .filter(|c| !c.is_zero())
            .map(|cost| (cost / threads as u32, threads))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: Duration = Duration::from_micros(20);
    const LARGE: Duration = Duration::from_millis(5);

    #[test]
    fn auto_takes_every_core_only_when_idle_and_costly() {
        let auto = IntraOpThreads::Auto;
        let pays = || true;
        assert_eq!(decide_threads(auto, PoolLoad::Idle, LARGE, 2, pays), 2);
        assert_eq!(decide_threads(auto, PoolLoad::Busy, LARGE, 2, pays), 1);
        assert_eq!(decide_threads(auto, PoolLoad::Idle, SMALL, 2, pays), 1);
        assert_eq!(
            decide_threads(auto, PoolLoad::Idle, Duration::ZERO, 2, pays),
            1
        );
        assert_eq!(decide_threads(auto, PoolLoad::Idle, LARGE, 1, pays), 1);
        assert_eq!(decide_threads(auto, PoolLoad::Idle, LARGE, 2, || false), 1);
    }

    #[test]
    fn a_pinned_count_wins_over_load_and_cost() {
        for load in [PoolLoad::Idle, PoolLoad::Busy] {
            for cost in [SMALL, LARGE] {
                for pays in [true, false] {
                    let fixed =
                        |n| decide_threads(IntraOpThreads::Fixed(n), load, cost, 2, || pays);
                    assert_eq!((fixed(1), fixed(3)), (1, 3));
                }
            }
        }
    }

    #[test]
    fn cost_is_wall_time_times_threads() {
        let cost = CallCost::default();
        assert_eq!(cost.last(), Duration::ZERO);
        cost.record(Duration::from_micros(600), 2, 1);
        assert_eq!(cost.last(), Duration::from_micros(1200));
        cost.record(Duration::from_micros(40), 1, 1);
        assert_eq!(cost.last(), Duration::from_micros(40));
    }

    fn times(single: &[u64], multi: &[u64]) -> RowTimes {
        let mut t = RowTimes::default();
        for &ns in single {
            t.push(ns, 1);
        }
        for &ns in multi {
            t.push(ns, 2);
        }
        t
    }

    #[test]
    fn several_threads_are_tried_until_measured_twice() {
        assert!(times(&[], &[]).multi_pays());
        assert!(times(&[1000], &[]).multi_pays());
        assert!(
            times(&[1000], &[5000]).multi_pays(),
            "one slow call is not enough"
        );
        assert!(!times(&[1000], &[5000, 4000]).multi_pays());
    }

    #[test]
    fn several_threads_are_kept_only_while_clearly_faster_per_row() {
        assert!(times(&[1000, 1200], &[700, 900]).multi_pays());
        assert!(times(&[1000], &[900, 950]).multi_pays(), "0.9x is enough");
        assert!(!times(&[1000], &[950, 960]).multi_pays(), "0.95x is not");
        // The best of the last calls counts: one fast single-thread call among slow ones.
        assert!(!times(&[3000, 1000, 3000], &[1500, 1600]).multi_pays());
    }

    #[test]
    fn a_model_where_threads_do_not_pay_tries_them_again_now_and_then() {
        let mut t = times(&[1000], &[2000, 2000]);
        let tries = (0..MULTI_RETRY * 3).filter(|_| t.multi_pays()).count();
        assert_eq!(tries, 3);
        // Several threads got faster (another shape, a quieter machine): kept again.
        t.push(500, 2);
        assert!(t.multi_pays());
    }

    #[test]
    fn cheap_calls_are_not_timed() {
        let cost = CallCost::default();
        cost.record(Duration::from_micros(30), 1, 1);
        cost.record(Duration::from_micros(400), 2, 1);
        let times = cost.times.lock().unwrap();
        assert!(times.single.is_empty() && times.multi.is_empty());
        assert_eq!(
            cost.last(),
            Duration::from_micros(800),
            "the last cost is kept"
        );
    }

    #[test]
    fn times_are_per_row_and_only_the_last_calls_count() {
        let cost = CallCost::default();
        cost.record(Duration::from_micros(8000), 1, 8);
        cost.record(Duration::from_micros(3000), 2, 1);
        cost.record(Duration::from_micros(3000), 2, 1);
        // 1 ms a row on one thread against 3 on two.
        assert!(!cost.times.lock().unwrap().multi_pays());
        for _ in 0..TIME_WINDOW {
            cost.record(Duration::from_micros(500), 2, 1);
        }
        assert!(cost.times.lock().unwrap().multi_pays());
        assert_eq!(cost.times.lock().unwrap().multi.len(), TIME_WINDOW);
    }
}
