//! Command line and environment configuration. Every flag has an `INFERA_*` variable.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::engine::BatchPolicy;
use crate::inference::ExplainLimits;
use crate::repository::manifest::{MAX_BATCH_SIZE, MAX_QUEUE_CAPACITY, MAX_QUEUE_DELAY_US};

/// infera: serve ONNX models over HTTP on CPU.
#[derive(Debug, Parser)]
#[command(
    name = "infera",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// `infera` with no subcommand serves, taking the serve flags.
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server (the default).
    Serve(Box<ServeArgs>),
    /// Print the OpenAPI document (JSON) to stdout.
    Openapi,
    /// Load every model of a repository, run the validation gate on every version (golden files,
    /// eval.json), and exit non-zero on any failure.
    Check(CheckArgs),
    /// Ask a running server whether it is ready; exit 0 if so (for container health checks).
    Healthcheck(HealthcheckArgs),
    /// Read an API key on standard input and print its SHA-256 digest for the keys file.
    HashKey,
    /// Join a model's captured predictions with the captured ground truth into one
    /// training-ready Parquet file (see docs/capture.md).
    Export(ExportArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Pretty,
    Json,
}

/// Logging flags shared by every subcommand.
#[derive(Debug, Clone, Args)]
pub struct LogArgs {
    /// Log format.
    #[arg(long, env = "INFERA_LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty)]
    pub log_format: LogFormat,
    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `infera=debug,tower_http=info`.
    #[arg(long, env = "INFERA_LOG", default_value = "info")]
    pub log: String,
}

/// `infera serve`: every flag, grouped by concern. Defaults live in the `#[arg]` attributes
/// below and nowhere else.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Directory holding `<model>/<version>/model.onnx`.
    #[arg(long, env = "INFERA_MODEL_REPOSITORY", default_value = "models")]
    pub model_repository: PathBuf,
    /// Model used by `POST /predict` when the request names none (overrides repository.toml).
    #[arg(long, env = "INFERA_DEFAULT_MODEL")]
    pub default_model: Option<String>,
    #[command(flatten)]
    pub http: HttpArgs,
    #[command(flatten)]
    pub auth: AuthArgs,
    #[command(flatten)]
    pub rate: RateLimitArgs,
    #[command(flatten)]
    pub limits: LimitArgs,
    #[command(flatten)]
    pub batching: BatchingArgs,
    #[command(flatten)]
    pub monitoring: MonitoringArgs,
    #[command(flatten)]
    pub explain: ExplainArgs,
    #[command(flatten)]
    pub grpc: GrpcArgs,
    #[command(flatten)]
    pub log: LogArgs,
    #[command(flatten)]
    pub reload: ReloadArgs,
    #[command(flatten)]
    pub shapes: ShapeArgs,
    #[command(flatten)]
    pub capture: CaptureArgs,
    #[command(flatten)]
    pub traffic: TrafficArgs,
    #[command(flatten)]
    pub lists: ListLimitArgs,
    #[command(flatten)]
    pub threads: ThreadArgs,
}

/// Where and how the HTTP server listens.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "HTTP")]
pub struct HttpArgs {
    /// Address to bind.
    #[arg(long, env = "INFERA_HOST", default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// Port to bind (0 picks a free one).
    #[arg(long, env = "INFERA_PORT", default_value_t = 8080)]
    pub port: u16,
    /// HTTP (tokio) threads that parse requests and write answers (default: one per CPU core).
    #[arg(long, env = "INFERA_HTTP_THREADS")]
    pub http_threads: Option<usize>,
    /// Idle-priority (SCHED_IDLE) threads that handle requests with large bodies, so small
    /// requests are not held up behind them (default: one per CPU core; 0: no bulk lane, every
    /// request on the HTTP threads).
    #[arg(long, env = "INFERA_BULK_THREADS")]
    pub bulk_threads: Option<usize>,
    /// A request body of at least this many bytes (or of unknown length) is handled on the bulk
    /// threads while smaller ones are being served (one arrived within the last second):
    /// parsing and answering it holds a CPU for long without a pause.
    #[arg(long, env = "INFERA_BULK_BODY_BYTES", default_value_t = 16 * 1024)]
    pub bulk_body_bytes: u64,
    /// Seconds to let in-flight requests finish after SIGTERM/Ctrl-C before exiting anyway.
    #[arg(long, env = "INFERA_SHUTDOWN_GRACE_SECS", default_value_t = 20)]
    pub shutdown_grace_secs: u64,
    /// Milliseconds after SIGTERM during which open connections are answered normally (each
    /// answer with `Connection: close`) before idle ones are closed.
    #[arg(long, env = "INFERA_SHUTDOWN_IDLE_CLOSE_MS", default_value_t = 1000)]
    pub shutdown_idle_close_ms: u64,
    /// Open connections at most; more wait in the kernel's backlog until one closes.
    #[arg(long, env = "INFERA_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,
    /// Milliseconds a client has to send a request's headers: for its first request counted from
    /// the accept (TLS handshake included), for later ones from the previous answer; idle
    /// keep-alive connections are closed after it too. Each HTTP connection gets a random 75-100%
    /// of it, so connections opened together are not all closed in the same instant.
    #[arg(long, env = "INFERA_HEADER_TIMEOUT_MS", default_value_t = 10_000)]
    pub header_timeout_ms: u64,
    /// Serve `/metrics` on this port instead of the main one (same address), e.g. to keep it off
    /// a public listener. Unset: `/metrics` is on the main port.
    #[arg(long, env = "INFERA_METRICS_PORT")]
    pub metrics_port: Option<u16>,
    /// Origins allowed to call the API from a browser (CORS), comma separated, e.g.
    /// `https://app.example.com`. Unset: no CORS headers, browsers refuse cross-origin calls.
    #[arg(long, env = "INFERA_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,
    /// PEM certificate chain: serve HTTPS (with --tls-key).
    #[arg(long, env = "INFERA_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "INFERA_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

/// Who may call what (see docs/security.md).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Access control")]
pub struct AuthArgs {
    /// TOML file of `[[keys]]` (name, sha256 of the key, scopes, optional rps / burst). With it,
    /// every endpoint but /health/* and /metrics needs `Authorization: Bearer <key>`.
    #[arg(long, env = "INFERA_API_KEYS_FILE")]
    pub api_keys_file: Option<PathBuf>,
    /// Serve a non-loopback address without API keys (refused otherwise: say so on purpose,
    /// e.g. behind a gateway that authenticates).
    #[arg(long, env = "INFERA_ALLOW_UNAUTHENTICATED")]
    pub allow_unauthenticated: bool,
}

/// Token-bucket rate limits beyond the per-key ones of the keys file. Each is off unless its
/// rate is set; a burst defaults to one second's worth.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Rate limits")]
pub struct RateLimitArgs {
    /// Requests per second for the whole server.
    #[arg(long, env = "INFERA_RATE_LIMIT_RPS")]
    pub rate_limit_rps: Option<f64>,
    /// Burst of the server-wide limit.
    #[arg(long, env = "INFERA_RATE_LIMIT_BURST")]
    pub rate_limit_burst: Option<u32>,
    /// Requests per second for each model.
    #[arg(long, env = "INFERA_MODEL_RATE_LIMIT_RPS")]
    pub model_rate_limit_rps: Option<f64>,
    /// Burst of the per-model limit.
    #[arg(long, env = "INFERA_MODEL_RATE_LIMIT_BURST")]
    pub model_rate_limit_burst: Option<u32>,
    /// Requests per second for each client address, when no API keys are configured.
    #[arg(long, env = "INFERA_ADDRESS_RATE_LIMIT_RPS")]
    pub address_rate_limit_rps: Option<f64>,
    /// Burst of the per-address limit.
    #[arg(long, env = "INFERA_ADDRESS_RATE_LIMIT_BURST")]
    pub address_rate_limit_burst: Option<u32>,
    /// Most client addresses tracked by the per-address limit (memory stays bounded).
    #[arg(
        long,
        env = "INFERA_ADDRESS_RATE_LIMIT_TRACKED",
        default_value_t = 100_000
    )]
    pub address_rate_limit_tracked: usize,
}

