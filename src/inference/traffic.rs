//! Which version answers a request that names none, when the model has a canary or a shadow
//! (docs/model-updates.md): a share of the requests goes to the canary (by a hash of the
//! request's route key when the canary is sticky), a share is mirrored to the shadow, and the
//! canary's outcomes feed its automatic rollback rule.
//!
//! A request naming a version is never split. The rule is judged on the request path from a
//! window kept in memory; when it trips, the canary stops taking traffic at once and the
//! version is rolled back through the reloader on a blocking thread.

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::json_instance::Instance;
use super::prediction::Prediction;
use super::predictor::Target;
use super::shadow::{Mirror, MirrorInput, MirrorJob, Sink};
use crate::engine::Tensor;
use crate::monitoring::{Comparison, Metrics};
use crate::repository::{
    Canary, Catalog, LoadedVersion, Reloader, ResolveError, RollbackRule, RollbackTrigger,
    VersionState,
};

/// Routes requests between a model's stable, canary and shadow versions.
#[derive(Debug)]
pub struct Traffic {
    metrics: Arc<Metrics>,
    mirror: Mirror,
    /// Rolls canaries back; None in tests that build a predictor by hand.
    reloader: Option<Arc<Reloader>>,
    /// The live canary of each model, kept while its version and settings stay the same.
    runs: Mutex<HashMap<String, Arc<CanaryRun>>>,
    draws: AtomicU64,
}

/// Where one request goes, and what happens after it answered.
#[derive(Debug)]
pub struct Routed {
    /// The version that answers.
    pub loaded: Arc<LoadedVersion>,
    /// The active canary, and whether this request went to it.
    canary: Option<(Arc<CanaryRun>, bool)>,
    /// A version to mirror this request to once answered, and where the comparison goes.
    mirror: Option<(Arc<LoadedVersion>, Sink)>,
}

impl Routed {
    /// Whether this request is to be mirrored once answered (its inputs must then be kept).
    pub fn wants_mirror(&self) -> bool {
        self.mirror.is_some()
    }

    /// A request that is not split.
    pub fn plain(loaded: Arc<LoadedVersion>) -> Routed {
        Routed {
            loaded,
            canary: None,
            mirror: None,
        }
    }
}

impl Traffic {
    pub fn new(metrics: Arc<Metrics>, mirror: Mirror, reloader: Option<Arc<Reloader>>) -> Traffic {
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Traffic {
            metrics,
            mirror,
            reloader,
            runs: Mutex::new(HashMap::new()),
            draws: AtomicU64::new(seed),
        }
    }

    /// Mirrored requests running now.
    pub fn mirrors_in_flight(&self) -> usize {
        self.mirror.in_flight()
    }

    /// The version `target` means, split by the model's canary and shadow when it names none.
    pub fn route(&self, catalog: &Catalog, target: Target<'_>) -> Result<Routed, ResolveError> {
        let stable = catalog.resolve(target.model, target.version)?;
        if target.version.is_some() {
            return Ok(Routed::plain(stable));
        }
        let Some(entry) = catalog.models.get(&stable.model) else {
            return Ok(Routed::plain(stable));
        };
        let ready = |v: u64| match entry.versions.get(&v) {
            Some(VersionState::Ready(l)) if v != stable.version => Some(l.clone()),
            _ => None,
        };
        if let Some((canary, loaded)) = entry
            .traffic
            .canary
            .as_ref()
            .and_then(|c| Some((c, ready(c.version)?)))
        {
            let run = self.run_for(&stable.model, canary, &loaded);
            if !run.tripped.load(Ordering::Acquire) {
                let to_canary = self.draw(canary.fraction, canary.sticky, target.route_key);
                self.metrics
                    .traffic()
                    .canary_routed(&stable.model, canary.version, to_canary);
                let compare = run.rule.as_ref().and_then(|r| r.min_agreement);
                return Ok(Routed {
                    mirror: (to_canary && compare.is_some())
                        .then(|| (stable.clone(), Sink::Canary(run.clone()))),
                    loaded: if to_canary { loaded } else { stable },
                    canary: Some((run, to_canary)),
                });
            }
        }
        let shadow = entry
            .traffic
            .shadow
            .as_ref()
            .and_then(|s| Some((s.fraction, ready(s.version)?)))
            .filter(|(fraction, _)| self.draw(*fraction, false, None))
            .map(|(_, l)| (l, Sink::Shadow));
        Ok(Routed {
            loaded: stable,
            canary: None,
            mirror: shadow,
        })
    }

    /// Records how a routed request went: the canary's window, then its mirror, if any.
    pub fn answered(
        &self,
        routed: Routed,
        outcome: Result<&[Prediction], ()>,
        took: Duration,
        instances: &[Instance],
    ) {
        if let Some((run, to_canary)) = &routed.canary {
            run.record(*to_canary, outcome.is_ok(), took);
        }
        if let (Some((mirror_to, sink)), Ok(answers)) = (routed.mirror, outcome) {
            self.mirror.start(MirrorJob {
                answered_by: routed.loaded,
                mirror_to,
                input: MirrorInput::Instances(instances.to_vec()),
                answers: answers.to_vec(),
                sink,
            });
        }
    }

    /// Records a routed tensor-protocol request: the canary's window, then its mirror, if any
    /// (`mirrored` holds the checked input tensors, copied before the run when `wants_mirror`).
    pub fn answered_tensors(
        &self,
        routed: Routed,
        outcome: Result<&[Prediction], ()>,
        took: Duration,
        mirrored: Option<(Vec<Tensor>, usize)>,
    ) {
        if let Some((run, to_canary)) = &routed.canary {
            run.record(*to_canary, outcome.is_ok(), took);
        }
        if let (Some((mirror_to, sink)), Ok(answers), Some((tensors, rows))) =
            (routed.mirror, outcome, mirrored)
        {
            self.mirror.start(MirrorJob {
                answered_by: routed.loaded,
                mirror_to,
                input: MirrorInput::Tensors { tensors, rows },
                answers: answers.to_vec(),
                sink,
            });
        }
    }

    /// The model's live canary, built anew when its version, load or settings changed.
    fn run_for(&self, model: &str, canary: &Canary, loaded: &Arc<LoadedVersion>) -> Arc<CanaryRun> {
        let mut runs = self.runs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(run) = runs.get(model) {
            if Arc::ptr_eq(&run.loaded, loaded) && run.rule == canary.rollback {
                return run.clone();
            }
        }
        let run = Arc::new(CanaryRun {
            model: model.to_string(),
            version: canary.version,
            loaded: loaded.clone(),
            rule: canary.rollback.clone(),
            tripped: AtomicBool::new(false),
            window: Mutex::new(Window::default()),
            metrics: self.metrics.clone(),
            reloader: self.reloader.clone(),
        });
        runs.insert(model.to_string(), run.clone());
        run
    }

    /// True for a `fraction` share of the draws: by the hash of `key` when sticky and given,
    /// else pseudo-randomly (splitmix64 over a counter).
    fn draw(&self, fraction: f64, sticky: bool, key: Option<&str>) -> bool {
        let x = match key.filter(|_| sticky) {
            Some(key) => {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                key.hash(&mut h);
                splitmix(h.finish())
            }
            None => splitmix(self.draws.fetch_add(1, Ordering::Relaxed)),
        };
        ((x >> 11) as f64 / (1u64 << 53) as f64) < fraction
    }
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

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
    fn lock(&self) -> std::sync::MutexGuard<'_, Window> {
        self.window.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn record(&self, to_canary: bool, ok: bool, took: Duration) {
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
