//! What every handler can reach.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crate::auth::Access;
use crate::engine::{BulkLane, Recent};
use crate::inference::{Explainer, Predictor};
use crate::monitoring::Metrics;
use crate::repository::Reloader;

/// What every handler can reach: one `Arc`, so the clone axum makes for every extractor and
/// middleware is one reference count, not one per field (with a field-wise clone the counters'
/// cache lines moved between the HTTP threads on every request: about 9% of the server's CPU
/// at 35,000 small requests/s, `perf`).
#[derive(Debug, Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> AppState {
        AppState(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The fields behind [`AppState`].
#[derive(Debug)]
pub struct Shared {
    pub predictor: Arc<Predictor>,
    /// Feature attributions, through the same workers as predictions.
    pub explainer: Arc<Explainer>,
    pub metrics: Arc<Metrics>,
    /// API keys, scopes and rate limits.
    pub access: Access,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Largest body a model's inference route accepts when its contract needs more than
    /// `max_body_bytes` (see `model_limit.rs`).
    pub max_model_body_bytes: usize,
    /// The repository reloader behind the admin API; None (and the admin routes absent) when no
    /// API key carries the `admin` scope.
    pub admin: Option<Arc<Reloader>>,
    /// Set when shutdown begins: readiness turns 503 so load balancers stop sending traffic.
    pub draining: Arc<AtomicBool>,
    /// Set when `/metrics` is served on its own port (`--metrics-port`) instead of this one.
    pub metrics_port: Option<u16>,
    /// Origins allowed by CORS (`--cors-origins`); empty: no CORS headers.
    pub cors_origins: Vec<String>,
    /// Where large requests are handled; None: every request on the HTTP threads.
    pub bulk: Option<Bulk>,
}

/// Requests with large bodies run their handlers on the idle-priority bulk lane
/// (`engine/bulk_lane.rs`), so small requests are not held up behind them.
#[derive(Debug)]
pub struct Bulk {
    pub lane: BulkLane,
    /// A body of at least this many bytes (or of unknown length) takes the lane...
    pub min_body_bytes: u64,
    /// ...while small requests are being served: a request with a body under `min_body_bytes`
    /// arrived within [`Bulk::SMALL_WINDOW`] (bodiless ones, probes and scrapes, do not count).
    /// With only large requests (a vision model's images) there is nobody to yield to, and the
    /// lane would only slow them down: any other normal thread on the machine starves it (the
    /// benchmark CNN's 97 KB JSON requests ran at 4,000 instead of 6,100 per second through it).
    pub small_seen: Recent,
}

impl Bulk {
    pub const SMALL_WINDOW: std::time::Duration = std::time::Duration::from_secs(1);

    pub fn new(lane: BulkLane, min_body_bytes: u64) -> Bulk {
        Bulk {
            lane,
            min_body_bytes,
            small_seen: Recent::default(),
        }
    }
}