/// Bounds on what one request may ask for.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Limits")]
pub struct LimitArgs {
    /// Largest request body in bytes.
    #[arg(long, env = "INFERA_MAX_BODY_BYTES", default_value_t = 4 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Most instances in one request.
    #[arg(long, env = "INFERA_MAX_INSTANCES", default_value_t = 1024)]
    pub max_instances: usize,
    /// Most tensor elements one request may carry, summed over its inputs. Checked against the
    /// declared shapes (and the model's contract) before any buffer is allocated.
    #[arg(long, env = "INFERA_MAX_ELEMENTS", default_value_t = 16 * 1024 * 1024)]
    pub max_elements: usize,
    /// Time budget of one predict request in milliseconds, queueing included.
    #[arg(long, env = "INFERA_REQUEST_TIMEOUT_MS", default_value_t = 10_000)]
    pub request_timeout_ms: u64,
    /// Seconds an overloaded client is told to wait (Retry-After).
    #[arg(long, env = "INFERA_RETRY_AFTER_SECS", default_value_t = 1)]
    pub retry_after_secs: u64,
}

/// Inference workers, queues and dynamic batching.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Workers and batching")]
pub struct BatchingArgs {
    /// Inference worker threads (default: one per CPU core). Each runs one model call at a time
    /// on one core; see docs/benchmarks.md for tuning.
    #[arg(long, env = "INFERA_WORKERS")]
    pub workers: Option<usize>,
    /// Requests that may wait per model version; beyond it requests get 429 at once. A model's
    /// `[batching] queue_capacity` overrides it.
    #[arg(long, env = "INFERA_QUEUE_CAPACITY", default_value_t = 256)]
    pub queue_capacity: usize,
    /// Most instances one model call may take: queued requests are joined into one batch up to
    /// this size, or less for a model whose calls do not get cheaper per instance in a batch
    /// (learned from their costs; docs/shapes.md, "Dynamic batching"). 1 turns dynamic batching
    /// off. Models without a batch dimension never batch. A card's `[batching] max_batch_size`
    /// is used as it is.
    #[arg(long, env = "INFERA_MAX_BATCH_SIZE", default_value_t = 64)]
    pub max_batch_size: usize,
    /// Microseconds the oldest queued request may wait for its batch to fill. 0 (the default):
    /// a lone request never waits; batches form only from requests that queued meanwhile.
    #[arg(long, env = "INFERA_MAX_QUEUE_DELAY_US", default_value_t = 0)]
    pub max_queue_delay_us: u64,
    /// Microseconds an idle worker polls for new work before it sleeps (0: sleep at once).
    #[arg(long, env = "INFERA_WORKER_IDLE_POLL_US", default_value_t = 50)]
    pub worker_idle_poll_us: u64,
}

/// Ground-truth feedback and the drift / accuracy webhook.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Monitoring")]
pub struct MonitoringArgs {
    /// Recent predictions kept for joining with ground-truth feedback (0 keeps none). Oldest
    /// are evicted beyond it.
    #[arg(long, env = "INFERA_FEEDBACK_CAPACITY", default_value_t = 100_000)]
    pub feedback_capacity: usize,
    /// Seconds a prediction stays available for feedback.
    #[arg(long, env = "INFERA_FEEDBACK_TTL_SECS", default_value_t = 3600)]
    pub feedback_ttl_secs: u64,
    /// URL (plain http) to POST a JSON event to when a model version starts or stops drifting or
    /// crosses its accuracy target: the retraining trigger. Unset: no events.
    #[arg(long, env = "INFERA_WEBHOOK_URL")]
    pub webhook_url: Option<String>,
    /// Delivery attempts per webhook event (retries back off from 500 ms, doubling).
    #[arg(long, env = "INFERA_WEBHOOK_ATTEMPTS", default_value_t = 5)]
    pub webhook_attempts: u32,
}

