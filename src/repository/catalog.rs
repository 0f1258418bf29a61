//! The set of models being served and the state of each version. Readers take a lock-free
//! snapshot; loading swaps in a new catalog, so requests never wait on a reload.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use thiserror::Error;

use super::gate_stage::GateStage;
use super::manifest::Manifest;
use super::traffic::TrafficPlan;
use crate::contract::ModelContract;
use crate::engine::{CompiledModel, ModelQueue};
use crate::explain::Background;
use crate::monitoring::{ModelMetrics, ModelMonitor};

/// A model version that is loaded, checked against its manifest and warmed up.
#[derive(Debug)]
pub struct LoadedVersion {
    pub model: String,
    pub version: u64,
    pub compiled: Arc<CompiledModel>,
    /// Where this version's requests queue and are batched.
    pub queue: Arc<ModelQueue>,
    /// Drift and live-quality monitoring.
    pub monitor: Arc<ModelMonitor>,
    pub contract: Arc<ModelContract>,
    pub metrics: Arc<ModelMetrics>,
    pub load_duration: Duration,
    pub golden_file: Option<PathBuf>,
    /// Background rows for explanations, or why there are none.
    pub background: Result<Arc<Background>, String>,
    /// The card's `[capture]` overrides of the server's data-capture settings.
    pub capture: Option<super::CaptureCard>,
}

#[derive(Debug, Clone)]
pub enum VersionState {
    Loading,
    Ready(Arc<LoadedVersion>),
    /// Could not be loaded (compile, contract or warm-up); the reason says why.
    Failed(String),
    /// Loaded, but refused by a later stage of the validation gate; not served.
    Rejected {
        stage: GateStage,
        reason: String,
    },
    /// On disk, but not selected by the model's version policy; not served.
    Unloaded,
}

impl VersionState {
    pub fn name(&self) -> &'static str {
        match self {
            VersionState::Loading => "loading",
            VersionState::Ready(_) => "ready",
            VersionState::Failed(_) => "failed",
            VersionState::Rejected { .. } => "rejected",
            VersionState::Unloaded => "unloaded",
        }
    }

    /// Why the version does not serve, for failed and rejected versions.
    pub fn reason(&self) -> Option<String> {
        match self {
            VersionState::Failed(reason) => Some(reason.clone()),
            VersionState::Rejected { stage, reason } => Some(format!(
                "validation gate, stage {}: {reason}",
                stage.as_str()
            )),
            VersionState::Loading | VersionState::Ready(_) | VersionState::Unloaded => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ModelEntry {
    pub name: String,
    pub manifest: Option<Arc<Manifest>>,
    /// A problem with the model as a whole (unreadable manifest, no versions).
    pub error: Option<String>,
    pub versions: BTreeMap<u64, VersionState>,
    /// A changed card on disk that could not be parsed; the model keeps serving with the card
    /// it had (see `reload.rs`).
    pub card_error: Option<String>,
    /// Shadow and canary versions in force (the card's, or the admin API's).
    pub traffic: TrafficPlan,
}

impl ModelEntry {
    /// An entry with no versions.
    pub fn empty(name: &str) -> ModelEntry {
        ModelEntry {
            name: name.to_string(),
            manifest: None,
            error: None,
            versions: BTreeMap::new(),
            card_error: None,
            traffic: TrafficPlan::default(),
        }
    }

    /// The version served when a request names none: the highest ready version that is not
    /// the shadow or the canary (those only when no other is ready); when none is ready, the
    /// highest that is still loading or failed (so the request learns why).
    pub fn default_version(&self) -> Option<u64> {
        let ready_where = |other: bool| {
            self.versions.iter().rev().find(|(v, s)| {
                matches!(s, VersionState::Ready(_)) && (other || !self.traffic.names(**v))
            })
        };
        let ready = ready_where(false).or_else(|| ready_where(true));
        let pending = || {
            self.versions
                .iter()
                .rev()
                .find(|(_, s)| matches!(s, VersionState::Loading | VersionState::Failed(_)))
        };
        ready
            .or_else(pending)
            .or_else(|| self.versions.iter().next_back())
            .map(|(v, _)| *v)
    }

    /// The version that answers requests naming none, when it is ready.
    pub fn serving(&self) -> Option<Arc<LoadedVersion>> {
        match self.versions.get(&self.default_version()?)? {
            VersionState::Ready(loaded) => Some(loaded.clone()),
            _ => None,
        }
    }

    /// Ready when the model serves: no model-level error, nothing still loading, and at least
    /// one version ready. A rejected or failed candidate beside a serving version does not make
    /// the model unready (the serving version answers); a model with no ready version is.
    pub fn is_ready(&self) -> bool {
        self.error.is_none()
            && !self
                .versions
                .values()
                .any(|v| matches!(v, VersionState::Loading))
            && self
                .versions
                .values()
                .any(|v| matches!(v, VersionState::Ready(_)))
    }
}

#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub models: BTreeMap<String, Arc<ModelEntry>>,
    pub default_model: Option<String>,
    /// False until every model has been tried once.
    pub loaded: bool,
}

/// Why a model reference could not be served.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ResolveError {
    #[error("no model named in the request and no default model is configured")]
    NoDefaultModel,
    #[error("model {0:?} not found")]
    ModelNotFound(String),
    #[error("model {model:?} has no version {version}")]
    VersionNotFound { model: String, version: u64 },
    #[error("model {model:?} version {version} is still loading")]
    Loading { model: String, version: u64 },
    #[error("model {model:?} version {version} failed to load")]
    Failed { model: String, version: u64 },
    #[error("model {model:?} version {version} is not served ({state})")]
    NotServed {
        model: String,
        version: u64,
        /// `rejected` (by the validation gate) or `unloaded` (not selected by the version policy).
        state: &'static str,
    },
}

