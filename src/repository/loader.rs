//! Turning a scanned repository into served models: compile, check the manifest against the
//! graph, warm up, publish. Runs on a plain thread, never on the async runtime.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::background::load_background;
use super::catalog::{Catalog, LoadedVersion, ModelEntry, VersionState};
use super::class_names::with_graph_labels;
use super::contract_build::build_contract;
use super::error::RepositoryError;
use super::layout::PROFILE_FILE;
use super::layout::{Layout, VersionDir};
use super::manifest::{Manifest, Runtime};
use super::traffic::TrafficOverride;
use crate::contract::{InputContract, ModelContract, OutputContract};
use crate::engine::{
    BatchPolicy, CompiledModel, DataType, LoadOptions, Tensor, TensorData, WorkerPool,
};
use crate::monitoring::{
    DriftMonitor, Metrics, ModelMonitor, MonitorSettings, Notifier, QualityKind, ReferenceProfile,
    Subject,
};

/// The catalog as scanned, every version `Loading`. `default_model` (from the command line)
/// overrides `repository.toml`; a repository with one model defaults to it.
pub fn initial_catalog(
    layout: &Layout,
    default_model: Option<&str>,
) -> Result<Catalog, RepositoryError> {
    let mut models = BTreeMap::new();
    for dir in &layout.models {
        let (manifest, mut error) = match &dir.manifest {
            Ok(m) => (m.clone().map(Arc::new), None),
            Err(e) => (None, Some(e.clone())),
        };
        if dir.versions.is_empty() && error.is_none() {
            error = Some(RepositoryError::NoVersions(dir.name.clone()).to_string());
        }
        let versions = dir
            .versions
            .iter()
            .map(|v| (v.version, VersionState::Loading))
            .collect();
        let traffic = TrafficOverride::default().apply(
            manifest.as_ref().and_then(|m| m.shadow.as_ref()),
            manifest.as_ref().and_then(|m| m.canary.as_ref()),
        );
        let entry = ModelEntry {
            name: dir.name.clone(),
            manifest,
            error,
            versions,
            card_error: None,
            traffic,
        };
        models.insert(dir.name.clone(), Arc::new(entry));
    }
    let default_model = match default_model
        .map(str::to_string)
        .or(layout.default_model.clone())
    {
        Some(name) if !models.contains_key(&name) => {
            return Err(RepositoryError::UnknownDefault(name))
        }
        Some(name) => Some(name),
        None if models.len() == 1 => models.keys().next().cloned(),
        None => None,
    };
    Ok(Catalog {
        models,
        default_model,
        loaded: false,
    })
}

/// What loading a version needs besides its files: where its metrics go, the worker pool that
/// will run it, and the server-wide queueing and batching defaults (a manifest's `[batching]`
/// overrides them per model).
#[derive(Debug, Clone)]
pub struct LoadContext {
    pub metrics: Arc<Metrics>,
    pub pool: Arc<WorkerPool>,
    pub batching: BatchPolicy,
    /// Where monitoring state changes are announced.
    pub notifier: Notifier,
    /// Plan options for models whose card has no `[runtime]` (the server's flags).
    pub load: LoadOptions,
}

impl LoadContext {
    /// The policy for a model: the defaults with the manifest's overrides applied.
    pub fn policy(&self, manifest: Option<&Manifest>) -> BatchPolicy {
        let mut policy = self.batching;
        if let Some(b) = manifest.and_then(|m| m.batching.as_ref()) {
            if let Some(n) = b.max_batch_size {
                // The card's size is kept as it is: no learned merge limit below it.
                policy.max_batch_size = n;
                policy.learn_limit = false;
            }
            if let Some(us) = b.max_queue_delay_us {
                policy.max_queue_delay = Duration::from_micros(us);
            }
            if let Some(n) = b.queue_capacity {
                policy.queue_capacity = n;
            }
        }
        policy
    }
}

/// Compiles one version, checks its manifest against the graph and warms it up.
pub fn load_version(
    model: &str,
    dir: &VersionDir,
    manifest: Option<&Manifest>,
    ctx: &LoadContext,
) -> Result<LoadedVersion, RepositoryError> {
    let started = Instant::now();
    let version = dir.version;
    let options = Runtime::options(manifest.and_then(|m| m.runtime.as_ref()), ctx.load);
    let compiled = CompiledModel::load_with(&dir.model_file, &options).map_err(|source| {
        RepositoryError::Engine {
            model: model.to_string(),
            version,
            source,
        }
    })?;
    let card_labels = manifest.map_or(&[][..], |m| m.labels.as_slice());
    let contract = build_contract(manifest, compiled.signature())
        .and_then(|c| with_graph_labels(c, compiled.class_labels(), card_labels))
        .map_err(|reason| RepositoryError::Contract {
            model: model.to_string(),
            version,
            reason,
        })?;
    warm_up(&compiled).map_err(|reason| RepositoryError::WarmUp {
        model: model.to_string(),
        version,
        reason,
    })?;
    let load_duration = started.elapsed();
    let monitor = Arc::new(build_monitor(model, dir, manifest, &contract, ctx));
    let model_metrics = ctx.metrics.model(model, version, contract.labels());
    compiled.observe_plans(model_metrics.clone());
    let compiled = Arc::new(compiled);
    let queue = ctx.pool.queue(
        compiled.clone(),
        ctx.policy(manifest),
        model_metrics.clone(),
    );
    model_metrics.configured(queue.policy());
    model_metrics.loaded(load_duration);
    Ok(LoadedVersion {
        model: model.to_string(),
        version,
        compiled,
        queue,
        monitor,
        background: load_background(model, dir, &contract),
        contract: Arc::new(contract),
        metrics: model_metrics,
        load_duration,
        golden_file: dir.golden_file.clone(),
        capture: manifest.and_then(|m| m.capture.clone()),
    })
}

