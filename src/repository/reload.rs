//! Hot reload: re-scan the repository, compare it with the live catalog, load and gate what is
//! new or changed, unload what the version policy no longer selects, and publish each model's new
//! entry in one atomic swap. Requests resolved before a swap keep their `Arc<LoadedVersion>` and
//! finish on the version they started on; requests after it see the new entry.
//!
//! Reloads are serialised (one at a time, whoever asks: start-up, the watcher or a test) and
//! run on the caller's thread, which must not be an async runtime thread (loading is blocking).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde::Serialize;
use thiserror::Error;

use super::catalog::{LoadedVersion, ModelEntry, ModelStore, VersionState};
use super::error::RepositoryError;
use super::gate::{self, GateReport, GateStage};
use super::layout::{self, ModelDir, VersionDir};
use super::loader::{load_version, LoadContext};
use super::manifest::{Manifest, PolicyKind};
use super::traffic::{TrafficOverride, TrafficPlan};
use crate::monitoring::{now, Event};

/// What a reload changed, one line per version touched.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReloadReport {
    pub changes: Vec<Change>,
}

/// One version (or model) whose state changed.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    pub model: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// `ready`, `rejected`, `failed`, `unloaded`, `removed` or `card_rejected`.
    pub action: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl ReloadReport {
    fn push(
        &mut self,
        model: &str,
        version: Option<u64>,
        action: &'static str,
        reason: Option<String>,
    ) {
        self.changes.push(Change {
            model: model.to_string(),
            version,
            action,
            reason,
        });
    }
}

/// What a version was loaded from: size and modification time of each of its files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Fingerprint(Vec<Option<(u64, SystemTime)>>);

pub(super) fn fingerprint(dir: &VersionDir) -> Fingerprint {
    let files = [
        Some(&dir.model_file),
        dir.golden_file.as_ref(),
        dir.eval_file.as_ref(),
        dir.profile_file.as_ref(),
    ];
    Fingerprint(
        files
            .into_iter()
            .map(|f| {
                let meta = std::fs::metadata(f?).ok()?;
                Some((meta.len(), meta.modified().ok()?))
            })
            .collect(),
    )
}

/// One model's pass: what the catalog had, what is on disk now.
struct ModelPass<'a> {
    dir: &'a ModelDir,
    current: Option<&'a ModelEntry>,
    manifest: Option<Arc<Manifest>>,
    /// The card differs from the one the versions were loaded with: every version is re-gated.
    card_changed: bool,
    seen: &'a mut HashMap<(String, u64), Fingerprint>,
    /// Versions rolled back from a canary: refused until their files change.
    rolled: &'a HashMap<(String, u64), RolledBack>,
    /// The shadow and canary in force.
    plan: TrafficPlan,
    report: &'a mut ReloadReport,
}

/// A version rolled back from a canary, and what its files were then.
#[derive(Debug, Clone)]
pub(super) struct RolledBack {
    pub(super) files: Fingerprint,
    pub(super) reason: String,
}

impl ModelPass<'_> {
    /// The version's state in the catalog before this pass.
    fn old(&self, v: u64) -> Option<&VersionState> {
        self.current.and_then(|c| c.versions.get(&v))
    }

    /// Neither the card nor the version's files changed since it was last loaded.
    fn unchanged(&self, vdir: &VersionDir) -> bool {
        !self.card_changed
            && self.seen.get(&(self.dir.name.clone(), vdir.version)) == Some(&fingerprint(vdir))
    }

    /// The refusal of a version rolled back from a canary whose files have not changed since.
    fn rolled_back(&self, vdir: &VersionDir) -> Option<VersionState> {
        let rolled = self.rolled.get(&(self.dir.name.clone(), vdir.version))?;
        (rolled.files == fingerprint(vdir)).then(|| VersionState::Rejected {
            stage: GateStage::Canary,
            reason: rolled.reason.clone(),
        })
    }

    /// Versions on disk the walk did not reach are unloaded, except refused ones, which stay
    /// visible as refused until their files change.
    fn settle_rest(&mut self, versions: &mut BTreeMap<u64, VersionState>) {
        for vdir in &self.dir.versions {
            let v = vdir.version;
            if versions.contains_key(&v) {
                continue;
            }
            if let Some(refused) = self.rolled_back(vdir) {
                versions.insert(v, refused);
                continue;
            }
            let state = match self.old(v) {
                Some(s @ (VersionState::Failed(_) | VersionState::Rejected { .. }))
                    if self.unchanged(vdir) =>
                {
                    s.clone()
                }
                Some(VersionState::Ready(_)) => {
                    self.report.push(&self.dir.name, Some(v), "unloaded", None);
                    VersionState::Unloaded
                }
                _ => VersionState::Unloaded,
            };
            versions.insert(v, state);
        }
    }
}

