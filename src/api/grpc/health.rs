//! The standard gRPC health service (`grpc.health.v1.Health`) for Kubernetes gRPC probes and load
//! balancers. Service names and what they report:
//!
//! - `""` (the server) and `inference.GRPCInferenceService`: SERVING once every model is loaded
//!   and warmed up, NOT_SERVING while loading, after a failed load, and while draining: the same
//!   answer as `GET /health/ready`.
//! - `live`: SERVING while the process runs (`GET /health/live`).

use std::sync::atomic::Ordering;
use std::time::Duration;

use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

use crate::api::AppState;

/// The inference service's name in the health service.
pub const INFERENCE_SERVICE: &str = "inference.GRPCInferenceService";
/// Health service name that answers SERVING while the process is up (liveness).
pub const LIVE_SERVICE: &str = "live";
/// How often readiness is re-read: the catalog has no change notification, and this costs one
/// atomic snapshot load.
const POLL: Duration = Duration::from_millis(200);

/// Whether the server takes inference traffic: every model ready and not draining.
pub fn is_ready(state: &AppState) -> bool {
    !state.draining.load(Ordering::Relaxed) && state.predictor.store().snapshot().is_ready()
}

/// Sets every service's status from the server's readiness now; returns what it reported.
pub async fn publish(state: &AppState, reporter: &HealthReporter) -> bool {
    let ready = is_ready(state);
    let status = if ready {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    };
    reporter.set_service_status("", status).await;
    reporter.set_service_status(INFERENCE_SERVICE, status).await;
    reporter
        .set_service_status(LIVE_SERVICE, ServingStatus::Serving)
        .await;
    ready
}

/// Keeps the statuses equal to the server's readiness after a first [`publish`]; runs until
/// aborted.
pub async fn track_readiness(state: AppState, reporter: HealthReporter, mut reported: bool) {
    loop {
        tokio::time::sleep(POLL).await;
        if is_ready(&state) != reported {
            reported = publish(&state, &reporter).await;
        }
    }
}
