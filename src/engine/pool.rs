//! The CPU worker pool: dedicated OS threads fed by one bounded queue. Callers on the async side
//! hand over a job and await a oneshot reply; when the queue is full they are refused at once.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use tokio::sync::oneshot;

use super::error::EngineError;
use super::runtime::CompiledModel;
use super::tensor::Tensor;

/// Sizing of the pool.
#[derive(Debug, Clone, Copy)]
pub struct PoolConfig {
    /// Number of inference threads.
    pub workers: usize,
    /// Jobs that may wait for a worker; one more is refused with `Overloaded`.
    pub queue_capacity: usize,
    /// What an overloaded caller is told to wait before retrying.
    pub retry_after: Duration,
}

/// Why a queued job was dropped without running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// The caller stopped waiting (client disconnected or request cancelled).
    Cancelled,
    /// The job's deadline passed while it waited.
    Deadline,
}

impl SkipReason {
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::Cancelled => "cancelled",
            SkipReason::Deadline => "deadline",
        }
    }
}

/// Hooks the pool calls as a job moves through the queue, so that the layer above can keep
/// per-model queue gauges without the engine knowing about metrics.
pub trait JobObserver: Send + Sync {
    fn enqueued(&self);
    fn dequeued(&self);
    fn skipped(&self, reason: SkipReason);
    /// A worker ran the job (whether or not its caller is still waiting).
    fn ran(&self, rows: usize, queue_wait: Duration, compute: Duration);
}

/// Result of one job, with where its time went.
#[derive(Debug)]
pub struct RunOutput {
    pub outputs: Vec<Tensor>,
    pub queue_wait: Duration,
    pub compute: Duration,
}

type Reply = oneshot::Sender<Result<RunOutput, EngineError>>;

struct Job {
    model: Arc<CompiledModel>,
    inputs: Vec<Tensor>,
    enqueued: Instant,
    deadline: Instant,
    observer: Arc<dyn JobObserver>,
    reply: Reply,
}

/// A fixed set of inference threads sharing one bounded queue.
pub struct WorkerPool {
    /// Lock-free on the request path; emptied at shutdown.
    sender: ArcSwapOption<Sender<Job>>,
    config: PoolConfig,
    handles: Mutex<Vec<JoinHandle<()>>>,
    running: Arc<AtomicUsize>,
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
        let (tx, rx) = bounded::<Job>(config.queue_capacity.max(1));
        let running = Arc::new(AtomicUsize::new(0));
        let mut handles = Vec::with_capacity(workers);
        for i in 0..workers {
            let (rx, running) = (rx.clone(), running.clone());
            handles.push(
                std::thread::Builder::new()
                    .name(format!("infera-worker-{i}"))
                    .spawn(move || worker_loop(rx, running))?,
            );
        }
        Ok(WorkerPool {
            sender: ArcSwapOption::from_pointee(tx),
            config,
            handles: Mutex::new(handles),
            running,
        })
    }

    pub fn config(&self) -> PoolConfig {
        self.config
    }

    /// Jobs being run by a worker right now.
    pub fn running(&self) -> usize {
        self.running.load(Ordering::Relaxed)
    }

    /// Jobs currently waiting for a worker (all models).
    pub fn queued(&self) -> usize {
        self.sender.load().as_ref().map(|s| s.len()).unwrap_or(0)
    }

    /// Runs `inputs` through `model` on a worker thread. Refuses at once when the queue is full;
    /// gives up (and the worker skips the job) when `deadline` passes first. Dropping the returned
    /// future also makes the worker skip the job.
    pub async fn run(
        &self,
        model: Arc<CompiledModel>,
        inputs: Vec<Tensor>,
        deadline: Instant,
        observer: Arc<dyn JobObserver>,
    ) -> Result<RunOutput, EngineError> {
        let budget = deadline.saturating_duration_since(Instant::now());
        let receiver = self.submit(model, inputs, deadline, observer)?;
        match tokio::time::timeout_at(deadline.into(), receiver).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(EngineError::WorkerLost),
            Err(_) => Err(EngineError::DeadlineExceeded(budget)),
        }
    }

    fn submit(
        &self,
        model: Arc<CompiledModel>,
        inputs: Vec<Tensor>,
        deadline: Instant,
        observer: Arc<dyn JobObserver>,
    ) -> Result<oneshot::Receiver<Result<RunOutput, EngineError>>, EngineError> {
        let guard = self.sender.load();
        let sender = guard.as_ref().ok_or(EngineError::ShuttingDown)?;
        let (reply, receiver) = oneshot::channel();
        observer.enqueued();
        let job = Job {
            model,
            inputs,
            enqueued: Instant::now(),
            deadline,
            observer,
            reply,
        };
        match sender.try_send(job) {
            Ok(()) => Ok(receiver),
            Err(TrySendError::Full(job)) => {
                job.observer.dequeued();
                Err(EngineError::Overloaded {
                    capacity: self.config.queue_capacity,
                    retry_after: self.config.retry_after,
                })
            }
            Err(TrySendError::Disconnected(job)) => {
                job.observer.dequeued();
                Err(EngineError::ShuttingDown)
            }
        }
    }

    /// Stops taking jobs; workers finish what is queued and exit, without waiting for them.
    pub fn close(&self) {
        self.sender.store(None);
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

impl Drop for WorkerPool {
    fn drop(&mut self) {
        self.close();
    }
}

fn worker_loop(rx: Receiver<Job>, running: Arc<AtomicUsize>) {
    while let Ok(job) = rx.recv() {
        job.observer.dequeued();
        let started = Instant::now();
        if job.reply.is_closed() {
            job.observer.skipped(SkipReason::Cancelled);
            continue;
        }
        if started >= job.deadline {
            job.observer.skipped(SkipReason::Deadline);
            let waited = started - job.enqueued;
            let _ = job.reply.send(Err(EngineError::DeadlineExceeded(waited)));
            continue;
        }
        let queue_wait = started - job.enqueued;
        let rows = job.inputs.first().map(Tensor::rows).unwrap_or(0);
        let (model, inputs) = (job.model, job.inputs);
        running.fetch_add(1, Ordering::Relaxed);
        let result = catch_unwind(AssertUnwindSafe(|| model.run(inputs)))
            .unwrap_or_else(|_| Err(EngineError::Inference("the model panicked".into())));
        running.fetch_sub(1, Ordering::Relaxed);
        let compute = started.elapsed();
        job.observer.ran(rows, queue_wait, compute);
        let _ = job.reply.send(result.map(|outputs| RunOutput {
            outputs,
            queue_wait,
            compute,
        }));
    }
}
