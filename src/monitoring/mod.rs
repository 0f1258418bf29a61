//! Observability: every Prometheus metric, and model quality in production: drift against the
//! training profile, live accuracy from ground-truth feedback, and the webhook that announces
//! changes.

mod access_metrics;
mod capture_metrics;
mod categorical;
mod drift;
mod explain_metrics;
mod feedback;
mod grpc_metrics;
mod metrics;
mod monitor;
mod plan_metrics;
mod quality;
mod quality_metrics;
mod retire;
mod traffic_metrics;
mod webhook;

pub use access_metrics::AccessFamilies;
pub use capture_metrics::CaptureFamilies;
pub use categorical::Cell;
pub use drift::{
    BinnedDistribution, DriftMonitor, DriftReport, DriftStatus, DriftThresholds, FeatureDrift,
    Observed, PredictionDistribution, ReferenceProfile,
};
pub use explain_metrics::{ExplainFamilies, Running as ExplainRunning};
pub use feedback::{Logged, PredictionLog, Unmatched};
pub use grpc_metrics::GrpcFamilies;
pub use metrics::{Metrics, ModelMetrics, Protocol};
pub use monitor::{
    DriftView, GroundTruth, ModelMonitor, MonitorSettings, MonitoringView, OverallStatus,
    ReferenceView, Subject,
};
pub use quality::{QualityKind, QualityMonitor, QualitySummary, Score, Truth};
pub use quality_metrics::{QualityFamilies, VersionQuality};
pub use traffic_metrics::{Comparison, ShadowOutcome, TrafficFamilies};
pub use webhook::{now, Delivery, Event, Notifier, WebhookConfig};
