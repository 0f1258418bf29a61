//! Every Prometheus metric infera exports: names, help, labels and buckets live here and only
//! here. Label values are closed sets: route templates, model names and versions from the
//! repository, class names from manifests, and fixed reason strings.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arc_swap::ArcSwap;

use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use super::access_metrics::AccessFamilies;
use super::capture_metrics::CaptureFamilies;
use super::explain_metrics::ExplainFamilies;
use super::grpc_metrics::GrpcFamilies;
use super::plan_metrics::{PlanFamilies, PlanSeries};
use super::quality_metrics::QualityFamilies;
use super::retire::drop_series;
use super::traffic_metrics::TrafficFamilies;
use crate::engine::{BatchPolicy, JobObserver, PlanObserver, SkipReason};

/// Latency buckets in seconds, 50 us to 10 s: tiny tabular models answer in tens of microseconds.
const LATENCY_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
];
/// Instances per engine call.
const BATCH_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];
/// Probability of the predicted class.
const CONFIDENCE_BUCKETS: &[f64] = &[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0];

/// The registry and all metric families.
pub struct Metrics {
    registry: Registry,
    /// Feedback, accuracy and drift series (`quality_metrics.rs`).
    quality: QualityFamilies,
    /// Authentication, rate limits and usage per caller (`access_metrics.rs`).
    access: Arc<AccessFamilies>,
    /// Explanation series (`explain_metrics.rs`).
    explain: ExplainFamilies,
    /// gRPC calls (`grpc_metrics.rs`).
    grpc: GrpcFamilies,
    /// Plan-cache series (`plan_metrics.rs`).
    plans: PlanFamilies,
    /// Data capture (`capture_metrics.rs`).
    capture: Arc<CaptureFamilies>,
    /// Shadow, canary and rollback series (`traffic_metrics.rs`).
    traffic: TrafficFamilies,
    /// Resolved HTTP series by route, then (method, status): read lock-free on every request,
    /// extended (copy and swap) the first time a combination is seen.
    http_series: ArcSwap<HashMap<String, Vec<HttpSeries>>>,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    http_in_flight: IntGauge,
    /// Requests whose handler ran on the low-priority bulk lane (large bodies).
    http_bulk: IntCounter,
    queue_wait: HistogramVec,
    compute: HistogramVec,
    request_duration: HistogramVec,
    instances: IntCounterVec,
    failures: IntCounterVec,
    queue_depth: IntGaugeVec,
    batch_size: HistogramVec,
    batch_requests: HistogramVec,
    confidence: HistogramVec,
    predicted_class: IntCounterVec,
    load_duration: GaugeVec,
    model_ready: IntGaugeVec,
    skipped: IntCounterVec,
    workers: IntGauge,
    queue_capacity: IntGaugeVec,
    max_batch_size: IntGaugeVec,
    gate_failures: IntCounterVec,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

fn histogram(name: &str, help: &str, labels: &[&str], buckets: &[f64]) -> HistogramVec {
    HistogramVec::new(
        HistogramOpts::new(name, help).buckets(buckets.to_vec()),
        labels,
    )
    .expect("static histogram definition")
}

fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels).expect("static counter definition")
}

fn gauge(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    IntGaugeVec::new(Opts::new(name, help), labels).expect("static gauge definition")
}

const MODEL: &[&str] = &["model", "version"];
/// The per-request model series, split by the front-end the request came through.
const MODEL_PROTOCOL: &[&str] = &["model", "version", "protocol"];

