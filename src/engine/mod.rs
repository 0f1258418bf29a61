//! The inference core: ONNX loading and optimisation with tract, plain tensors, and the pool of
//! CPU worker threads that runs them. Nothing here knows about HTTP; the only file that names
//! tract types is `runtime/` (loading, plan execution, tensor conversion).

mod batch_limit;
mod bulk_lane;
mod dispatch;
mod error;
mod maps;
mod ml;
mod pool;
mod queue;
mod runtime;
pub mod sched;
mod split;
mod tensor;

pub use bulk_lane::{BulkLane, LaneError, LaneTask, Recent, BULK_NICE};
pub use error::EngineError;
pub use maps::{map_inputs, MapInput};
pub use pool::{PoolConfig, WorkerPool};
pub use queue::{BatchPolicy, JobObserver, ModelQueue, RunOutput, SkipReason};
pub use runtime::{
    available_cores, decide_threads, CompiledModel, IntraOpThreads, LoadOptions, PlanMode,
    PlanObserver, PoolLoad, MAX_INTRA_OP_THREADS, MULTI_THREAD_MIN_COST,
};
pub use tensor::{Batching, Cell, DataType, Dim, ModelSignature, Tensor, TensorData, TensorSpec};
