//! gRPC `ModelInfer` requests counted before they are decoded (src/api/grpc/prescan.rs), through
//! real gRPC clients: every request list refused one past its limit with INVALID_ARGUMENT and
//! the REST error kind, served at the limit; bytes that are not a message refused as
//! INVALID_ARGUMENT; and 2,000,000 empty `inputs` (4 MB on the wire, 654 MB once decoded by
//! prost) refused by an `infera` process whose peak memory (VmHWM) grows by less than 12 MiB.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use infera::api::grpc::proto::model_infer_request::{InferInputTensor, InferRequestedOutputTensor};
use infera::api::grpc::proto::{
    InferParameter, InferTensorContents, ModelInferRequest, ModelInferResponse,
};
use prost::bytes::BufMut;
use prost::Message;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::Channel;
use tonic::Code;

use crate::common::{loaded, shipped_models};
use crate::grpc::{assert_golden, error_type, golden_request, tensor, GrpcServer};

/// Sends bytes as they are (any message, or none) and decodes the answer as prost does.
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

struct RawEncoder;
struct ReplyDecoder;

impl Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for ReplyDecoder {
    type Item = ModelInferResponse;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        src: &mut DecodeBuf<'_>,
    ) -> Result<Option<ModelInferResponse>, tonic::Status> {
        ModelInferResponse::decode(src)
            .map(Some)
            .map_err(|e| tonic::Status::internal(e.to_string()))
    }
}

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = ModelInferResponse;
    type Encoder = RawEncoder;
    type Decoder = ReplyDecoder;

    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }

    fn decoder(&mut self) -> ReplyDecoder {
        ReplyDecoder
    }
}

/// `ModelInfer` with `bytes` as the request message.
async fn infer_raw(
    channel: Channel,
    bytes: Vec<u8>,
) -> Result<tonic::Response<ModelInferResponse>, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("channel ready");
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(
        "/inference.GRPCInferenceService/ModelInfer",
    );
    grpc.unary(tonic::Request::new(bytes), path, RawCodec).await
}

fn refused_with(result: Result<impl std::fmt::Debug, tonic::Status>, kind: &str, flag: &str) {
    let status = result.expect_err("refused");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(error_type(&status), kind, "{status:?}");
    assert!(status.message().contains(flag), "{}", status.message());
}

fn parameter() -> InferParameter {
    InferParameter {
        parameter_choice: Some(
            infera::api::grpc::proto::infer_parameter::ParameterChoice::BoolParam(true),
        ),
    }
}

