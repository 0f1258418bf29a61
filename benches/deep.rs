//! tract in process through the engine API, for `benches/deep_vs_onnxruntime.sh`: one ONNX
//! model at one input shape, run with 1 and with N intra-op threads (the engine's
//! `[runtime] threads` pin), alternating between the thread counts round by round. A plain CLI
//! program built as a cargo bench target (`harness = false`):
//!
//! ```text
//! deep --model PATH --input NAME:KIND:DIMS [--input ...] [--threads 1,2] [--rounds 3]
//!      [--min-secs 1.0] [--plans auto|symbolic|specialised]
//! ```
//!
//! KIND is `f32` (uniform in [-1, 1)), `ids<N>` (INT64 in [1, N)) or `ones` (INT64 1); DIMS is
//! `1x3x48x192` with the batch first. Each round runs the model for at least `--min-secs` (and
//! at least 3 times) per thread count after one untimed call, and takes the median call. Prints
//! one JSON object: `{"model","threads":{"1":[ms per round...],"2":[...]}}`. Run with no
//! arguments (or only `--bench`) it prints usage and exits 0.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use infera::engine::{
    CompiledModel, IntraOpThreads, LoadOptions, PlanMode, PoolLoad, Tensor, TensorData,
};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const USAGE: &str = "usage: deep --model PATH --input NAME:KIND:DIMS [--input ...] \
    [--threads 1,2] [--rounds 3] [--min-secs 1.0] [--plans auto|symbolic|specialised]";

struct Args {
    model: PathBuf,
    inputs: Vec<(String, String, Vec<usize>)>,
    threads: Vec<usize>,
    rounds: usize,
    min: Duration,
    plans: PlanMode,
}

fn parse() -> Result<Option<Args>, String> {
    let mut argv = std::env::args().skip(1).filter(|a| a != "--bench");
    let mut args = Args {
        model: PathBuf::new(),
        inputs: Vec::new(),
        threads: vec![1, 2],
        rounds: 3,
        min: Duration::from_secs(1),
        plans: PlanMode::Auto,
    };
    let mut any = false;
    while let Some(flag) = argv.next() {
        any = true;
        let value = argv.next().ok_or(format!("{flag} needs a value"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{flag} {value}: {e}");
        match flag.as_str() {
            "--model" => args.model = PathBuf::from(&value),
            "--input" => {
                let mut parts = value.splitn(3, ':');
                let (Some(name), Some(kind), Some(dims)) =
                    (parts.next(), parts.next(), parts.next())
                else {
                    return Err(bad(&"expected NAME:KIND:DIMS"));
                };
                let dims = dims
                    .split('x')
                    .map(str::parse)
                    .collect::<Result<Vec<usize>, _>>()
                    .map_err(|e| bad(&e))?;
                args.inputs.push((name.into(), kind.into(), dims));
            }
            "--threads" => {
                args.threads = value
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()
                    .map_err(|e| bad(&e))?
            }
            "--rounds" => args.rounds = value.parse().map_err(|e| bad(&e))?,
            "--plans" => {
                args.plans = match value.as_str() {
                    "auto" => PlanMode::Auto,
                    "symbolic" => PlanMode::Symbolic,
                    "specialised" => PlanMode::Specialised,
                    _ => return Err(bad(&"expected auto, symbolic or specialised")),
                }
            }
            "--min-secs" => args.min = Duration::from_secs_f64(value.parse().map_err(|e| bad(&e))?),
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    if !any {
        return Ok(None);
    }
    if args.inputs.is_empty() || args.model.as_os_str().is_empty() {
        return Err(USAGE.into());
    }
    Ok(Some(args))
}

/// Seeded input data (a small LCG: the same values on every run).
fn tensor(kind: &str, dims: &[usize], seed: u64) -> Result<Tensor, String> {
    let n: usize = dims.iter().product();
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as f64 / (1u64 << 31) as f64
    };
    let data = match kind {
        "f32" => TensorData::F32((0..n).map(|_| (next() * 2.0 - 1.0) as f32).collect()),
        "ones" => TensorData::I64(vec![1; n]),
        ids if ids.starts_with("ids") => {
            let top: f64 = ids[3..].parse().map_err(|_| format!("bad kind {ids}"))?;
            TensorData::I64((0..n).map(|_| 1 + (next() * (top - 1.0)) as i64).collect())
        }
        other => return Err(format!("unknown input kind {other}")),
    };
    Tensor::new(dims.to_vec(), data).ok_or_else(|| "inconsistent tensor".to_string())
}

/// Median milliseconds of one call, over at least `min` and 3 calls, after an untimed call.
fn measure(model: &CompiledModel, inputs: &[Tensor], min: Duration) -> Result<f64, String> {
    let parts = [inputs.to_vec()];
    let run = || model.run_callers_under(&parts, PoolLoad::Idle);
    run().map_err(|e| e.to_string())?;
    let mut times = Vec::new();
    let started = Instant::now();
    while times.len() < 3 || started.elapsed() < min {
        let t = Instant::now();
        run().map_err(|e| e.to_string())?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

fn run(args: Args) -> Result<serde_json::Value, String> {
    let inputs: Vec<Tensor> = args
        .inputs
        .iter()
        .enumerate()
        .map(|(i, (_, kind, dims))| tensor(kind, dims, i as u64 + 1))
        .collect::<Result<_, _>>()?;
    let models: Vec<(usize, CompiledModel)> = args
        .threads
        .iter()
        .map(|&t| {
            let options = LoadOptions {
                threads: IntraOpThreads::Fixed(t),
                plans: args.plans,
                ..Default::default()
            };
            CompiledModel::load_with(&args.model, &options)
                .map(|m| (t, m))
                .map_err(|e| e.to_string())
        })
        .collect::<Result<_, _>>()?;
    let mut figures: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for _ in 0..args.rounds {
        for (t, model) in &models {
            let ms = measure(model, &inputs, args.min)?;
            figures.entry(t.to_string()).or_default().push(ms);
        }
    }
    Ok(serde_json::json!({ "model": args.model, "threads": figures }))
}

fn main() -> ExitCode {
    match parse() {
        Ok(None) => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Ok(Some(args)) => match run(args) {
            Ok(v) => {
                println!("{v}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("deep: {e}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("deep: {e}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}