/// Feature attributions (`POST /models/{name}/explain`): cost bounds.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Explanations")]
pub struct ExplainArgs {
    /// Explanations running at once; one more is answered 429 at once.
    #[arg(long, env = "INFERA_EXPLAIN_MAX_CONCURRENT", default_value_t = 2)]
    pub explain_max_concurrent: usize,
    /// Most instances in one explain request.
    #[arg(long, env = "INFERA_EXPLAIN_MAX_INSTANCES", default_value_t = 16)]
    pub explain_max_instances: usize,
    /// Coalitions evaluated per instance when the request sets no `budget`; exact Shapley values
    /// are used when all 2^F coalitions fit in it.
    #[arg(long, env = "INFERA_EXPLAIN_BUDGET", default_value_t = 2048)]
    pub explain_budget: usize,
    /// Largest `budget` a request may set.
    #[arg(long, env = "INFERA_EXPLAIN_MAX_BUDGET", default_value_t = 16_384)]
    pub explain_max_budget: usize,
    /// Most features for exact Shapley values (2^F coalitions).
    #[arg(long, env = "INFERA_EXPLAIN_EXACT_MAX_FEATURES", default_value_t = 12)]
    pub explain_exact_max_features: usize,
    /// Background rows used per explanation (the first ones of the model's background).
    #[arg(long, env = "INFERA_EXPLAIN_MAX_BACKGROUND_ROWS", default_value_t = 64)]
    pub explain_max_background_rows: usize,
    /// Rows per model call: explanations queue one chunk at a time, so a prediction waits for
    /// at most one chunk per worker.
    #[arg(long, env = "INFERA_EXPLAIN_CHUNK_ROWS", default_value_t = 4096)]
    pub explain_chunk_rows: usize,
    /// Time budget of one explain request in milliseconds, queueing included.
    #[arg(long, env = "INFERA_EXPLAIN_TIMEOUT_MS", default_value_t = 5_000)]
    pub explain_timeout_ms: u64,
}

/// The gRPC server: the Open Inference Protocol (`inference.GRPCInferenceService`), the standard
/// health service and optional reflection, on its own port. Off unless `--grpc-port` is set.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "gRPC")]
pub struct GrpcArgs {
    /// Port of the gRPC server, on the same address as HTTP (0 picks a free one). Unset: no
    /// gRPC server.
    #[arg(long, env = "INFERA_GRPC_PORT")]
    pub grpc_port: Option<u16>,
    /// Largest gRPC request message in bytes, checked against the message's length prefix before
    /// it is read (default: the --max-body-bytes value). Larger messages get OUT_OF_RANGE.
    #[arg(long, env = "INFERA_GRPC_MAX_MESSAGE_BYTES")]
    pub grpc_max_message_bytes: Option<usize>,
    /// Concurrent calls (HTTP/2 streams) one connection may have open; more wait for a free
    /// stream on the client side.
    #[arg(
        long,
        env = "INFERA_GRPC_MAX_CONCURRENT_STREAMS",
        default_value_t = 128
    )]
    pub grpc_max_concurrent_streams: u32,
    /// Serve gRPC server reflection, so tools such as grpcurl can list and call the services
    /// without the .proto files.
    #[arg(long, env = "INFERA_GRPC_REFLECTION")]
    pub grpc_reflection: bool,
}

/// Hot reload of the model repository (docs/model-updates.md).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Model updates")]
pub struct ReloadArgs {
    /// Watch the model repository and apply changes while serving (new, changed and removed
    /// versions and models); every new version passes the validation gate before it serves.
    #[arg(long, env = "INFERA_WATCH_REPOSITORY", default_value_t = true, action = clap::ArgAction::Set)]
    pub watch_repository: bool,
    /// Milliseconds the repository must stay quiet after a change before it is reloaded.
    #[arg(long, env = "INFERA_RELOAD_DEBOUNCE_MS", default_value_t = 250)]
    pub reload_debounce_ms: u64,
    /// Also rescan the repository every this many seconds (0: only on file-system events), for
    /// file systems that send no events (some network and container volumes).
    #[arg(long, env = "INFERA_RELOAD_POLL_SECS", default_value_t = 0)]
    pub reload_poll_secs: u64,
}

/// Shapes as the graph declares them: plans specialised per concrete input shape, and body
/// limits that fit the model.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Shapes")]
pub struct ShapeArgs {
    /// Plans kept per model version for models whose plans are specialised per input shape
    /// (least recently used dropped first); a model card's `[runtime] plan_cache` overrides it.
    #[arg(long, env = "INFERA_PLAN_CACHE_SIZE", default_value_t = 16)]
    pub plan_cache_size: usize,
    /// Largest request body in bytes on a model's inference routes (/predict, V1, V2 infer,
    /// explain), when the model's contract needs more than --max-body-bytes: the limit is what
    /// the contract's largest request takes as JSON (bounded by --max-elements), at most this.
    #[arg(long, env = "INFERA_MAX_MODEL_BODY_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub max_model_body_bytes: usize,
}

impl ShapeArgs {
    /// The engine's load options for models whose card says nothing.
    pub fn load_options(&self) -> crate::engine::LoadOptions {
        crate::engine::LoadOptions {
            plan_cache: self.plan_cache_size,
            ..Default::default()
        }
    }

    fn validate(&self) -> Result<(), String> {
        let max = crate::repository::manifest::MAX_PLAN_CACHE;
        if !(1..=max).contains(&self.plan_cache_size) {
            return Err(format!(
                "--plan-cache-size must be between 1 and {max}, got {}",
                self.plan_cache_size
            ));
        }
        if self.max_model_body_bytes < 1024 {
            return Err(format!(
                "--max-model-body-bytes must be at least 1024, got {}",
                self.max_model_body_bytes
            ));
        }
        Ok(())
    }
}

