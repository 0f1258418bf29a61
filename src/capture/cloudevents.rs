//! The CloudEvents HTTP sink, compatible with KServe's payload logger: every captured
//! prediction request is posted twice to `--capture-url`, as an
//! `org.kubeflow.serving.inference.request` and an `org.kubeflow.serving.inference.response`
//! event, in binary content mode (the event's attributes in `ce-*` headers, the JSON in the
//! body), with KServe's extension attributes (`ce-inferenceservicename`, `ce-namespace`,
//! `ce-component`, `ce-endpoint`).
//!
//! Off the request path: the request side only `try_send`s into a bounded queue (full: dropped
//! and counted); one thread (`infera-capture-http`) runs a small tokio runtime that posts with
//! a timeout and at most `in_flight` posts at a time. The URL's credentials go into an
//! `Authorization: Basic` header and never into a log line.

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, Semaphore};

use super::record::PredictionBatch;
use super::time::rfc3339;
use super::CaptureObserver;

pub const REQUEST_TYPE: &str = "org.kubeflow.serving.inference.request";
pub const RESPONSE_TYPE: &str = "org.kubeflow.serving.inference.response";

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
    /// This replica's name, in `ce-source`.
    pub replica: String,
}

/// The request side's handle.
pub struct HttpSink {
    tx: mpsc::Sender<PredictionBatch>,
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

    /// Queues one request's events, or drops and counts them. Never blocks.
    pub fn push(&self, batch: PredictionBatch) {
        if self.tx.try_send(batch).is_err() {
            self.observer.events("dropped", 2);
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
    mut rx: mpsc::Receiver<PredictionBatch>,
    mut stop: oneshot::Receiver<()>,
    observer: Arc<dyn CaptureObserver>,
) {
    let settings = Arc::new(settings);
    let permits = Arc::new(Semaphore::new(settings.in_flight.max(1)));
    let mut seq: u64 = 0;
    loop {
        let batch = tokio::select! {
            b = rx.recv() => b,
            _ = &mut stop, if !rx.is_closed() => {
                // Take no more; what is queued is still posted below.
                rx.close();
                continue;
            }
        };
        let Some(batch) = batch else { break };
        seq += 1;
        let id = match &batch.id {
            Some(id) => id.clone(),
            None => format!("{}-{seq}", settings.replica),
        };
        for (kind, body) in [
            (REQUEST_TYPE, request_body(&batch)),
            (RESPONSE_TYPE, response_body(&batch)),
        ] {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                return;
            };
            let post = event(&client, &settings, &batch, &id, kind).body(body);
            let observer = observer.clone();
            let url = settings.url.to_string();
            tokio::spawn(async move {
                let outcome = match post.send().await {
                    Ok(r) if r.status().is_success() => "sent",
                    Ok(r) => {
                        tracing::warn!(url = %url, status = %r.status(), "capture: the event sink refused an event");
                        "failed"
                    }
                    Err(e) => {
                        tracing::warn!(url = %url, error = %without_url(&e), "capture: posting an event failed");
                        "failed"
                    }
                };
                observer.events(outcome, 1);
                drop(permit);
            });
        }
    }
    // Wait for the posts under way (each bounded by the client's timeout).
    let _ = permits.acquire_many(settings.in_flight.max(1) as u32).await;
}

/// One event's request: binary content mode, KServe's attributes.
fn event(
    client: &reqwest::Client,
    settings: &HttpSinkSettings,
    batch: &PredictionBatch,
    id: &str,
    kind: &str,
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
        .header("ce-id", id)
        .header("ce-type", kind)
        .header(
            "ce-source",
            format!(
                "/{}/models/{}/versions/{}",
                settings.replica, batch.model, batch.version
            ),
        )
        .header("ce-time", rfc3339(batch.time_ms))
        .header("ce-inferenceservicename", &*batch.model)
        .header("ce-component", "predictor")
        .header("ce-endpoint", "default")
        .header("ce-modelversion", batch.version.to_string());
    if let Some(ns) = &settings.namespace {
        req = req.header("ce-namespace", ns);
    }
    if !user.is_empty() || password.is_some() {
        req = req.basic_auth(user, password);
    }
    req
}

/// The request as KServe V1 JSON: `{"instances": [[...], ...]}` (redacted features null).
/// A value that is exactly a 32-bit float (every float32 model input) is written in its
/// shortest float32 form, `5.1` rather than `5.099999904632568`, as the client sent it.
fn request_body(b: &PredictionBatch) -> Vec<u8> {
    use std::io::Write;
    if !b.fields.inputs {
        return br#"{"instances":null}"#.to_vec();
    }
    let width = b.names.len();
    let mut out = br#"{"instances":["#.to_vec();
    for r in 0..b.rows() {
        out.extend_from_slice(if r == 0 { b"[" } else { b",[" });
        let values = b.features.get(r * width..(r + 1) * width);
        for j in 0..width {
            if j > 0 {
                out.push(b',');
            }
            let hidden = b.redacted.get(j).copied().unwrap_or(false);
            let v = values.and_then(|v| v.get(j).copied()).filter(|_| !hidden);
            let _ = match v {
                Some(v) if v.is_finite() && f64::from(v as f32) == v => {
                    write!(out, "{:?}", v as f32)
                }
                Some(v) if v.is_finite() => write!(out, "{v:?}"),
                _ => write!(out, "null"),
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