fn output(name: &str, parameters: &[&str]) -> InferRequestedOutputTensor {
    InferRequestedOutputTensor {
        name: name.into(),
        parameters: parameters
            .iter()
            .map(|k| (k.to_string(), parameter()))
            .collect(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_request_list_is_refused_one_past_its_limit_and_served_at_it() {
    let flags = [
        "--max-tensors",
        "2",
        "--max-rank",
        "2",
        "--max-parameters",
        "3",
        "--max-elements",
        "64",
    ];
    let server = GrpcServer::start(loaded(&shipped_models(), &flags)).await;
    let mut client = server.client().await;
    // At every limit: 64 elements (16 iris rows), rank 2, 2 outputs, 3 parameters.
    let mut at_limits = golden_request("iris", false);
    at_limits.parameters.insert("a".into(), parameter());
    at_limits.inputs[0]
        .parameters
        .insert("b".into(), parameter());
    at_limits.outputs = vec![output("label", &["c"]), output("probabilities", &[])];
    let reply = client.model_infer(at_limits.clone()).await.unwrap();
    assert_golden("iris", reply.get_ref());

    let mut inputs = at_limits.clone();
    inputs.inputs = vec![tensor("x", vec![], None); 3];
    refused_with(
        client.model_infer(inputs).await,
        "too_many_tensors",
        "--max-tensors",
    );
    let mut outputs = at_limits.clone();
    outputs.outputs.push(output("label", &[]));
    refused_with(
        client.model_infer(outputs).await,
        "too_many_tensors",
        "--max-tensors",
    );
    let mut raw = golden_request("iris", true);
    raw.raw_input_contents = vec![Default::default(); 3];
    let kind = "too_many_tensors";
    refused_with(client.model_infer(raw).await, kind, "--max-tensors");
    let mut rank = at_limits.clone();
    rank.inputs[0].shape = vec![16, 4, 1];
    let kind = "too_many_dimensions";
    refused_with(client.model_infer(rank).await, kind, "--max-rank");
    let mut parameters = at_limits.clone();
    parameters.outputs[1]
        .parameters
        .insert("d".into(), parameter());
    let kind = "too_many_parameters";
    refused_with(
        client.model_infer(parameters).await,
        kind,
        "--max-parameters",
    );
    // 65 elements over two inputs, typed differently: counted together.
    let mut elements = at_limits.clone();
    elements.inputs.push(InferInputTensor {
        name: "extra".into(),
        datatype: "INT64".into(),
        shape: vec![1],
        parameters: HashMap::new(),
        contents: Some(InferTensorContents {
            int64_contents: vec![1],
            ..Default::default()
        }),
    });
    let kind = "too_many_elements";
    refused_with(client.model_infer(elements).await, kind, "64");

    // Not a message at all (a length past the end): INVALID_ARGUMENT, as prost would refuse it.
    let channel = server.channel().await;
    let garbage = infer_raw(channel.clone(), vec![0x2a, 0x05, 0x00]).await;
    refused_with(garbage, "malformed_message", "not a valid protobuf message");
    // The same connection still serves.
    let reply = infer_raw(channel, golden_request("iris", true).encode_to_vec()).await;
    assert_golden("iris", reply.unwrap().get_ref());
    server.stop().await;
}

/// An `infera` process serving gRPC on 127.0.0.1:0 (both ports from the OS); killed on drop.
struct Process {
    child: Child,
    grpc: String,
}

impl Process {
    fn start() -> Process {
        let models = shipped_models();
        let mut child = Command::new(env!("CARGO_BIN_EXE_infera"))
            .args(["--model-repository", models.to_str().unwrap()])
            .args(["--port", "0", "--grpc-port", "0", "--log-format", "json"])
            .args(["--workers", "1", "--watch-repository", "false"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("infera starts");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let grpc = lines
            .by_ref()
            .map_while(Result::ok)
            .find_map(|line| {
                let at = line.find("\"grpc_addr\":\"")? + 13;
                Some(line[at..at + line[at..].find('"')?].to_string())
            })
            .expect("the gRPC address in the log");
        // Keep draining the log so the server never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Process { child, grpc }
    }

    /// Peak resident memory of the process so far, in KiB.
    fn peak_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.grpc))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_million_empty_inputs_are_refused_without_growing_the_server() {
    let server = Process::start();
    let channel = server.channel().await;
    let served = golden_request("iris", true).encode_to_vec();
    let deadline = Instant::now() + Duration::from_secs(60);
    while infer_raw(channel.clone(), served.clone()).await.is_err() {
        assert!(Instant::now() < deadline, "iris never served");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A message of the same size that decodes to little (one 4 MB raw content): the transport's
    // buffers for a 4 MB message reach their peak here, before the measurement.
    let mut warm = golden_request("iris", true);
    warm.raw_input_contents = vec![vec![0u8; 3_999_000].into()];
    let warm = warm.encode_to_vec();
    let status = infer_raw(channel.clone(), warm).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let before = server.peak_kib();

    // 2,000,000 empty inputs: 2 bytes each on the wire, 312 bytes each once prost decodes them.
    let mut hostile = ModelInferRequest {
        model_name: "iris".into(),
        ..Default::default()
    }
    .encode_to_vec();
    hostile.extend([0x2a, 0x00].repeat(2_000_000));
    assert!(hostile.len() < 4 * 1024 * 1024, "{}", hostile.len());
    let started = Instant::now();
    let refused = infer_raw(channel.clone(), hostile).await;
    let took = started.elapsed();
    let after = server.peak_kib();
    refused_with(refused, "too_many_tensors", "--max-tensors");
    eprintln!(
        "2,000,000 empty inputs: refused in {took:?}; server VmHWM {before} KiB -> {after} KiB"
    );
    // Decoding them would take 654 MB; the walk that refuses them allocates nothing.
    assert!(
        after - before < 12 * 1024,
        "VmHWM {before} KiB -> {after} KiB"
    );
    let reply = infer_raw(channel, served).await.unwrap();
    assert_golden("iris", reply.get_ref());
}

/// Peak memory growth of a fresh server for one ~4 MB message, after a warm-up message of the
/// same size: (growth in KiB, message size in bytes, the refusal).
async fn growth_for(message: Vec<u8>) -> (u64, usize, tonic::Status) {
    let server = Process::start();
    let channel = server.channel().await;
    let served = golden_request("iris", true).encode_to_vec();
    let deadline = Instant::now() + Duration::from_secs(60);
    while infer_raw(channel.clone(), served.clone()).await.is_err() {
        assert!(Instant::now() < deadline, "iris never served");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut warm = golden_request("iris", true);
    warm.raw_input_contents = vec![vec![0u8; message.len()].into()];
    let _ = infer_raw(channel.clone(), warm.encode_to_vec()).await;
    let before = server.peak_kib();
    let len = message.len();
    let status = infer_raw(channel, message).await.unwrap_err();
    (server.peak_kib() - before, len, status)
}

fn one_input(datatype: &str, shape: i64, contents: InferTensorContents) -> Vec<u8> {
    ModelInferRequest {
        model_name: "iris".into(),
        inputs: vec![InferInputTensor {
            name: "float_input".into(),
            datatype: datatype.into(),
            shape: vec![shape],
            parameters: HashMap::new(),
            contents: Some(contents),
        }],
        ..Default::default()
    }
    .encode_to_vec()
}

/// What the walk leaves to prost: typed contents within --max-elements, which grow by the
/// element's size in memory over its size on the wire. Measured here for the two worst cases
/// (docs/security.md): one-byte int64 varints (8 bytes each) and empty `bytes_contents` entries
/// (2 bytes on the wire, a 32-byte `Bytes` each).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_contents_grow_by_their_element_size_at_most() {
    const N: usize = 3_900_000;
    let int64 = InferTensorContents {
        int64_contents: vec![1; N],
        ..Default::default()
    };
    let (growth, len, status) = growth_for(one_input("INT64", N as i64, int64)).await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let factor = (growth * 1024) as f64 / len as f64;
    eprintln!("{N} one-byte int64 values: {len} B message, VmHWM +{growth} KiB ({factor:.1}x)");
    assert!(factor < 20.0, "{factor:.1}x");

    const M: usize = N / 2;
    let strings = InferTensorContents {
        bytes_contents: vec![Default::default(); M],
        ..Default::default()
    };
    let (growth, len, status) = growth_for(one_input("BYTES", M as i64, strings)).await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let factor = (growth * 1024) as f64 / len as f64;
    eprintln!("{M} empty bytes_contents: {len} B message, VmHWM +{growth} KiB ({factor:.1}x)");
    assert!(factor < 40.0, "{factor:.1}x");
}
