//! The compiled model: loading (`load.rs`), plan execution (`execute.rs`) and tensor conversion
//! at the engine seam (`convert.rs`). Only this module names tract types.

mod branches;
mod convert;
mod execute;
mod load;
mod plans;
mod threads;

pub use plans::PlanObserver;
pub use threads::{
    available_cores, decide_threads, IntraOpThreads, PoolLoad, MAX_INTRA_OP_THREADS,
    MULTI_THREAD_MIN_COST,
};

use std::path::Path;
use std::sync::Arc;

use tract_onnx::prelude::{self as tract, TypedSimplePlan};

use plans::PlanCache;
use threads::CallCost;

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

/// How a model's plans are made: with the graph's symbolic dimensions kept, or specialised per
/// concrete input shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PlanMode {
    /// Symbols kept when tract can optimise the graph with them, else specialised per shape.
    #[default]
    Auto,
    /// One plan with the symbols kept; the load fails if tract cannot optimise it so.
    Symbolic,
    /// A plan per concrete input shape, built on first use and cached.
    Specialised,
}

/// What a model card can say about loading a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadOptions {
    /// None: decided from the graph (the inputs share a variable leading axis). Some(true): the
    /// first axis is the batch axis; Some(false): the model has none (exact shapes).
    pub batch_axis: Option<bool>,
    pub plans: PlanMode,
    /// Specialised plans kept per model version (least recently used dropped first).
    pub plan_cache: usize,
    /// Threads one plan call may use (see `threads.rs`).
    pub threads: IntraOpThreads,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            batch_axis: None,
            plans: PlanMode::Auto,
            plan_cache: 16,
            threads: IntraOpThreads::Auto,
        }
    }
}

/// The plan(s) of a model version.
#[derive(Debug)]
enum Plans {
    /// One optimised plan for every shape the signature accepts.
    Symbolic(Arc<TypedSimplePlan>),
    /// A plan per concrete input shape.
    Specialised(Box<PlanCache>),
}

/// An optimised, runnable model plus the signature callers see. Every signature has a batch
/// dimension first; for models whose graph cannot take a batch the engine runs the instances one
/// at a time behind it.
#[derive(Debug)]
pub struct CompiledModel {
    plans: Plans,
    signature: ModelSignature,
    call_shape: CallShape,
    /// For each output: whether a one-per-call plan returns it with a leading axis of 1.
    output_has_axis: Vec<bool>,
    /// Groups of (input, axis) whose sizes the graph ties together (one named dimension used by
    /// several inputs or axes, batch axis excluded): a request must give them equal sizes.
    tied_axes: Vec<Vec<(usize, usize)>>,
    /// True when the callers' requests may share a plan call once their shapes agree: every
    /// output dimension after the batch follows from the input shapes.
    outputs_follow_inputs: bool,
    /// The class names of a classifier with string labels (`classlabels_strings`).
    class_labels: Option<Vec<String>>,
    /// Intra-op threads setting, and the measured cost of the last plan call.
    threads: IntraOpThreads,
    cost: CallCost,
}

impl CompiledModel {
    /// Reads, types, optimises and plans an ONNX file with the default options: the batch
    /// dimension is kept symbolic when the graph has one, other variable dimensions too when
    /// tract can optimise them, else plans are specialised per shape.
    pub fn load(path: &Path) -> Result<CompiledModel, EngineError> {
        Self::load_with(path, &LoadOptions::default())
    }

    /// As [`CompiledModel::load`], with the model card's options.
    pub fn load_with(path: &Path, options: &LoadOptions) -> Result<CompiledModel, EngineError> {
        let mut model = load::load(path, options)?;
        model.threads = options.threads;
        model.class_labels =
            crate::engine::ml::class_labels(path).map_err(|e| EngineError::Load {
                path: path.display().to_string(),
                reason: format!("{e:#}"),
            })?;
        Ok(model)
    }

    /// Reports the plan cache's hits, misses and specialisation times to `observer` (models with
    /// one symbolic plan have no cache and report nothing).
    pub fn observe_plans(&self, observer: Arc<dyn PlanObserver>) {
        if let Plans::Specialised(cache) = &self.plans {
            cache.observe(observer);
        }
    }

    /// Plans specialised so far (0 for a model with one symbolic plan): a call during which this
    /// grew paid for building a plan, so its time says nothing about running one.
    pub fn plans_built(&self) -> u64 {
        match &self.plans {
            Plans::Symbolic(_) => 0,
            Plans::Specialised(cache) => cache.misses(),
        }
    }

    /// Whether plans are specialised per shape, with the cache's capacity and how many it holds.
    pub fn plan_cache(&self) -> Option<(usize, usize)> {
        match &self.plans {
            Plans::Symbolic(_) => None,
            Plans::Specialised(cache) => Some((cache.capacity(), cache.len())),
        }
    }

    pub fn signature(&self) -> &ModelSignature {
        &self.signature
    }

    /// The graph's class names when its classifier has string labels, in class-index order.
    pub fn class_labels(&self) -> Option<&[String]> {
        self.class_labels.as_deref()
    }

    /// Largest number of instances one tract call takes (None: any).
    pub fn max_rows_per_call(&self) -> Option<usize> {
        match self.call_shape {
            CallShape::Batched => None,
            CallShape::OnePerCallWithAxis | CallShape::OnePerCallNoAxis => Some(1),
        }
    }

    /// True when instances of different callers may share one call: the graph takes a batch and
    /// every output dimension after the batch is fixed or follows from the input shapes, so the
    /// requests whose input shapes agree can be stacked and their rows split back by count.
    pub fn can_batch_callers(&self) -> bool {
        self.call_shape == CallShape::Batched
            && (self.outputs_follow_inputs
                || self
                    .signature
                    .outputs
                    .iter()
                    .all(|o| o.shape.iter().skip(1).all(|d| matches!(d, Dim::Fixed(_)))))
    }
}
