//! The bulk lane: a small async runtime whose threads run under the SCHED_IDLE policy, for work
//! that holds a CPU for long stretches without a yield point (parsing and answering a request of
//! a thousand rows takes about 0.7 ms).
//!
//! On the main runtime such a stretch delays every small request queued behind it on that
//! thread. On a bulk thread, any normal thread that wakes (an HTTP thread with a small request,
//! an inference worker, the client on the same machine) preempts it at once: the kernel
//! scheduler decides, not a queue. The lane still uses every cycle nobody else wants, so with the
//! CPU otherwise idle large requests run at full speed; while normal threads keep the CPU busy
//! they get a tiny share of it (about 0.3%) and wait. Lower niceness alone was not enough on
//! Linux 6.18: a nice-10 thread is not preempted before the end of its slice, and the hostile
//! benchmark's good p99 stayed at 4.3-4.7x of quiet (docs/benchmarks.md).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// Niceness of the bulk threads where the SCHED_IDLE policy is refused (not Linux, or a
/// sandbox that filters `sched_setattr`).
pub const BULK_NICE: i32 = 19;

/// A multi-threaded tokio runtime of idle-priority threads.
pub struct BulkLane {
    runtime: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for BulkLane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BulkLane")
    }
}

impl BulkLane {
    /// Starts `threads` threads (at least one) named `infera-bulk`, each under SCHED_IDLE (or
    /// at [`BULK_NICE`] where that is refused).
    pub fn start(threads: usize) -> std::io::Result<BulkLane> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("infera-bulk")
            .on_thread_start(|| {
                if !super::sched::idle_policy() && !super::sched::lower_thread_priority(BULK_NICE) {
                    tracing::debug!("could not lower a bulk thread's priority");
                }
            })
            .enable_all()
            .build()?;
        Ok(BulkLane {
            runtime: Some(runtime),
        })
    }

    /// Runs `work` on the lane. Dropping the returned task cancels the work at its next await.
    pub fn spawn<F>(&self, work: F) -> LaneTask<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let runtime = self.runtime.as_ref().expect("the runtime lives until drop");
        LaneTask(runtime.spawn(work))
    }
}

impl Drop for BulkLane {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which panics inside another runtime; this does not.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Work running on the lane; aborted when dropped (a client that went away).
#[derive(Debug)]
pub struct LaneTask<T>(tokio::task::JoinHandle<T>);

/// Why lane work gave no result.
#[derive(Debug, thiserror::Error)]
pub enum LaneError {
    #[error("the work panicked")]
    Panicked,
    #[error("the lane shut down")]
    Stopped,
}

impl<T> Future for LaneTask<T> {
    type Output = Result<T, LaneError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx).map(|r| {
            r.map_err(|e| {
                if e.is_panic() {
                    LaneError::Panicked
                } else {
                    LaneError::Stopped
                }
            })
        })
    }
}

impl<T> Drop for LaneTask<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// When something last happened, to the millisecond, cheap to mark from many threads: the
/// shared word is written at most once per millisecond (read first, written only when the stored
/// millisecond is older), so marking it on every small request does not bounce a cache line
/// between the HTTP threads on every request.
#[derive(Debug)]
pub struct Recent {
    origin: Instant,
    /// Milliseconds since `origin` at the last mark, plus one (0: never).
    last: AtomicU64,
}

impl Default for Recent {
    fn default() -> Recent {
        Recent {
            origin: Instant::now(),
            last: AtomicU64::new(0),
        }
    }
}

impl Recent {
    fn now(&self) -> u64 {
        self.origin.elapsed().as_millis() as u64 + 1
    }

    pub fn mark(&self) {
        let now = self.now();
        if self.last.load(Ordering::Relaxed) < now {
            self.last.store(now, Ordering::Relaxed);
        }
    }

    /// Whether the last mark is at most `window` old.
    pub fn within(&self, window: Duration) -> bool {
        let last = self.last.load(Ordering::Relaxed);
        last != 0 && self.now().saturating_sub(last) <= window.as_millis() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn work_runs_on_idle_policy_threads_and_returns_its_result() {
        let lane = BulkLane::start(2).unwrap();
        let (policy, name) = lane
            .spawn(async {
                // SAFETY: takes the calling thread (0), no pointers.
                let policy = unsafe { libc::sched_getscheduler(0) };
                (policy, std::thread::current().name().map(str::to_string))
            })
            .await
            .unwrap();
        assert_eq!(policy, libc::SCHED_IDLE);
        assert_eq!(name.as_deref(), Some("infera-bulk"));
    }

    #[test]
    fn recent_says_whether_the_last_mark_is_within_the_window() {
        let recent = Recent::default();
        assert!(!recent.within(Duration::from_secs(3600)), "never marked");
        recent.mark();
        assert!(recent.within(Duration::from_millis(50)));
        std::thread::sleep(Duration::from_millis(30));
        assert!(!recent.within(Duration::from_millis(5)));
        recent.mark();
        assert!(recent.within(Duration::from_millis(5)));
    }

    #[tokio::test]
    async fn a_dropped_task_is_cancelled_and_a_panic_is_reported() {
        let lane = BulkLane::start(1).unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = lane.spawn(async move {
            let _tx = tx; // dropped when the work is cancelled
            std::future::pending::<()>().await
        });
        drop(task);
        assert!(rx.await.is_err(), "the cancelled work dropped its sender");
        let panicked = lane.spawn(async { panic!("boom") }).await;
        assert!(matches!(panicked, Err(LaneError::Panicked)));
        drop(lane); // inside a runtime: must not panic
    }
}
