//! Engine-level benchmarks: tract runs of the shipped digits MLP at several batch sizes, the
//! worker-pool round trip, and JSON instance decoding. Run: `cargo bench --bench engine`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use infera::engine::{
    CompiledModel, JobObserver, PoolConfig, SkipReason, Tensor, TensorData, WorkerPool,
};
use infera::inference::{decode_instances, ModelContract};
use infera::repository::Manifest;
use serde_json::Value;

fn models() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models")
}

fn digits() -> (CompiledModel, Vec<Vec<f32>>) {
    let model = CompiledModel::load(&models().join("digits/1/model.onnx")).expect("digits loads");
    let golden: Value = serde_json::from_str(
        &std::fs::read_to_string(models().join("digits/1/golden.json")).unwrap(),
    )
    .unwrap();
    let rows = golden["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect()
        })
        .collect();
    (model, rows)
}

fn batch(rows: &[Vec<f32>], n: usize) -> Tensor {
    let data: Vec<f32> = rows.iter().cycle().take(n).flatten().copied().collect();
    Tensor::new(vec![n, rows[0].len()], TensorData::F32(data)).unwrap()
}

fn tract_run(c: &mut Criterion) {
    let (model, rows) = digits();
    let mut group = c.benchmark_group("digits_mlp_run");
    for n in [1usize, 8, 32, 64] {
        let input = batch(&rows, n);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &input, |b, input| {
            b.iter(|| model.run(vec![input.clone()]).unwrap())
        });
    }
    group.finish();
}

struct Quiet;
impl JobObserver for Quiet {
    fn enqueued(&self) {}
    fn dequeued(&self) {}
    fn skipped(&self, _: SkipReason) {}
    fn ran(&self, _: usize, _: Duration, _: Duration) {}
}

fn pool_round_trip(c: &mut Criterion) {
    let (model, rows) = digits();
    let model = Arc::new(model);
    let pool = WorkerPool::start(PoolConfig {
        workers: 1,
        queue_capacity: 64,
        retry_after: Duration::from_secs(1),
    })
    .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let input = batch(&rows, 1);
    let observer: Arc<dyn JobObserver> = Arc::new(Quiet);
    c.bench_function("digits_mlp_pool_round_trip/1", |b| {
        b.iter(|| {
            let deadline = Instant::now() + Duration::from_secs(5);
            runtime
                .block_on(pool.run(
                    model.clone(),
                    vec![input.clone()],
                    deadline,
                    observer.clone(),
                ))
                .unwrap()
        })
    });
}

fn decode(c: &mut Criterion) {
    let (model, rows) = digits();
    let manifest = Manifest::read(&models().join("digits/model.toml")).unwrap();
    let contract = ModelContract::build(Some(&manifest), model.signature()).unwrap();
    let mut group = c.benchmark_group("digits_decode_instances");
    for n in [1usize, 64] {
        let instances: Vec<Value> = rows
            .iter()
            .cycle()
            .take(n)
            .map(|r| serde_json::json!(r))
            .collect();
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(
            BenchmarkId::from_parameter(n),
            &instances,
            |b, instances| b.iter(|| decode_instances(&contract.input, instances).unwrap()),
        );
    }
    group.finish();
}

criterion_group!(benches, tract_run, pool_round_trip, decode);
criterion_main!(benches);
