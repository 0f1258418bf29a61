//! The standard gRPC health service (`grpc.health.v1.Health`) for Kubernetes gRPC probes and load
//! balancers. Service names and what they report:
//!
//! - `""` (the server) and `inference.GRPCInferenceService`: SERVING once every model is loaded
//!   and warmed up, NOT_SERVING while loading, after a failed load, and while draining: the same
//!   answer as `GET /health/ready` and `ServerReady`.
//! - `live`: SERVING while the process runs (`GET /health/live`).
//!
//! Every `Check` and `Watch` re-reads readiness first, so the answer never lags `ServerReady`;
//! a background task also re-reads it every 200 ms so that `Watch` streams see changes.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tonic::{Request, Response, Status};
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tonic_health::server::{HealthReporter, HealthService, WatchStream};
use tonic_health::ServingStatus;

use crate::api::AppState;

/// The inference service's name in the health service.
pub const INFERENCE_SERVICE: &str = "inference.GRPCInferenceService";
/// Health service name that answers SERVING while the process is up (liveness).
pub const LIVE_SERVICE: &str = "live";
/// How often the background task re-reads readiness (one atomic snapshot load).
const POLL: Duration = Duration::from_millis(200);

/// Whether the server takes inference traffic: every model ready and not draining.
pub fn is_ready(state: &AppState) -> bool {
    !state.draining.load(Ordering::Relaxed) && state.predictor.store().snapshot().is_ready()
}

/// The server's readiness, published into the health statuses when it changes.
pub struct Readiness {
    state: AppState,
    reporter: HealthReporter,
    /// What was last published (None: nothing yet).
    reported: Mutex<Option<bool>>,
}

impl Readiness {
    /// Publishes the current statuses and returns the health service answering from them.
    pub async fn start(state: AppState) -> (Arc<Readiness>, HealthServer<ReadinessHealth>) {
        let (reporter, _) = tonic_health::server::health_reporter();
        reporter
            .set_service_status(LIVE_SERVICE, ServingStatus::Serving)
            .await;
        let readiness = Arc::new(Readiness {
            state,
            reporter: reporter.clone(),
            reported: Mutex::new(None),
        });
        readiness.refresh().await;
        let service = ReadinessHealth {
            readiness: readiness.clone(),
            inner: HealthService::from_health_reporter(reporter),
        };
        (readiness, HealthServer::new(service))
    }

    /// Re-reads readiness and publishes it if it changed.
    pub async fn refresh(&self) {
        let ready = is_ready(&self.state);
        let mut reported = self.reported.lock().await;
        if *reported == Some(ready) {
            return;
        }
        let status = if ready {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        self.reporter.set_service_status("", status).await;
        self.reporter
            .set_service_status(INFERENCE_SERVICE, status)
            .await;
        *reported = Some(ready);
    }

    /// Keeps the statuses current for `Watch` streams; runs until aborted.
    pub async fn track(self: Arc<Self>) {
        loop {
            tokio::time::sleep(POLL).await;
            self.refresh().await;
        }
    }
}

/// tonic-health's service, answering after a fresh readiness read.
pub struct ReadinessHealth {
    readiness: Arc<Readiness>,
    inner: HealthService,
}

#[tonic::async_trait]
impl Health for ReadinessHealth {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        self.readiness.refresh().await;
        self.inner.check(request).await
    }

    type WatchStream = WatchStream;

    async fn watch(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<WatchStream>, Status> {
        self.readiness.refresh().await;
        self.inner.watch(request).await
    }
}
