//! The recent predictions kept for joining with ground truth: a bounded, sharded map from
//! prediction id to what was predicted. Each shard evicts its oldest entry when full and drops
//! entries older than the TTL, so memory stays bounded however many ids arrive.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::drift::Observed;
use super::monitor::ModelMonitor;

const SHARDS: usize = 16;

/// One kept prediction.
#[derive(Clone)]
pub struct Logged {
    /// The model version's monitor, which the ground truth is scored into.
    pub monitor: Arc<ModelMonitor>,
    pub predicted: Observed,
    at: Instant,
}

impl std::fmt::Debug for Logged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Logged")
            .field("predicted", &self.predicted)
            .finish()
    }
}

#[derive(Default)]
struct Shard {
    entries: HashMap<Box<str>, Logged>,
    /// Insertion order, for eviction (an id may appear here after it was taken).
    order: VecDeque<(Box<str>, Instant)>,
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

    fn shard(&self, id: &str) -> &Mutex<Shard> {
        let mut h = DefaultHasher::new();
        id.hash(&mut h);
        &self.shards[(h.finish() as usize) % SHARDS]
    }

    /// Keeps a prediction under `id` (replacing an earlier one with the same id).
    pub fn insert(&self, id: String, monitor: &Arc<ModelMonitor>, predicted: Observed) {
        if self.per_shard == 0 {
            return;
        }
        let now = Instant::now();
        let mut shard = self.shard(&id).lock().unwrap_or_else(|e| e.into_inner());
        // Taken ids leave stale order entries behind: drop them once they pile up.
        if shard.order.len() >= 2 * self.per_shard {
            let Shard { entries, order } = &mut *shard;
            order.retain(|(id, at)| entries.get(id).is_some_and(|e| e.at == *at));
        }
        while let Some((_, at)) = shard.order.front() {
            let expired = now.duration_since(*at) > self.ttl;
            if !expired && shard.entries.len() < self.per_shard {
                break;
            }
            let Some((old, at)) = shard.order.pop_front() else {
                break;
            };
            // The id may have been taken, or logged again since; only drop this insertion.
            if shard.entries.get(&old).is_some_and(|e| e.at == at) {
                shard.entries.remove(&old);
            }
        }
        let id: Box<str> = id.into_boxed_str();
        shard.order.push_back((id.clone(), now));
        shard.entries.insert(
            id,
            Logged {
                monitor: monitor.clone(),
                predicted,
                at: now,
            },
        );
    }

    /// Takes the prediction `id` of `model` (each prediction is scored once).
    pub fn take(&self, id: &str, model: &str) -> Result<Logged, Unmatched> {
        let mut shard = self.shard(id).lock().unwrap_or_else(|e| e.into_inner());
        let entry = shard.entries.get(id).ok_or(Unmatched::Unknown)?;
        if entry.at.elapsed() > self.ttl {
            shard.entries.remove(id);
            return Err(Unmatched::Unknown);
        }
        if entry.monitor.model() != model {
            return Err(Unmatched::OtherModel);
        }
        Ok(shard.entries.remove(id).expect("present above"))
    }

    /// Predictions kept right now.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).entries.len())
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

    #[test]
    fn memory_stays_bounded_under_a_flood_of_ids() {
        let log = PredictionLog::new(1000, Duration::from_secs(3600));
        let q = quality("m");
        for i in 0..100_000 {
            log.insert(format!("flood-{i}/0"), &q, Observed::Class(1));
        }
        assert!(log.len() <= log.capacity(), "{} kept", log.len());
        assert!(log.len() >= 900, "recent ones are kept: {}", log.len());
        assert!(log.order_len() <= 2 * log.capacity());
        assert_eq!(log.take("flood-0/0", "m").unwrap_err(), Unmatched::Unknown);
        // Predictions that are scored at once leave nothing behind, and do not push out the
        // ones still waiting for feedback.
        for i in 0..100_000 {
            log.insert(format!("taken-{i}/0"), &q, Observed::Class(1));
            assert!(log.take(&format!("taken-{i}/0"), "m").is_ok());
        }
        assert!(log.order_len() <= 2 * log.capacity(), "{}", log.order_len());
        assert!(log.take("flood-99999/0", "m").is_ok());
    }

    #[test]
    fn each_prediction_is_taken_once_and_only_by_its_model() {
        let log = PredictionLog::new(100, Duration::from_secs(3600));
        log.insert("a/0".into(), &quality("m"), Observed::Class(2));
        assert_eq!(log.take("a/0", "other").unwrap_err(), Unmatched::OtherModel);
        let got = log.take("a/0", "m").unwrap();
        assert!(matches!(got.predicted, Observed::Class(2)));
        assert_eq!(log.take("a/0", "m").unwrap_err(), Unmatched::Unknown);
    }

    #[test]
    fn entries_expire_after_the_ttl() {
        let log = PredictionLog::new(100, Duration::from_millis(1));
        log.insert("a/0".into(), &quality("m"), Observed::Class(0));
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(log.take("a/0", "m").unwrap_err(), Unmatched::Unknown);
        let none = PredictionLog::new(0, Duration::from_secs(1));
        none.insert("a/0".into(), &quality("m"), Observed::Class(0));
        assert!(none.is_empty());
    }
}