/// Drift and quality monitoring of a version: its reference profile (when `profile.json` is there
/// and fits the model), its quality kind, and the card's targets and thresholds. A missing or
/// unusable profile leaves the model served with "no reference" (logged when unusable).
fn build_monitor(
    model: &str,
    dir: &VersionDir,
    manifest: Option<&Manifest>,
    contract: &ModelContract,
    ctx: &LoadContext,
) -> ModelMonitor {
    let settings = monitor_settings(manifest);
    let width = match &contract.input {
        InputContract::Tabular { features, .. } => features.len(),
        InputContract::Tensors { .. } => contract.columns.len(),
    };
    let drift = match &dir.profile_file {
        None => Err(format!("no {PROFILE_FILE} beside the model")),
        Some(path) => ReferenceProfile::read(path)
            .and_then(|p| {
                // A one-input-per-column model's profile may leave its columns out (free text
                // has no categories): the predictions are then tracked alone.
                let width = if p.features.is_empty() && contract.one_input_per_column() {
                    0
                } else {
                    width
                };
                DriftMonitor::new(p, settings.drift, width)
            })
            .inspect_err(|reason| {
                tracing::error!(model, version = dir.version, %reason, "reference profile not used");
            }),
    };
    let profiled = drift
        .as_ref()
        .map_or(&[][..], |d| d.profile().features.as_slice());
    let features: Vec<String> = profiled.iter().map(|f| f.name.clone()).collect();
    let categorical: Vec<String> = profiled
        .iter()
        .filter(|f| !f.categories.is_empty())
        .map(|f| f.name.clone())
        .collect();
    let allowed: Vec<Option<&str>> = contract
        .columns
        .iter()
        .map(|c| c.spec.allow_unknown.then_some(c.spec.name.as_str()))
        .collect();
    let kind = match &contract.output {
        OutputContract::Classification { labels, .. } => Some(QualityKind::Classification {
            classes: labels.len(),
        }),
        OutputContract::Regression { .. } => Some(QualityKind::Regression),
        OutputContract::Raw => None,
    };
    let metrics = ctx
        .metrics
        .quality()
        .version(model, dir.version, &features, &categorical, drift.is_ok())
        .with_unseen_counters(ctx.metrics.quality().unseen_counters(model, &allowed));
    ModelMonitor::new(
        Subject {
            model: model.to_string(),
            version: dir.version,
            kind,
            labels: contract.labels().to_vec(),
        },
        drift,
        settings,
        metrics,
        ctx.notifier.clone(),
    )
}

/// Monitoring settings: the defaults with the card's `[monitoring]` applied.
fn monitor_settings(manifest: Option<&Manifest>) -> MonitorSettings {
    let mut s = MonitorSettings::default();
    if let Some(m) = manifest.and_then(|m| m.monitoring.as_ref()) {
        s.accuracy_target = m.accuracy_target;
        s.mae_target = m.mae_target;
        if let Some(v) = m.psi_warning {
            s.drift.psi_warning = v;
        }
        if let Some(v) = m.psi_drifting {
            s.drift.psi_drifting = v;
        }
        if let Some(v) = m.drift_window {
            s.drift.window = v;
        }
        if let Some(v) = m.quality_window {
            s.quality_window = v;
        }
    }
    s
}

/// Runs one all-zero instance so the first real request does not pay for lazy set-up. A model
/// with variable dimensions besides the batch has no one shape to try: it is not warmed up. With
/// string inputs the instance holds empty strings, which a model may rightly refuse (a
/// OneHotEncoder with `zeros=0` refuses any unknown category, as onnxruntime does): such a
/// failure does not fail the load.
fn warm_up(compiled: &CompiledModel) -> Result<(), String> {
    let inputs_spec = &compiled.signature().inputs;
    if inputs_spec.iter().any(|s| s.has_variable_rows()) {
        return Ok(());
    }
    let inputs: Vec<Tensor> = compiled
        .signature()
        .inputs
        .iter()
        .map(|spec| {
            let n = spec.row_len();
            let data = TensorData::zeros(spec.dtype, n);
            Tensor {
                shape: std::iter::once(1).chain(spec.row_shape()).collect(),
                data,
            }
        })
        .collect();
    let strings = inputs_spec.iter().any(|s| s.dtype == DataType::String);
    match compiled.run_request(&inputs) {
        Ok(_) => Ok(()),
        Err(e) if strings => {
            tracing::debug!(error = %e, "warm-up with empty strings refused by the model");
            Ok(())
        }
        Err(e) => Err(e.to_string()),
    }
}