/// The front-end a request came through: the `protocol` label's closed set. REST (`/predict`,
/// V1, V2) is `http`; the gRPC Open Inference Protocol is `grpc`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Protocol {
    #[default]
    Http,
    Grpc,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Grpc => "grpc",
        }
    }

    fn index(self) -> usize {
        match self {
            Protocol::Http => 0,
            Protocol::Grpc => 1,
        }
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let m = Metrics {
            registry: Registry::new(),
            quality: QualityFamilies::new(),
            access: Arc::new(AccessFamilies::new()),
            explain: ExplainFamilies::new(),
            grpc: GrpcFamilies::new(LATENCY_BUCKETS),
            plans: PlanFamilies::new(),
            capture: Arc::new(CaptureFamilies::new()),
            traffic: TrafficFamilies::new(LATENCY_BUCKETS),
            http_series: Default::default(),
            http_requests: counter(
                "infera_http_requests_total",
                "HTTP requests answered, by method, route template and status code",
                &["method", "route", "status"],
            ),
            http_duration: histogram(
                "infera_http_request_duration_seconds",
                "HTTP request latency from first byte in to response head out",
                &["method", "route", "status"],
                LATENCY_BUCKETS,
            ),
            http_in_flight: IntGauge::new(
                "infera_http_requests_in_flight",
                "HTTP requests being processed",
            )
            .expect("static gauge definition"),
            http_bulk: IntCounter::new(
                "infera_http_bulk_requests_total",
                "HTTP requests whose handler ran on the low-priority bulk lane (body of at least --bulk-body-bytes, or of unknown length)",
            )
            .expect("static counter definition"),
            queue_wait: histogram(
                "infera_model_queue_wait_seconds",
                "Time an inference job waited for a worker thread",
                MODEL,
                LATENCY_BUCKETS,
            ),
            compute: histogram(
                "infera_model_inference_seconds",
                "Time a worker spent running the model for one job",
                MODEL,
                LATENCY_BUCKETS,
            ),
            request_duration: histogram(
                "infera_model_request_duration_seconds",
                "End-to-end predict time: validation, queue, inference and post-processing",
                MODEL_PROTOCOL,
                LATENCY_BUCKETS,
            ),
            instances: counter(
                "infera_model_instances_total",
                "Instances predicted successfully",
                MODEL_PROTOCOL,
            ),
            failures: counter(
                "infera_model_failures_total",
                "Predict requests that failed, by reason",
                &["model", "version", "reason", "protocol"],
            ),
            queue_depth: gauge(
                "infera_model_queue_depth",
                "Inference jobs waiting for a worker thread",
                MODEL,
            ),
            batch_size: histogram(
                "infera_model_batch_size",
                "Instances per model call (dynamic batching joins queued requests)",
                MODEL,
                BATCH_BUCKETS,
            ),
            batch_requests: histogram(
                "infera_model_requests_per_batch",
                "Requests joined into one model call",
                MODEL,
                BATCH_BUCKETS,
            ),
            confidence: histogram(
                "infera_prediction_confidence",
                "Probability a classifier gave its predicted class",
                MODEL,
                CONFIDENCE_BUCKETS,
            ),
            predicted_class: counter(
                "infera_predicted_class_total",
                "Predictions per class label",
                &["model", "version", "class"],
            ),
            load_duration: GaugeVec::new(
                Opts::new(
                    "infera_model_load_duration_seconds",
                    "Time to load, optimise and warm up a model version",
                ),
                MODEL,
            )
            .expect("static gauge definition"),
            model_ready: gauge(
                "infera_model_ready",
                "1 when a model version is loaded and warmed up, else 0",
                MODEL,
            ),
            skipped: counter(
                "infera_model_jobs_skipped_total",
                "Queued jobs dropped before inference: caller gone (cancelled) or deadline passed",
                &["model", "version", "reason"],
            ),
            workers: IntGauge::new("infera_workers", "Inference worker threads")
                .expect("static gauge definition"),
            queue_capacity: gauge(
                "infera_model_queue_capacity",
                "Requests that may wait for a model version before more are refused (429)",
                MODEL,
            ),
            max_batch_size: gauge(
                "infera_model_max_batch_size",
                "Most instances one model call may take (1: batching off)",
                MODEL,
            ),
            gate_failures: counter(
                "infera_model_gate_failures_total",
                "Candidate versions refused by the validation gate, by stage: load, contract, golden, eval",
                &["model", "stage"],
            ),
        };
        let build_info = gauge(
            "infera_build_info",
            "Always 1; labels carry the build's version",
            &["version"],
        );
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(m.http_requests.clone()),
            Box::new(m.http_duration.clone()),
            Box::new(m.http_in_flight.clone()),
            Box::new(m.http_bulk.clone()),
            Box::new(m.queue_wait.clone()),
            Box::new(m.compute.clone()),
            Box::new(m.request_duration.clone()),
            Box::new(m.instances.clone()),
            Box::new(m.failures.clone()),
            Box::new(m.queue_depth.clone()),
            Box::new(m.batch_size.clone()),
            Box::new(m.batch_requests.clone()),
            Box::new(m.confidence.clone()),
            Box::new(m.predicted_class.clone()),
            Box::new(m.load_duration.clone()),
            Box::new(m.model_ready.clone()),
            Box::new(m.skipped.clone()),
            Box::new(m.workers.clone()),
            Box::new(m.queue_capacity.clone()),
            Box::new(m.max_batch_size.clone()),
            Box::new(m.gate_failures.clone()),
            Box::new(build_info),
        ];
        let families = m
            .quality
            .collectors()
            .into_iter()
            .chain(m.access.collectors())
            .chain(m.explain.collectors())
            .chain(m.grpc.collectors())
            .chain(m.plans.collectors())
            .chain(m.capture.collectors())
            .chain(m.traffic.collectors());
        for c in collectors.into_iter().chain(families) {
            m.registry.register(c).expect("metric names are unique");
        }
        m
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding into a Vec cannot fail");
        String::from_utf8(buf).expect("the text format is UTF-8")
    }

    pub fn set_workers(&self, workers: usize) {
        self.workers.set(workers as i64);
    }

    /// Records one answered HTTP request. The label lookup happens once per (method, route,
    /// status); after that this is a lock-free map read plus two atomic updates.
    pub fn http_request(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let series = self.http_series(method, route, status);
        series.requests.inc();
        series.duration.observe(elapsed.as_secs_f64());
    }

    fn http_series(&self, method: &str, route: &str, status: u16) -> HttpSeries {
        let find = |map: &HashMap<String, Vec<HttpSeries>>| {
            map.get(route).and_then(|v| {
                v.iter()
                    .find(|s| s.status == status && s.method == method)
                    .cloned()
            })
        };
        if let Some(found) = find(&self.http_series.load()) {
            return found;
        }
        let status_text = status.to_string();
        let labels = [method, route, status_text.as_str()];
        let series = HttpSeries {
            method: method.to_string(),
            status,
            requests: self.http_requests.with_label_values(&labels),
            duration: self.http_duration.with_label_values(&labels),
        };
        self.http_series.rcu(|map| {
            let mut map = HashMap::clone(map);
            let entry = map.entry(route.to_string()).or_default();
            if !entry
                .iter()
                .any(|s| s.status == status && s.method == method)
            {
                entry.push(series.clone());
            }
            map
        });
        series
    }

    pub fn access(&self) -> &Arc<AccessFamilies> {
        &self.access
    }

    pub fn capture(&self) -> &Arc<CaptureFamilies> {
        &self.capture
    }

    pub fn quality(&self) -> &QualityFamilies {
        &self.quality
    }

    pub fn explain(&self) -> &ExplainFamilies {
        &self.explain
    }

    pub fn grpc(&self) -> &GrpcFamilies {
        &self.grpc
    }

    pub fn traffic(&self) -> &TrafficFamilies {
        &self.traffic
    }

    pub fn http_in_flight(&self) -> &IntGauge {
        &self.http_in_flight
    }

    pub fn http_bulk(&self) -> &IntCounter {
        &self.http_bulk
    }

    /// Marks a version that failed to load (`infera_model_ready` 0).
    pub fn model_failed(&self, model: &str, version: u64) {
        self.model_ready
            .with_label_values(&[model, version.to_string().as_str()])
            .set(0);
    }

    /// A candidate version of `model` failed the validation gate at `stage` (a fixed name).
    pub fn gate_failed(&self, model: &str, stage: &'static str) {
        self.gate_failures.with_label_values(&[model, stage]).inc();
    }

    /// Removes every series of a version that no longer serves (unloaded by its policy,
    /// refused by the gate, or gone from disk). Requests still draining on it record into
    /// detached handles, which are no longer exported.
    pub fn forget(&self, model: &str, version: u64) {
        let v = version.to_string();
        let v = v.as_str();
        drop_series(&self.queue_wait, model, v);
        drop_series(&self.compute, model, v);
        drop_series(&self.request_duration, model, v);
        drop_series(&self.instances, model, v);
        drop_series(&self.failures, model, v);
        drop_series(&self.queue_depth, model, v);
        drop_series(&self.batch_size, model, v);
        drop_series(&self.batch_requests, model, v);
        drop_series(&self.confidence, model, v);
        drop_series(&self.predicted_class, model, v);
        drop_series(&self.load_duration, model, v);
        drop_series(&self.model_ready, model, v);
        drop_series(&self.skipped, model, v);
        drop_series(&self.queue_capacity, model, v);
        drop_series(&self.max_batch_size, model, v);
        self.plans.forget(model, v);
        self.quality.forget(model, v);
        self.traffic.forget(model, v);
    }

    /// Per-version handles, resolved once at load so the hot path does no label lookups.
    /// `classes` is empty for models that are not classifiers (no confidence series then).
    pub fn model(&self, model: &str, version: u64, classes: &[String]) -> Arc<ModelMetrics> {
        let version = version.to_string();
        let labels = [model, version.as_str()];
        Arc::new(ModelMetrics {
            model: model.to_string(),
            version: version.clone(),
            queue_wait: self.queue_wait.with_label_values(&labels),
            compute: self.compute.with_label_values(&labels),
            request_duration: self.request_duration.clone(),
            instances: self.instances.clone(),
            // REST serves every model: its series exist from load on (at 0), so a rate over
            // the first request is not lost; gRPC's appear with its first call.
            by_protocol: [
                OnceLock::from((
                    self.request_duration.with_label_values(&[
                        model,
                        version.as_str(),
                        Protocol::Http.as_str(),
                    ]),
                    self.instances.with_label_values(&[
                        model,
                        version.as_str(),
                        Protocol::Http.as_str(),
                    ]),
                )),
                OnceLock::new(),
            ],
            failures: self.failures.clone(),
            queue_depth: self.queue_depth.with_label_values(&labels),
            batch_size: self.batch_size.with_label_values(&labels),
            batch_requests: self.batch_requests.with_label_values(&labels),
            queue_capacity: self.queue_capacity.with_label_values(&labels),
            max_batch_size: self.max_batch_size.with_label_values(&labels),
            confidence: (!classes.is_empty()).then(|| self.confidence.with_label_values(&labels)),
            predicted_class: classes
                .iter()
                .map(|c| {
                    self.predicted_class
                        .with_label_values(&[model, version.as_str(), c.as_str()])
                })
                .collect(),
            load_duration: self.load_duration.with_label_values(&labels),
            ready: self.model_ready.with_label_values(&labels),
            skipped: [SkipReason::Cancelled, SkipReason::Deadline].map(|r| {
                self.skipped
                    .with_label_values(&[model, version.as_str(), r.as_str()])
            }),
            plans: self.plans.series(model, &version),
        })
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// The HTTP series of one (method, route, status).
#[derive(Clone)]
struct HttpSeries {
    method: String,
    status: u16,
    requests: IntCounter,
    duration: Histogram,
}

/// Metric handles of one model version.
pub struct ModelMetrics {
    model: String,
    version: String,
    queue_wait: Histogram,
    compute: Histogram,
    request_duration: HistogramVec,
    instances: IntCounterVec,
    /// The (duration, instances) handles per protocol: `http` resolved at load, `grpc` on its
    /// first call, so a server without gRPC exports no gRPC series.
    by_protocol: [OnceLock<(Histogram, IntCounter)>; 2],
    failures: IntCounterVec,
    queue_depth: IntGauge,
    batch_size: Histogram,
    batch_requests: Histogram,
    queue_capacity: IntGauge,
    max_batch_size: IntGauge,
    confidence: Option<Histogram>,
    predicted_class: Vec<IntCounter>,
    load_duration: Gauge,
    ready: IntGauge,
    skipped: [IntCounter; 2],
    plans: PlanSeries,
}

impl std::fmt::Debug for ModelMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ModelMetrics({}:{})", self.model, self.version)
    }
}

