//! REST (V2 binary tensor extension) against gRPC (raw_input_contents) on one running infera:
//! the same model, the same all-0.5 input, the same closed loop.
//!
//! ```text
//! grpc_vs_rest --http HOST:PORT --grpc HOST:PORT --model NAME [--rows R] [--connections C]
//!              [--duration-secs S] [--warmup-secs W] [--rounds K]
//! ```
//!
//! Each of the C loops owns one connection (an HTTP/1.1 keep-alive connection for REST, one
//! HTTP/2 channel for gRPC; both clients are hyper-based: reqwest and tonic) and sends its next
//! request when the previous answer has fully arrived and been decoded. Every answer is checked
//! (status 200 / OK and the expected output byte count). The protocols alternate K times (REST,
//! gRPC, REST, gRPC, ...) so that noise from other processes on the machine hits both alike. One
//! markdown table row per protocol and round is printed, then the medians. Run with no
//! arguments (or only `--bench`), it prints usage and exits 0.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use infera::api::grpc::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use infera::api::grpc::proto::model_infer_request::InferInputTensor;
use infera::api::grpc::proto::{ModelInferRequest, ModelMetadataRequest};
use prost::bytes::Bytes;
use tonic::transport::Channel;

const USAGE: &str = "usage: grpc_vs_rest --http HOST:PORT --grpc HOST:PORT --model NAME \
    [--rows R] [--connections C] [--duration-secs S] [--warmup-secs W] [--rounds K]";

#[derive(Debug, Clone)]
struct Options {
    http: String,
    grpc: String,
    model: String,
    rows: i64,
    connections: usize,
    duration: Duration,
    warmup: Duration,
    rounds: usize,
}

fn parse() -> Result<Option<Options>, String> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if args.is_empty() {
        return Ok(None);
    }
    let mut o = Options {
        http: String::new(),
        grpc: String::new(),
        model: String::new(),
        rows: 1,
        connections: 8,
        duration: Duration::from_secs(10),
        warmup: Duration::from_secs(2),
        rounds: 3,
    };
    let mut it = args.into_iter();
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let num = |v: &str| v.parse::<u64>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--http" => o.http = value,
            "--grpc" => o.grpc = value,
            "--model" => o.model = value,
            "--rows" => o.rows = num(&value)? as i64,
            "--connections" => o.connections = num(&value)? as usize,
            "--duration-secs" => o.duration = Duration::from_secs(num(&value)?),
            "--warmup-secs" => o.warmup = Duration::from_secs(num(&value)?),
            "--rounds" => o.rounds = num(&value)? as usize,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if o.http.is_empty() || o.grpc.is_empty() || o.model.is_empty() {
        return Err(USAGE.into());
    }
    Ok(Some(o))
}

/// One request of each protocol, built once.
#[derive(Clone)]
struct Work {
    model: String,
    grpc: ModelInferRequest,
    rest_body: Bytes,
    rest_header_len: usize,
    /// Bytes of output the answer must carry (all outputs, raw).
    output_bytes: usize,
}

async fn prepare(o: &Options) -> Result<Work, Box<dyn std::error::Error>> {
    let mut client = GrpcInferenceServiceClient::connect(format!("http://{}", o.grpc)).await?;
    let meta = client
        .model_metadata(ModelMetadataRequest {
            name: o.model.clone(),
            version: String::new(),
        })
        .await?
        .into_inner();
    let input = &meta.inputs[0];
    if input.datatype != "FP32" || meta.inputs.len() != 1 {
        return Err("the bench takes models with one FP32 input".into());
    }
    let mut shape = input.shape.clone();
    shape[0] = o.rows;
    let count: i64 = shape.iter().product();
    let data: Bytes = std::iter::repeat_n(0.5f32.to_le_bytes(), count as usize)
        .flatten()
        .collect::<Vec<u8>>()
        .into();
    let grpc = ModelInferRequest {
        model_name: o.model.clone(),
        inputs: vec![InferInputTensor {
            name: input.name.clone(),
            datatype: "FP32".into(),
            shape: shape.clone(),
            ..Default::default()
        }],
        raw_input_contents: vec![data.clone()],
        ..Default::default()
    };
    let header = serde_json::json!({
        "inputs": [{"name": input.name, "shape": shape, "datatype": "FP32",
                    "parameters": {"binary_data_size": data.len()}}],
        "parameters": {"binary_data_output": true},
    })
    .to_string();
    let mut body = header.clone().into_bytes();
    body.extend_from_slice(&data);
    let first = client.model_infer(grpc.clone()).await?.into_inner();
    let output_bytes = first.raw_output_contents.iter().map(Bytes::len).sum();
    Ok(Work {
        model: o.model.clone(),
        grpc,
        rest_body: body.into(),
        rest_header_len: header.len(),
        output_bytes,
    })
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Protocol {
    Rest,
    Grpc,
}

/// One closed loop until `stop`; returns latencies (µs) of answers completed after `measure_from`.
async fn run_loop(
    protocol: Protocol,
    o: Options,
    work: Work,
    stop: Arc<AtomicBool>,
    measure_from: Instant,
) -> Result<Histogram<u64>, String> {
    let mut hist = Histogram::<u64>::new(3).expect("histogram");
    let url = format!("http://{}/v2/models/{}/infer", o.http, work.model);
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .build()
        .map_err(|e| e.to_string())?;
    let mut grpc = match protocol {
        Protocol::Grpc => Some(GrpcInferenceServiceClient::new(
            Channel::from_shared(format!("http://{}", o.grpc))
                .map_err(|e| e.to_string())?
                .connect()
                .await
                .map_err(|e| e.to_string())?,
        )),
        Protocol::Rest => None,
    };
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let got = match grpc.as_mut() {
            Some(client) => {
                let reply = client
                    .model_infer(work.grpc.clone())
                    .await
                    .map_err(|s| s.to_string())?
                    .into_inner();
                reply.raw_output_contents.iter().map(Bytes::len).sum()
            }
            None => {
                let reply = http
                    .post(&url)
                    .header("content-type", "application/octet-stream")
                    .header("inference-header-content-length", work.rest_header_len)
                    .body(work.rest_body.clone())
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                if reply.status() != 200 {
                    return Err(format!("REST status {}", reply.status()));
                }
                let json_len: usize = reply
                    .headers()
                    .get("inference-header-content-length")
                    .and_then(|v| v.to_str().ok()?.parse().ok())
                    .ok_or("no inference-header-content-length")?;
                let body = reply.bytes().await.map_err(|e| e.to_string())?;
                body.len() - json_len
            }
        };
        if got != work.output_bytes {
            return Err(format!("{got} output bytes, want {}", work.output_bytes));
        }
        if started >= measure_from {
            hist.record(started.elapsed().as_micros() as u64).ok();
        }
    }
    Ok(hist)
}

