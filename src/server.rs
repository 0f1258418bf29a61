//! Wiring: repository scan, worker pool, predictor, HTTP app, model loading in the background,
//! and graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::api::grpc::{GrpcSettings, GrpcTls};
use crate::api::{self, AppShared, AppState};
use crate::auth::{self, Access};
use crate::capture::Capture;
use crate::config::ServeArgs;
use crate::engine::{BulkLane, PoolConfig, WorkerPool};
use crate::inference::{Explainer, Limits, Mirror, Predictor, Traffic};
use crate::listener::{self, ConnectionLimits, Drain, Tls};
use crate::monitoring::{Metrics, Notifier, PredictionLog, WebhookConfig};
use crate::repository::{
    self, LoadContext, ModelStore, Reloader, RepositoryError, RepositoryWatcher, WatchConfig,
};

/// Everything a running server is made of, before it listens.
pub struct Infera {
    pub state: AppState,
    /// Brings the catalog in line with the repository: at start-up and on every change.
    reloader: Arc<Reloader>,
    pool: Arc<WorkerPool>,
    net: Net,
    grpc: GrpcSettings,
    /// Data capture, when `--capture-dir` is set.
    capture: Option<Capture>,
}

/// How connections are served: TLS, limits, shutdown.
struct Net {
    tls: Option<Tls>,
    limits: ConnectionLimits,
    drain: Drain,
}

impl Infera {
    /// Validates the configuration, scans the repository and starts the worker pool. No model
    /// is loaded yet: see [`Infera::load_models`].
    pub fn new(args: &ServeArgs) -> anyhow::Result<Infera> {
        args.validate().map_err(anyhow::Error::msg)?;
        let layout = repository::scan(&args.model_repository).with_context(|| {
            format!(
                "reading model repository {}",
                args.model_repository.display()
            )
        })?;
        let catalog = repository::initial_catalog(&layout, args.default_model.as_deref())?;
        let store = Arc::new(ModelStore::new(catalog));
        let pool_config = PoolConfig {
            workers: args.batching.worker_count(),
            retry_after: Duration::from_secs(args.limits.retry_after_secs),
            idle_poll: Duration::from_micros(args.batching.worker_idle_poll_us),
        };
        let pool = Arc::new(WorkerPool::start(pool_config).context("starting inference workers")?);
        let metrics = Arc::new(Metrics::new());
        metrics.set_workers(pool_config.workers);
        let limits = Limits {
            max_instances: args.limits.max_instances,
            max_elements: args.limits.max_elements,
            lists: args.lists.limits(),
            timeout: args.limits.request_timeout(),
        };
        let log = Arc::new(PredictionLog::new(
            args.monitoring.feedback_capacity,
            Duration::from_secs(args.monitoring.feedback_ttl_secs),
        ));
        let access = access_control(args, &metrics)?;
        let capture = start_capture(args, &metrics)?;
        let notifier = match &args.monitoring.webhook_url {
            Some(url) => {
                let counted = metrics.clone();
                Notifier::start(
                    WebhookConfig {
                        url: url.clone(),
                        attempts: args.monitoring.webhook_attempts,
                        backoff: Duration::from_millis(500),
                        timeout: Duration::from_secs(5),
                    },
                    move |delivery| counted.quality().webhook(delivery),
                )
                .with_capture_dir(args.capture.capture_dir.as_deref())
            }
            None => Notifier::disabled(),
        };
        let loading = LoadContext {
            metrics: metrics.clone(),
            pool: pool.clone(),
            batching: args.batching.batch_policy(),
            notifier,
            load: args.threads.apply(args.shapes.load_options()),
        };
        let explainer = Arc::new(Explainer::new(
            store.clone(),
            args.explain
                .limits(Duration::from_secs(args.limits.retry_after_secs)),
            metrics.clone(),
        ));
        let reloader = Arc::new(Reloader::new(
            &args.model_repository,
            args.default_model.clone(),
            store.clone(),
            loading,
        ));
        let mirror = Mirror::new(
            metrics.clone(),
            args.traffic.shadow_max_in_flight,
            limits.timeout,
        );
        let traffic = Arc::new(Traffic::new(
            metrics.clone(),
            mirror,
            Some(reloader.clone()),
        ));
        let mut predictor = Predictor::new(store.clone(), limits, log)
            .with_model_limits(access.clone())
            .with_traffic(traffic);
        if let Some(c) = &capture {
            predictor = predictor.with_capture(c.clone());
        }
        let predictor = Arc::new(predictor);
        let state = AppState::new(AppShared {
            predictor,
            explainer,
            metrics,
            admin: access
                .has_scope(auth::Scope::Admin)
                .then(|| reloader.clone()),
            access,
            max_body_bytes: args.limits.max_body_bytes,
            max_model_body_bytes: args.shapes.max_model_body_bytes,
            draining: Default::default(),
            metrics_port: args.http.metrics_port,
            cors_origins: args.http.cors_origins.clone(),
            bulk: bulk_lane(&args.http)?,
        });
        let tls = match (&args.http.tls_cert, &args.http.tls_key) {
            (Some(cert), Some(key)) => Some(Tls::load(cert, key)?),
            _ => None,
        };
        let net = Net {
            tls,
            limits: args.http.connection_limits(),
            drain: args.http.drain(),
        };
        Ok(Infera {
            state,
            reloader,
            pool,
            net,
            grpc: GrpcSettings {
                max_message_bytes: args.grpc.max_message_bytes(&args.limits),
                max_concurrent_streams: args.grpc.grpc_max_concurrent_streams,
                reflection: args.grpc.grpc_reflection,
                tls: grpc_tls(&args.http)?,
            },
            capture,
        })
    }

