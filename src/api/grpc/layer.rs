//! Cross-cutting gRPC behaviour, applied to every call before it reaches a service: the call
//! metrics (`infera_grpc_*`, labelled by RPC from a fixed list and by status code name), access
//! control (`access.rs`) and usage per caller.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::http::{Request, Response};
use tonic::transport::server::TcpConnectInfo;
use tower::{Layer, Service};

use super::access;
use super::status::to_status;
use crate::api::access::Usage;
use crate::api::AppState;
use crate::auth::Caller;
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
    "grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
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

/// The HTTP status class that a gRPC code stands for, for the per-caller usage series (which
/// count REST and gRPC alike by 2xx / 4xx / 5xx).
fn status_class(code: &str) -> u16 {
    match code {
        "OK" => 200,
        "INTERNAL" | "UNKNOWN" | "UNAVAILABLE" | "DATA_LOSS" | "DEADLINE_EXCEEDED" => 500,
        _ => 400,
    }
}

/// Wraps the gRPC services with [`GrpcCalls`].
#[derive(Clone)]
pub struct GrpcLayer {
    state: AppState,
}

impl GrpcLayer {
    pub fn new(state: AppState) -> GrpcLayer {
        GrpcLayer { state }
    }
}

impl<S> Layer<S> for GrpcLayer {
    type Service = GrpcCalls<S>;

    fn layer(&self, inner: S) -> GrpcCalls<S> {
        GrpcCalls {
            inner,
            state: self.state.clone(),
        }
    }
}

/// Records every call's count, latency (to the response head) and the in-flight gauge; refuses
/// calls that fail access control before they are read; counts usage per caller.
#[derive(Clone)]
pub struct GrpcCalls<S> {
    inner: S,
    state: AppState,
}

impl<S, B, RB> Service<Request<B>> for GrpcCalls<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Future: Send + 'static,
    RB: Default + Send + 'static,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<RB>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let metrics = self.state.metrics.clone();
        let mut call = InFlight {
            metrics: metrics.clone(),
            rpc: rpc_label(request.uri().path()),
            started: Instant::now(),
            code: None,
        };
        metrics.grpc().in_flight().inc();
        let peer = request.extensions().get::<TcpConnectInfo>();
        let caller = match access::admit(&self.state, call.rpc, request.headers(), peer) {
            Ok(caller) => caller,
            Err(refused) => {
                let response = to_status(refused).into_http::<RB>();
                call.answered(code_label(&response));
                return Box::pin(async move { Ok(response) });
            }
        };
        let answer = self.inner.call(request);
        Box::pin(async move {
            let response = answer.await?;
            let code = code_label(&response);
            call.answered(code);
            if let Some(caller) = caller {
                record_usage(&metrics, &caller, &response, code);
            }
            Ok(response)
        })
    }
}

/// Counts a scoped call for its caller, with the model and instances an inference reported.
fn record_usage<RB>(metrics: &Metrics, caller: &Caller, response: &Response<RB>, code: &str) {
    let usage = response.extensions().get::<Usage>();
    metrics.access().caller_request(
        caller.name(),
        usage.map_or("none", |u| u.model.as_str()),
        status_class(code),
        usage.map_or(0, |u| u.instances),
    );
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