/// Runs one protocol for warm-up + duration; returns (requests per second, latency histogram).
async fn cell(
    protocol: Protocol,
    o: &Options,
    work: &Work,
) -> Result<(f64, Histogram<u64>), String> {
    let stop = Arc::new(AtomicBool::new(false));
    let measure_from = Instant::now() + o.warmup;
    let loops: Vec<_> = (0..o.connections)
        .map(|_| {
            tokio::spawn(run_loop(
                protocol,
                o.clone(),
                work.clone(),
                stop.clone(),
                measure_from,
            ))
        })
        .collect();
    tokio::time::sleep(o.warmup + o.duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Histogram::<u64>::new(3).expect("histogram");
    for l in loops {
        all.add(l.await.map_err(|e| e.to_string())??).ok();
    }
    Ok((all.len() as f64 / o.duration.as_secs_f64(), all))
}

fn row(name: &str, round: usize, rps: f64, h: &Histogram<u64>) -> String {
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    format!(
        "| {name} | {round} | {rps:.0} | {:.2} | {:.2} | {:.2} |",
        ms(0.5),
        ms(0.9),
        ms(0.99)
    )
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

async fn run(o: Options) -> Result<(), Box<dyn std::error::Error>> {
    let work = prepare(&o).await?;
    println!(
        "model {} rows {} connections {} duration {} s (+{} s warm-up) rounds {}; \
         request tensor {} bytes, outputs {} bytes",
        o.model,
        o.rows,
        o.connections,
        o.duration.as_secs(),
        o.warmup.as_secs(),
        o.rounds,
        work.grpc.raw_input_contents[0].len(),
        work.output_bytes
    );
    println!("| protocol | round | req/s | p50 ms | p90 ms | p99 ms |");
    println!("| --- | --- | --- | --- | --- | --- |");
    let (mut rest, mut grpc) = (Vec::new(), Vec::new());
    let (mut rest_p50, mut grpc_p50) = (Vec::new(), Vec::new());
    for round in 1..=o.rounds {
        for protocol in [Protocol::Rest, Protocol::Grpc] {
            let (rps, h) = cell(protocol, &o, &work).await?;
            let name = match protocol {
                Protocol::Rest => "REST binary",
                Protocol::Grpc => "gRPC raw",
            };
            println!("{}", row(name, round, rps, &h));
            let p50 = h.value_at_quantile(0.5) as f64 / 1000.0;
            match protocol {
                Protocol::Rest => {
                    rest.push(rps);
                    rest_p50.push(p50)
                }
                Protocol::Grpc => {
                    grpc.push(rps);
                    grpc_p50.push(p50)
                }
            }
        }
    }
    let (r, g) = (median(rest), median(grpc));
    println!(
        "medians: REST {r:.0} req/s (p50 {:.2} ms), gRPC {g:.0} req/s (p50 {:.2} ms), gRPC/REST throughput {:.2}x",
        median(rest_p50),
        median(grpc_p50),
        g / r
    );
    Ok(())
}

fn main() -> ExitCode {
    let options = match parse() {
        Ok(Some(o)) => o,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(run(options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("grpc_vs_rest: {e}");
            ExitCode::FAILURE
        }
    }
}
