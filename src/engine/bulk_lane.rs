//! The bulk lane: a small async runtime whose threads run at a lower CPU priority, for work
//! that holds a CPU for long stretches without a yield point (parsing and answering a request of
//! a thousand rows takes about 0.7 ms).
//!
//! On the main runtime such a stretch delays every small request queued behind it on that
//! thread. Run on a bulk thread instead, the small request's thread (normal priority) preempts
//! it as soon as it wakes: the kernel scheduler, not a queue, decides, so large work still uses
//! every idle cycle and slows down only while small requests need the CPU.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Niceness of the bulk threads: a nice-10 thread gets about a tenth of the share of a nice-0
/// one when both want the CPU, and is preempted when a nice-0 thread wakes.
pub const BULK_NICE: i32 = 10;

/// A multi-threaded tokio runtime of low-priority threads.
pub struct BulkLane {
    runtime: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for BulkLane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BulkLane")
    }
}

impl BulkLane {
    /// Starts `threads` threads (at least one) named `infera-bulk`, each at [`BULK_NICE`].
    pub fn start(threads: usize) -> std::io::Result<BulkLane> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("infera-bulk")
            .on_thread_start(|| {
                if !lower_thread_priority(BULK_NICE) {
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

/// Sets the calling thread's niceness (Linux: `setpriority` on a thread id affects that thread
/// only). Best effort: false when refused or not on Linux.
pub fn lower_thread_priority(nice: i32) -> bool {
    #[cfg(target_os = "linux")]
    // SAFETY: plain system calls on the calling thread's own id; no memory is passed.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, nice) == 0
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = nice;
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The niceness of the calling thread, from /proc.
    #[cfg(target_os = "linux")]
    fn own_nice() -> i32 {
        // SAFETY: gettid takes no arguments.
        let tid = unsafe { libc::syscall(libc::SYS_gettid) };
        let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap();
        // Fields after the command name (which ends with ')'): nice is field 19, the 17th here.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        rest.split(' ').nth(16).unwrap().parse().unwrap()
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn work_runs_on_low_priority_threads_and_returns_its_result() {
        let lane = BulkLane::start(2).unwrap();
        let (nice, name) = lane
            .spawn(async {
                (
                    own_nice(),
                    std::thread::current().name().map(str::to_string),
                )
            })
            .await
            .unwrap();
        assert!(nice >= BULK_NICE, "bulk thread at nice {nice}");
        assert_eq!(name.as_deref(), Some("infera-bulk"));
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
