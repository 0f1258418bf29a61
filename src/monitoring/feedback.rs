//! The recent predictions kept for joining with ground truth: a bounded, sharded map from
//! request id to what each of its instances predicted. Feedback names one instance as
//! `<request id>/<index>`. One entry per request (not per instance) keeps a 1024-instance
//! request to one clock read, one lock and one map insertion. Each shard evicts its oldest
//! requests when full and drops those older than the TTL, so memory stays bounded (counted in
//! predictions) however many ids arrive.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::drift::Observed;
use super::monitor::ModelMonitor;

const SHARDS: usize = 16;

/// One kept prediction, as handed to the scorer.
#[derive(Clone)]
pub struct Logged {
    /// The model version's monitor, which the ground truth is scored into.
    pub monitor: Arc<ModelMonitor>,
    pub predicted: Observed,
}

impl std::fmt::Debug for Logged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Logged")
            .field("predicted", &self.predicted)
            .finish()
    }
}

/// The predictions of one request still waiting for ground truth.
struct Request {
    monitor: Arc<ModelMonitor>,
    /// One slot per instance; `None` once scored.
    predicted: Box<[Option<Observed>]>,
    /// Slots still `Some`.
    left: usize,
    at: Instant,
}

#[derive(Default)]
struct Shard {
    requests: HashMap<Box<str>, Request>,
    /// Insertion order, for eviction (a request may appear here after it was fully scored).
    order: VecDeque<(Box<str>, Instant)>,
    /// Predictions held (the sum of `left`), the bound.
    held: usize,
}

impl Shard {
    fn remove(&mut self, id: &str) {
        if let Some(r) = self.requests.remove(id) {
            self.held -= r.left;
        }
    }

    /// Makes room for `n` predictions: drops expired requests and then the oldest.
    fn evict(&mut self, now: Instant, ttl: Duration, n: usize, per_shard: usize) {
        while let Some((_, at)) = self.order.front() {
            let expired = now.duration_since(*at) > ttl;
            if !expired && self.held + n <= per_shard {
                break;
            }
            let Some((old, at)) = self.order.pop_front() else {
                break;
            };
            // The request may have been scored, or logged again since; only drop this insertion.
            if self.requests.get(&old).is_some_and(|r| r.at == at) {
                self.remove(&old);
            }
        }
    }
}

/// Bounded store of recent predictions.
pub struct PredictionLog {
    shards: Vec<Mutex<Shard>>,
    per_shard: usize,
    ttl: Duration,
}

impl std::fmt::Debug for PredictionLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PredictionLog")
            .field("capacity", &self.capacity())
            .field("ttl", &self.ttl)
            .finish()
    }
}

/// Why a feedback id was not joined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unmatched {
    /// Never seen, already answered, evicted, or expired.
    Unknown,
    /// The prediction belongs to another model than the feedback was sent for.
    OtherModel,
}

impl PredictionLog {
    /// `capacity` predictions at most (0 keeps none), each for at most `ttl`.
    pub fn new(capacity: usize, ttl: Duration) -> PredictionLog {
        PredictionLog {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            per_shard: capacity.div_ceil(SHARDS),
            ttl,
        }
    }

    pub fn capacity(&self) -> usize {
        self.per_shard * SHARDS
    }

    fn shard(&self, request: &str) -> &Mutex<Shard> {
        let mut h = DefaultHasher::new();
        request.hash(&mut h);
        &self.shards[(h.finish() as usize) % SHARDS]
    }