impl Catalog {
    /// Every model loaded and warmed.
    pub fn is_ready(&self) -> bool {
        self.loaded && self.models.values().all(|m| m.is_ready())
    }

    /// Finds the version a request means: the named (or default) model, the named (or highest)
    /// version.
    pub fn resolve(
        &self,
        model: Option<&str>,
        version: Option<u64>,
    ) -> Result<Arc<LoadedVersion>, ResolveError> {
        let name = match model {
            Some(name) => name,
            None => self
                .default_model
                .as_deref()
                .ok_or(ResolveError::NoDefaultModel)?,
        };
        let entry = self
            .models
            .get(name)
            .ok_or_else(|| ResolveError::ModelNotFound(name.to_string()))?;
        let version = match version {
            Some(v) => v,
            None => entry
                .default_version()
                .ok_or_else(|| ResolveError::ModelNotFound(name.to_string()))?,
        };
        match entry.versions.get(&version) {
            Some(VersionState::Ready(loaded)) => Ok(loaded.clone()),
            Some(VersionState::Loading) => Err(ResolveError::Loading {
                model: name.to_string(),
                version,
            }),
            Some(VersionState::Failed(_)) => Err(ResolveError::Failed {
                model: name.to_string(),
                version,
            }),
            Some(s @ (VersionState::Rejected { .. } | VersionState::Unloaded)) => {
                Err(ResolveError::NotServed {
                    model: name.to_string(),
                    version,
                    state: s.name(),
                })
            }
            None => Err(ResolveError::VersionNotFound {
                model: name.to_string(),
                version,
            }),
        }
    }
}

/// The live catalog.
#[derive(Debug, Default)]
pub struct ModelStore {
    catalog: ArcSwap<Catalog>,
}

impl ModelStore {
    pub fn new(catalog: Catalog) -> ModelStore {
        ModelStore {
            catalog: ArcSwap::from_pointee(catalog),
        }
    }

    /// A consistent snapshot; cheap, lock-free.
    pub fn snapshot(&self) -> Arc<Catalog> {
        self.catalog.load_full()
    }

    /// Applies `change` to a copy of the catalog and publishes it.
    pub fn update(&self, change: impl Fn(&mut Catalog)) {
        self.catalog.rcu(|current| {
            let mut next = Catalog::clone(current);
            change(&mut next);
            next
        });
    }

    /// Sets the state of one version.
    pub fn set_version(&self, model: &str, version: u64, state: VersionState) {
        self.update(|catalog| {
            if let Some(entry) = catalog.models.get_mut(model) {
                let mut next = ModelEntry::clone(entry);
                next.versions.insert(version, state.clone());
                *entry = Arc::new(next);
            }
        });
    }
}
