//! `ModelInfer` with its request counted before it is decoded. tonic hands a codec's decoder the
//! whole received message (already held to `--grpc-max-message-bytes` by its length prefix);
//! [`InferDecoder`] walks it (`prescan.rs`) and only then lets prost decode it, without copying
//! (raw contents stay slices of the received buffer).
//!
//! The generated server builds its codec with `Default`, which can carry no limits, so
//! [`InferenceServer`] answers `ModelInfer` itself, as the generated code does but with this
//! codec, and passes every other call of the service to the generated server.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::http::{self, StatusCode};
use prost::bytes::Buf;
use prost::Message;
use tonic::codec::{Codec, DecodeBuf, Decoder};
use tonic::codegen::{Body, BoxFuture, StdError};
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::Status;
use tonic_prost::ProstEncoder;
use tower::Service;

use super::prescan::{check, Refusal};
use super::proto::grpc_inference_service_server::{
    GrpcInferenceService, GrpcInferenceServiceServer, SERVICE_NAME,
};
use super::proto::{ModelInferRequest, ModelInferResponse};
use super::service::InferenceService;
use super::status::to_status;
use crate::api::ApiError;
use crate::contract::DecodeBudget;
use crate::inference::PredictError;

/// The path of the call this module answers.
const MODEL_INFER: &str = "/inference.GRPCInferenceService/ModelInfer";

/// prost's codec for `ModelInfer`, with the request counted against `budget` first.
#[derive(Debug, Clone, Copy)]
pub struct InferCodec {
    budget: DecodeBudget,
}

impl Codec for InferCodec {
    type Encode = ModelInferResponse;
    type Decode = ModelInferRequest;
    type Encoder = ProstEncoder<ModelInferResponse>;
    type Decoder = InferDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        InferDecoder {
            budget: self.budget,
        }
    }
}

/// Decodes a `ModelInferRequest` once its lists are within the budget.
#[derive(Debug, Clone, Copy)]
pub struct InferDecoder {
    budget: DecodeBudget,
}

impl Decoder for InferDecoder {
    type Item = ModelInferRequest;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<ModelInferRequest>, Status> {
        // The message in one piece: tonic's buffer is contiguous, so this is a slice, not a copy.
        let message = src.copy_to_bytes(src.remaining());
        check(&message, &self.budget).map_err(|r| to_status(refused(r)))?;
        ModelInferRequest::decode(message)
            .map(Some)
            .map_err(|e| to_status(malformed(&e.to_string())))
    }
}

/// The error a refusal is answered with (through the one mapping to gRPC codes).
fn refused(refusal: Refusal) -> ApiError {
    match refusal {
        Refusal::Over(overrun) => PredictError::from(overrun).into(),
        Refusal::Malformed(m) => malformed(m.0),
    }
}

fn malformed(detail: &str) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "malformed_message",
        format!("the ModelInferRequest is not a valid protobuf message: {detail}"),
    )
}

/// `inference.GRPCInferenceService`: `ModelInfer` through [`InferCodec`], every other call
/// through the generated server.
#[derive(Clone)]
pub struct InferenceServer {
    generated: GrpcInferenceServiceServer<InferenceService>,
    service: Arc<InferenceService>,
    codec: InferCodec,
    max_message_bytes: usize,
}

impl InferenceServer {
    pub fn new(
        service: InferenceService,
        budget: DecodeBudget,
        max_message_bytes: usize,
    ) -> InferenceServer {
        let service = Arc::new(service);
        InferenceServer {
            generated: GrpcInferenceServiceServer::from_arc(service.clone())
                .max_decoding_message_size(max_message_bytes),
            service,
            codec: InferCodec { budget },
            max_message_bytes,
        }
    }
}

impl NamedService for InferenceServer {
    const NAME: &'static str = SERVICE_NAME;
}

impl<B> Service<http::Request<B>> for InferenceServer
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if request.uri().path() != MODEL_INFER {
            return self.generated.call(request);
        }
        let call = ModelInferCall(self.service.clone());
        let mut grpc =
            Grpc::new(self.codec).apply_max_message_size_config(Some(self.max_message_bytes), None);
        Box::pin(async move { Ok(grpc.unary(call, request).await) })
    }
}

/// The `ModelInfer` handler, as tonic's unary server calls it.
struct ModelInferCall(Arc<InferenceService>);

impl UnaryService<ModelInferRequest> for ModelInferCall {
    type Response = ModelInferResponse;
    type Future = BoxFuture<tonic::Response<ModelInferResponse>, Status>;

    fn call(&mut self, request: tonic::Request<ModelInferRequest>) -> Self::Future {
        let service = self.0.clone();
        Box::pin(async move { service.model_infer(request).await })
    }
}
