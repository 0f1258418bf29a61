//! Mirrored requests: a request already answered by one version is run again on another, off
//! the request path, and the two answers are compared. Used for the shadow version (the
//! comparison goes to the shadow metrics) and for a canary's agreement rule (the stable version
//! is run on canary requests; the comparison goes to the canary's window).
//!
//! The caller's answer never waits for a mirror and never sees its errors. Mirrors are bounded:
//! at most `max_in_flight` run at once, and none starts while the answering version has a
//! backlog in its queue; a mirror that cannot start is dropped and counted.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::canary_run::CanaryRun;
use crate::contract::decode_instances as decode;
use crate::contract::Instance;
use crate::contract::{predictions, Prediction};
use crate::engine::Tensor;
use crate::monitoring::{Comparison, Metrics, ShadowOutcome};
use crate::repository::LoadedVersion;

/// Where a comparison goes.
#[derive(Debug, Clone)]
pub enum Sink {
    /// The shadow metrics of the mirrored version.
    Shadow,
    /// A canary's rollback window (the mirrored version is the stable one).
    Canary(Arc<CanaryRun>),
}

/// Runs mirrored requests.
#[derive(Debug)]
pub struct Mirror {
    metrics: Arc<Metrics>,
    max_in_flight: usize,
    in_flight: Arc<AtomicUsize>,
    /// Deadline of one mirrored request.
    timeout: Duration,
}

/// One mirrored request: the answered one's inputs and answers, and the version to ask.
#[derive(Debug)]
pub struct MirrorJob {
    pub answered_by: Arc<LoadedVersion>,
    pub mirror_to: Arc<LoadedVersion>,
    pub input: MirrorInput,
    pub answers: Vec<Prediction>,
    pub sink: Sink,
}

/// What the mirrored version is asked: the JSON instances (REST `/predict` family), decoded
/// through its own contract, or the checked input tensors of a tensor protocol (V2, gRPC).
#[derive(Debug)]
pub enum MirrorInput {
    Instances(Vec<Instance>),
    Tensors { tensors: Vec<Tensor>, rows: usize },
}

/// Releases a mirror slot when dropped.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Mirror {
    pub fn new(metrics: Arc<Metrics>, max_in_flight: usize, timeout: Duration) -> Mirror {
        Mirror {
            metrics,
            max_in_flight,
            in_flight: Arc::new(AtomicUsize::new(0)),
            timeout,
        }
    }

    /// Mirrored requests running now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Starts `job` on the runtime unless the mirrors are at their bound or the answering
    /// version is backlogged; returns at once either way.
    pub fn start(&self, job: MirrorJob) {
        let Some(slot) = self.take_slot(&job.answered_by) else {
            if let Sink::Shadow = job.sink {
                let to = &job.mirror_to;
                self.metrics.traffic().shadow_request(
                    &to.model,
                    to.version,
                    ShadowOutcome::Dropped,
                );
            }
            return;
        };
        let metrics = self.metrics.clone();
        let deadline = Instant::now() + self.timeout;
        tokio::spawn(async move {
            let _slot = slot;
            let started = Instant::now();
            let result = ask(&job.mirror_to, job.input, deadline).await;
            let took = started.elapsed();
            let to = &job.mirror_to;
            match (result, &job.sink) {
                (Ok(theirs), Sink::Shadow) => {
                    let c = compare(&job.answers, &theirs);
                    metrics
                        .traffic()
                        .shadow_compared(&to.model, to.version, &c, took);
                }
                (Err(reason), Sink::Shadow) => {
                    tracing::debug!(model = %to.model, version = to.version, %reason, "shadow request failed");
                    metrics
                        .traffic()
                        .shadow_request(&to.model, to.version, ShadowOutcome::Failed);
                }
                (Ok(theirs), Sink::Canary(run)) => run.compared(&compare(&job.answers, &theirs)),
                (Err(reason), Sink::Canary(_)) => {
                    tracing::debug!(model = %to.model, version = to.version, %reason, "stable version failed on a canary comparison");
                }
            }
        });
    }

    fn take_slot(&self, answered_by: &LoadedVersion) -> Option<Slot> {
        if answered_by.queue.queued() > 0 {
            return None;
        }
        let taken = self
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_in_flight).then_some(n + 1)
            });
        taken.ok().map(|_| Slot(self.in_flight.clone()))
    }
}

/// Runs the input on `version`, through its own contract and queue.
async fn ask(
    version: &LoadedVersion,
    input: MirrorInput,
    deadline: Instant,
) -> Result<Vec<Prediction>, String> {
    let (inputs, rows) = match input {
        MirrorInput::Instances(instances) => (
            decode(&version.contract.input, &instances).map_err(|e| e.to_string())?,
            instances.len(),
        ),
        MirrorInput::Tensors { tensors, rows } => (tensors, rows),
    };
    let run = version
        .queue
        .run(inputs, deadline)
        .await
        .map_err(|e| e.to_string())?;
    predictions(&version.contract, &run.outputs, rows)
}

/// Compares two versions' answers to the same instances: same label (classifiers), or values
/// equal within 1e-6 relative (regressors); raw answers are compared element by element.
pub fn compare(ours: &[Prediction], theirs: &[Prediction]) -> Comparison {
    let mut c = Comparison::default();
    for (a, b) in ours.iter().zip(theirs) {
        let (agree, difference) = match (a, b) {
            (
                Prediction::Classification {
                    class_index: ia,
                    probabilities: pa,
                    ..
                },
                Prediction::Classification {
                    class_index: ib,
                    probabilities: pb,
                    ..
                },
            ) => (
                ia == ib,
                mean_abs(pa.iter(), pb.iter(), pa.len().max(pb.len())),
            ),
            (Prediction::Regression { value: va }, Prediction::Regression { value: vb }) => {
                let d = (va - vb).abs();
                (d <= 1e-6 * va.abs().max(vb.abs()).max(1.0), d)
            }
            _ => (a == b, if a == b { 0.0 } else { 1.0 }),
        };
        c.agreed += usize::from(agree);
        c.differences.push(difference);
    }
    c
}

fn mean_abs<'a>(
    a: impl Iterator<Item = &'a f32>,
    b: impl Iterator<Item = &'a f32>,
    n: usize,
) -> f64 {
    if n == 0 {
        return 0.0;
    }
    let sum: f64 = a.zip(b).map(|(x, y)| f64::from((x - y).abs())).sum();
    sum / n as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(i: usize, p: Vec<f32>) -> Prediction {
        Prediction::Classification {
            class_index: i,
            label: i.to_string(),
            confidence: p[i],
            probabilities: p,
        }
    }

    #[test]
    fn labels_agree_and_probabilities_differ() {
        let ours = [class(0, vec![0.75, 0.25]), class(1, vec![0.5, 0.5])];
        let theirs = [class(0, vec![0.5, 0.5]), class(0, vec![0.5, 0.5])];
        let c = compare(&ours, &theirs);
        assert_eq!(c.agreed, 1);
        assert_eq!(c.differences, vec![0.25, 0.0]);
    }

    #[test]
    fn values_agree_within_a_relative_tolerance() {
        let v = |value| Prediction::Regression { value };
        let c = compare(&[v(100.0), v(1.0)], &[v(100.00001), v(1.5)]);
        assert_eq!(c.agreed, 1);
        assert!((c.differences[1] - 0.5).abs() < 1e-12);
    }
}
