//! The CloudEvents HTTP sink, compatible with KServe's payload logger: every captured
//! prediction request is posted twice to `--capture-url`, as an
//! `org.kubeflow.serving.inference.request` and an `org.kubeflow.serving.inference.response`
//! event, in binary content mode (the event's attributes in `ce-*` headers, the JSON in the
//! body), with KServe's extension attributes (`ce-inferenceservicename`, `ce-namespace`,
//! `ce-component`, `ce-endpoint`).
//!
//! Ground truth sent to `/models/{name}/feedback` is posted too, one
//! `org.kubeflow.serving.feedback` event per feedback request (infera's own type: KServe's
//! logger has none), so a receiver can join it with the predictions by id.
//!
//! Off the request path: the request side only `try_send`s into a bounded queue (full: dropped
//! and counted); one thread (`infera-capture-http`) runs a small tokio runtime that posts with
//! a timeout and at most `in_flight` posts at a time. A post refused with 5xx, 408 or 429, or
//! that fails to connect or times out, is tried again up to `retries` times with a doubling
//! backoff, holding its in-flight slot: retries slow the sink, so its queue fills and drops
//! (counted) instead of growing. The URL's credentials go into an `Authorization: Basic`
//! header and never into a log line.

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, Semaphore};

use super::record::{FeedbackBatch, PredictionBatch, Record, Value};
use super::time::rfc3339;
use super::CaptureObserver;

pub const REQUEST_TYPE: &str = "org.kubeflow.serving.inference.request";
pub const RESPONSE_TYPE: &str = "org.kubeflow.serving.inference.response";
/// infera's event type for ground truth (KServe's logger has none).
pub const FEEDBACK_TYPE: &str = "org.kubeflow.serving.feedback";

/// The first retry's wait; each further retry waits twice as long, at most [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// An http(s) URL whose user name and password are never shown (`Debug` and `Display` print
/// `scheme://host:port/path` only).
#[derive(Clone, PartialEq, Eq)]
pub struct SinkUrl(reqwest::Url);

impl FromStr for SinkUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<SinkUrl, String> {
        let url = reqwest::Url::parse(s).map_err(|e| format!("not a URL: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err("an http:// or https:// URL with a host is required".into());
        }
        Ok(SinkUrl(url))
    }
}

impl fmt::Display for SinkUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let u = &self.0;
        let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
        let host = u.host_str().unwrap_or("");
        write!(f, "{}://{host}{port}{}", u.scheme(), u.path())
    }
}

impl fmt::Debug for SinkUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SinkUrl({self})")
    }
}

/// How events are posted.
#[derive(Debug, Clone)]
pub struct HttpSinkSettings {
    pub url: SinkUrl,
    /// Requests waiting to be posted at most; past it they are dropped and counted.
    pub queue: usize,
    /// Posts under way at most.
    pub in_flight: usize,
    pub timeout: Duration,
    /// `ce-namespace` (KServe: the InferenceService's namespace); not sent when None.
    pub namespace: Option<String>,
    /// Further tries of a post that failed with 5xx, 408, 429, a connection error or a
    /// timeout.
    pub retries: u32,
    /// This replica's name, in `ce-source`.
    pub replica: String,
}

/// The request side's handle.
pub struct HttpSink {
    tx: mpsc::Sender<Record>,
    /// The stop signal and the thread, taken by `shutdown`.
    stop: Mutex<Option<(oneshot::Sender<()>, JoinHandle<()>)>>,
    observer: Arc<dyn CaptureObserver>,
}

impl HttpSink {
    pub fn start(
        settings: HttpSinkSettings,
        observer: Arc<dyn CaptureObserver>,
    ) -> std::io::Result<HttpSink> {
        let (tx, rx) = mpsc::channel(settings.queue.max(1));
        let (stop_tx, stop_rx) = oneshot::channel();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let client = reqwest::Client::builder()
            .timeout(settings.timeout)
            .build()
            .map_err(std::io::Error::other)?;
        let obs = observer.clone();
        let thread = std::thread::Builder::new()
            .name("infera-capture-http".into())
            .spawn(move || runtime.block_on(deliver(settings, client, rx, stop_rx, obs)))?;
        Ok(HttpSink {
            tx,
            stop: Mutex::new(Some((stop_tx, thread))),
            observer,
        })
    }

    /// Queues one request's events (a prediction's two, or a feedback request's one), or
    /// drops and counts them. Never blocks.
    pub fn push(&self, record: Record) {
        if let Err(e) = self.tx.try_send(record) {
            let events = match e.into_inner() {
                Record::Predictions(_) => 2,
                Record::Feedback(_) => 1,
            };
            self.observer.events("dropped", events);
        }
    }