/// Keeps the catalog in step with the repository on disk.
pub struct Reloader {
    root: PathBuf,
    /// `--default-model`, which overrides `repository.toml`.
    default_model: Option<String>,
    store: Arc<ModelStore>,
    ctx: LoadContext,
    /// Held for the whole of a reload: what each version in the catalog was loaded from.
    seen: Mutex<HashMap<(String, u64), Fingerprint>>,
    /// Models unloaded through the admin API: left out of the catalog until loaded again.
    held: Mutex<BTreeSet<String>>,
    /// Shadow and canary settings made through the admin API, over the cards; a model's is
    /// dropped when its card changes.
    pub(super) overrides: Mutex<BTreeMap<String, TrafficOverride>>,
    /// Versions rolled back from a canary (see `traffic_admin.rs`).
    pub(super) rolled: Mutex<HashMap<(String, u64), RolledBack>>,
}

/// Why an admin request on the repository could not be carried out.
#[derive(Debug, Error)]
pub enum AdminError {
    #[error("model {0:?} is not in the model repository")]
    NotInRepository(String),
    #[error(transparent)]
    Repository(#[from] RepositoryError),
    /// A shadow or canary setting that cannot apply.
    #[error("{0}")]
    Invalid(String),
    /// The model is not in a state that allows the change (no canary to promote...).
    #[error("{0}")]
    Conflict(String),
}

impl std::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloader")
            .field("root", &self.root)
            .finish()
    }
}

impl Reloader {
    pub fn new(
        root: &Path,
        default_model: Option<String>,
        store: Arc<ModelStore>,
        ctx: LoadContext,
    ) -> Reloader {
        Reloader {
            root: root.to_path_buf(),
            default_model,
            store,
            ctx,
            seen: Mutex::new(HashMap::new()),
            held: Mutex::new(BTreeSet::new()),
            overrides: Mutex::new(BTreeMap::new()),
            rolled: Mutex::new(HashMap::new()),
        }
    }

