//! The retraining trigger: when a model version turns `drifting` or falls below its accuracy
//! target, a JSON event is POSTed to a configured URL. Events go through a bounded channel to one
//! background task that delivers them with retries, so a slow or dead receiver never blocks a
//! request (when the channel is full, the event is dropped and counted).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::mpsc;

use crate::capture::SinkUrl;

/// One state change of a model version.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// `drift` or `accuracy`.
    pub kind: &'static str,
    pub model: String,
    pub version: u64,
    /// The new state: `drifting` / `ok` for drift, `below_target` / `ok` for accuracy.
    pub status: &'static str,
    /// What crossed the threshold, e.g. the drifting features.
    pub detail: serde_json::Value,
    /// Seconds since the Unix epoch.
    pub at: f64,
    /// Where the data capture keeps this version's predictions and the model's ground truth,
    /// when capture is on (filled in by the notifier for drift and accuracy events).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capture: Option<CaptureLocation>,
}

/// The capture files a retraining job reads for an event's model version.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CaptureLocation {
    /// The server's `--capture-dir`.
    pub dir: String,
    /// The version's predictions: `<dir>/<model>/<version>` (`date=YYYY-MM-DD/*.parquet`).
    pub predictions: String,
    /// The model's ground truth: `<dir>/<model>/feedback`.
    pub feedback: String,
    /// The command that exports the model's training data (for drift, from the day the
    /// drifted window started).
    pub export: String,
}

impl CaptureLocation {
    /// `since`: seconds since the Unix epoch from which the export should start.
    fn new(dir: &Path, model: &str, version: u64, since: Option<f64>) -> CaptureLocation {
        let since = since.map_or(String::new(), |at| {
            format!(" --since {}", crate::capture::date_of((at * 1000.0) as i64))
        });
        CaptureLocation {
            dir: dir.display().to_string(),
            predictions: dir
                .join(model)
                .join(version.to_string())
                .display()
                .to_string(),
            feedback: dir.join(model).join("feedback").display().to_string(),
            export: format!(
                "infera export --capture {} --model {model}{since} --out {model}-train.parquet",
                dir.display()
            ),
        }
    }
}

/// How delivery went, for the caller's metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Delivered,
    Failed,
    Dropped,
}

impl Delivery {
    pub fn as_str(self) -> &'static str {
        match self {
            Delivery::Delivered => "delivered",
            Delivery::Failed => "failed",
            Delivery::Dropped => "dropped",
        }
    }
}

/// Hands events to the delivery task.
#[derive(Debug, Clone)]
pub struct Notifier {
    tx: Option<mpsc::Sender<Event>>,
    /// `--capture-dir`, named in drift and accuracy events.
    capture_dir: Option<Arc<Path>>,
}

/// Delivery settings.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub url: String,
    /// Attempts per event (first try included).
    pub attempts: u32,
    /// Wait before the first retry; doubled for each further one.
    pub backoff: Duration,
    pub timeout: Duration,
}

impl Notifier {
    /// A notifier that sends nothing (no URL configured).
    pub fn disabled() -> Notifier {
        Notifier {
            tx: None,
            capture_dir: None,
        }
    }

    /// Starts the delivery task on the current tokio runtime. `report` is told how each event
    /// ended.
    pub fn start(
        config: WebhookConfig,
        report: impl Fn(Delivery) + Send + Sync + 'static,
    ) -> Notifier {
        let (tx, mut rx) = mpsc::channel::<Event>(256);
        tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .timeout(config.timeout)
                .build()
                .expect("a plain HTTP client builds");
            // Logged without user, password or query: a URL may carry a secret.
            let shown = config
                .url
                .parse::<SinkUrl>()
                .map(|u| u.to_string())
                .unwrap_or_default();
            while let Some(event) = rx.recv().await {
                let mut wait = config.backoff;
                let mut delivered = false;
                for attempt in 1..=config.attempts.max(1) {
                    match client.post(&config.url).json(&event).send().await {
                        Ok(r) if r.status().is_success() => {
                            delivered = true;
                            break;
                        }
                        Ok(r) => {
                            tracing::warn!(url = %shown, status = %r.status(), attempt, "webhook refused the event")
                        }
                        Err(e) => {
                            tracing::warn!(url = %shown, error = %e.without_url(), attempt, "webhook delivery failed")
                        }
                    }
                    if attempt < config.attempts {
                        tokio::time::sleep(wait).await;
                        wait *= 2;
                    }
                }
                report(if delivered {
                    Delivery::Delivered
                } else {
                    Delivery::Failed
                });
            }
        });
        Notifier {
            tx: Some(tx),
            capture_dir: None,
        }
    }

    /// Names the capture directory in drift and accuracy events.
    pub fn with_capture_dir(mut self, dir: Option<&Path>) -> Notifier {
        self.capture_dir = dir.map(Arc::from);
        self
    }

    /// Queues an event without waiting; false when it had to be dropped (or no URL is set).
    pub fn send(&self, mut event: Event) -> bool {
        let Some(tx) = &self.tx else { return false };
        if let (Some(dir), "drift" | "accuracy") = (&self.capture_dir, event.kind) {
            let since = event.detail["window"]["start"].as_f64();
            event.capture = Some(CaptureLocation::new(
                dir,
                &event.model,
                event.version,
                since,
            ));
        }
        tx.try_send(event).is_ok()
    }

    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }
}

/// Seconds since the Unix epoch, for event timestamps.
pub fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