impl ModelMetrics {
    /// The queueing and batching policy in force for this version.
    pub fn configured(&self, policy: BatchPolicy) {
        self.queue_capacity.set(policy.queue_capacity as i64);
        self.max_batch_size.set(policy.max_batch_size as i64);
    }

    pub fn loaded(&self, took: Duration) {
        self.load_duration.set(took.as_secs_f64());
        self.ready.set(1);
    }

    /// One predict request succeeded.
    pub fn succeeded(&self, protocol: Protocol, instances: usize, elapsed: Duration) {
        let (duration, count) = self.by_protocol[protocol.index()].get_or_init(|| {
            let labels = [
                self.model.as_str(),
                self.version.as_str(),
                protocol.as_str(),
            ];
            (
                self.request_duration.with_label_values(&labels),
                self.instances.with_label_values(&labels),
            )
        });
        count.inc_by(instances as u64);
        duration.observe(elapsed.as_secs_f64());
    }

    /// One classifier answer.
    pub fn classified(&self, class_index: usize, confidence: f64) {
        if let Some(counter) = self.predicted_class.get(class_index) {
            counter.inc();
        }
        if let Some(histogram) = &self.confidence {
            histogram.observe(confidence);
        }
    }

    /// One predict request failed; `reason` is a fixed identifier.
    pub fn failed(&self, protocol: Protocol, reason: &'static str) {
        let labels = [
            self.model.as_str(),
            self.version.as_str(),
            reason,
            protocol.as_str(),
        ];
        self.failures.with_label_values(&labels).inc();
    }
}

