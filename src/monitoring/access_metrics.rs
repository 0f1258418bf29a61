//! The Prometheus series of access control and usage: authentication refusals, rate-limit
//! refusals, and requests / instances per caller and model. Caller labels are key names from the
//! keys file (or `anonymous`), model labels are model names from the repository (or `none`):
//! closed sets.

use prometheus::core::Collector;
use prometheus::{IntCounterVec, Opts};

fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels).expect("static counter definition")
}

/// The metric families. Shared with the auth core as its refusal observer.
pub struct AccessFamilies {
    auth_refused: IntCounterVec,
    rate_limited: IntCounterVec,
    caller_requests: IntCounterVec,
    caller_instances: IntCounterVec,
}

impl Default for AccessFamilies {
    fn default() -> Self {
        AccessFamilies::new()
    }
}

impl AccessFamilies {
    pub fn new() -> AccessFamilies {
        AccessFamilies {
            auth_refused: counter(
                "infera_auth_refused_total",
                "Requests refused by access control, by reason: missing_key, invalid_key, forbidden",
                &["reason"],
            ),
            rate_limited: counter(
                "infera_rate_limited_total",
                "Requests refused by a rate limit, by limit: key, address, model, global",
                &["limit"],
            ),
            caller_requests: counter(
                "infera_caller_requests_total",
                "Requests to scoped endpoints per caller (API key name or anonymous), model (or none) and status class (2xx, 4xx, 5xx)",
                &["caller", "model", "class"],
            ),
            caller_instances: counter(
                "infera_caller_instances_total",
                "Instances predicted per caller and model",
                &["caller", "model"],
            ),
        }
    }

    pub(super) fn collectors(&self) -> Vec<Box<dyn Collector>> {
        vec![
            Box::new(self.auth_refused.clone()),
            Box::new(self.rate_limited.clone()),
            Box::new(self.caller_requests.clone()),
            Box::new(self.caller_instances.clone()),
        ]
    }

    pub fn auth_refused(&self, reason: &str) {
        self.auth_refused.with_label_values(&[reason]).inc();
    }

    pub fn rate_limited(&self, limit: &str) {
        self.rate_limited.with_label_values(&[limit]).inc();
    }

    /// One answered request of a caller; `instances` when it predicted some.
    pub fn caller_request(&self, caller: &str, model: &str, status: u16, instances: usize) {
        let class = match status {
            200..=299 => "2xx",
            400..=499 => "4xx",
            _ => "5xx",
        };
        self.caller_requests
            .with_label_values(&[caller, model, class])
            .inc();
        if instances > 0 {
            self.caller_instances
                .with_label_values(&[caller, model])
                .inc_by(instances as u64);
        }
    }
}

impl crate::auth::AccessObserver for AccessFamilies {
    fn auth_refused(&self, reason: &'static str) {
        AccessFamilies::auth_refused(self, reason);
    }

    fn rate_limited(&self, kind: crate::auth::LimitKind) {
        AccessFamilies::rate_limited(self, kind.as_str());
    }
}
