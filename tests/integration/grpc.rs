//! The gRPC Open Inference Protocol on a real socket (127.0.0.1:0), called with the generated
//! tonic client: metadata, readiness, typed and raw inference against the golden files, output
//! selection, error codes (with the REST error kinds), the message size limit checked before the
//! message is read, overload with retry info, the health service, metrics and shutdown.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::future::join_all;
use infera::api::grpc::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use infera::api::grpc::proto::model_infer_request::{InferInputTensor, InferRequestedOutputTensor};
use infera::api::grpc::proto::{
    InferTensorContents, ModelInferRequest, ModelInferResponse, ModelMetadataRequest,
    ModelReadyRequest, ServerLiveRequest, ServerMetadataRequest, ServerReadyRequest,
};
use infera::server::Infera;
use serde_json::Value;
use tonic::transport::Channel;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tonic_types::StatusExt;

use crate::common::{args, eventually, loaded, metric, shipped, shipped_models};
use crate::onnx;

/// A gRPC server on 127.0.0.1:0; stops when dropped.
pub struct GrpcServer {
    addr: std::net::SocketAddr,
    infera: std::sync::Arc<Infera>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl GrpcServer {
    pub async fn start(infera: Infera) -> GrpcServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let infera = std::sync::Arc::new(infera);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = infera.clone();
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            serving.serve_grpc(listener, shutdown).await.unwrap();
        });
        GrpcServer {
            addr,
            infera,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    pub async fn client(&self) -> GrpcInferenceServiceClient<Channel> {
        GrpcInferenceServiceClient::new(self.channel().await).max_encoding_message_size(usize::MAX)
    }

    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(15), self.task.take().unwrap())
            .await
            .expect("the gRPC server stops")
            .unwrap();
    }
}

