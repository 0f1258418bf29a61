//! Which version answers a request that names none, when the model has a canary or a shadow
//! (docs/model-updates.md): a share of the requests goes to the canary (by a hash of the
//! request's route key when the canary is sticky), a share is mirrored to the shadow, and the
//! canary's outcomes feed its automatic rollback rule.
//!
//! A request naming a version is never split. The rule is judged on the request path from a
//! window kept in memory; when it trips, the canary stops taking traffic at once and the
//! version is rolled back through the reloader on a blocking thread.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::canary_run::CanaryRun;
use super::shadow::{Mirror, MirrorInput, MirrorJob, Sink};
use super::target::Target;
use crate::contract::Instance;
use crate::contract::Prediction;
use crate::engine::Tensor;
use crate::monitoring::Metrics;
use crate::repository::{Canary, Catalog, LoadedVersion, Reloader, ResolveError, VersionState};

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
            if !run.is_tripped() {
                let to_canary = self.draw(canary.fraction, canary.sticky, target.route_key);
                self.metrics
                    .traffic()
                    .canary_routed(&stable.model, canary.version, to_canary);
                let compare = run.min_agreement();
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
            if run.serves(loaded, canary) {
                return run.clone();
            }
        }
        let run = Arc::new(CanaryRun::new(
            model,
            canary,
            loaded.clone(),
            self.metrics.clone(),
            self.reloader.clone(),
        ));
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