/// Data capture for retraining (see docs/capture.md).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Data capture")]
pub struct CaptureArgs {
    /// Write sampled predictions and all feedback as files under this directory
    /// (`<model>/<version>/date=YYYY-MM-DD/<replica>-<seq>.parquet`). Unset: no capture.
    #[arg(long, env = "INFERA_CAPTURE_DIR")]
    pub capture_dir: Option<PathBuf>,
    /// File format: `parquet` (Snappy Parquet) or `jsonl` (gzip-compressed JSON lines,
    /// `.jsonl.gz`); a model card's `[capture] format` overrides it for its predictions.
    #[arg(long, env = "INFERA_CAPTURE_FORMAT", default_value = "parquet")]
    pub capture_format: String,
    /// Fraction of prediction requests captured, 0 to 1 (feedback is always captured).
    #[arg(long, env = "INFERA_CAPTURE_SAMPLE_RATE", default_value_t = 1.0)]
    pub capture_sample_rate: f64,
    /// Fields written, comma separated, out of inputs, outputs, ids, timestamps, version,
    /// latency (the others are null columns).
    #[arg(
        long,
        env = "INFERA_CAPTURE_FIELDS",
        value_delimiter = ',',
        default_value = "inputs,outputs,ids,timestamps,version,latency"
    )]
    pub capture_fields: Vec<String>,
    /// Feature names whose values are written as null, comma separated.
    #[arg(long, env = "INFERA_CAPTURE_REDACT", value_delimiter = ',')]
    pub capture_redact: Vec<String>,
    /// Requests waiting to be written at most; past it captures are dropped and counted in
    /// `infera_capture_rows_total{outcome="dropped"}` (a request is never slowed).
    #[arg(long, env = "INFERA_CAPTURE_QUEUE", default_value_t = 65536)]
    pub capture_queue: usize,
    /// Bytes the requests waiting to be written may hold at most (inputs, strings, answers);
    /// past it captures are dropped and counted like a full queue.
    #[arg(long, env = "INFERA_CAPTURE_QUEUE_BYTES", default_value_t = 64 << 20)]
    pub capture_queue_bytes: usize,
    /// A captured string value is cut to at most this many bytes (on a character boundary)
    /// and counted in `infera_capture_values_truncated_total`.
    #[arg(long, env = "INFERA_CAPTURE_MAX_STRING_BYTES", default_value_t = 4096)]
    pub capture_max_string_bytes: usize,
    /// A file is closed and a new one started past this many bytes.
    #[arg(long, env = "INFERA_CAPTURE_MAX_FILE_BYTES", default_value_t = 64 << 20)]
    pub capture_max_file_bytes: u64,
    /// A file is closed and a new one started after this many seconds.
    #[arg(long, env = "INFERA_CAPTURE_MAX_FILE_SECS", default_value_t = 300)]
    pub capture_max_file_secs: u64,
    /// Buffered rows are written (as a Parquet row group) at least this often.
    #[arg(long, env = "INFERA_CAPTURE_FLUSH_MS", default_value_t = 1000)]
    pub capture_flush_ms: u64,
    /// Closed files under the capture directory are deleted, oldest first, past this many bytes.
    #[arg(long, env = "INFERA_CAPTURE_MAX_TOTAL_BYTES", default_value_t = 10 << 30)]
    pub capture_max_total_bytes: u64,
    /// This replica's name in file names (default: the host name), so replicas sharing one
    /// directory never write the same file.
    #[arg(long, env = "INFERA_CAPTURE_REPLICA")]
    pub capture_replica: Option<String>,
    /// Also post every captured prediction as CloudEvents (KServe payload logger format) to
    /// this http(s) URL; credentials in it are sent as Basic auth and never logged. Works with
    /// or without --capture-dir.
    #[arg(long, env = "INFERA_CAPTURE_URL")]
    pub capture_url: Option<crate::capture::SinkUrl>,
    /// Requests waiting to be posted to --capture-url at most; past it events are dropped and
    /// counted in `infera_capture_events_total{outcome="dropped"}`.
    #[arg(long, env = "INFERA_CAPTURE_URL_QUEUE", default_value_t = 1024)]
    pub capture_url_queue: usize,
    /// Posts to --capture-url under way at most.
    #[arg(long, env = "INFERA_CAPTURE_URL_IN_FLIGHT", default_value_t = 8)]
    pub capture_url_in_flight: usize,
    /// Timeout of one post to --capture-url, in milliseconds.
    #[arg(long, env = "INFERA_CAPTURE_URL_TIMEOUT_MS", default_value_t = 2000)]
    pub capture_url_timeout_ms: u64,
    /// Further tries of a post to --capture-url refused with 5xx, 408 or 429, or that could
    /// not connect or timed out (waiting 100 ms, then twice as long each time, at most 2 s).
    #[arg(long, env = "INFERA_CAPTURE_URL_RETRIES", default_value_t = 3)]
    pub capture_url_retries: u32,
    /// `ce-namespace` of the posted events (KServe: the InferenceService's namespace); not
    /// sent when unset.
    #[arg(long, env = "INFERA_CAPTURE_NAMESPACE")]
    pub capture_namespace: Option<String>,
}

impl CaptureArgs {
    fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.capture_sample_rate) {
            return Err(format!(
                "--capture-sample-rate must be between 0 and 1, got {}",
                self.capture_sample_rate
            ));
        }
        crate::capture::Fields::parse(&self.capture_fields)
            .map_err(|e| format!("--capture-fields: {e}"))?;
        crate::capture::Format::parse(&self.capture_format)
            .map_err(|e| format!("--capture-format: {e}"))?;
        if self.capture_url.is_some()
            && (self.capture_url_queue == 0
                || self.capture_url_in_flight == 0
                || self.capture_url_timeout_ms == 0)
        {
            return Err(
                "--capture-url-queue, --capture-url-in-flight and --capture-url-timeout-ms must be > 0"
                    .into(),
            );
        }
        if self.capture_queue == 0
            || self.capture_queue_bytes == 0
            || self.capture_flush_ms == 0
            || self.capture_max_file_secs == 0
        {
            return Err(
                "--capture-queue, --capture-queue-bytes, --capture-flush-ms and \
                 --capture-max-file-secs must be > 0"
                    .into(),
            );
        }
        Ok(())
    }

    /// The writer's settings, or None when capture is off (neither a directory nor a URL).
    pub fn settings(&self) -> Option<crate::capture::CaptureSettings> {
        if self.capture_dir.is_none() && self.capture_url.is_none() {
            return None;
        }
        let replica = match &self.capture_replica {
            Some(r) => crate::capture::replica_name(r),
            None => crate::capture::host_name(),
        };
        let http = self
            .capture_url
            .clone()
            .map(|url| crate::capture::HttpSinkSettings {
                url,
                queue: self.capture_url_queue,
                in_flight: self.capture_url_in_flight,
                timeout: Duration::from_millis(self.capture_url_timeout_ms),
                namespace: self.capture_namespace.clone(),
                retries: self.capture_url_retries,
                replica: replica.clone(),
            });
        Some(crate::capture::CaptureSettings {
            dir: self.capture_dir.clone(),
            sample_rate: self.capture_sample_rate,
            fields: crate::capture::Fields::parse(&self.capture_fields).ok()?,
            redact: self.capture_redact.clone(),
            queue: self.capture_queue,
            queue_bytes: self.capture_queue_bytes,
            max_string_bytes: self.capture_max_string_bytes,
            max_file_bytes: self.capture_max_file_bytes,
            max_file_age: Duration::from_secs(self.capture_max_file_secs),
            flush_every: Duration::from_millis(self.capture_flush_ms),
            max_total_bytes: self.capture_max_total_bytes,
            replica,
            format: crate::capture::Format::parse(&self.capture_format).ok()?,
            http,
        })
    }
}

