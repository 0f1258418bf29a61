//! Plans for concrete input shapes: a model that tract cannot optimise with its symbolic
//! dimensions is specialised to each request's shapes on first use, and the plans are kept in a
//! bounded least-recently-used cache (a shape the graph cannot take is remembered too, so a
//! client repeating it costs no new specialisation).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tract_onnx::prelude::*;

use crate::engine::error::EngineError;

/// Hooks for the plan cache, so the layer above can count hits, misses and specialisation time
/// without the engine knowing about metrics.
pub trait PlanObserver: Send + Sync {
    /// A request's shapes found a plan (or a remembered refusal) in the cache.
    fn plan_hit(&self);
    /// A request's shapes had no plan: one was specialised in `took` (`ok` false: the graph
    /// cannot take those shapes).
    fn plan_miss(&self, took: Duration, ok: bool);
}

/// A specialised plan, or why the graph cannot take those shapes.
type Entry = Result<Arc<TypedSimplePlan>, String>;

/// The per-shape plans of one model version.
pub(super) struct PlanCache {
    /// The parsed graph, typed facts of the inputs left open; cloned for each specialisation.
    model: InferenceModel,
    /// Element type of each input.
    types: Vec<DatumType>,
    capacity: usize,
    /// Input shapes -> plan, least recently used first.
    entries: Mutex<Vec<(Vec<Vec<usize>>, Entry)>>,
    observer: OnceLock<Arc<dyn PlanObserver>>,
    /// Specialisations started so far (a call that made one cost more than running a plan).
    misses: AtomicU64,
}

impl std::fmt::Debug for PlanCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlanCache")
            .field("capacity", &self.capacity)
            .field("cached", &self.len())
            .finish()
    }
}

impl PlanCache {
    pub(super) fn new(model: InferenceModel, types: Vec<DatumType>, capacity: usize) -> PlanCache {
        PlanCache {
            model,
            types,
            capacity: capacity.max(1),
            entries: Mutex::new(Vec::new()),
            observer: OnceLock::new(),
            misses: AtomicU64::new(0),
        }
    }

    pub(super) fn observe(&self, observer: Arc<dyn PlanObserver>) {
        let _ = self.observer.set(observer);
    }

    /// Plans (and refusals) held now.
    pub(super) fn len(&self) -> usize {
        self.entries.lock().map(|e| e.len()).unwrap_or(0)
    }

    pub(super) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Specialisations started so far.
    pub(super) fn misses(&self) -> u64 {
        self.misses.load(Ordering::Relaxed)
    }

    /// The plan for these input shapes (tract's shapes: the ones handed to the plan), built and
    /// cached on first use. Two workers missing on the same shape at once may both build it;
    /// the first one stored wins.
    pub(super) fn plan(&self, shapes: &[&[usize]]) -> Result<Arc<TypedSimplePlan>, EngineError> {
        let key: Vec<Vec<usize>> = shapes.iter().map(|s| s.to_vec()).collect();
        if let Some(entry) = self.lookup(&key) {
            if let Some(o) = self.observer.get() {
                o.plan_hit();
            }
            return refused(&key, entry);
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let built = self.specialise(&key).map_err(|e| format!("{e:#}"));
        if let Some(o) = self.observer.get() {
            o.plan_miss(started.elapsed(), built.is_ok());
        }
        let entry = self.store(key.clone(), built);
        refused(&key, entry)
    }

    fn lookup(&self, key: &[Vec<usize>]) -> Option<Entry> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let at = entries.iter().position(|(k, _)| k == key)?;
        let hit = entries.remove(at);
        let entry = hit.1.clone();
        entries.push(hit);
        Some(entry)
    }

    fn store(&self, key: Vec<Vec<usize>>, entry: Entry) -> Entry {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, stored)) = entries.iter().find(|(k, _)| *k == key) {
            return stored.clone();
        }
        entries.push((key, entry.clone()));
        while entries.len() > self.capacity {
            drop(entries.remove(0));
        }
        entry
    }

    fn specialise(&self, shapes: &[Vec<usize>]) -> TractResult<Arc<TypedSimplePlan>> {
        let mut model = self.model.clone();
        for (ix, (shape, dt)) in shapes.iter().zip(&self.types).enumerate() {
            let dims: Vec<TDim> = shape.iter().map(|d| d.to_dim()).collect();
            model = model.with_input_fact(ix, InferenceFact::dt_shape(*dt, dims))?;
        }
        model.into_optimized()?.into_runnable()
    }
}

fn refused(shapes: &[Vec<usize>], entry: Entry) -> Result<Arc<TypedSimplePlan>, EngineError> {
    entry.map_err(|reason| EngineError::ShapeRefused {
        shapes: format!("{shapes:?}"),
        reason,
    })
}
