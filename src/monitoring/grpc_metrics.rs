//! The Prometheus series of the gRPC server: calls, latency and calls in flight. Together with
//! the `infera_http_*` series they split traffic by protocol; the model series
//! (`infera_model_*`) count both protocols alike, since both go through one predictor. Label
//! values are closed sets: `rpc` from the served methods' fixed list (or `unmatched`), `code`
//! from the 17 gRPC status code names.

use std::time::Duration;

use prometheus::core::Collector;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts};

const LABELS: &[&str] = &["rpc", "code"];

/// The metric families.
pub struct GrpcFamilies {
    calls: IntCounterVec,
    duration: HistogramVec,
    in_flight: IntGauge,
}

impl GrpcFamilies {
    /// The families, with the same latency buckets as the HTTP series.
    pub fn new(latency_buckets: &[f64]) -> GrpcFamilies {
        GrpcFamilies {
            calls: IntCounterVec::new(
                Opts::new(
                    "infera_grpc_requests_total",
                    "gRPC calls answered, by RPC (package.Service/Method) and status code name",
                ),
                LABELS,
            )
            .expect("static counter definition"),
            duration: HistogramVec::new(
                HistogramOpts::new(
                    "infera_grpc_request_duration_seconds",
                    "gRPC call latency from the request head in to the response head out",
                )
                .buckets(latency_buckets.to_vec()),
                LABELS,
            )
            .expect("static histogram definition"),
            in_flight: IntGauge::new(
                "infera_grpc_requests_in_flight",
                "gRPC calls being processed",
            )
            .expect("static gauge definition"),
        }
    }

    pub fn collectors(&self) -> Vec<Box<dyn Collector>> {
        vec![
            Box::new(self.calls.clone()),
            Box::new(self.duration.clone()),
            Box::new(self.in_flight.clone()),
        ]
    }

    /// Records one answered call; `rpc` and `code` come from closed sets.
    pub fn call(&self, rpc: &str, code: &str, elapsed: Duration) {
        let labels = [rpc, code];
        self.calls.with_label_values(&labels).inc();
        self.duration
            .with_label_values(&labels)
            .observe(elapsed.as_secs_f64());
    }

    pub fn in_flight(&self) -> &IntGauge {
        &self.in_flight
    }
}