    /// Loads (and gates) the model versions the repository's policies select (blocking; call
    /// off the async runtime). Returns the versions that failed or were refused.
    pub fn load_models(&self) -> Vec<RepositoryError> {
        load(&self.reloader)
    }

    /// Loads the models on a background thread; readiness turns true when all are in.
    pub fn load_models_in_background(&self) -> std::thread::JoinHandle<Vec<RepositoryError>> {
        let reloader = self.reloader.clone();
        std::thread::Builder::new()
            .name("infera-loader".into())
            .spawn(move || load(&reloader))
            .expect("spawning the model loader thread")
    }

    /// The reloader, for applying repository changes on demand.
    pub fn reloader(&self) -> &Arc<Reloader> {
        &self.reloader
    }

    /// Watches the repository and reloads on changes until the returned handle is dropped.
    pub fn watch(&self, config: WatchConfig) -> std::io::Result<RepositoryWatcher> {
        repository::watch(self.reloader.clone(), config)
    }

    pub fn router(&self) -> axum::Router {
        api::router(self.state.clone())
    }

    pub fn pool(&self) -> &Arc<WorkerPool> {
        &self.pool
    }

    /// Serves gRPC on `listener` until `shutdown` completes, then closes the listener without
    /// resetting a connection the kernel completed and lets calls in flight finish.
    pub async fn serve_grpc(
        &self,
        listener: TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let incoming = listener::incoming(listener, shutdown);
        api::grpc::serve(self.state.clone(), incoming, self.grpc.clone())
            .await
            .context("serving gRPC")
    }

    /// Writes what capture has queued and closes its files (blocking; call after draining).
    pub fn stop_capture(&self) {
        if let Some(c) = &self.capture {
            c.shutdown();
        }
    }
}

/// The low-priority lane for large requests, unless `--bulk-threads 0`.
fn bulk_lane(http: &crate::config::HttpArgs) -> anyhow::Result<Option<api::Bulk>> {
    match http.bulk_thread_count() {
        0 => Ok(None),
        threads => Ok(Some(api::Bulk::new(
            BulkLane::start(threads).context("starting the bulk-lane threads")?,
            http.bulk_body_bytes,
        ))),
    }
}

/// Starts capture when `--capture-dir` or `--capture-url` is set.
fn start_capture(args: &ServeArgs, metrics: &Arc<Metrics>) -> anyhow::Result<Option<Capture>> {
    let Some(settings) = args.capture.settings() else {
        return Ok(None);
    };
    let dir = settings.dir.clone().unwrap_or_default();
    // The URL is shown without its credentials (SinkUrl's Display).
    let url = settings.http.as_ref().map(|h| h.url.to_string());
    tracing::info!(dir = %dir.display(), url = ?url, rate = settings.sample_rate, replica = %settings.replica, "data capture on");
    let observer: Arc<dyn crate::capture::CaptureObserver> = metrics.capture().clone();
    let capture = Capture::start(settings, observer)
        .with_context(|| format!("starting capture into {}", dir.display()))?;
    Ok(Some(capture))
}

/// API keys (from `--api-keys-file`) and rate limits, with refusals counted in the metrics.
fn access_control(args: &ServeArgs, metrics: &Arc<Metrics>) -> anyhow::Result<Access> {
    let keys = match &args.auth.api_keys_file {
        Some(path) => auth::load_keys(path).map_err(anyhow::Error::msg)?,
        None => Vec::new(),
    };
    if !keys.is_empty() {
        tracing::info!(keys = keys.len(), "API keys required");
    }
    let observer: Arc<dyn auth::AccessObserver> = metrics.access().clone();
    Ok(Access::new(keys, args.rate.limits()).observed(observer))
}