/// `infera export`.
#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    /// The capture directory the servers wrote (their --capture-dir).
    #[arg(long, env = "INFERA_CAPTURE_DIR")]
    pub capture: PathBuf,
    /// The model to export.
    #[arg(long)]
    pub model: String,
    /// The Parquet file to write.
    #[arg(long)]
    pub out: PathBuf,
    /// Only predictions made on or after this day (YYYY-MM-DD, UTC).
    #[arg(long)]
    pub since: Option<String>,
    /// The model repository: the model's card gives the class labels that ground truth sent
    /// as class indices is written as (without it, the labels seen in the predictions).
    #[arg(long)]
    pub repository: Option<PathBuf>,
}

/// Shadow and canary traffic (docs/model-updates.md).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Shadow and canary traffic")]
pub struct TrafficArgs {
    /// Mirrored requests (to a shadow version, or to the stable version for a canary's
    /// agreement rule) that may run at once; more are dropped and counted, never queued.
    #[arg(long, env = "INFERA_SHADOW_MAX_IN_FLIGHT", default_value_t = 32)]
    pub shadow_max_in_flight: usize,
}

impl TrafficArgs {
    fn validate(&self) -> Result<(), String> {
        if !(1..=4096).contains(&self.shadow_max_in_flight) {
            return Err(format!(
                "--shadow-max-in-flight must be between 1 and 4096, got {}",
                self.shadow_max_in_flight
            ));
        }
        Ok(())
    }
}

/// Bounds on the lists of a named-tensor request (V2 JSON and binary, gRPC `ModelInfer`), held
/// while the request is decoded: past a limit the decoding stops and the request is refused
/// (413; gRPC INVALID_ARGUMENT), before the list is built.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Request lists")]
pub struct ListLimitArgs {
    /// Most input tensors one request may carry; also the most requested outputs, and gRPC
    /// `raw_input_contents` entries.
    #[arg(long, env = "INFERA_MAX_TENSORS", default_value_t = 1024)]
    pub max_tensors: usize,
    /// Most dimensions in one tensor's shape.
    #[arg(long, env = "INFERA_MAX_RANK", default_value_t = 32)]
    pub max_rank: usize,
    /// Most parameters one request may carry, its own and its tensors' together (the V2 binary
    /// extension puts one on every input and output it carries as binary).
    #[arg(long, env = "INFERA_MAX_PARAMETERS", default_value_t = 4096)]
    pub max_parameters: usize,
}

impl ListLimitArgs {
    /// The limits the decoders hold requests to.
    pub fn limits(&self) -> crate::contract::ListLimits {
        crate::contract::ListLimits {
            max_tensors: self.max_tensors,
            max_rank: self.max_rank,
            max_parameters: self.max_parameters,
        }
    }

    fn validate(&self) -> Result<(), String> {
        let ranges = [
            ("--max-tensors", self.max_tensors, 1..=1_000_000),
            ("--max-rank", self.max_rank, 1..=1024),
            ("--max-parameters", self.max_parameters, 0..=100_000),
        ];
        for (flag, value, range) in ranges {
            if !range.contains(&value) {
                return Err(format!(
                    "{flag} must be between {} and {}, got {value}",
                    range.start(),
                    range.end()
                ));
            }
        }
        Ok(())
    }
}

/// Threads inside one model call (docs/shapes.md, "Intra-op threads").
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Intra-op threads")]
pub struct ThreadArgs {
    /// Threads one model call may use: `auto` runs a lone call on an idle server over every
    /// core (models whose calls take under a millisecond excepted) and each call on one thread
    /// under load; a number pins it for every model. A card's `[runtime] threads` overrides it.
    #[arg(long, env = "INFERA_INTRA_OP_THREADS", default_value = "auto")]
    pub intra_op_threads: String,
}

impl ThreadArgs {
    /// The engine's setting for models whose card says nothing.
    pub fn setting(&self) -> Result<crate::engine::IntraOpThreads, String> {
        let max = crate::engine::MAX_INTRA_OP_THREADS;
        match self.intra_op_threads.trim() {
            "auto" => Ok(crate::engine::IntraOpThreads::Auto),
            n => match n.parse::<usize>() {
                Ok(n) if (1..=max).contains(&n) => Ok(crate::engine::IntraOpThreads::Fixed(n)),
                _ => Err(format!(
                    "--intra-op-threads must be `auto` or a number between 1 and {max}, got {n:?}"
                )),
            },
        }
    }

    /// `options` with this group's thread setting (validated at start-up; `auto` otherwise).
    pub fn apply(&self, options: crate::engine::LoadOptions) -> crate::engine::LoadOptions {
        crate::engine::LoadOptions {
            threads: self.setting().unwrap_or_default(),
            ..options
        }
    }

    fn validate(&self) -> Result<(), String> {
        self.setting().map(|_| ())
    }
}

#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    /// The model repository to check.
    #[arg(env = "INFERA_MODEL_REPOSITORY", default_value = "models")]
    pub repository: PathBuf,
    /// Also write the validation gate's verdict on every version, as JSON, to this file.
    #[arg(long, env = "INFERA_CHECK_REPORT")]
    pub report: Option<PathBuf>,
    #[command(flatten)]
    pub log: LogArgs,
}