impl Drop for GrpcServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn golden(model: &str) -> Value {
    let path = shipped_models().join(model).join("1").join("golden.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn floats(v: &Value) -> Vec<f32> {
    match v {
        Value::Array(items) => items.iter().flat_map(floats).collect(),
        x => vec![x.as_f64().unwrap() as f32],
    }
}

fn rows_of(g: &Value) -> (Vec<f32>, Vec<i64>) {
    let rows = g["inputs"].as_array().unwrap();
    let width = rows[0].as_array().unwrap().len();
    (floats(&g["inputs"]), vec![rows.len() as i64, width as i64])
}

pub fn tensor(name: &str, shape: Vec<i64>, contents: Option<Vec<f32>>) -> InferInputTensor {
    InferInputTensor {
        name: name.into(),
        datatype: "FP32".into(),
        shape,
        parameters: HashMap::new(),
        contents: contents.map(|fp32_contents| InferTensorContents {
            fp32_contents,
            ..Default::default()
        }),
    }
}

fn le_bytes(values: &[f32]) -> prost::bytes::Bytes {
    values
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect::<Vec<u8>>()
        .into()
}

/// The golden request for `model`, typed (`fp32_contents`) or raw (`raw_input_contents`).
pub fn golden_request(model: &str, raw: bool) -> ModelInferRequest {
    let g = golden(model);
    let (values, shape) = rows_of(&g);
    let input = g["input"].as_str().unwrap();
    ModelInferRequest {
        model_name: model.into(),
        id: format!("{model}-{raw}"),
        inputs: vec![tensor(input, shape, (!raw).then(|| values.clone()))],
        raw_input_contents: if raw { vec![le_bytes(&values)] } else { vec![] },
        ..Default::default()
    }
}

/// Checks every output of a response against the golden file (floats within its tolerance,
/// integers exactly), whichever encoding the response used.
pub fn assert_golden(model: &str, reply: &ModelInferResponse) {
    let g = golden(model);
    let tol = g["tolerance"].as_f64().unwrap();
    let raw = !reply.raw_output_contents.is_empty();
    assert_eq!(reply.outputs.len(), g["outputs"].as_object().unwrap().len());
    for (i, out) in reply.outputs.iter().enumerate() {
        let want = floats(&g["outputs"][&out.name]);
        let got: Vec<f64> = match (out.datatype.as_str(), raw) {
            ("FP32", true) => reply.raw_output_contents[i]
                .chunks_exact(4)
                .map(|c| f64::from(f32::from_le_bytes(c.try_into().unwrap())))
                .collect(),
            ("INT64", true) => reply.raw_output_contents[i]
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f64)
                .collect(),
            ("FP32", false) => {
                let c = out.contents.as_ref().unwrap();
                c.fp32_contents.iter().map(|x| f64::from(*x)).collect()
            }
            ("INT64", false) => {
                let c = out.contents.as_ref().unwrap();
                c.int64_contents.iter().map(|x| *x as f64).collect()
            }
            (other, _) => panic!("unexpected datatype {other}"),
        };
        assert_eq!(
            out.shape.iter().product::<i64>() as usize,
            got.len(),
            "{model}/{}: shape {:?} holds the data",
            out.name,
            out.shape
        );
        assert_eq!(got.len(), want.len(), "{model}/{}", out.name);
        for (k, (g, w)) in got.iter().zip(&want).enumerate() {
            let w = f64::from(*w);
            assert!(
                (g - w).abs() <= tol * w.abs().max(1.0),
                "{model}/{} element {k}: got {g}, want {w}",
                out.name
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_readiness_and_golden_inference_typed_and_raw() {
    let server = GrpcServer::start(shipped()).await;
    let mut client = server.client().await;
    assert!(
        client
            .server_live(ServerLiveRequest {})
            .await
            .unwrap()
            .into_inner()
            .live
    );
    assert!(
        client
            .server_ready(ServerReadyRequest {})
            .await
            .unwrap()
            .into_inner()
            .ready
    );
    let meta = client
        .server_metadata(ServerMetadataRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(meta.name, "infera");
    assert_eq!(meta.version, env!("CARGO_PKG_VERSION"));
    for model in ["iris", "digits", "diabetes", "breast-cancer"] {
        for version in ["", "1"] {
            let ready = client
                .model_ready(ModelReadyRequest {
                    name: model.into(),
                    version: version.into(),
                })
                .await
                .unwrap()
                .into_inner();
            assert!(ready.ready, "{model} v{version:?}");
        }
        let m = client
            .model_metadata(ModelMetadataRequest {
                name: model.into(),
                version: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        let g = golden(model);
        assert_eq!(m.platform, "onnx_onnxv1");
        assert_eq!(m.versions, vec!["1"]);
        assert_eq!(m.inputs.len(), 1);
        assert_eq!(m.inputs[0].name, g["input"].as_str().unwrap());
        assert_eq!(m.inputs[0].shape, vec![-1, rows_of(&g).1[1]]);
        for raw in [false, true] {
            let reply = client
                .model_infer(golden_request(model, raw))
                .await
                .unwrap()
                .into_inner();
            assert_eq!(reply.model_name, model);
            assert_eq!(reply.model_version, "1");
            assert_eq!(
                reply.id,
                format!("{model}-{raw}"),
                "the request id is echoed"
            );
            assert_eq!(
                reply.raw_output_contents.is_empty(),
                !raw,
                "outputs are encoded as the inputs were"
            );
            assert!(reply.outputs.iter().all(|o| o.contents.is_some() != raw));
            assert_golden(model, &reply);
        }
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outputs_are_selected_and_the_encoding_can_be_asked_for() {
    let server = GrpcServer::start(shipped()).await;
    let mut client = server.client().await;
    let mut request = golden_request("iris", false);
    request.outputs = vec![InferRequestedOutputTensor {
        name: "probabilities".into(),
        parameters: HashMap::new(),
    }];
    request.parameters.insert(
        "binary_data_output".into(),
        infera::api::grpc::proto::InferParameter {
            parameter_choice: Some(
                infera::api::grpc::proto::infer_parameter::ParameterChoice::BoolParam(true),
            ),
        },
    );
    let reply = client.model_infer(request).await.unwrap().into_inner();
    assert_eq!(reply.outputs.len(), 1);
    assert_eq!(reply.outputs[0].name, "probabilities");
    assert_eq!(reply.raw_output_contents.len(), 1, "raw, as asked");
    let g = golden("iris");
    let want = floats(&g["outputs"]["probabilities"]);
    assert_eq!(reply.raw_output_contents[0].len(), want.len() * 4);
}

async fn code_of(
    client: &mut GrpcInferenceServiceClient<Channel>,
    request: ModelInferRequest,
) -> tonic::Status {
    client.model_infer(request).await.unwrap_err()
}

pub fn error_type(status: &tonic::Status) -> &str {
    status
        .metadata()
        .get("infera-error-type")
        .expect("error type metadata")
        .to_str()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_carry_grpc_codes_and_the_rest_error_kinds() {
    let server = GrpcServer::start(shipped()).await;
    let mut client = server.client().await;

    let mut unknown = golden_request("iris", true);
    unknown.model_name = "nope".into();
    let s = code_of(&mut client, unknown).await;
    assert_eq!(s.code(), Code::NotFound);
    assert_eq!(error_type(&s), "model_not_found");
    assert!(s.message().contains("nope"));

    for version in ["9", "abc", "0"] {
        let mut request = golden_request("iris", true);
        request.model_version = version.into();
        let s = code_of(&mut client, request).await;
        assert_eq!(s.code(), Code::NotFound, "version {version:?}");
        assert_eq!(error_type(&s), "version_not_found");
    }

    let mut wrong_type = golden_request("iris", true);
    wrong_type.inputs[0].datatype = "FP64".into();
    let s = code_of(&mut client, wrong_type).await;
    assert_eq!(s.code(), Code::InvalidArgument);
    assert_eq!(error_type(&s), "wrong_type");

    // Declared shapes are held against --max-elements before anything is decoded...
    let mut huge = golden_request("iris", true);
    huge.inputs[0].shape = vec![1 << 40, 4];
    let s = code_of(&mut client, huge).await;
    assert_eq!(s.code(), Code::InvalidArgument);
    assert_eq!(error_type(&s), "too_many_elements");
    // ...and a shape within the limit against the data actually sent, before any buffer exists.
    for raw in [true, false] {
        let mut more = golden_request("iris", raw);
        more.inputs[0].shape = vec![1 << 20, 4];
        let s = code_of(&mut client, more).await;
        assert_eq!(s.code(), Code::InvalidArgument);
        assert_eq!(error_type(&s), "wrong_shape");
        assert!(s.message().contains("4194304"), "{}", s.message());
    }

    // Data of the right size but a width the model does not take: the contract check.
    let mut wrong_width = golden_request("iris", false);
    let n = wrong_width.inputs[0]
        .contents
        .as_ref()
        .unwrap()
        .fp32_contents
        .len() as i64;
    wrong_width.inputs[0].shape = vec![n / 2, 2];
    let s = code_of(&mut client, wrong_width).await;
    assert_eq!(s.code(), Code::InvalidArgument);
    assert_eq!(error_type(&s), "wrong_shape");
    assert!(s.message().contains("the model takes"), "{}", s.message());

    let mut nan = golden_request("iris", false);
    nan.inputs[0].contents.as_mut().unwrap().fp32_contents[0] = f32::NAN;
    let s = code_of(&mut client, nan).await;
    assert_eq!(s.code(), Code::InvalidArgument);
    assert_eq!(error_type(&s), "non_finite_value");

    let mut neither = golden_request("iris", true);
    neither.raw_input_contents.clear();
    let s = code_of(&mut client, neither).await;
    assert_eq!(s.code(), Code::InvalidArgument);
    assert!(
        s.message().contains("fp32_contents has 0"),
        "{}",
        s.message()
    );

    let missing = ModelReadyRequest {
        name: "nope".into(),
        version: String::new(),
    };
    let s = client.model_ready(missing).await.unwrap_err();
    assert_eq!(s.code(), Code::NotFound);
    assert!(s.get_details_retry_info().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_over_the_limit_is_refused_from_its_length_prefix() {
    let infera = loaded(&shipped_models(), &["--grpc-max-message-bytes", "4096"]);
    let server = GrpcServer::start(infera).await;
    let mut client = server.client().await;
    let rows = 300; // 300 x 4 x 4 bytes of raw data: over 4096
    let values = vec![1.0f32; rows * 4];
    let request = ModelInferRequest {
        model_name: "iris".into(),
        inputs: vec![tensor("float_input", vec![rows as i64, 4], None)],
        raw_input_contents: vec![le_bytes(&values)],
        ..Default::default()
    };
    let s = client.model_infer(request).await.unwrap_err();
    assert_eq!(s.code(), Code::OutOfRange, "{s:?}");
    assert!(s.message().contains("4096"), "{}", s.message());
    // Under the limit, the same connection still serves.
    let reply = client
        .model_infer(golden_request("iris", true))
        .await
        .unwrap();
    assert_golden("iris", reply.get_ref());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_is_resource_exhausted_with_retry_info() {
    const WIDTH: usize = 512;
    let repo = tempfile::tempdir().unwrap();
    onnx::slow(repo.path(), "slow", WIDTH as i64, 400);
    let infera = loaded(
        repo.path(),
        &[
            "--workers",
            "1",
            "--queue-capacity",
            "1",
            "--retry-after-secs",
            "3",
        ],
    );
    let server = GrpcServer::start(infera).await;
    let client = server.client().await;
    let request = ModelInferRequest {
        model_name: "slow".into(),
        inputs: vec![tensor("x", vec![1, WIDTH as i64], None)],
        raw_input_contents: vec![le_bytes(&[0.5; WIDTH])],
        ..Default::default()
    };
    let calls = (0..16).map(|_| {
        let mut client = client.clone();
        let request = request.clone();
        tokio::spawn(async move { client.model_infer(request).await })
    });
    let results: Vec<_> = join_all(calls)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let ok = results.iter().filter(|r| r.is_ok()).count();
    let refused: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(ok >= 1, "accepted calls complete");
    assert!(
        !refused.is_empty(),
        "16 concurrent slow calls overflow a queue of 1"
    );
    for s in refused {
        assert_eq!(s.code(), Code::ResourceExhausted, "{s:?}");
        assert_eq!(error_type(s), "overloaded");
        assert_eq!(s.metadata().get("retry-after").unwrap(), "3");
        let retry = s
            .get_details_retry_info()
            .expect("RetryInfo in the status details");
        assert_eq!(retry.retry_delay, Some(Duration::from_secs(3)));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_and_health_follow_model_loading() {
    // Not loaded yet: every version is still loading.
    let infera = Infera::new(&args(&shipped_models(), &[])).unwrap();
    let server = GrpcServer::start(infera).await;
    let mut client = server.client().await;
    let mut health = HealthClient::new(server.channel().await);
    let check = |service: &str| HealthCheckRequest {
        service: service.into(),
    };
    assert!(
        !client
            .server_ready(ServerReadyRequest {})
            .await
            .unwrap()
            .into_inner()
            .ready
    );
    let ready = client
        .model_ready(ModelReadyRequest {
            name: "iris".into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!ready.ready);
    let s = client
        .model_infer(golden_request("iris", true))
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::Unavailable);
    assert_eq!(error_type(&s), "model_not_ready");
    assert!(
        s.get_details_retry_info().is_some(),
        "loading is worth retrying"
    );
    for service in ["", "inference.GRPCInferenceService"] {
        let status = health
            .check(check(service))
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::NotServing as i32, "{service:?}");
    }
    let live = health
        .check(check("live"))
        .await
        .unwrap()
        .into_inner()
        .status;
    assert_eq!(live, ServingStatus::Serving as i32);

    let loader = server.infera.load_models_in_background();
    let _ = tokio::task::spawn_blocking(move || loader.join())
        .await
        .unwrap();
    let mut serving = false;
    for _ in 0..10_000 {
        let status = health.check(check("")).await.unwrap().into_inner().status;
        if status == ServingStatus::Serving as i32 {
            serving = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(serving, "health turns SERVING once every model is loaded");
    assert!(
        client
            .server_ready(ServerReadyRequest {})
            .await
            .unwrap()
            .into_inner()
            .ready
    );
    let s = health.check(check("no.such.Service")).await.unwrap_err();
    assert_eq!(s.code(), Code::NotFound);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_are_counted_by_rpc_and_code_and_unserved_rpcs_are_unimplemented() {
    let server = GrpcServer::start(shipped()).await;
    let mut client = server.client().await;
    client.server_live(ServerLiveRequest {}).await.unwrap();
    client
        .model_infer(golden_request("iris", true))
        .await
        .unwrap();
    let mut unknown = golden_request("iris", true);
    unknown.model_name = "nope".into();
    client.model_infer(unknown).await.unwrap_err();
    // An RPC of Triton's service that infera does not serve, called by path.
    let mut raw = tonic::client::Grpc::new(server.channel().await);
    raw.ready().await.unwrap();
    let path = "/inference.GRPCInferenceService/ModelConfig"
        .parse()
        .unwrap();
    let s = raw
        .unary::<ServerLiveRequest, ServerLiveRequest, _>(
            tonic::Request::new(ServerLiveRequest {}),
            path,
            tonic_prost::ProstCodec::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::Unimplemented);

    let metrics = server.infera.state.metrics.clone();
    let infer = "inference.GRPCInferenceService/ModelInfer";
    eventually("the calls are recorded", || {
        let text = metrics.render();
        metric(
            &text,
            &format!("infera_grpc_requests_total{{code=\"OK\",rpc=\"{infer}\"}}"),
        ) == Some(1.0)
            && metric(
                &text,
                &format!("infera_grpc_requests_total{{code=\"NOT_FOUND\",rpc=\"{infer}\"}}"),
            ) == Some(1.0)
            && metric(
                &text,
                "infera_grpc_requests_total{code=\"UNIMPLEMENTED\",rpc=\"unmatched\"}",
            ) == Some(1.0)
    })
    .await;
    let text = metrics.render();
    assert_eq!(
        metric(
            &text,
            "infera_model_instances_total{model=\"iris\",protocol=\"grpc\",version=\"1\"}"
        ),
        Some(golden("iris")["inputs"].as_array().unwrap().len() as f64),
        "gRPC inference goes through the predictor and its model metrics"
    );
    assert_eq!(metric(&text, "infera_grpc_requests_in_flight"), Some(0.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_the_grpc_server() {
    let server = GrpcServer::start(shipped()).await;
    let mut client = server.client().await;
    client.server_live(ServerLiveRequest {}).await.unwrap();
    let addr = server.addr;
    server.stop().await;
    let refused = tokio::net::TcpStream::connect(addr).await;
    assert!(refused.is_err(), "nothing listens after shutdown");
}

fn with_key<T>(message: T, key: Option<&str>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(key) = key {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {key}").parse().unwrap());
    }
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_scopes_and_rate_limits_apply_to_grpc_calls() {
    const APP: &str = "grpc-app-key-0123456789";
    const READER: &str = "grpc-reader-key-0123456789";
    let repo = crate::common::repo_with(&["iris"]);
    let keys = repo.path().join("keys.toml");
    std::fs::write(
        &keys,
        format!(
            "[[keys]]\nname = \"app\"\nsha256 = \"{}\"\nscopes = [\"predict\"]\nrps = 0.001\nburst = 2\n\n\
             [[keys]]\nname = \"reader\"\nsha256 = \"{}\"\nscopes = [\"read\"]\n",
            infera::auth::hash_key(APP),
            infera::auth::hash_key(READER),
        ),
    )
    .unwrap();
    let infera = loaded(repo.path(), &["--api-keys-file", keys.to_str().unwrap()]);
    let server = GrpcServer::start(infera).await;
    let mut client = server.client().await;
    let mut health = HealthClient::new(server.channel().await);

    // Probes need no key.
    assert!(client
        .server_live(with_key(ServerLiveRequest {}, None))
        .await
        .is_ok());
    assert!(client
        .server_ready(with_key(ServerReadyRequest {}, None))
        .await
        .is_ok());
    let probe = HealthCheckRequest {
        service: String::new(),
    };
    assert!(health.check(probe).await.is_ok());

    // No key, a wrong key, the wrong scope.
    let infer = |key| with_key(golden_request("iris", true), key);
    let s = client.model_infer(infer(None)).await.unwrap_err();
    assert_eq!(s.code(), Code::Unauthenticated, "{s:?}");
    let s = client
        .model_infer(infer(Some("not-a-key")))
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::Unauthenticated);
    assert!(!s.message().contains("not-a-key"), "the key is not echoed");
    let s = client.model_infer(infer(Some(READER))).await.unwrap_err();
    assert_eq!(s.code(), Code::PermissionDenied);
    let meta = ServerMetadataRequest {};
    let s = client
        .server_metadata(with_key(meta, Some(APP)))
        .await
        .unwrap_err();
    assert_eq!(
        s.code(),
        Code::PermissionDenied,
        "metadata needs the read scope"
    );
    assert!(client
        .server_metadata(with_key(meta, Some(READER)))
        .await
        .is_ok());

    // The app key predicts until its burst of 2 is spent, then RESOURCE_EXHAUSTED + RetryInfo.
    for _ in 0..2 {
        let reply = client.model_infer(infer(Some(APP))).await.unwrap();
        assert_golden("iris", reply.get_ref());
    }
    let s = client.model_infer(infer(Some(APP))).await.unwrap_err();
    assert_eq!(s.code(), Code::ResourceExhausted, "{s:?}");
    assert_eq!(error_type(&s), "rate_limited");
    assert!(s.get_details_retry_info().is_some());

    let text = server.infera.state.metrics.render();
    assert_eq!(
        metric(
            &text,
            "infera_caller_instances_total{caller=\"app\",model=\"iris\"}"
        ),
        Some(2.0 * golden("iris")["inputs"].as_array().unwrap().len() as f64),
        "gRPC usage is counted per caller and model"
    );
    assert!(!text.contains(APP), "keys never reach the metrics");
    server.stop().await;
}

/// gRPC inputs are counted for drift once per instance, typed and raw, like every REST
/// protocol's (drift_protocols.rs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_inputs_are_counted_for_drift() {
    let server = GrpcServer::start(shipped()).await;
    let router = server.infera.router();
    let pending = || async {
        let view = crate::common::get(&router, "/models/iris/monitoring")
            .await
            .json();
        view["drift"]["pending"].as_u64().unwrap()
    };
    assert_eq!(pending().await, 0);
    let rows = golden("iris")["inputs"].as_array().unwrap().len() as u64;
    let mut client = server.client().await;
    client
        .model_infer(golden_request("iris", false))
        .await
        .unwrap();
    assert_eq!(pending().await, rows, "typed contents");
    client
        .model_infer(golden_request("iris", true))
        .await
        .unwrap();
    assert_eq!(pending().await, 2 * rows, "raw contents");
    server.stop().await;
}