    fn lock(&self, request: &str) -> std::sync::MutexGuard<'_, Shard> {
        self.shard(request)
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps the predictions of request `id` (instance `i` is fed back as `<id>/<i>`),
    /// replacing an earlier request with the same id. A request larger than a shard keeps its
    /// first instances only.
    pub fn insert(&self, id: &str, monitor: &Arc<ModelMonitor>, predicted: &[Observed]) {
        let n = predicted.len().min(self.per_shard);
        if n == 0 {
            return;
        }
        let now = Instant::now();
        let mut shard = self.lock(id);
        // Scored requests leave stale order entries behind: drop them once they pile up.
        if shard.order.len() >= 2 * self.per_shard {
            let Shard {
                requests, order, ..
            } = &mut *shard;
            order.retain(|(id, at)| requests.get(id).is_some_and(|r| r.at == *at));
        }
        shard.remove(id);
        shard.evict(now, self.ttl, n, self.per_shard);
        let id: Box<str> = id.into();
        shard.order.push_back((id.clone(), now));
        shard.held += n;
        let request = Request {
            monitor: monitor.clone(),
            predicted: predicted[..n].iter().copied().map(Some).collect(),
            left: n,
            at: now,
        };
        shard.requests.insert(id, request);
    }

    /// Scores prediction `id` (`<request id>/<index>`) of `model` with `score`. The prediction is
    /// used up when `score` succeeds (each is scored once) and stays for a corrected answer when
    /// it fails.
    pub fn score<E>(
        &self,
        id: &str,
        model: &str,
        score: impl FnOnce(&Logged) -> Result<(), E>,
    ) -> Result<Result<(), E>, Unmatched> {
        let (request, index) = split_id(id).ok_or(Unmatched::Unknown)?;
        let mut shard = self.lock(request);
        let entry = shard.requests.get(request).ok_or(Unmatched::Unknown)?;
        if entry.at.elapsed() > self.ttl {
            shard.remove(request);
            return Err(Unmatched::Unknown);
        }
        if entry.monitor.model() != model {
            return Err(Unmatched::OtherModel);
        }
        let predicted = entry
            .predicted
            .get(index)
            .copied()
            .flatten()
            .ok_or(Unmatched::Unknown)?;
        let logged = Logged {
            monitor: entry.monitor.clone(),
            predicted,
        };
        let outcome = score(&logged);
        if outcome.is_ok() {
            shard.held -= 1;
            let entry = shard.requests.get_mut(request).expect("present above");
            entry.predicted[index] = None;
            entry.left -= 1;
            if entry.left == 0 {
                shard.requests.remove(request);
            }
        }
        Ok(outcome)
    }

    /// Predictions kept right now.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).held)
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Eviction-order entries held (bounded like the entries themselves).
    #[cfg(test)]
    fn order_len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap().order.len())
            .sum()
    }
}