#[derive(Debug, Clone, Args)]
pub struct HealthcheckArgs {
    /// Readiness URL to probe (plain http on this host). Default:
    /// `http://127.0.0.1:$INFERA_PORT/health/ready` (port 8080 when INFERA_PORT is unset), so a
    /// container that moves the server's port needs no second setting.
    #[arg(long, env = "INFERA_HEALTHCHECK_URL")]
    pub url: Option<String>,
    /// The server's port, read from the same variable the server uses.
    #[arg(skip = std::env::var("INFERA_PORT").ok().and_then(|p| p.parse::<u16>().ok()).unwrap_or(8080))]
    pub port: u16,
    /// Give up after this many milliseconds.
    #[arg(long, default_value_t = 2_000)]
    pub timeout_ms: u64,
}

impl HealthcheckArgs {
    /// The URL to probe after applying the default.
    pub fn url(&self) -> String {
        self.url
            .clone()
            .unwrap_or_else(|| format!("http://127.0.0.1:{}/health/ready", self.port))
    }
}

fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

impl ServeArgs {
    /// Rejects settings that cannot work, with the flag to fix.
    pub fn validate(&self) -> Result<(), String> {
        self.http.validate()?;
        self.rate.validate()?;
        if !self.http.host.is_loopback()
            && self.auth.api_keys_file.is_none()
            && !self.auth.allow_unauthenticated
        {
            return Err(format!(
                "refusing to serve {} without API keys: set --api-keys-file, or \
                 --allow-unauthenticated if something in front of infera authenticates callers",
                self.http.host
            ));
        }
        self.limits.validate()?;
        self.batching.validate()?;
        self.monitoring.validate()?;
        self.explain.validate()?;
        self.grpc.validate()?;
        self.reload.validate()?;
        self.shapes.validate()?;
        self.capture.validate()?;
        self.traffic.validate()?;
        self.lists.validate()?;
        self.threads.validate()
    }
}

impl HttpArgs {
    pub fn connection_limits(&self) -> crate::listener::ConnectionLimits {
        crate::listener::ConnectionLimits {
            max_connections: self.max_connections,
            header_timeout: Duration::from_millis(self.header_timeout_ms),
        }
    }

    pub fn drain(&self) -> crate::listener::Drain {
        crate::listener::Drain {
            idle_close: Duration::from_millis(self.shutdown_idle_close_ms),
            grace: Duration::from_secs(self.shutdown_grace_secs),
        }
    }

    /// HTTP threads after applying the default.
    pub fn thread_count(&self) -> usize {
        self.http_threads.unwrap_or_else(cores)
    }

    /// Bulk-lane threads after applying the default (0: no lane).
    pub fn bulk_thread_count(&self) -> usize {
        self.bulk_threads.unwrap_or_else(cores)
    }

    fn validate(&self) -> Result<(), String> {
        if self.bulk_thread_count() > 1024 {
            return Err(format!(
                "--bulk-threads must be at most 1024, got {}",
                self.bulk_thread_count()
            ));
        }
        if !(1..=1024).contains(&self.thread_count()) {
            return Err(format!(
                "--http-threads must be between 1 and 1024, got {}",
                self.thread_count()
            ));
        }
        if !(1..=1_000_000).contains(&self.max_connections) {
            return Err(format!(
                "--max-connections must be between 1 and 1000000, got {}",
                self.max_connections
            ));
        }
        if !(100..=600_000).contains(&self.header_timeout_ms) {
            return Err(format!(
                "--header-timeout-ms must be between 100 and 600000, got {}",
                self.header_timeout_ms
            ));
        }
        if self.shutdown_idle_close_ms > self.shutdown_grace_secs.saturating_mul(1000) {
            return Err(format!(
                "--shutdown-idle-close-ms ({}) must not exceed --shutdown-grace-secs ({} s)",
                self.shutdown_idle_close_ms, self.shutdown_grace_secs
            ));
        }
        if self.metrics_port.is_some() && self.metrics_port == Some(self.port) && self.port != 0 {
            return Err(format!(
                "--metrics-port must differ from --port ({})",
                self.port
            ));
        }
        for origin in &self.cors_origins {
            let ok = (origin.starts_with("http://") || origin.starts_with("https://"))
                && !origin
                    .trim_end_matches('/')
                    .contains(|c: char| c == '*' || c.is_whitespace());
            if !ok {
                return Err(format!(
                    "--cors-origins takes origins like https://app.example.com, got {origin:?}"
                ));
            }
        }
        Ok(())
    }
}

impl RateLimitArgs {
    fn rate(rps: Option<f64>, burst: Option<u32>) -> Option<crate::auth::Rate> {
        rps.map(|rps| crate::auth::Rate {
            rps,
            burst: burst.unwrap_or_else(|| rps.ceil().max(1.0) as u32),
        })
    }

    /// The limits, with their defaults applied.
    pub fn limits(&self) -> crate::auth::Limits {
        crate::auth::Limits {
            global: Self::rate(self.rate_limit_rps, self.rate_limit_burst),
            per_model: Self::rate(self.model_rate_limit_rps, self.model_rate_limit_burst),
            per_address: Self::rate(self.address_rate_limit_rps, self.address_rate_limit_burst),
            max_addresses: self.address_rate_limit_tracked,
        }
    }

    fn validate(&self) -> Result<(), String> {
        let pairs = [
            ("--rate-limit", self.rate_limit_rps, self.rate_limit_burst),
            (
                "--model-rate-limit",
                self.model_rate_limit_rps,
                self.model_rate_limit_burst,
            ),
            (
                "--address-rate-limit",
                self.address_rate_limit_rps,
                self.address_rate_limit_burst,
            ),
        ];
        for (flag, rps, burst) in pairs {
            match (rps, burst) {
                (Some(r), _) if !(r.is_finite() && r > 0.0) => {
                    return Err(format!("{flag}-rps must be a positive number, got {r}"))
                }
                (_, Some(0)) => return Err(format!("{flag}-burst must be at least 1")),
                (None, Some(_)) => return Err(format!("{flag}-burst needs {flag}-rps")),
                _ => {}
            }
        }
        if !(1..=10_000_000).contains(&self.address_rate_limit_tracked) {
            return Err(format!(
                "--address-rate-limit-tracked must be between 1 and 10000000, got {}",
                self.address_rate_limit_tracked
            ));
        }
        Ok(())
    }
}

