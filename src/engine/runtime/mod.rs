//! The compiled model: loading (`load.rs`), plan execution (`execute.rs`) and tensor conversion
//! at the engine seam (`convert.rs`). Only this module names tract types.

mod convert;
mod execute;
mod load;

use std::path::Path;
use std::sync::Arc;

use tract_onnx::prelude::{self as tract, TypedSimplePlan};

use super::error::EngineError;
use super::tensor::{Dim, ModelSignature};

/// Runs `f` with tract's matrix products pinned to the calling thread. Parallelism comes from
/// several workers sharing a plan; the thread-local setting also spares every product a look at
/// tract's process-wide executor setting, which sits behind a mutex shared by all workers.
pub fn single_threaded_scope<R>(f: impl FnOnce() -> R) -> R {
    tract::multithread::multithread_tract_scope(tract::multithread::Executor::SingleThread, f)
}

/// How many instances one call to the tract plan can take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CallShape {
    /// The first axis is symbolic: a whole batch runs in one call.
    Batched,
    /// The first axis is fixed at 1: instances run one per call, each with that axis.
    OnePerCallWithAxis,
    /// The inputs have no batch axis: instances run one per call, the axis added and removed here.
    OnePerCallNoAxis,
}

/// An optimised, runnable model plus the signature callers see. Every signature has a batch
/// dimension first; for models whose graph cannot take a batch the engine runs the instances one
/// at a time behind it.
#[derive(Debug)]
pub struct CompiledModel {
    plan: Arc<TypedSimplePlan>,
    signature: ModelSignature,
    call_shape: CallShape,
    /// For each output: whether a one-per-call plan returns it with a leading axis of 1.
    output_has_axis: Vec<bool>,
}

impl CompiledModel {
    /// Reads, types, optimises and plans an ONNX file. The batch dimension is kept symbolic when
    /// the graph allows; otherwise it is fixed to 1 and instances run one per call.
    pub fn load(path: &Path) -> Result<CompiledModel, EngineError> {
        load::load(path)
    }

    pub fn signature(&self) -> &ModelSignature {
        &self.signature
    }

    /// Largest number of instances one tract call takes (None: any).
    pub fn max_rows_per_call(&self) -> Option<usize> {
        match self.call_shape {
            CallShape::Batched => None,
            CallShape::OnePerCallWithAxis | CallShape::OnePerCallNoAxis => Some(1),
        }
    }

    /// True when instances of different callers may share one call: the graph takes a batch and
    /// every output dimension after the batch is fixed, so rows can be split back by count.
    pub fn can_batch_callers(&self) -> bool {
        self.call_shape == CallShape::Batched
            && self
                .signature
                .outputs
                .iter()
                .all(|o| o.shape.iter().skip(1).all(|d| matches!(d, Dim::Fixed(_))))
    }
}
