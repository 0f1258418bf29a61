//! The CPU worker pool: dedicated OS threads that run model calls. Each model version has its
//! own bounded queue ([`ModelQueue`]). Wake-ups are coalesced per queue: a queue with work is
//! posted on the pool's wake-up channel at most once at a time (its `posted` flag), so the
//! channel never holds more posts than there are queues, and a quiet model's post waits behind at
//! most one post per other model, never behind another model's backlog. A worker that takes a
//! post takes one batch from the queue, re-posts the queue if work remains (so another worker can
//! serve it in parallel, and other models' posts get their turn), then runs the batch.

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver, TryRecvError};

use super::dispatch::Dispatcher;
use super::queue::{BatchPolicy, JobObserver, ModelQueue};
use super::runtime::{single_threaded_scope, CompiledModel};

/// Sizing of the pool.
#[derive(Debug, Clone, Copy)]
pub struct PoolConfig {
    /// Number of inference threads.
    pub workers: usize,
    /// What an overloaded caller is told to wait before retrying.
    pub retry_after: Duration,
    /// How long an idle worker keeps polling for work before it sleeps. Sleeping and being woken
    /// costs tens of microseconds on a VM; a short poll saves that for back-to-back requests.
    pub idle_poll: Duration,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            workers: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            retry_after: Duration::from_secs(1),
            idle_poll: Duration::from_micros(50),
        }
    }
}

/// The dispatcher the pool's queues post themselves on.
type PoolDispatch = Dispatcher<Arc<ModelQueue>>;

/// A fixed set of inference threads serving every model version's queue. The threads live as
/// long as the pool or any of its queues (or until [`WorkerPool::close`]).
pub struct WorkerPool {
    shared: Arc<PoolDispatch>,
    config: PoolConfig,
    handles: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for WorkerPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerPool")
            .field("config", &self.config)
            .finish()
    }
}

impl WorkerPool {
    /// Starts `config.workers` threads named `infera-worker-N`.
    pub fn start(config: PoolConfig) -> std::io::Result<WorkerPool> {
        let workers = config.workers.max(1);
        let (tx, rx) = unbounded::<Arc<ModelQueue>>();
        let shared = Arc::new(Dispatcher::new(tx, config.retry_after));
        let mut handles = Vec::with_capacity(workers);
        for i in 0..workers {
            let (rx, idle_poll, shared) = (rx.clone(), config.idle_poll, shared.clone());
            handles.push(
                std::thread::Builder::new()
                    .name(format!("infera-worker-{i}"))
                    .spawn(move || single_threaded_scope(|| worker_loop(rx, &shared, idle_poll)))?,
            );
        }
        Ok(WorkerPool {
            shared,
            config,
            handles: Mutex::new(handles),
        })
    }

    pub fn config(&self) -> PoolConfig {
        self.config
    }

    /// A queue for one model version, served by this pool's workers.
    pub fn queue(
        &self,
        model: Arc<CompiledModel>,
        policy: BatchPolicy,
        observer: Arc<dyn JobObserver>,
    ) -> Arc<ModelQueue> {
        Arc::new(ModelQueue::new(
            model,
            policy,
            observer,
            self.shared.clone(),
        ))
    }

    /// Model calls running on a worker right now.
    pub fn running(&self) -> usize {
        self.shared.running()
    }

    /// Wake-up posts waiting for a worker: never more than the number of live queues.
    pub fn pending_wakeups(&self) -> usize {
        self.shared.pending()
    }

    /// Stops taking jobs; workers finish what is queued and exit, without waiting for them.
    pub fn close(&self) {
        self.shared.close();
    }

    /// Stops taking jobs, lets the workers finish what is queued, and joins them.
    pub fn shutdown(&self) {
        self.close();
        let handles = self
            .handles
            .lock()
            .map(|mut h| std::mem::take(&mut *h))
            .unwrap_or_default();
        for handle in handles {
            let _ = handle.join();
        }
    }
}

fn worker_loop(rx: Receiver<Arc<ModelQueue>>, shared: &PoolDispatch, idle_poll: Duration) {
    while let Some(queue) = next_post(&rx, idle_poll) {
        shared.taken();
        queue.serve_post();
    }
}

/// The next wake-up post: polls briefly (yielding the core) before sleeping on the channel.
fn next_post(rx: &Receiver<Arc<ModelQueue>>, idle_poll: Duration) -> Option<Arc<ModelQueue>> {
    match rx.try_recv() {
        Ok(queue) => return Some(queue),
        Err(TryRecvError::Disconnected) => return None,
        Err(TryRecvError::Empty) => {}
    }
    if !idle_poll.is_zero() {
        let until = Instant::now() + idle_poll;
        while Instant::now() < until {
            std::thread::yield_now();
            match rx.try_recv() {
                Ok(queue) => return Some(queue),
                Err(TryRecvError::Disconnected) => return None,
                Err(TryRecvError::Empty) => {}
            }
        }
    }
    rx.recv().ok()
}