impl LimitArgs {
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    fn validate(&self) -> Result<(), String> {
        if self.max_body_bytes < 1024 {
            return Err(format!(
                "--max-body-bytes must be at least 1024, got {}",
                self.max_body_bytes
            ));
        }
        if self.max_instances == 0 {
            return Err("--max-instances must be at least 1".into());
        }
        if !(1..=1 << 32).contains(&self.max_elements) {
            return Err(format!(
                "--max-elements must be between 1 and 4294967296, got {}",
                self.max_elements
            ));
        }
        if self.request_timeout_ms == 0 {
            return Err("--request-timeout-ms must be at least 1".into());
        }
        if self.retry_after_secs == 0 {
            return Err("--retry-after-secs must be at least 1".into());
        }
        Ok(())
    }
}

impl BatchingArgs {
    /// Worker threads after applying the default.
    pub fn worker_count(&self) -> usize {
        self.workers.unwrap_or_else(cores)
    }

    /// Server-wide queueing and batching defaults.
    pub fn batch_policy(&self) -> BatchPolicy {
        BatchPolicy {
            max_batch_size: self.max_batch_size,
            learn_limit: true,
            max_queue_delay: Duration::from_micros(self.max_queue_delay_us),
            queue_capacity: self.queue_capacity,
        }
    }

    fn validate(&self) -> Result<(), String> {
        let workers = self.worker_count();
        if !(1..=1024).contains(&workers) {
            return Err(format!(
                "--workers must be between 1 and 1024, got {workers}"
            ));
        }
        if self.queue_capacity == 0 || self.queue_capacity > MAX_QUEUE_CAPACITY {
            return Err(format!(
                "--queue-capacity must be between 1 and {MAX_QUEUE_CAPACITY}, got {}",
                self.queue_capacity
            ));
        }
        if !(1..=MAX_BATCH_SIZE).contains(&self.max_batch_size) {
            return Err(format!(
                "--max-batch-size must be between 1 and {MAX_BATCH_SIZE}, got {}",
                self.max_batch_size
            ));
        }
        if self.max_queue_delay_us > MAX_QUEUE_DELAY_US {
            return Err(format!(
                "--max-queue-delay-us must be at most {MAX_QUEUE_DELAY_US}, got {}",
                self.max_queue_delay_us
            ));
        }
        if self.worker_idle_poll_us > 10_000 {
            return Err(format!(
                "--worker-idle-poll-us must be at most 10000, got {}",
                self.worker_idle_poll_us
            ));
        }
        Ok(())
    }
}

impl MonitoringArgs {
    fn validate(&self) -> Result<(), String> {
        if self.feedback_capacity > 10_000_000 {
            return Err(format!(
                "--feedback-capacity must be at most 10000000, got {}",
                self.feedback_capacity
            ));
        }
        if self.feedback_ttl_secs == 0 {
            return Err("--feedback-ttl-secs must be at least 1".into());
        }
        if let Some(url) = &self.webhook_url {
            if !url.starts_with("http://") {
                return Err(format!(
                    "--webhook-url must be a plain http:// URL, got {url:?}"
                ));
            }
        }
        if !(1..=20).contains(&self.webhook_attempts) {
            return Err(format!(
                "--webhook-attempts must be between 1 and 20, got {}",
                self.webhook_attempts
            ));
        }
        Ok(())
    }
}

impl ExplainArgs {
    /// The explainer's bounds; refused callers are told to wait `retry_after`.
    pub fn limits(&self, retry_after: Duration) -> ExplainLimits {
        ExplainLimits {
            max_concurrent: self.explain_max_concurrent,
            max_instances: self.explain_max_instances,
            default_budget: self.explain_budget,
            max_budget: self.explain_max_budget,
            exact_max_features: self.explain_exact_max_features,
            max_background_rows: self.explain_max_background_rows,
            chunk_rows: self.explain_chunk_rows,
            timeout: Duration::from_millis(self.explain_timeout_ms),
            retry_after,
        }
    }

    fn validate(&self) -> Result<(), String> {
        let ranges: [(&str, usize, usize, usize); 6] = [
            (
                "--explain-max-concurrent",
                self.explain_max_concurrent,
                1,
                1024,
            ),
            (
                "--explain-max-instances",
                self.explain_max_instances,
                1,
                1024,
            ),
            ("--explain-max-budget", self.explain_max_budget, 4, 1 << 20),
            (
                "--explain-exact-max-features",
                self.explain_exact_max_features,
                1,
                16,
            ),
            (
                "--explain-max-background-rows",
                self.explain_max_background_rows,
                1,
                1024,
            ),
            ("--explain-chunk-rows", self.explain_chunk_rows, 1, 1 << 20),
        ];
        for (flag, value, lo, hi) in ranges {
            if !(lo..=hi).contains(&value) {
                return Err(format!("{flag} must be between {lo} and {hi}, got {value}"));
            }
        }
        if !(4..=self.explain_max_budget).contains(&self.explain_budget) {
            return Err(format!(
                "--explain-budget must be between 4 and --explain-max-budget ({}), got {}",
                self.explain_max_budget, self.explain_budget
            ));
        }
        if self.explain_timeout_ms == 0 {
            return Err("--explain-timeout-ms must be at least 1".into());
        }
        Ok(())
    }
}

impl GrpcArgs {
    /// The largest request message after applying the default (`--max-body-bytes`).
    pub fn max_message_bytes(&self, limits: &LimitArgs) -> usize {
        self.grpc_max_message_bytes.unwrap_or(limits.max_body_bytes)
    }

    fn validate(&self) -> Result<(), String> {
        if let Some(n) = self.grpc_max_message_bytes {
            if !(1024..=1 << 31).contains(&n) {
                return Err(format!(
                    "--grpc-max-message-bytes must be between 1024 and 2147483648, got {n}"
                ));
            }
        }
        if !(1..=10_000).contains(&self.grpc_max_concurrent_streams) {
            return Err(format!(
                "--grpc-max-concurrent-streams must be between 1 and 10000, got {}",
                self.grpc_max_concurrent_streams
            ));
        }
        Ok(())
    }
}

