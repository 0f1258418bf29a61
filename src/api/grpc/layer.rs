//! Cross-cutting gRPC behaviour, applied to every call before it reaches a service: the call
//! metrics (`infera_grpc_*`, labelled by RPC from a fixed list and by status code name).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::http::{Request, Response};
use tower::{Layer, Service};

use crate::api::AppState;
use crate::monitoring::Metrics;

/// RPC label for a path that names no served method (a closed set: never the raw path).
pub const UNMATCHED_RPC: &str = "unmatched";

/// Every RPC infera serves, as `package.Service/Method`: the values of the `rpc` label.
pub const RPCS: &[&str] = &[
    "inference.GRPCInferenceService/ServerLive",
    "inference.GRPCInferenceService/ServerReady",
    "inference.GRPCInferenceService/ModelReady",
    "inference.GRPCInferenceService/ServerMetadata",
    "inference.GRPCInferenceService/ModelMetadata",
    "inference.GRPCInferenceService/ModelInfer",
    "grpc.health.v1.Health/Check",
    "grpc.health.v1.Health/Watch",
    "grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
];

/// gRPC status code names by number (the `code` label).
const CODES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// The `rpc` label of a request path (`/package.Service/Method`).
pub fn rpc_label(path: &str) -> &'static str {
    let name = path.strip_prefix('/').unwrap_or(path);
    RPCS.iter()
        .find(|r| **r == name)
        .copied()
        .unwrap_or(UNMATCHED_RPC)
}

/// The `code` label of a response head. Failures are answered "trailers-only", with
/// `grpc-status` in the head; a head without it starts a successful answer.
fn code_label<B>(response: &Response<B>) -> &'static str {
    match response.headers().get("grpc-status") {
        None => CODES[0],
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.parse::<usize>().ok())
            .and_then(|n| CODES.get(n).copied())
            .unwrap_or("UNKNOWN"),
    }
}

/// Wraps the gRPC services with [`GrpcCalls`].
#[derive(Clone)]
pub struct GrpcLayer {
    metrics: Arc<Metrics>,
}

impl GrpcLayer {
    pub fn new(state: AppState) -> GrpcLayer {
        GrpcLayer {
            metrics: state.metrics,
        }
    }
}

impl<S> Layer<S> for GrpcLayer {
    type Service = GrpcCalls<S>;

    fn layer(&self, inner: S) -> GrpcCalls<S> {
        GrpcCalls {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// Records every call's count, latency (to the response head) and the in-flight gauge.
#[derive(Clone)]
pub struct GrpcCalls<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S, B, RB> Service<Request<B>> for GrpcCalls<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Future: Send + 'static,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<RB>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let mut call = InFlight {
            metrics: self.metrics.clone(),
            rpc: rpc_label(request.uri().path()),
            started: Instant::now(),
            code: None,
        };
        self.metrics.grpc().in_flight().inc();
        let answer = self.inner.call(request);
        Box::pin(async move {
            let response = answer.await?;
            call.answered(code_label(&response));
            Ok(response)
        })
    }
}

/// Records the call however its future ends; a call dropped before its answer (client gone)
/// counts as CANCELLED.
struct InFlight {
    metrics: Arc<Metrics>,
    rpc: &'static str,
    started: Instant,
    code: Option<&'static str>,
}

impl InFlight {
    fn answered(&mut self, code: &'static str) {
        self.code = Some(code);
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.metrics.grpc().in_flight().dec();
        self.metrics.grpc().call(
            self.rpc,
            self.code.unwrap_or("CANCELLED"),
            self.started.elapsed(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_come_from_closed_sets() {
        assert_eq!(
            rpc_label("/inference.GRPCInferenceService/ModelInfer"),
            "inference.GRPCInferenceService/ModelInfer"
        );
        assert_eq!(
            rpc_label("/inference.GRPCInferenceService/ModelConfig"),
            UNMATCHED_RPC
        );
        assert_eq!(rpc_label("/x/../../etc"), UNMATCHED_RPC);
        let mut r = Response::new(());
        assert_eq!(code_label(&r), "OK");
        r.headers_mut().insert("grpc-status", "5".parse().unwrap());
        assert_eq!(code_label(&r), "NOT_FOUND");
        r.headers_mut().insert("grpc-status", "99".parse().unwrap());
        assert_eq!(code_label(&r), "UNKNOWN");
        assert_eq!(
            CODES[tonic::Code::Unauthenticated as usize],
            "UNAUTHENTICATED"
        );
        assert_eq!(
            CODES[tonic::Code::ResourceExhausted as usize],
            "RESOURCE_EXHAUSTED"
        );
    }
}
