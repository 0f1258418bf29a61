//! Changing a model's shadow and canary while it serves: set or clear them (over the card),
//! promote the canary, roll it back. Each change runs under the reload lock, so it never races
//! a reload, and ends with a reload pass that loads (and gates) what the new plan names.

use super::catalog::VersionState;
use super::gate::GateStage;
use super::reload::{fingerprint, AdminError, ReloadReport, Reloader, RolledBack};
use super::traffic::{check_sections, Canary, Shadow, TrafficOverride};
use crate::monitoring::{now, Event};

/// What set off a rollback; also a metric label value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RollbackTrigger {
    /// The canary failed more often than the stable version, by more than the rule allows.
    Errors,
    /// Its p99 latency passed the rule's limit.
    Latency,
    /// Its answers agreed with the stable version's less often than the rule asks.
    Agreement,
    /// The admin API.
    Manual,
}

impl RollbackTrigger {
    pub fn as_str(self) -> &'static str {
        match self {
            RollbackTrigger::Errors => "errors",
            RollbackTrigger::Latency => "latency",
            RollbackTrigger::Agreement => "agreement",
            RollbackTrigger::Manual => "manual",
        }
    }
}

impl Reloader {
    /// Sets (or, with None, clears) the model's shadow over its card, then applies it.
    pub fn set_shadow(
        &self,
        model: &str,
        shadow: Option<Shadow>,
    ) -> Result<ReloadReport, AdminError> {
        self.change_plan(model, |o| o.shadow = Some(shadow.clone()))
    }

    /// Sets (or, with None, clears) the model's canary over its card, then applies it. Naming
    /// the shadow's version moves it from shadow to canary in one step (the shadow is cleared),
    /// so it never serves as the default in between.
    pub fn set_canary(
        &self,
        model: &str,
        canary: Option<Canary>,
    ) -> Result<ReloadReport, AdminError> {
        let shadow = self.entry(model)?.traffic.shadow.clone();
        let moving = matches!((&shadow, &canary), (Some(s), Some(c)) if s.version == c.version);
        self.change_plan(model, |o| {
            if moving {
                o.shadow = Some(None);
            }
            o.canary = Some(canary.clone());
        })
    }

    /// Makes the canary the stable version: the canary setting is cleared, so the canary (which
    /// must be ready and the highest ready version) becomes the default version, and the version
    /// policy applies as usual (with `latest = 1` the old stable version is unloaded).
    pub fn promote(&self, model: &str) -> Result<ReloadReport, AdminError> {
        let entry = self.entry(model)?;
        let Some(canary) = &entry.traffic.canary else {
            return Err(AdminError::Conflict(format!(
                "model {model:?} has no canary"
            )));
        };
        let v = canary.version;
        if !matches!(entry.versions.get(&v), Some(VersionState::Ready(_))) {
            return Err(AdminError::Conflict(format!(
                "model {model:?} canary version {v} is not ready"
            )));
        }
        let higher = entry
            .versions
            .iter()
            .any(|(o, s)| *o > v && matches!(s, VersionState::Ready(_)));
        if higher {
            return Err(AdminError::Conflict(format!(
                "model {model:?} canary version {v} is not the highest ready version; pin the \
                 versions with [versions] policy = \"specific\" instead"
            )));
        }
        tracing::info!(model, version = v, "canary promoted");
        self.change_plan(model, |o| o.canary = Some(None))
    }

    /// Rolls back the model's canary (see `roll_back`); a conflict when it has none.
    pub fn roll_back_canary(
        &self,
        model: &str,
        trigger: RollbackTrigger,
        reason: &str,
    ) -> Result<ReloadReport, AdminError> {
        let entry = self.entry(model)?;
        let Some(canary) = &entry.traffic.canary else {
            return Err(AdminError::Conflict(format!(
                "model {model:?} has no canary"
            )));
        };
        self.roll_back(model, canary.version, trigger, reason)
    }

    /// Takes the canary version out of service: it becomes `rejected` (stage `canary`) with
    /// `reason`, all traffic returns to the stable version, and the version stays refused until
    /// its files change. Announced to the log and the webhook. A version that no longer serves
    /// is left as it is.
    pub fn roll_back(
        &self,
        model: &str,
        version: u64,
        trigger: RollbackTrigger,
        reason: &str,
    ) -> Result<ReloadReport, AdminError> {
        let mut seen = self.lock_seen();
        let entry = self.entry(model)?;
        if !matches!(entry.versions.get(&version), Some(VersionState::Ready(_))) {
            return Ok(ReloadReport::default());
        }
        let reason = format!("rolled back ({}): {reason}", trigger.as_str());
        if let Some(dir) = crate::repository::scan(self.root())
            .ok()
            .and_then(|l| l.models.into_iter().find(|m| m.name == model))
            .and_then(|m| m.versions.into_iter().find(|d| d.version == version))
        {
            self.rolled
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(
                    (model.to_string(), version),
                    RolledBack {
                        files: fingerprint(&dir),
                        reason: reason.clone(),
                    },
                );
        }
        self.store().set_version(
            model,
            version,
            VersionState::Rejected {
                stage: GateStage::Canary,
                reason: reason.clone(),
            },
        );
        let metrics = &self.ctx().metrics;
        metrics.forget(model, version);
        metrics.model_failed(model, version);
        metrics
            .traffic()
            .rolled_back(model, version, trigger.as_str());
        tracing::warn!(model, version, trigger = trigger.as_str(), %reason, "canary rolled back; the stable version takes all traffic");
        self.ctx().notifier.send(Event {
            kind: "canary",
            model: model.to_string(),
            version,
            status: "rolled_back",
            detail: serde_json::json!({"trigger": trigger.as_str(), "reason": reason}),
            at: now(),
            capture: None,
        });
        let mut report = self.reload_locked(&mut seen)?.about(model);
        report.changes.insert(
            0,
            super::reload::Change {
                model: model.to_string(),
                version: Some(version),
                action: "rolled_back",
                reason: Some(reason),
            },
        );
        Ok(report)
    }

    fn entry(&self, model: &str) -> Result<std::sync::Arc<super::ModelEntry>, AdminError> {
        self.store()
            .snapshot()
            .models
            .get(model)
            .cloned()
            .ok_or_else(|| AdminError::NotInRepository(model.to_string()))
    }

    /// Applies `change` to the model's override, checks the resulting plan, and reloads.
    fn change_plan(
        &self,
        model: &str,
        change: impl Fn(&mut TrafficOverride),
    ) -> Result<ReloadReport, AdminError> {
        let mut seen = self.lock_seen();
        let entry = self.entry(model)?;
        let mut next = self
            .overrides
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(model)
            .cloned()
            .unwrap_or_default();
        change(&mut next);
        let card = entry.manifest.as_deref();
        let plan = next.apply(
            card.and_then(|m| m.shadow.as_ref()),
            card.and_then(|m| m.canary.as_ref()),
        );
        // A version not on disk yet is allowed: set the canary, then publish the version, and
        // it arrives as the canary instead of taking over.
        check_sections(plan.shadow.as_ref(), plan.canary.as_ref()).map_err(AdminError::Invalid)?;
        self.overrides
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(model.to_string(), next);
        Ok(self.reload_locked(&mut seen)?.about(model))
    }
}
