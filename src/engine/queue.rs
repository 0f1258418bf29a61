//! One model version's bounded queue and its dynamic batching: callers enqueue jobs here (refused
//! at once when the queue is full); a worker that picks the queue up takes every job waiting, up
//! to the merge limit (`max_batch_size`, or less when merging does not pay: `batch_limit.rs`),
//! waiting at most `max_queue_delay` for more, runs them as one model call and hands each caller
//! its own rows.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;
use tokio::sync::oneshot;

use super::batch_limit::BatchLimit;
use super::dispatch::Dispatcher;
use super::error::EngineError;
use super::runtime::{CompiledModel, PoolLoad};
use super::tensor::Tensor;

/// How one model version's requests are queued and batched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchPolicy {
    /// Most instances run in one model call; 1 turns batching off. A single request carrying
    /// more instances still runs, alone.
    pub max_batch_size: usize,
    /// Learn how many rows merging pays for (`batch_limit.rs`): merge only up to the largest
    /// batch whose measured cost per row is clearly below that of the smallest calls. False:
    /// always merge up to `max_batch_size`.
    pub learn_limit: bool,
    /// How long the oldest waiting request may be held for others to join its batch. Zero: a
    /// lone request never waits; batches form only from requests that queued up meanwhile.
    pub max_queue_delay: Duration,
    /// Requests that may wait for this model version; one more is refused with `Overloaded`.
    pub queue_capacity: usize,
}

impl Default for BatchPolicy {
    fn default() -> Self {
        BatchPolicy {
            max_batch_size: 64,
            learn_limit: true,
            max_queue_delay: Duration::ZERO,
            queue_capacity: 256,
        }
    }
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

/// Hooks the engine calls as jobs move through a queue, so that the layer above can keep
/// per-model gauges and histograms without the engine knowing about metrics.
pub trait JobObserver: Send + Sync {
    fn enqueued(&self);
    fn dequeued(&self);
    fn skipped(&self, reason: SkipReason);
    /// A job reached a worker after waiting `queue_wait`.
    fn started(&self, queue_wait: Duration);
    /// One model call ran `rows` instances from `jobs` requests in `compute`.
    fn batch_ran(&self, rows: usize, jobs: usize, compute: Duration);
}

/// Result of one job, with where its time went.
#[derive(Debug)]
pub struct RunOutput {
    pub outputs: Vec<Tensor>,
    pub queue_wait: Duration,
    /// Time of the model call the job ran in (shared with the other jobs of its batch).
    pub compute: Duration,
    /// Instances in that model call, this job's included (the largest chunk when the job's rows
    /// ran in chunks under a learned merge limit).
    pub batch_rows: usize,
}

type Reply = oneshot::Sender<Result<RunOutput, EngineError>>;

pub(crate) struct Job {
    inputs: Vec<Tensor>,
    rows: usize,
    enqueued: Instant,
    deadline: Instant,
    reply: Reply,
}

/// A model version's queue. Made by [`super::WorkerPool::queue`]; lock-free on the request path.
pub struct ModelQueue {
    model: Arc<CompiledModel>,
    policy: BatchPolicy,
    jobs: ArrayQueue<Job>,
    observer: Arc<dyn JobObserver>,
    pool: Arc<Dispatcher<Arc<ModelQueue>>>,
    /// Rows one call may merge now: `max_batch_size`, or less as learned from the calls' costs.
    limit: BatchLimit,
    /// True while a wake-up post for this queue sits in the pool's channel: enqueuers post only
    /// when they flip it from false, so the channel holds at most one post per queue.
    posted: AtomicBool,
}

impl std::fmt::Debug for ModelQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelQueue")
            .field("policy", &self.policy)
            .field("queued", &self.jobs.len())
            .finish()
    }
}