impl PlanObserver for ModelMetrics {
    fn plan_hit(&self) {
        self.plans.plan_hit();
    }

    fn plan_miss(&self, took: Duration, ok: bool) {
        self.plans.plan_miss(took, ok);
    }
}

impl JobObserver for ModelMetrics {
    fn enqueued(&self) {
        self.queue_depth.inc();
    }

    fn dequeued(&self) {
        self.queue_depth.dec();
    }

    fn started(&self, queue_wait: Duration) {
        self.queue_wait.observe(queue_wait.as_secs_f64());
    }

    fn batch_ran(&self, rows: usize, jobs: usize, compute: Duration) {
        self.batch_size.observe(rows as f64);
        self.batch_requests.observe(jobs as f64);
        self.compute.observe(compute.as_secs_f64());
    }

    fn skipped(&self, reason: SkipReason) {
        match reason {
            SkipReason::Cancelled => self.skipped[0].inc(),
            SkipReason::Deadline => self.skipped[1].inc(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_units_and_render() {
        let metrics = Metrics::new();
        let m = metrics.model("iris", 1, &["a".into(), "b".into()]);
        m.classified(1, 0.75);
        m.succeeded(Protocol::Http, 1, Duration::from_millis(2));
        metrics.http_request("POST", "/predict", 200, Duration::from_millis(3));
        let text = metrics.render();
        assert!(
            text.contains(r#"infera_predicted_class_total{class="b",model="iris",version="1"} 1"#),
            "{text}"
        );
        assert!(text.contains(
            r#"infera_http_requests_total{method="POST",route="/predict",status="200"} 1"#
        ));
        assert!(text.contains("infera_build_info{version="));
        for line in text.lines().filter(|l| l.starts_with("# TYPE")) {
            let name = line.split_whitespace().nth(2).unwrap();
            let kind = line.split_whitespace().nth(3).unwrap();
            let ok = match kind {
                "counter" => name.ends_with("_total"),
                "histogram" => {
                    name.ends_with("_seconds")
                        || name.ends_with("_size")
                        || name.ends_with("_per_batch")
                        || name.ends_with("_confidence")
                }
                _ => true,
            };
            assert!(ok, "metric {name} ({kind}) does not carry a unit suffix");
        }
    }
}