    /// Posts what is queued (each post bounded by the timeout) and stops the thread.
    /// Idempotent.
    pub fn shutdown(&self) {
        let taken = self.stop.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some((stop, thread)) = taken {
            let _ = stop.send(());
            let _ = thread.join();
        }
    }
}

async fn deliver(
    settings: HttpSinkSettings,
    client: reqwest::Client,
    mut rx: mpsc::Receiver<Record>,
    mut stop: oneshot::Receiver<()>,
    observer: Arc<dyn CaptureObserver>,
) {
    let settings = Arc::new(settings);
    let permits = Arc::new(Semaphore::new(settings.in_flight.max(1)));
    let mut seq: u64 = 0;
    loop {
        let record = tokio::select! {
            r = rx.recv() => r,
            _ = &mut stop, if !rx.is_closed() => {
                // Take no more; what is queued is still posted below.
                rx.close();
                continue;
            }
        };
        let Some(record) = record else { break };
        seq += 1;
        for post in events(&client, &settings, &record, seq) {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                return;
            };
            let observer = observer.clone();
            let settings = settings.clone();
            tokio::spawn(async move {
                let outcome = send(post, &settings, &*observer).await;
                observer.events(outcome, 1);
                drop(permit);
            });
        }
    }
    // Wait for the posts under way (each bounded by the client's timeout and the retries).
    let _ = permits.acquire_many(settings.in_flight.max(1) as u32).await;
}

/// The posts of one queued record: a prediction's request and response events, or a feedback
/// request's event.
fn events(
    client: &reqwest::Client,
    settings: &HttpSinkSettings,
    record: &Record,
    seq: u64,
) -> Vec<reqwest::RequestBuilder> {
    match record {
        Record::Predictions(batch) => {
            let id = match &batch.id {
                Some(id) => id.clone(),
                None => format!("{}-{seq}", settings.replica),
            };
            let source = format!(
                "/{}/models/{}/versions/{}",
                settings.replica, batch.model, batch.version
            );
            [
                (REQUEST_TYPE, request_body(batch)),
                (RESPONSE_TYPE, response_body(batch)),
            ]
            .into_iter()
            .map(|(kind, body)| {
                let e = Event {
                    id: &id,
                    kind,
                    source: &source,
                    time_ms: batch.time_ms,
                    model: &batch.model,
                };
                event(client, settings, &e)
                    .header("ce-modelversion", batch.version.to_string())
                    .body(body)
            })
            .collect()
        }
        Record::Feedback(batch) => {
            let id = format!("{}-feedback-{seq}", settings.replica);
            let source = format!("/{}/models/{}/feedback", settings.replica, batch.model);
            let e = Event {
                id: &id,
                kind: FEEDBACK_TYPE,
                source: &source,
                time_ms: batch.time_ms,
                model: &batch.model,
            };
            vec![event(client, settings, &e).body(feedback_body(batch))]
        }
    }
}

/// Posts one event, trying again after a retryable failure. Returns the outcome counted:
/// `sent` or `failed` (retries are counted as they happen).
async fn send(
    post: reqwest::RequestBuilder,
    settings: &HttpSinkSettings,
    observer: &dyn CaptureObserver,
) -> &'static str {
    let url = settings.url.to_string();
    let mut backoff = FIRST_BACKOFF;
    for attempt in 0..=settings.retries {
        let Some(req) = post.try_clone() else {
            return "failed";
        };
        let last = attempt == settings.retries;
        let retryable = match req.send().await {
            Ok(r) if r.status().is_success() => return "sent",
            Ok(r) => {
                let status = r.status();
                let again = status.is_server_error() || matches!(status.as_u16(), 408 | 429);
                if last || !again {
                    tracing::warn!(url = %url, status = %status, attempts = attempt + 1, "capture: the event sink refused an event");
                }
                again
            }
            Err(e) => {
                if last {
                    tracing::warn!(url = %url, error = %without_url(&e), attempts = attempt + 1, "capture: posting an event failed");
                }
                e.is_timeout() || e.is_connect() || e.is_request()
            }
        };
        if last || !retryable {
            break;
        }
        observer.events("retried", 1);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
    "failed"
}

/// One event's attributes.
struct Event<'a> {
    id: &'a str,
    kind: &'a str,
    source: &'a str,
    time_ms: i64,
    model: &'a str,
}