impl ModelQueue {
    pub(crate) fn new(
        model: Arc<CompiledModel>,
        mut policy: BatchPolicy,
        observer: Arc<dyn JobObserver>,
        pool: Arc<Dispatcher<Arc<ModelQueue>>>,
    ) -> ModelQueue {
        policy.max_batch_size = policy.max_batch_size.max(1);
        policy.queue_capacity = policy.queue_capacity.max(1);
        // The limit is learned over the configured size even when callers cannot share calls:
        // a lone request's rows are independent whenever the graph has a batch axis, so it may
        // still run in chunks when its calls cost more per row than smaller ones.
        let fixed = !policy.learn_limit || policy.max_batch_size == 1 || !model.signature().batched;
        let limit = BatchLimit::new(policy.max_batch_size, fixed);
        if !model.can_batch_callers() {
            policy.max_batch_size = 1;
            policy.max_queue_delay = Duration::ZERO;
        }
        if let Some((wall, threads)) = model.last_call() {
            // The load's warm-up: one row.
            limit.record(1, wall, threads);
        }
        ModelQueue {
            limit,
            jobs: ArrayQueue::new(policy.queue_capacity),
            model,
            policy,
            observer,
            pool,
            posted: AtomicBool::new(false),
        }
    }

    /// The policy in force (batching is off for models that cannot batch callers).
    pub fn policy(&self) -> BatchPolicy {
        self.policy
    }

    /// Rows one model call may merge now (at most `max_batch_size`; see `batch_limit.rs`).
    pub fn merge_limit(&self) -> usize {
        self.limit.get().min(self.policy.max_batch_size)
    }

    /// Most rows one call of a lone request may take now (its rows run in chunks of this many
    /// when it carries more).
    pub fn split_cap(&self) -> usize {
        self.limit.cap()
    }

    /// Requests waiting for a worker.
    pub fn queued(&self) -> usize {
        self.jobs.len()
    }

    /// `Overloaded` when the queue is full right now: lets a caller refuse a request before
    /// spending anything on it (reading and parsing its body). `run` checks again on enqueue.
    pub fn check_room(&self) -> Result<(), EngineError> {
        if self.jobs.is_full() {
            return Err(self.overloaded());
        }
        Ok(())
    }

    fn overloaded(&self) -> EngineError {
        EngineError::Overloaded {
            capacity: self.policy.queue_capacity,
            retry_after: self.pool.retry_after(),
        }
    }