/// `<request id>/<index>` -> (request id, index); the request id may itself hold `/`.
fn split_id(id: &str) -> Option<(&str, usize)> {
    let (request, index) = id.rsplit_once('/')?;
    if index.is_empty() || !index.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((request, index.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitoring::{Metrics, MonitorSettings, Notifier, QualityKind, Subject};

    fn quality(model: &str) -> Arc<ModelMonitor> {
        let metrics = Metrics::new();
        Arc::new(ModelMonitor::new(
            Subject {
                model: model.into(),
                version: 1,
                kind: Some(QualityKind::Classification { classes: 3 }),
                labels: vec![],
            },
            Err("none".into()),
            MonitorSettings::default(),
            metrics.quality().version(model, 1, &[], &[], false),
            Notifier::disabled(),
        ))
    }

    fn take(log: &PredictionLog, id: &str, model: &str) -> Result<Logged, Unmatched> {
        let mut got = None;
        log.score(id, model, |l| {
            got = Some(l.clone());
            Ok::<(), ()>(())
        })?
        .unwrap();
        Ok(got.unwrap())
    }

    #[test]
    fn memory_stays_bounded_under_a_flood_of_ids() {
        let log = PredictionLog::new(1000, Duration::from_secs(3600));
        let q = quality("m");
        for i in 0..100_000 {
            log.insert(&format!("flood-{i}"), &q, &[Observed::Class(1)]);
        }
        assert!(log.len() <= log.capacity(), "{} kept", log.len());
        assert!(log.len() >= 900, "recent ones are kept: {}", log.len());
        assert!(log.order_len() <= 2 * log.capacity());
        assert_eq!(
            take(&log, "flood-0/0", "m").unwrap_err(),
            Unmatched::Unknown
        );
        // Predictions that are scored at once leave nothing behind, and do not push out the
        // ones still waiting for feedback.
        for i in 0..100_000 {
            log.insert(&format!("taken-{i}"), &q, &[Observed::Class(1)]);
            assert!(take(&log, &format!("taken-{i}/0"), "m").is_ok());
        }
        assert!(log.order_len() <= 2 * log.capacity(), "{}", log.order_len());
        assert!(take(&log, "flood-99999/0", "m").is_ok());
    }

    #[test]
    fn big_requests_are_bounded_in_predictions_not_requests() {
        let log = PredictionLog::new(16 * 100, Duration::from_secs(3600));
        let q = quality("m");
        let many = vec![Observed::Class(1); 1024];
        for i in 0..1000 {
            log.insert(&format!("big-{i}"), &q, &many);
            assert!(log.len() <= log.capacity(), "{} kept", log.len());
        }
        // A request larger than a shard keeps its first instances.
        assert!(take(&log, "big-999/99", "m").is_ok());
        assert_eq!(
            take(&log, "big-999/100", "m").unwrap_err(),
            Unmatched::Unknown
        );
        assert_eq!(take(&log, "big-0/0", "m").unwrap_err(), Unmatched::Unknown);
    }

    #[test]
    fn each_prediction_is_taken_once_and_only_by_its_model() {
        let log = PredictionLog::new(100, Duration::from_secs(3600));
        let q = quality("m");
        log.insert("a/b", &q, &[Observed::Class(2), Observed::Class(0)]);
        assert_eq!(
            take(&log, "a/b/0", "other").unwrap_err(),
            Unmatched::OtherModel
        );
        let got = take(&log, "a/b/0", "m").unwrap();
        assert!(matches!(got.predicted, Observed::Class(2)));
        assert_eq!(take(&log, "a/b/0", "m").unwrap_err(), Unmatched::Unknown);
        assert_eq!(log.len(), 1);
        for bad in ["a/b/2", "a/b/", "a/b/x", "a/b/+1", "a/b", "a"] {
            assert_eq!(
                take(&log, bad, "m").unwrap_err(),
                Unmatched::Unknown,
                "{bad}"
            );
        }
        assert!(matches!(
            take(&log, "a/b/1", "m").unwrap().predicted,
            Observed::Class(0)
        ));
        assert!(log.is_empty());
    }

    #[test]
    fn a_failed_score_leaves_the_prediction_for_a_corrected_answer() {
        let log = PredictionLog::new(100, Duration::from_secs(3600));
        log.insert("r", &quality("m"), &[Observed::Class(1)]);
        assert_eq!(
            log.score("r/0", "m", |_| Err("bad label")),
            Ok(Err("bad label"))
        );
        assert_eq!(log.len(), 1);
        assert!(take(&log, "r/0", "m").is_ok());
        assert!(log.is_empty());
    }

    #[test]
    fn a_request_id_logged_again_replaces_the_earlier_one() {
        let log = PredictionLog::new(100, Duration::from_secs(3600));
        let q = quality("m");
        log.insert("r", &q, &[Observed::Class(1), Observed::Class(1)]);
        log.insert("r", &q, &[Observed::Class(2)]);
        assert_eq!(log.len(), 1);
        assert!(matches!(
            take(&log, "r/0", "m").unwrap().predicted,
            Observed::Class(2)
        ));
        assert_eq!(take(&log, "r/1", "m").unwrap_err(), Unmatched::Unknown);
    }

    #[test]
    fn entries_expire_after_the_ttl() {
        let log = PredictionLog::new(100, Duration::from_millis(1));
        log.insert("a", &quality("m"), &[Observed::Class(0)]);
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(take(&log, "a/0", "m").unwrap_err(), Unmatched::Unknown);
        let none = PredictionLog::new(0, Duration::from_secs(1));
        none.insert("a", &quality("m"), &[Observed::Class(0)]);
        assert!(none.is_empty());
    }
}