impl ReloadArgs {
    fn validate(&self) -> Result<(), String> {
        if !(1..=60_000).contains(&self.reload_debounce_ms) {
            return Err(format!(
                "--reload-debounce-ms must be between 1 and 60000, got {}",
                self.reload_debounce_ms
            ));
        }
        if self.reload_poll_secs > 86_400 {
            return Err(format!(
                "--reload-poll-secs must be at most 86400, got {}",
                self.reload_poll_secs
            ));
        }
        Ok(())
    }

    /// How the repository watcher reacts.
    pub fn watch_config(&self) -> crate::repository::WatchConfig {
        crate::repository::WatchConfig {
            debounce: Duration::from_millis(self.reload_debounce_ms),
            poll: (self.reload_poll_secs > 0).then(|| Duration::from_secs(self.reload_poll_secs)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_serve_is_the_default_command() {
        let cli = Cli::try_parse_from(["infera"]).unwrap();
        assert!(cli.command.is_none());
        cli.serve.validate().unwrap();
        assert_eq!(cli.serve.http.port, 8080);
        assert_eq!(cli.serve.http.host.to_string(), "127.0.0.1");
        assert_eq!(cli.serve.model_repository, PathBuf::from("models"));
        assert_eq!(
            cli.serve.grpc.grpc_port, None,
            "gRPC is off unless asked for"
        );
        assert!(!cli.serve.grpc.grpc_reflection);
        assert_eq!(
            cli.serve.grpc.max_message_bytes(&cli.serve.limits),
            cli.serve.limits.max_body_bytes
        );
    }

    #[test]
    fn intra_op_threads_flag_parses_and_validates() {
        use crate::engine::IntraOpThreads;
        let cli = Cli::try_parse_from(["infera"]).unwrap();
        assert_eq!(cli.serve.threads.setting(), Ok(IntraOpThreads::Auto));
        let cli = Cli::try_parse_from(["infera", "--intra-op-threads", "2"]).unwrap();
        cli.serve.validate().unwrap();
        let options = cli.serve.threads.apply(cli.serve.shapes.load_options());
        assert_eq!(options.threads, IntraOpThreads::Fixed(2));
        for bad in ["0", "65", "many"] {
            let cli = Cli::try_parse_from(["infera", "--intra-op-threads", bad]).unwrap();
            let err = cli.serve.validate().unwrap_err();
            assert!(err.contains("--intra-op-threads"), "{err}");
        }
    }

    #[test]
    fn grpc_flags_parse_and_validate() {
        let cli = Cli::try_parse_from([
            "infera",
            "--grpc-port",
            "8081",
            "--grpc-reflection",
            "--grpc-max-message-bytes",
            "65536",
        ])
        .unwrap();
        cli.serve.validate().unwrap();
        assert_eq!(cli.serve.grpc.grpc_port, Some(8081));
        assert!(cli.serve.grpc.grpc_reflection);
        assert_eq!(cli.serve.grpc.max_message_bytes(&cli.serve.limits), 65536);
        let cli = Cli::try_parse_from(["infera", "--grpc-max-concurrent-streams", "0"]).unwrap();
        assert!(cli
            .serve
            .validate()
            .unwrap_err()
            .contains("--grpc-max-concurrent-streams"));
    }

    #[test]
    fn subcommands_parse() {
        let cli = Cli::try_parse_from(["infera", "check", "some/repo"]).unwrap();
        assert!(
            matches!(cli.command, Some(Command::Check(ref c)) if c.repository == std::path::Path::new("some/repo"))
        );
        let cli =
            Cli::try_parse_from(["infera", "serve", "--port", "0", "--workers", "3"]).unwrap();
        let Some(Command::Serve(args)) = cli.command else {
            panic!("not serve")
        };
        assert_eq!(args.batching.worker_count(), 3);
    }

    #[test]
    fn the_healthcheck_probes_the_servers_port_unless_told_a_url() {
        let mut args = HealthcheckArgs {
            url: None,
            port: 9000,
            timeout_ms: 100,
        };
        assert_eq!(args.url(), "http://127.0.0.1:9000/health/ready");
        args.url = Some("http://10.0.0.1:80/health/ready".into());
        assert_eq!(args.url(), "http://10.0.0.1:80/health/ready");
    }

    #[test]
    fn a_public_address_needs_keys_or_an_explicit_opt_out() {
        let cli = Cli::try_parse_from(["infera", "--host", "0.0.0.0"]).unwrap();
        let err = cli.serve.validate().unwrap_err();
        assert!(err.contains("--api-keys-file") && err.contains("--allow-unauthenticated"));
        let cli = Cli::try_parse_from(["infera", "--host", "0.0.0.0", "--allow-unauthenticated"])
            .unwrap();
        cli.serve.validate().unwrap();
        let cli = Cli::try_parse_from(["infera", "--host", "::", "--api-keys-file", "keys.toml"])
            .unwrap();
        cli.serve.validate().unwrap();
        let cli = Cli::try_parse_from(["infera", "--host", "::1"]).unwrap();
        cli.serve.validate().unwrap();
    }

    #[test]
    fn rate_limits_default_their_burst_and_reject_nonsense() {
        let cli = Cli::try_parse_from(["infera", "--model-rate-limit-rps", "2.5"]).unwrap();
        cli.serve.validate().unwrap();
        let limits = cli.serve.rate.limits();
        assert_eq!(limits.per_model.unwrap().burst, 3);
        assert!(limits.global.is_none() && limits.per_address.is_none());
        let cli = Cli::try_parse_from(["infera", "--rate-limit-rps", "0"]).unwrap();
        assert!(cli
            .serve
            .validate()
            .unwrap_err()
            .contains("--rate-limit-rps"));
        let cli = Cli::try_parse_from(["infera", "--rate-limit-burst", "5"]).unwrap();
        assert!(cli.serve.validate().unwrap_err().contains("needs"));
    }

    #[test]
    fn bad_values_are_rejected_with_the_flag_name() {
        let cli = Cli::try_parse_from(["infera", "--workers", "0"]).unwrap();
        assert!(cli.serve.validate().unwrap_err().contains("--workers"));
        let cli = Cli::try_parse_from(["infera", "--max-body-bytes", "10"]).unwrap();
        assert!(cli
            .serve
            .validate()
            .unwrap_err()
            .contains("--max-body-bytes"));
    }
}