    /// Runs `inputs` (batch first) on a worker thread, possibly in one model call with other
    /// callers' inputs. Refuses at once when the queue is full; gives up (and the worker skips the
    /// job) when `deadline` passes first. Dropping the returned future also makes the worker skip
    /// the job.
    pub async fn run(
        self: &Arc<Self>,
        inputs: Vec<Tensor>,
        deadline: Instant,
    ) -> Result<RunOutput, EngineError> {
        let budget = deadline.saturating_duration_since(Instant::now());
        let receiver = self.submit(inputs, deadline)?;
        match tokio::time::timeout_at(deadline.into(), receiver).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(EngineError::WorkerLost),
            Err(_) => Err(EngineError::DeadlineExceeded(budget)),
        }
    }

    fn submit(
        self: &Arc<Self>,
        inputs: Vec<Tensor>,
        deadline: Instant,
    ) -> Result<oneshot::Receiver<Result<RunOutput, EngineError>>, EngineError> {
        let (reply, receiver) = oneshot::channel();
        let job = Job {
            rows: inputs.first().map(Tensor::rows).unwrap_or(0),
            inputs,
            enqueued: Instant::now(),
            deadline,
            reply,
        };
        self.observer.enqueued();
        if self.jobs.push(job).is_err() {
            self.observer.dequeued();
            return Err(self.overloaded());
        }
        if !self.schedule() {
            // The pool has shut down; the job stays queued until the queue is dropped and its
            // caller is told now.
            return Err(EngineError::ShuttingDown);
        }
        Ok(receiver)
    }

    /// Makes sure a worker will look at this queue: posts it unless a post is already waiting.
    /// False once the pool has shut down.
    fn schedule(self: &Arc<Self>) -> bool {
        // SeqCst pairs with the swap in `serve_post`: an enqueuer that sees `true` pushed its job
        // before the worker cleared the flag, so that worker's `take_batch` sees the job.
        if self.posted.swap(true, Ordering::SeqCst) {
            return self.pool.is_open();
        }
        if self.pool.wake(self.clone()) {
            return true;
        }
        self.posted.store(false, Ordering::SeqCst);
        false
    }

    /// A worker took this queue's post: takes one batch, re-posts the queue if work remains
    /// (another worker may serve it meanwhile, and other queues' posts get their turn), then
    /// runs the batch. A job that did not fit the batch is run next by this worker.
    pub(crate) fn serve_post(self: &Arc<Self>) {
        self.posted.store(false, Ordering::SeqCst);
        let mut carried = None;
        loop {
            let (batch, rest) = self.take_batch(carried.take());
            if !self.jobs.is_empty() {
                self.schedule();
            }
            self.run_batch(batch);
            match rest {
                Some(job) => carried = Some(job),
                None => break,
            }
        }
    }

    /// Takes the next batch: `first` (a job carried over from the previous round) and then
    /// every queued job that fits, waiting up to `max_queue_delay` from the oldest job's arrival
    /// for the batch to fill. Returns the batch and a job that did not fit (run next).
    pub(crate) fn take_batch(&self, first: Option<Job>) -> (Vec<Job>, Option<Job>) {
        let max = self.limit.get().min(self.policy.max_batch_size);
        let mut batch: Vec<Job> = Vec::new();
        let mut rows = 0;
        if let Some(job) = first {
            rows += job.rows;
            batch.push(job);
        }
        loop {
            while rows < max {
                let Some(job) = self.jobs.pop() else { break };
                self.observer.dequeued();
                let Some(job) = self.admit(job) else { continue };
                if !batch.is_empty() && rows + job.rows > max {
                    return (batch, Some(job));
                }
                rows += job.rows;
                batch.push(job);
            }
            let Some(oldest) = batch.first() else {
                return (batch, None);
            };
            let until = oldest.enqueued + self.policy.max_queue_delay;
            let now = Instant::now();
            if rows >= max || now >= until {
                return (batch, None);
            }
            // Hold this worker briefly for more requests to join; the sleep granularity on
            // Linux is ~50-100 us, so short delays spin politely instead.
            let left = until - now;
            if left > Duration::from_micros(200) {
                std::thread::sleep(Duration::from_micros(100));
            } else {
                std::thread::yield_now();
            }
        }
    }

    /// Drops a job whose caller left or whose deadline passed; keeps the others.
    fn admit(&self, job: Job) -> Option<Job> {
        if job.reply.is_closed() {
            self.observer.skipped(SkipReason::Cancelled);
            return None;
        }
        let now = Instant::now();
        if now >= job.deadline {
            self.observer.skipped(SkipReason::Deadline);
            let _ = job
                .reply
                .send(Err(EngineError::DeadlineExceeded(now - job.enqueued)));
            return None;
        }
        Some(job)
    }

    /// Runs a batch as one model call and answers each job with its own rows. When a batch of
    /// several jobs fails, each job is retried alone so one bad request cannot fail the others.
    pub(crate) fn run_batch(&self, batch: Vec<Job>) {
        if batch.is_empty() {
            return;
        }
        let started = Instant::now();
        let rows: usize = batch.iter().map(|j| j.rows).sum();
        let mut waits = Vec::with_capacity(batch.len());
        let mut replies = Vec::with_capacity(batch.len());
        let mut parts = Vec::with_capacity(batch.len());
        for job in batch {
            let wait = started - job.enqueued;
            self.observer.started(wait);
            waits.push(wait);
            replies.push((job.reply, job.rows));
            parts.push(job.inputs);
        }
        let jobs = parts.len();
        let split = self.limit.learned()
            && (rows > self.limit.cap() || (rows > 1 && self.limit.needs_reference()));
        let (result, call_rows) = if jobs == 1 && split {
            self.run_split(&parts[0], rows)
        } else {
            (self.measured_call(&parts, rows), rows)
        };
        let compute = started.elapsed();
        let outputs: Vec<Result<Vec<Tensor>, EngineError>> = match result {
            Ok(outputs) => outputs.into_iter().map(Ok).collect(),
            Err(e) if jobs == 1 => vec![Err(e)],
            Err(e) => {
                tracing::warn!(error = %e, jobs, "batched model call failed; retrying each request alone");
                parts
                    .chunks(1)
                    .map(|p| self.call(p).0.map(|mut o| o.remove(0)))
                    .collect()
            }
        };
        for (((reply, _), wait), output) in replies.into_iter().zip(waits).zip(outputs) {
            let _ = reply.send(output.map(|outputs| RunOutput {
                outputs,
                queue_wait: wait,
                compute,
                batch_rows: call_rows,
            }));
        }
    }

    /// One model call of `rows` rows, reported to the observer and to the merge limit.
    fn measured_call(
        &self,
        parts: &[Vec<Tensor>],
        rows: usize,
    ) -> Result<Vec<Vec<Tensor>>, EngineError> {
        let plans_built = self.model.plans_built();
        let started = Instant::now();
        let (result, threads) = self.call(parts);
        let took = started.elapsed();
        self.observer.batch_ran(rows, parts.len(), took);
        // A call that specialised a plan (a shape seen for the first time) is not a measure of
        // what calls of its size cost.
        if result.is_ok() && self.model.plans_built() == plans_built {
            self.limit.record(rows, took, threads);
        }
        result
    }

    /// A lone request of more rows than the learned cap (or of several rows before a call of one
    /// row was measured: its first row then runs alone): its rows run in chunks of at most the
    /// cap (read again after each chunk, which may teach it more), and the chunks' outputs are
    /// joined. Returns the outputs and the largest chunk.
    fn run_split(
        &self,
        inputs: &[Tensor],
        rows: usize,
    ) -> (Result<Vec<Vec<Tensor>>, EngineError>, usize) {
        let mut outputs = Vec::new();
        let (mut at, mut largest) = (0, 0);
        while at < rows {
            let cap = if self.limit.needs_reference() {
                1
            } else {
                self.limit.cap()
            };
            let take = cap.clamp(1, rows - at);
            let chunk = [super::split::rows_of(inputs, at..at + take)];
            match self.measured_call(&chunk, take) {
                Ok(mut out) => outputs.push(out.remove(0)),
                Err(e) => return (Err(e), largest.max(take)),
            }
            largest = largest.max(take);
            at += take;
        }
        match super::split::join_rows(outputs) {
            Ok(joined) => (Ok(vec![joined]), largest),
            // Outputs whose sizes depend on the rows in the call (a model whose callers cannot
            // share calls): the request runs whole after all.
            Err(_) => (self.measured_call(&[inputs.to_vec()], rows), rows),
        }
    }

    /// One model call, and the threads it ran with.
    fn call(&self, parts: &[Vec<Tensor>]) -> (Result<Vec<Vec<Tensor>>, EngineError>, usize) {
        // Idle: no other call running, no wake-up post and no job of this model waiting.
        let others = self.pool.running_inc();
        let load = if others == 0 && self.pool.pending() == 0 && self.jobs.is_empty() {
            PoolLoad::Idle
        } else {
            PoolLoad::Busy
        };
        let threads = self.model.intra_op_threads(load);
        let result = catch_unwind(AssertUnwindSafe(|| {
            self.model.run_callers_on(parts, threads)
        }))
        .unwrap_or_else(|_| Err(EngineError::Inference("the model panicked".into())));
        self.pool.running_dec();
        (result, threads)
    }
}
