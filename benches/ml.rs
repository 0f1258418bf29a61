//! Classic-ML models (trees, SVMs, linear, pipelines) from `models/conformance`: infera's engine
//! at batch 1 and 64, and, in the same run, onnxruntime single-threaded on the same inputs.
//!
//! `benches/ml_vs_onnxruntime.sh` runs it with a Python venv and writes the comparison table.
//! By hand: `INFERA_ORT_PYTHON=/path/to/venv/bin/python cargo bench --bench ml` (without the
//! variable only infera is measured). `INFERA_ML_BENCH_FILTER=rf_` limits the models.
//! onnxruntime is measured model by model, right after infera's cells of the same model, so a
//! change in the machine's load between the two falls on both (the machine is shared).
//! `INFERA_ORT_ARGS` passes extra arguments to the script (e.g. `--min-time 0.1 --repeat 5`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::{BenchmarkId, Criterion};
use infera::contract::{decode_instances, InputContract, Instance};
use infera::engine::{map_inputs, CompiledModel, Tensor, TensorData};
use serde_json::Value;

const BATCHES: [usize; 2] = [1, 64];

fn conformance() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/conformance")
}

fn models() -> Vec<String> {
    let filter = std::env::var("INFERA_ML_BENCH_FILTER").unwrap_or_default();
    let mut names: Vec<String> = std::fs::read_dir(conformance())
        .expect("models/conformance exists")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("1/model.onnx").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(&filter))
        .collect();
    names.sort();
    names
}

/// The first `batch` golden instances (cycled) as the model's input tensors: one `[batch, width]`
/// tensor of numbers (f32) or strings, or, for instances that are objects (one graph input per
/// DataFrame column), one `[batch, 1]` tensor per input of `model`'s signature; for a map input,
/// the map's three tensors (every map of the batch in one call; onnxruntime runs one per call).
fn inputs(model: &CompiledModel, name: &str, batch: usize) -> Vec<Tensor> {
    let golden: Value = serde_json::from_str(
        &std::fs::read_to_string(conformance().join(name).join("1/golden.json")).unwrap(),
    )
    .unwrap();
    let rows: Vec<&Value> = golden["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .cycle()
        .take(batch)
        .collect();
    let column = |values: Vec<&Value>, width: usize| {
        let data = if values.iter().all(|v| v.is_string()) {
            TensorData::String(
                values
                    .iter()
                    .map(|v| v.as_str().unwrap().to_string())
                    .collect(),
            )
        } else {
            TensorData::F32(values.iter().map(|v| v.as_f64().unwrap() as f32).collect())
        };
        Tensor::new(vec![batch, width], data).unwrap()
    };
    if !map_inputs(&model.signature().inputs).is_empty() {
        // One map per instance (a JSON object), read as infera reads /predict instances.
        let contract = InputContract::Tensors {
            inputs: model.signature().inputs.clone(),
        };
        let instances: Vec<Instance> = rows.iter().map(|r| Instance::from((*r).clone())).collect();
        return decode_instances(&contract, &instances).unwrap();
    }
    if rows[0].is_object() {
        return model
            .signature()
            .inputs
            .iter()
            .map(|spec| column(rows.iter().map(|r| &r[&spec.name]).collect(), 1))
            .collect();
    }
    let width = rows[0].as_array().unwrap().len();
    vec![column(
        rows.iter()
            .flat_map(|r| r.as_array().unwrap().iter())
            .collect(),
        width,
    )]
}

fn target_dir() -> PathBuf {
    std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"))
}

/// Criterion's median estimate in microseconds.
fn criterion_median_us(model: &str, batch: usize) -> Option<f64> {
    let path = target_dir()
        .join("criterion/ml")
        .join(model)
        .join(batch.to_string())
        .join("new/estimates.json");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    Some(v["median"]["point_estimate"].as_f64()? / 1e3)
}

type Medians = BTreeMap<String, BTreeMap<usize, f64>>;

/// Runs models/bench_onnxruntime.py on the one model `name` and adds its medians (batch ->
/// microseconds) to `into`.
fn onnxruntime_us(python: &str, name: &str, into: &mut Medians) -> Option<()> {
    let out = target_dir().join("ml-onnxruntime.json");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/bench_onnxruntime.py");
    let mut cmd = std::process::Command::new(python);
    cmd.arg(script).arg(conformance()).arg("--json").arg(&out);
    for b in BATCHES {
        cmd.arg("--batch").arg(b.to_string());
    }
    cmd.arg("--only").arg(name);
    if let Ok(extra) = std::env::var("INFERA_ORT_ARGS") {
        cmd.args(extra.split_whitespace());
    }
    let status = cmd.stdout(std::process::Stdio::null()).status().ok()?;
    if !status.success() {
        eprintln!("onnxruntime benchmark failed on {name}: {status}");
        return None;
    }
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&out).ok()?).ok()?;
    for record in v.as_array()? {
        let model = record["model"].as_str()?.to_string();
        let batch = record["batch"].as_u64()? as usize;
        into.entry(model)
            .or_default()
            .insert(batch, record["median_us"].as_f64()?);
    }
    Some(())
}

fn main() {
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    let names = models();
    let python = std::env::var("INFERA_ORT_PYTHON").ok();
    let mut ort = Medians::new();
    {
        let mut group = c.benchmark_group("ml");
        for name in &names {
            let model = CompiledModel::load(&conformance().join(name).join("1/model.onnx"))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            for batch in BATCHES {
                let x = inputs(&model, name, batch);
                group.bench_with_input(BenchmarkId::new(name, batch), &x, |b, x| {
                    b.iter(|| model.run(x.clone()).unwrap())
                });
            }
            if let Some(python) = &python {
                onnxruntime_us(python, name, &mut ort);
            }
        }
        group.finish();
    }
    c.final_summary();

    if python.is_none() {
        eprintln!("INFERA_ORT_PYTHON not set: onnxruntime not measured");
        return;
    }
    let mut table = String::from(
        "| model | batch | infera µs | onnxruntime µs | infera / onnxruntime |\n|---|---:|---:|---:|---:|\n",
    );
    for name in &names {
        for batch in BATCHES {
            let ours = criterion_median_us(name, batch);
            let theirs = ort.get(name).and_then(|m| m.get(&batch)).copied();
            let cell = |v: Option<f64>| v.map(|v| format!("{v:.1}")).unwrap_or_else(|| "-".into());
            let ratio = match (ours, theirs) {
                (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
                _ => "-".into(),
            };
            table.push_str(&format!(
                "| {name} | {batch} | {} | {} | {ratio} |\n",
                cell(ours),
                cell(theirs)
            ));
        }
    }
    println!("\n{table}");
    let path = target_dir().join("ml-vs-onnxruntime.md");
    if std::fs::write(&path, &table).is_ok() {
        println!("table written to {}", path.display());
    }
}