/// The gRPC server's TLS: the HTTP server's certificate and key, when given.
fn grpc_tls(http: &crate::config::HttpArgs) -> anyhow::Result<Option<GrpcTls>> {
    let (Some(cert), Some(key)) = (&http.tls_cert, &http.tls_key) else {
        return Ok(None);
    };
    let read =
        |p: &std::path::Path| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
    let timeout = http.connection_limits().header_timeout;
    Ok(Some(GrpcTls::from_pem(read(cert)?, read(key)?, timeout)))
}

fn load(reloader: &Reloader) -> Vec<RepositoryError> {
    match reloader.reload() {
        Ok(report) => report.failures(),
        Err(e) => vec![e],
    }
}

/// Serves until SIGTERM or Ctrl-C, then drains in-flight requests (up to the grace period).
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let infera = Infera::new(&args)?;
    let bind = |port| async move {
        TcpListener::bind(SocketAddr::new(args.http.host, port))
            .await
            .with_context(|| format!("binding {}:{port}", args.http.host))
    };
    let listener = bind(args.http.port).await?;
    let metrics_listener = match args.http.metrics_port {
        Some(port) => Some(bind(port).await?),
        None => None,
    };
    let addr = listener.local_addr()?;
    let scheme = if infera.net.tls.is_some() {
        "https"
    } else {
        "http"
    };
    tracing::info!(
        %addr,
        tls = infera.net.tls.is_some(),
        metrics = ?metrics_listener.as_ref().and_then(|l| l.local_addr().ok()),
        repository = %args.model_repository.display(),
        workers = args.batching.worker_count(),
        "infera listening; Swagger UI at {scheme}://{addr}/docs"
    );
    let grpc_listener = match args.grpc.grpc_port {
        Some(port) => {
            let l = bind(port).await?;
            tracing::info!(grpc_addr = %l.local_addr()?, tls = infera.grpc.tls.is_some(), "gRPC listening (inference.GRPCInferenceService, grpc.health.v1.Health)");
            Some(l)
        }
        None => None,
    };
    let loader = infera.load_models_in_background();
    let watcher = if args.reload.watch_repository {
        infera
            .watch(args.reload.watch_config())
            .inspect_err(|e| tracing::error!(error = %e, "cannot watch the model repository; changes need a restart"))
            .ok()
    } else {
        None
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let metrics_server = metrics_listener.map(|l| {
        let infera_state = infera.state.clone();
        let mut stopped = stop_rx.clone();
        let drain = infera.net.drain;
        tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.wait_for(|s| *s).await;
            };
            listener::serve(
                l,
                None,
                api::metrics_router(infera_state),
                ConnectionLimits {
                    max_connections: 64,
                    header_timeout: Duration::from_secs(10),
                },
                Default::default(),
                shutdown,
                drain,
            )
            .await
        })
    });
    // The same signal stops the gRPC server, which then drains for at most the same grace
    // period, side by side with HTTP.
    let grace = infera.net.drain.grace;
    let grpc = async {
        let Some(listener) = grpc_listener else {
            return Ok(true);
        };
        let server = infera.serve_grpc(listener, stopped(stop_rx.clone()));
        tokio::select! {
            result = server => result.map(|()| true),
            _ = async { stopped(stop_rx.clone()).await; tokio::time::sleep(grace).await } => {
                tracing::warn!(grace_secs = grace.as_secs(), "grace period over; exiting with gRPC calls in flight");
                Ok(false)
            }
        }
    };
    let shutdown = async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    };
    let (http_drained, grpc_drained) =
        tokio::try_join!(run_until(&infera, listener, shutdown, grace), grpc)?;
    if let Some(task) = metrics_server {
        let _ = task.await;
    }
    let drained = http_drained && grpc_drained;
    drop(watcher);
    if drained {
        infera.pool().shutdown();
    } else {
        infera.pool().close();
    }
    tokio::task::block_in_place(|| infera.stop_capture());
    if loader.is_finished() {
        let _ = loader.join();
    }
    tracing::info!("stopped");
    Ok(())
}

/// Serves `listener` until `shutdown` completes, then lets in-flight requests finish for at
/// most `grace` (readiness answers 503 and every answer closes its connection meanwhile; see
/// `listener/`). Returns whether every request finished.
pub async fn run_until(
    infera: &Infera,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> anyhow::Result<bool> {
    let shutdown = async move {
        shutdown.await;
        tracing::info!("shutting down: finishing in-flight requests");
    };
    let drain = Drain {
        grace,
        idle_close: infera.net.drain.idle_close.min(grace),
    };
    let drained = listener::serve(
        listener,
        infera.net.tls.clone(),
        infera.router(),
        infera.net.limits,
        infera.state.draining.clone(),
        shutdown,
        drain,
    )
    .await;
    if !drained {
        tracing::warn!(
            grace_secs = grace.as_secs(),
            "grace period over; exiting with requests in flight"
        );
    }
    Ok(drained)
}

/// Completes when the shutdown signal has been sent (or its sender is gone).
async fn stopped(mut stop: tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}