    /// Models unloaded through the admin API.
    pub fn held(&self) -> BTreeSet<String> {
        self.held.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Serves `model` from the repository again (after an unload) and applies its current
    /// files now, through the gate. Only a model directory of the repository can be named:
    /// nothing is ever fetched from elsewhere.
    pub fn load(&self, model: &str) -> Result<ReloadReport, AdminError> {
        if !layout::valid_model_name(model) || !self.root.join(model).is_dir() {
            return Err(AdminError::NotInRepository(model.to_string()));
        }
        self.held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(model);
        let report = self.reload()?;
        if !self.store.snapshot().models.contains_key(model) {
            return Err(AdminError::NotInRepository(model.to_string()));
        }
        Ok(report.about(model))
    }

    /// Stops serving `model` (every version) until it is loaded again; requests already
    /// running on it finish.
    pub fn unload(&self, model: &str) -> Result<ReloadReport, AdminError> {
        let known = self.store.snapshot().models.contains_key(model);
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if !known && !held.contains(model) {
            return Err(AdminError::NotInRepository(model.to_string()));
        }
        held.insert(model.to_string());
        drop(held);
        Ok(self.reload()?.about(model))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// One pass: scan, then bring every model in line with the disk. A repository that cannot
    /// be read leaves the catalog as it is.
    pub fn reload(&self) -> Result<ReloadReport, RepositoryError> {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        self.reload_locked(&mut seen)
    }

    /// Waits for any reload in progress and holds off the next one meanwhile.
    pub(super) fn lock_seen(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<(String, u64), Fingerprint>> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn store(&self) -> &ModelStore {
        &self.store
    }

    pub(super) fn ctx(&self) -> &LoadContext {
        &self.ctx
    }

    /// A reload pass, under the caller's hold of `seen`.
    pub(super) fn reload_locked(
        &self,
        seen: &mut HashMap<(String, u64), Fingerprint>,
    ) -> Result<ReloadReport, RepositoryError> {
        let seen = &mut *seen;
        let held = self.held();
        let mut layout = layout::scan(&self.root)?;
        layout.models.retain(|m| !held.contains(&m.name));
        let mut report = ReloadReport::default();
        let catalog = self.store.snapshot();
        for dir in &layout.models {
            let current = catalog.models.get(&dir.name).cloned();
            let entry = self.reconcile(dir, current.as_deref(), seen, &mut report);
            let name = dir.name.clone();
            self.store.update(|c| {
                c.models.insert(name.clone(), entry.clone());
            });
            if let Some(old) = &current {
                self.forget_unserved(old, &entry);
            }
        }
        for (name, old) in &catalog.models {
            if layout.models.iter().any(|m| &m.name == name) {
                continue;
            }
            self.store.update(|c| {
                c.models.remove(name);
            });
            seen.retain(|(m, _), _| m != name);
            self.forget_unserved(old, &ModelEntry::empty(name));
            let action = if held.contains(name) {
                "unloaded"
            } else {
                "removed"
            };
            report.push(name, None, action, None);
        }
        let default = self.default_model.clone().or(layout.default_model.clone());
        self.store.update(|c| {
            c.loaded = true;
            match &default {
                Some(d) if c.models.contains_key(d) => c.default_model = Some(d.clone()),
                Some(_) => {}
                None if c.models.len() == 1 => c.default_model = c.models.keys().next().cloned(),
                None => {}
            }
        });
        for change in &report.changes {
            tracing::info!(model = %change.model, version = ?change.version, action = change.action, reason = ?change.reason, "repository change applied");
        }
        Ok(report)
    }

    /// The new entry of one model: versions chosen by its policy, each loaded and gated unless
    /// it is unchanged since the last pass.
    fn reconcile(
        &self,
        dir: &ModelDir,
        current: Option<&ModelEntry>,
        seen: &mut HashMap<(String, u64), Fingerprint>,
        report: &mut ReloadReport,
    ) -> Arc<ModelEntry> {
        let manifest = match &dir.manifest {
            Ok(m) => m.clone().map(Arc::new),
            Err(reason) => return self.bad_card(dir, current, reason, report),
        };
        let card_changed = current.is_some_and(|c| c.manifest != manifest || c.error.is_some());
        let plan = self.plan(&dir.name, manifest.as_deref(), card_changed);
        let rolled = self
            .rolled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut pass = ModelPass {
            dir,
            current,
            card_changed,
            manifest,
            seen,
            rolled: &rolled,
            plan,
            report,
        };
        let mut versions = self.select(&mut pass);
        pass.settle_rest(&mut versions);
        pass.seen
            .retain(|(m, v), _| m != &dir.name || versions.contains_key(v));
        let error = dir
            .versions
            .is_empty()
            .then(|| RepositoryError::NoVersions(dir.name.clone()).to_string());
        Arc::new(ModelEntry {
            name: dir.name.clone(),
            manifest: pass.manifest,
            error,
            versions,
            card_error: None,
            traffic: pass.plan,
        })
    }

    /// The model's shadow and canary: the card's, under what the admin API set (which a changed
    /// card clears).
    fn plan(&self, model: &str, card: Option<&Manifest>, card_changed: bool) -> TrafficPlan {
        let mut overrides = self.overrides.lock().unwrap_or_else(|e| e.into_inner());
        if card_changed {
            overrides.remove(model);
        }
        overrides.get(model).cloned().unwrap_or_default().apply(
            card.and_then(|m| m.shadow.as_ref()),
            card.and_then(|m| m.canary.as_ref()),
        )
    }

    /// Walks the versions from the highest down, as the policy selects them, keeping unchanged
    /// ones and admitting new or changed ones, until the policy's count of ready versions is met.
    /// The shadow and canary versions are loaded besides, and do not count.
    fn select(&self, pass: &mut ModelPass<'_>) -> BTreeMap<u64, VersionState> {
        let policy = pass
            .manifest
            .as_ref()
            .and_then(|m| m.versions.clone())
            .unwrap_or_default();
        let (want, listed): (usize, Option<&[u64]>) = match policy.policy {
            PolicyKind::Latest => (policy.latest.unwrap_or(1), None),
            PolicyKind::All => (usize::MAX, None),
            PolicyKind::Specific => (usize::MAX, Some(&policy.specific)),
        };
        let mut serving_ref = pass.current.and_then(ModelEntry::serving);
        let mut versions = BTreeMap::new();
        let mut serving = 0usize;
        for vdir in pass.dir.versions.iter().rev() {
            let v = vdir.version;
            let planned = pass.plan.names(v);
            if !planned && (serving >= want || listed.is_some_and(|l| !l.contains(&v))) {
                continue;
            }
            if let Some(refused) = pass.rolled_back(vdir) {
                versions.insert(v, refused);
                continue;
            }
            let state = match (pass.unchanged(vdir), pass.old(v)) {
                (true, Some(s @ VersionState::Ready(_))) => s.clone(),
                (true, Some(s @ (VersionState::Failed(_) | VersionState::Rejected { .. }))) => {
                    s.clone()
                }
                _ => {
                    // Taken before the load: a file that changes meanwhile is loaded again.
                    let print = fingerprint(vdir);
                    let manifest = pass.manifest.clone();
                    let state = self.admit(
                        &pass.dir.name,
                        vdir,
                        manifest.as_deref(),
                        serving_ref.as_deref(),
                        pass.report,
                    );
                    pass.seen.insert((pass.dir.name.clone(), v), print);
                    state
                }
            };
            match &state {
                VersionState::Ready(l) if !planned => {
                    serving += 1;
                    serving_ref = serving_ref.or(Some(l.clone()));
                }
                _ => {}
            }
            versions.insert(v, state);
        }
        versions
    }

    /// A card that does not parse: a model that serves keeps serving as it was (the change is
    /// refused and reported); one that does not has every version failed with the reason.
    fn bad_card(
        &self,
        dir: &ModelDir,
        current: Option<&ModelEntry>,
        reason: &str,
        report: &mut ReloadReport,
    ) -> Arc<ModelEntry> {
        if let Some(c) = current.filter(|c| c.serving().is_some()) {
            if c.card_error.as_deref() != Some(reason) {
                tracing::warn!(model = %dir.name, %reason, "changed model card refused; the model keeps serving as before");
                report.push(&dir.name, None, "card_rejected", Some(reason.to_string()));
            }
            let mut kept = c.clone();
            kept.card_error = Some(reason.to_string());
            return Arc::new(kept);
        }
        tracing::error!(model = %dir.name, %reason, "model not loaded: invalid manifest");
        report.push(&dir.name, None, "failed", Some(reason.to_string()));
        let versions = dir
            .versions
            .iter()
            .map(|v| {
                self.ctx.metrics.model_failed(&dir.name, v.version);
                (v.version, VersionState::Failed(reason.to_string()))
            })
            .collect();
        Arc::new(ModelEntry {
            name: dir.name.clone(),
            manifest: None,
            error: Some(reason.to_string()),
            versions,
            card_error: None,
            traffic: TrafficPlan::default(),
        })
    }

    /// Loads one candidate and runs the gate against the serving version.
    fn admit(
        &self,
        model: &str,
        dir: &VersionDir,
        manifest: Option<&Manifest>,
        serving: Option<&LoadedVersion>,
        report: &mut ReloadReport,
    ) -> VersionState {
        let version = dir.version;
        let loaded = match load_version(model, dir, manifest, &self.ctx) {
            Ok(loaded) => loaded,
            Err(e) => {
                let reason = e.to_string();
                tracing::error!(model, version, error = %reason, "model failed to load");
                self.ctx.metrics.model_failed(model, version);
                self.ctx.metrics.gate_failed(model, "load");
                self.announce(&GateReport::load_failed(model, version, reason.clone()));
                report.push(model, Some(version), "failed", Some(reason.clone()));
                return VersionState::Failed(reason);
            }
        };
        let verdict = gate::evaluate(&loaded, dir, manifest, serving);
        match verdict.failure() {
            None => {
                tracing::info!(
                    model,
                    version,
                    task = loaded.contract.task.as_str(),
                    load_ms = loaded.load_duration.as_secs_f64() * 1e3,
                    max_batch_size = loaded.queue.policy().max_batch_size,
                    compared_with = ?verdict.compared_with,
                    "model ready"
                );
                report.push(model, Some(version), "ready", None);
                VersionState::Ready(Arc::new(loaded))
            }
            Some((stage, _)) => {
                let reason = verdict.reason().unwrap_or_default();
                // Its series were registered by the load; it will not serve.
                self.ctx.metrics.forget(model, version);
                // A gate failure is an expected outcome of a release, not a server fault.
                tracing::warn!(model, version, stage = stage.as_str(), %reason, "candidate rejected by the validation gate; the serving version stays");
                self.ctx.metrics.model_failed(model, version);
                self.ctx.metrics.gate_failed(model, stage.as_str());
                self.announce(&verdict);
                report.push(
                    model,
                    Some(version),
                    "rejected",
                    Some(format!("{}: {reason}", stage.as_str())),
                );
                VersionState::Rejected { stage, reason }
            }
        }
    }

    /// Tells the webhook that a candidate failed the gate.
    fn announce(&self, verdict: &GateReport) {
        let (Some((stage, _)), Some(reason)) = (verdict.failure(), verdict.reason()) else {
            return;
        };
        self.ctx.notifier.send(Event {
            kind: "gate",
            model: verdict.model.clone(),
            version: verdict.version,
            status: "rejected",
            detail: serde_json::json!({"stage": stage.as_str(), "reason": reason}),
            at: now(),
            capture: None,
        });
    }

    /// Drops the metric series of versions that served in `old` and do not in `new`, and of
    /// refused versions gone from disk, so series do not pile up across reloads.
    fn forget_unserved(&self, old: &ModelEntry, new: &ModelEntry) {
        for (v, state) in &old.versions {
            let gone = match (state, new.versions.get(v)) {
                (VersionState::Ready(_), Some(VersionState::Ready(_))) => false,
                (VersionState::Ready(_), _) => true,
                (VersionState::Failed(_) | VersionState::Rejected { .. }, None) => true,
                _ => false,
            };
            if gone {
                self.ctx.metrics.forget(&old.name, *v);
            }
        }
    }
}

impl ReloadReport {
    /// The changes to one model.
    pub fn about(mut self, model: &str) -> ReloadReport {
        self.changes.retain(|c| c.model == model);
        self
    }

    /// The versions that failed to load or were refused, and refused cards, as errors.
    pub fn failures(&self) -> Vec<RepositoryError> {
        self.changes
            .iter()
            .filter(|c| matches!(c.action, "failed" | "rejected" | "card_rejected"))
            .map(|c| RepositoryError::NotAdmitted {
                model: c.model.clone(),
                version: c.version.unwrap_or(0),
                reason: c.reason.clone().unwrap_or_default(),
            })
            .collect()
    }
}
