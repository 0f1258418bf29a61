//! `inference.GRPCInferenceService`: each RPC is a thin adapter over the same calls as the REST
//! V2 endpoints. RPCs of Triton's service that infera does not serve (ModelConfig,
//! ModelStatistics, RepositoryIndex, ...) are answered UNIMPLEMENTED by the router.

use tonic::{Request, Response, Status};

use super::health::is_ready;
use super::infer::{model_infer, version};
use super::proto::grpc_inference_service_server::GrpcInferenceService;
use super::proto::model_metadata_response::TensorMetadata;
use super::proto::{
    ModelInferRequest, ModelInferResponse, ModelMetadataRequest, ModelMetadataResponse,
    ModelReadyRequest, ModelReadyResponse, ServerLiveRequest, ServerLiveResponse,
    ServerMetadataRequest, ServerMetadataResponse, ServerReadyRequest, ServerReadyResponse,
};
use super::status::to_status;
use crate::api::v2::{routes as v2, types};
use crate::api::AppState;

pub struct InferenceService {
    state: AppState,
}

impl InferenceService {
    pub fn new(state: AppState) -> InferenceService {
        InferenceService { state }
    }
}

fn tensors(list: Vec<types::TensorMetadata>) -> Vec<TensorMetadata> {
    list.into_iter()
        .map(|t| TensorMetadata {
            name: t.name,
            datatype: t.datatype,
            shape: t.shape,
        })
        .collect()
}

#[tonic::async_trait]
impl GrpcInferenceService for InferenceService {
    async fn server_live(
        &self,
        _: Request<ServerLiveRequest>,
    ) -> Result<Response<ServerLiveResponse>, Status> {
        Ok(Response::new(ServerLiveResponse { live: true }))
    }

    async fn server_ready(
        &self,
        _: Request<ServerReadyRequest>,
    ) -> Result<Response<ServerReadyResponse>, Status> {
        Ok(Response::new(ServerReadyResponse {
            ready: is_ready(&self.state),
        }))
    }

    async fn model_ready(
        &self,
        request: Request<ModelReadyRequest>,
    ) -> Result<Response<ModelReadyResponse>, Status> {
        let request = request.into_inner();
        let version = version(&request.name, &request.version).map_err(to_status)?;
        let ready = v2::model_is_ready(&self.state, &request.name, version).map_err(to_status)?;
        Ok(Response::new(ModelReadyResponse { ready }))
    }

    async fn server_metadata(
        &self,
        _: Request<ServerMetadataRequest>,
    ) -> Result<Response<ServerMetadataResponse>, Status> {
        Ok(Response::new(ServerMetadataResponse {
            name: "infera".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            extensions: Vec::new(),
        }))
    }

    async fn model_metadata(
        &self,
        request: Request<ModelMetadataRequest>,
    ) -> Result<Response<ModelMetadataResponse>, Status> {
        let request = request.into_inner();
        let version = version(&request.name, &request.version).map_err(to_status)?;
        let m = v2::metadata(&self.state, &request.name, version).map_err(to_status)?;
        Ok(Response::new(ModelMetadataResponse {
            name: m.name,
            versions: m.versions,
            platform: m.platform,
            inputs: tensors(m.inputs),
            outputs: tensors(m.outputs),
        }))
    }

    async fn model_infer(
        &self,
        request: Request<ModelInferRequest>,
    ) -> Result<Response<ModelInferResponse>, Status> {
        let (answer, usage) = model_infer(&self.state, request.into_inner())
            .await
            .map_err(to_status)?;
        let mut response = Response::new(answer);
        response.extensions_mut().insert(usage);
        Ok(response)
    }
}
