//! Intra-op threads: how many threads one plan call may use. A lone request on an idle server
//! runs with tract's multithreaded matrix products over every core; under load each call keeps
//! to its worker's thread (parallelism then comes from the workers). Models whose calls are
//! cheap never go multithreaded: waking a thread pool costs tens of microseconds, more than the
//! whole call of a classic ML model. A model card (`[runtime] threads`) or the server flag
//! (`--intra-op-threads`) can pin the count.

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
}

impl CallCost {
    pub(super) fn record(&self, wall: Duration, threads: usize) {
        let ns = wall
            .as_nanos()
            .saturating_mul(threads.max(1) as u128)
            .min(u64::MAX as u128) as u64;
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
/// pool's load, the model's last measured call cost and the cores there are.
pub fn decide_threads(
    setting: IntraOpThreads,
    load: PoolLoad,
    last_cost: Duration,
    cores: usize,
) -> usize {
    match setting {
        IntraOpThreads::Fixed(n) => n.clamp(1, MAX_INTRA_OP_THREADS),
        IntraOpThreads::Auto => {
            if load == PoolLoad::Idle && last_cost >= MULTI_THREAD_MIN_COST {
                cores.max(1)
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
        decide_threads(self.threads, load, self.cost.last(), available_cores())
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
        assert_eq!(decide_threads(auto, PoolLoad::Idle, LARGE, 2), 2);
        assert_eq!(decide_threads(auto, PoolLoad::Busy, LARGE, 2), 1);
        assert_eq!(decide_threads(auto, PoolLoad::Idle, SMALL, 2), 1);
        assert_eq!(decide_threads(auto, PoolLoad::Idle, Duration::ZERO, 2), 1);
        assert_eq!(decide_threads(auto, PoolLoad::Idle, LARGE, 1), 1);
    }

    #[test]
    fn a_pinned_count_wins_over_load_and_cost() {
        for load in [PoolLoad::Idle, PoolLoad::Busy] {
            for cost in [SMALL, LARGE] {
                assert_eq!(decide_threads(IntraOpThreads::Fixed(1), load, cost, 2), 1);
                assert_eq!(decide_threads(IntraOpThreads::Fixed(3), load, cost, 2), 3);
            }
        }
    }

    #[test]
    fn cost_is_wall_time_times_threads() {
        let cost = CallCost::default();
        assert_eq!(cost.last(), Duration::ZERO);
        cost.record(Duration::from_micros(600), 2);
        assert_eq!(cost.last(), Duration::from_micros(1200));
        cost.record(Duration::from_micros(40), 1);
        assert_eq!(cost.last(), Duration::from_micros(40));
    }
}
