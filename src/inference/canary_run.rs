//! One canary's rollback window (docs/model-updates.md): the last outcomes of the canary and of
//! the stable version, and the last compared instances, judged against the card's
//! `[canary.rollback]` rule after every canary outcome. When the rule trips, the canary stops
//! taking traffic at once and the version is rolled back through the reloader on a blocking
//! thread.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::monitoring::{Comparison, Metrics};
use crate::repository::{Canary, LoadedVersion, Reloader, RollbackRule, RollbackTrigger};

/// One canary's rollback window.
#[derive(Debug)]
pub struct CanaryRun {
    model: String,
    version: u64,
    loaded: Arc<LoadedVersion>,
    rule: Option<RollbackRule>,
    /// Set when the rule tripped: the canary takes no more traffic.
    tripped: AtomicBool,
    window: Mutex<Window>,
    metrics: Arc<Metrics>,
    /// Rolls the canary back; None in tests that build a predictor by hand.
    reloader: Option<Arc<Reloader>>,
}

/// The last requests of the canary and of the stable version, and the last compared instances.
#[derive(Debug, Default)]
struct Window {
    /// Canary requests: succeeded, and latency of successes.
    canary: VecDeque<(bool, Duration)>,
    /// Stable requests routed while the canary was active: succeeded.
    stable: VecDeque<bool>,
    /// Canary instances compared with the stable version: agreed.
    agreement: VecDeque<bool>,
}

fn push<T>(queue: &mut VecDeque<T>, item: T, cap: usize) {
    if queue.len() == cap {
        queue.pop_front();
    }
    queue.push_back(item);
}

impl CanaryRun {
    pub(super) fn new(
        model: &str,
        canary: &Canary,
        loaded: Arc<LoadedVersion>,
        metrics: Arc<Metrics>,
        reloader: Option<Arc<Reloader>>,
    ) -> CanaryRun {
        CanaryRun {
            model: model.to_string(),
            version: canary.version,
            loaded,
            rule: canary.rollback.clone(),
            tripped: AtomicBool::new(false),
            window: Mutex::new(Window::default()),
            metrics,
            reloader,
        }
    }

    /// Whether this run still judges `canary` served by `loaded` (else a new one is built).
    pub(super) fn serves(&self, loaded: &Arc<LoadedVersion>, canary: &Canary) -> bool {
        Arc::ptr_eq(&self.loaded, loaded) && self.rule == canary.rollback
    }

    /// True once the rule tripped: the canary takes no more traffic.
    pub(super) fn is_tripped(&self) -> bool {
        self.tripped.load(Ordering::Acquire)
    }

    /// The agreement the rule asks for, when it compares answers with the stable version.
    pub(super) fn min_agreement(&self) -> Option<f64> {
        self.rule.as_ref().and_then(|r| r.min_agreement)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Window> {
        self.window.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn record(&self, to_canary: bool, ok: bool, took: Duration) {
        let Some(rule) = &self.rule else { return };
        let cap = rule.window();
        {
            let mut w = self.lock();
            if to_canary {
                push(&mut w.canary, (ok, took), cap);
            } else {
                push(&mut w.stable, ok, cap);
            }
        }
        self.judge();
    }

    /// Checks the rule; when it trips, stops the canary and rolls it back.
    fn judge(&self) {
        let Some((trigger, reason)) = self.verdict() else {
            return;
        };
        if self.tripped.swap(true, Ordering::AcqRel) {
            return;
        }
        tracing::warn!(model = %self.model, version = self.version, trigger = trigger.as_str(), %reason, "canary rollback rule tripped");
        let Some(reloader) = self.reloader.clone() else {
            return;
        };
        let (model, version) = (self.model.clone(), self.version);
        let roll_back = move || {
            if let Err(e) = reloader.roll_back(&model, version, trigger, &reason) {
                tracing::error!(%model, version, error = %e, "canary rollback failed");
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => drop(handle.spawn_blocking(roll_back)),
            Err(_) => roll_back(),
        }
    }

    /// Adds a comparison of canary answers with the stable version's, and judges the rule.
    pub(super) fn compared(&self, c: &Comparison) {
        let Some(rule) = &self.rule else { return };
        let cap = rule.window();
        let ratio = {
            let mut w = self.lock();
            for (i, _) in c.differences.iter().enumerate() {
                push(&mut w.agreement, i < c.agreed, cap);
            }
            share(w.agreement.iter().copied())
        };
        self.metrics
            .traffic()
            .canary_agreement(&self.model, self.version, ratio.unwrap_or(0.0));
        self.judge();
    }

    /// The first broken limit of the rule, with a reason, once enough samples are in.
    fn verdict(&self) -> Option<(RollbackTrigger, String)> {
        let rule = self.rule.as_ref()?;
        let min = rule.min_samples();
        let w = self.lock();
        if w.canary.len() >= min {
            if let Some(limit) = rule.max_error_rate {
                let canary = 1.0 - share(w.canary.iter().map(|(ok, _)| *ok)).unwrap_or(1.0);
                let stable = 1.0 - share(w.stable.iter().copied()).unwrap_or(1.0);
                if canary - stable > limit {
                    let reason = format!(
                        "error rate {canary:.3} over the last {} canary requests, stable {stable:.3}; the rule allows {limit} more",
                        w.canary.len()
                    );
                    return Some((RollbackTrigger::Errors, reason));
                }
            }
            if let Some(limit) = rule.max_p99_ms {
                if let Some(p99) = p99_ms(&w.canary) {
                    if p99 > limit {
                        let reason = format!(
                            "p99 latency {p99:.2} ms over the last {} canary requests is above the rule's {limit} ms",
                            w.canary.len()
                        );
                        return Some((RollbackTrigger::Latency, reason));
                    }
                }
            }
        }
        if let Some(limit) = rule.min_agreement {
            if w.agreement.len() >= min {
                let ratio = share(w.agreement.iter().copied()).unwrap_or(1.0);
                if ratio < limit {
                    let reason = format!(
                        "agreement with the stable version {ratio:.3} over the last {} canary instances is below the rule's {limit}",
                        w.agreement.len()
                    );
                    return Some((RollbackTrigger::Agreement, reason));
                }
            }
        }
        None
    }
}

/// The share of `true`; None for no items.
fn share(items: impl Iterator<Item = bool>) -> Option<f64> {
    let (mut yes, mut n) = (0usize, 0usize);
    for b in items {
        yes += usize::from(b);
        n += 1;
    }
    (n > 0).then(|| yes as f64 / n as f64)
}

/// The 99th percentile (nearest rank) of the successful requests' latencies.
fn p99_ms(canary: &VecDeque<(bool, Duration)>) -> Option<f64> {
    let mut ok: Vec<Duration> = canary
        .iter()
        .filter(|(ok, _)| *ok)
        .map(|(_, d)| *d)
        .collect();
    if ok.is_empty() {
        return None;
    }
    ok.sort_unstable();
    let rank = (ok.len() * 99).div_ceil(100).max(1) - 1;
    Some(ok[rank].as_secs_f64() * 1e3)
}
