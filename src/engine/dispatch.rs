//! What the queues share with the worker pool: the wake-up channel, the count of model calls
//! running and the retry hint for refused callers. Generic over what a post carries, so a queue
//! can post itself without this module (or the queue) naming the pool: `queue` depends on
//! `dispatch`, `pool` on both, and nothing back.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use crossbeam_channel::Sender;

/// The pool's side of the wake-up channel, as the queues see it.
pub(crate) struct Dispatcher<T> {
    /// Wake-up posts, at most one per queue at a time (see `ModelQueue::schedule`); `None` once
    /// the pool has shut down.
    wake: ArcSwapOption<Sender<T>>,
    /// Posts waiting in the wake-up channel (for tests and the queue-bound invariant).
    pending: AtomicUsize,
    retry_after: Duration,
    running: AtomicUsize,
}

impl<T> Dispatcher<T> {
    pub(crate) fn new(tx: Sender<T>, retry_after: Duration) -> Dispatcher<T> {
        Dispatcher {
            wake: ArcSwapOption::from_pointee(tx),
            pending: AtomicUsize::new(0),
            retry_after,
            running: AtomicUsize::new(0),
        }
    }

    /// Posts `item` for a worker; false once the pool has shut down. Only `ModelQueue::schedule`
    /// calls this, after winning the queue's `posted` flag.
    pub(crate) fn wake(&self, item: T) -> bool {
        let guard = self.wake.load();
        let Some(tx) = guard.as_ref() else {
            return false;
        };
        self.pending.fetch_add(1, Ordering::Relaxed);
        if tx.send(item).is_err() {
            self.pending.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// A worker took a post off the channel.
    pub(crate) fn taken(&self) {
        self.pending.fetch_sub(1, Ordering::Relaxed);
    }

    /// Posts waiting for a worker.
    pub(crate) fn pending(&self) -> usize {
        self.pending.load(Ordering::Relaxed)
    }

    /// Whether the pool still takes work.
    pub(crate) fn is_open(&self) -> bool {
        self.wake.load().is_some()
    }

    /// Stops taking posts: workers drain the channel and exit.
    pub(crate) fn close(&self) {
        self.wake.store(None);
    }

    pub(crate) fn retry_after(&self) -> Duration {
        self.retry_after
    }

    /// Model calls running on a worker right now.
    pub(crate) fn running(&self) -> usize {
        self.running.load(Ordering::Relaxed)
    }

    /// Counts a call as started; returns how many other calls were running.
    pub(crate) fn running_inc(&self) -> usize {
        self.running.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn running_dec(&self) {
        self.running.fetch_sub(1, Ordering::Relaxed);
    }
}
