//! The Open Inference Protocol over gRPC (KServe V2 / Triton `inference.GRPCInferenceService`),
//! the standard gRPC health service and, on request, server reflection, served on their own port.
//! The RPCs are thin adapters over the same calls as the REST V2 endpoints: inference goes
//! through `Predictor::infer`, errors through `ApiError` (mapped to gRPC codes in `status.rs`).

mod access;
mod codec;
mod health;
mod infer;
mod layer;
mod prescan;
mod service;
mod status;
mod tensors;
mod wire;

use std::time::Duration;

use tonic::transport::server::ServerTlsConfig;
use tonic::transport::{Identity, Server};

use crate::api::AppState;

pub use prescan::{check as check_model_infer, Refusal};
pub use status::to_status;
pub use wire::Malformed;

/// The generated protocol messages, server and client (`proto/grpc_predict_v2.proto`).
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod proto {
    tonic::include_proto!("inference");

    /// The encoded descriptors of the protocol, served by reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("inference_descriptor");
}

/// How the gRPC server listens and what it accepts.
#[derive(Debug, Clone)]
pub struct GrpcSettings {
    /// Largest request message, checked against the length prefix before the message is read.
    pub max_message_bytes: usize,
    /// Concurrent calls (HTTP/2 streams) per connection.
    pub max_concurrent_streams: u32,
    /// Serve `grpc.reflection.v1` / `v1alpha`.
    pub reflection: bool,
    /// Serve TLS (HTTP/2 over TLS with ALPN `h2`) with this certificate chain and key.
    pub tls: Option<GrpcTls>,
}

/// The gRPC server's TLS identity and handshake deadline.
#[derive(Clone)]
pub struct GrpcTls {
    identity: Identity,
    handshake_timeout: Duration,
}

impl std::fmt::Debug for GrpcTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GrpcTls")
    }
}

impl GrpcTls {
    /// PEM certificate chain and private key (the HTTP server's `--tls-cert` / `--tls-key`);
    /// a handshake not finished within `handshake_timeout` is dropped.
    pub fn from_pem(cert: Vec<u8>, key: Vec<u8>, handshake_timeout: Duration) -> GrpcTls {
        GrpcTls {
            identity: Identity::from_pem(cert, key),
            handshake_timeout,
        }
    }

    fn config(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(self.identity.clone())
            .timeout(self.handshake_timeout)
    }
}

/// Serves gRPC on `listener` until `shutdown` completes, then lets calls in flight finish.
pub async fn serve(
    state: AppState,
    incoming: impl tokio_stream::Stream<Item = std::io::Result<tokio::net::TcpStream>> + Send + 'static,
    settings: GrpcSettings,
) -> anyhow::Result<()> {
    let (readiness, health_service) = health::Readiness::start(state.clone()).await;
    let readiness = tokio::spawn(readiness.track());
    // ModelInfer's requests are counted against the request limits before prost decodes them.
    let inference = codec::InferenceServer::new(
        service::InferenceService::new(state.clone()),
        state.predictor.decode_budget(),
        settings.max_message_bytes,
    );
    let mut server = Server::builder();
    if let Some(tls) = &settings.tls {
        // Handshakes run concurrently (tonic spawns each), bounded by the timeout.
        server = server.tls_config(tls.config())?;
    }
    let mut server = server
        .max_concurrent_streams(settings.max_concurrent_streams)
        .concurrency_limit_per_connection(settings.max_concurrent_streams as usize)
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .layer(layer::GrpcLayer::new(state));
    let mut router = server.add_service(inference).add_service(health_service);
    if settings.reflection {
        // v1 and v1alpha: grpcurl and grpcio-reflection's clients still ask for v1alpha.
        let builder = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        };
        router = router
            .add_service(builder().build_v1()?)
            .add_service(builder().build_v1alpha()?);
    }
    // The end of `incoming` is the shutdown signal: with a signal that never fires, tonic still
    // finishes its connections gracefully when the stream ends (with no signal at all it would
    // return at once, leaving calls in flight behind).
    let result = router
        .serve_with_incoming_shutdown(incoming, std::future::pending::<()>())
        .await;
    readiness.abort();
    Ok(result?)
}