/// One event's request: binary content mode, KServe's attributes. `ce-metadata` is `{}`, as
/// KServe's logger sends it when no request headers are configured to be copied.
fn event(
    client: &reqwest::Client,
    settings: &HttpSinkSettings,
    e: &Event<'_>,
) -> reqwest::RequestBuilder {
    let mut url = settings.url.0.clone();
    let user = url.username().to_string();
    let password = url.password().map(String::from);
    let _ = url.set_username("");
    let _ = url.set_password(None);
    let mut req = client
        .post(url)
        .header("content-type", "application/json")
        .header("ce-specversion", "1.0")
        .header("ce-id", e.id)
        .header("ce-type", e.kind)
        .header("ce-source", e.source)
        .header("ce-time", rfc3339(e.time_ms))
        .header("ce-inferenceservicename", e.model)
        .header("ce-component", "predictor")
        .header("ce-endpoint", "default")
        .header("ce-metadata", "{}");
    if let Some(ns) = &settings.namespace {
        req = req.header("ce-namespace", ns);
    }
    if !user.is_empty() || password.is_some() {
        req = req.basic_auth(user, password);
    }
    req
}

/// A feedback request as posted to `/models/{name}/feedback`: `{"feedback": [{"id", and one
/// of "label", "class_index", "value"}], "model_name": ...}`.
fn feedback_body(b: &FeedbackBatch) -> Vec<u8> {
    let items: Vec<serde_json::Value> = b
        .items
        .iter()
        .map(|i| {
            let mut item = serde_json::json!({ "id": i.id });
            if let Some(l) = &i.label {
                item["label"] = l.as_str().into();
            }
            if let Some(c) = i.class_index {
                item["class_index"] = c.into();
            }
            if let Some(v) = i.value {
                item["value"] = v.into();
            }
            item
        })
        .collect();
    let body = serde_json::json!({ "feedback": items, "model_name": b.model });
    serde_json::to_vec(&body).unwrap_or_default()
}

/// The request as KServe V1 JSON: `{"instances": [[...], ...]}` (redacted features null,
/// string columns as JSON strings, integer columns as integers). A value that is exactly a
/// 32-bit float (every float32 model input) is written in its shortest float32 form, `5.1`
/// rather than `5.099999904632568`, as the client sent it.
fn request_body(b: &PredictionBatch) -> Vec<u8> {
    use std::io::Write;
    if !b.fields.inputs {
        return br#"{"instances":null}"#.to_vec();
    }
    let width = b.columns.width();
    let mut out = br#"{"instances":["#.to_vec();
    for r in 0..b.rows() {
        out.extend_from_slice(if r == 0 { b"[" } else { b",[" });
        for j in 0..width {
            if j > 0 {
                out.push(b',');
            }
            let _ = match b.value(r, j) {
                Value::Float(v) if v.is_finite() && f64::from(v as f32) == v => {
                    write!(out, "{:?}", v as f32)
                }
                Value::Float(v) if v.is_finite() => write!(out, "{v:?}"),
                Value::Int(v) => write!(out, "{v}"),
                Value::Text(s) => serde_json::to_writer(&mut out, s).map_err(std::io::Error::other),
                Value::Float(_) | Value::Null => write!(out, "null"),
            };
        }
        out.push(b']');
    }
    out.extend_from_slice(b"]}");
    out
}

/// The response as KServe V1 JSON: `{"predictions": [...]}` (labels for classifiers, values
/// for regressors).
fn response_body(b: &PredictionBatch) -> Vec<u8> {
    let predictions: Vec<serde_json::Value> = b
        .outputs
        .iter()
        .map(|o| match (&o.label, o.value) {
            (Some(l), _) => serde_json::Value::from(l.as_str()),
            (None, Some(v)) => serde_json::Value::from(v),
            (None, None) => serde_json::Value::Null,
        })
        .collect();
    let body = if b.fields.outputs {
        serde_json::json!({ "predictions": predictions, "model_name": &*b.model })
    } else {
        serde_json::json!({ "predictions": null, "model_name": &*b.model })
    };
    serde_json::to_vec(&body).unwrap_or_default()
}

/// A reqwest error's text without the URL (which may carry credentials).
fn without_url(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    match std::error::Error::source(e) {
        Some(s) => format!("{kind}: {s}"),
        None => kind.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::SinkUrl;

    #[test]
    fn a_sink_url_never_shows_its_credentials_or_query() {
        let url: SinkUrl = "https://logger:s3cret@events.example:8443/in?token=abc"
            .parse()
            .unwrap();
        for shown in [url.to_string(), format!("{url:?}")] {
            assert!(
                !shown.contains("s3cret") && !shown.contains("logger"),
                "{shown}"
            );
            assert!(!shown.contains("abc"), "{shown}");
            assert!(shown.contains("https://events.example:8443/in"), "{shown}");
        }
        assert!("ftp://x/".parse::<SinkUrl>().is_err());
        assert!("not a url".parse::<SinkUrl>().is_err());
    }
}
