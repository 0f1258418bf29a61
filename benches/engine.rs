//! Engine-level benchmarks: tract runs of the shipped digits MLP at several batch sizes, the
//! worker-pool round trip, 64 concurrent callers with and without dynamic batching, and JSON
//! instance decoding. Run: `cargo bench --bench engine`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use infera::contract::{decode_instances, Instance};
use infera::engine::{
    BatchPolicy, CompiledModel, JobObserver, ModelQueue, PoolConfig, SkipReason, Tensor,
    TensorData, WorkerPool,
};
use infera::repository::{build_contract, Manifest};
use serde_json::Value;

/// The allocator the server binary uses (src/main.rs), so the figures match it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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

/// The benchmark-only CNN (random weights, 3x64x64 input) at several batch sizes: how much a
/// batch saves per image on a convolutional model.
fn cnn_run(c: &mut Criterion) {
    let model = CompiledModel::load(&models().join("bench/cnn/1/model.onnx")).expect("cnn loads");
    let image: Vec<f32> = (0..3 * 64 * 64).map(|i| (i % 97) as f32 / 97.0).collect();
    let mut group = c.benchmark_group("bench_cnn_run");
    group.sample_size(20);
    for n in [1usize, 8, 32] {
        let data: Vec<f32> = image
            .iter()
            .cycle()
            .take(n * image.len())
            .copied()
            .collect();
        let input = Tensor::new(vec![n, 3, 64, 64], TensorData::F32(data)).unwrap();
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &input, |b, input| {
            b.iter(|| model.run(vec![input.clone()]).unwrap())
        });
    }
    group.finish();
}

/// The monitoring work one predicted iris instance adds on the request path: counting its four
/// features and its class into the drift window, and keeping the prediction for feedback. Compare
/// with `http_predict_iris/1` (benches/http.rs) for the share of a tiny model's request.
fn monitoring_per_instance(c: &mut Criterion) {
    use infera::monitoring::{
        DriftMonitor, DriftThresholds, Metrics, ModelMonitor, MonitorSettings, Notifier, Observed,
        PredictionLog, QualityKind, ReferenceProfile, Subject,
    };
    let profile = ReferenceProfile::read(&models().join("iris/1/profile.json")).unwrap();
    let drift = DriftMonitor::new(profile.clone(), DriftThresholds::default(), 4).unwrap();
    let row = [5.1, 3.5, 1.4, 0.2];
    let mut group = c.benchmark_group("monitoring_per_instance");
    group.bench_function("drift_observe_iris", |b| {
        b.iter(|| drift.observe(|j| row[j], Observed::Class(0)))
    });
    let metrics = Metrics::new();
    let monitor = Arc::new(ModelMonitor::new(
        Subject {
            model: "iris".into(),
            version: 1,
            kind: Some(QualityKind::Classification { classes: 3 }),
            labels: vec!["setosa".into(), "versicolor".into(), "virginica".into()],
        },
        DriftMonitor::new(profile, DriftThresholds::default(), 4),
        MonitorSettings::default(),
        metrics.quality().version("iris", 1, &[], &[], true),
        Notifier::disabled(),
    ));
    let log = PredictionLog::new(100_000, Duration::from_secs(3600));
    let mut n = 0u64;
    group.bench_function("feedback_log_insert", |b| {
        b.iter(|| {
            n += 1;
            log.insert(
                &format!("0a1b2c3d-{n:012x}"),
                &monitor,
                &[Observed::Class(0)],
            )
        })
    });
    // One request of 1024 instances (one log entry for all of them).
    let many = vec![Observed::Class(0); 1024];
    group.bench_function("feedback_log_insert_1024", |b| {
        b.iter(|| {
            n += 1;
            log.insert(&format!("0a1b2c3d-{n:012x}"), &monitor, &many)
        })
    });
    group.finish();
}

struct Quiet;
impl JobObserver for Quiet {
    fn enqueued(&self) {}
    fn dequeued(&self) {}
    fn skipped(&self, _: SkipReason) {}
    fn started(&self, _: Duration) {}
    fn batch_ran(&self, _: usize, _: usize, _: Duration) {}
}

fn queue(pool: &WorkerPool, model: &Arc<CompiledModel>, max_batch_size: usize) -> Arc<ModelQueue> {
    pool.queue(
        model.clone(),
        BatchPolicy {
            max_batch_size,
            learn_limit: false,
            max_queue_delay: Duration::ZERO,
            queue_capacity: 1024,
        },
        Arc::new(Quiet),
    )
}

/// One caller, one instance: the hand-off to a worker thread and back.
fn pool_round_trip(c: &mut Criterion) {
    let (model, rows) = digits();
    let model = Arc::new(model);
    let pool = WorkerPool::start(PoolConfig {
        workers: 1,
        ..PoolConfig::default()
    })
    .unwrap();
    let queue = queue(&pool, &model, 64);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let input = batch(&rows, 1);
    c.bench_function("digits_mlp_pool_round_trip/1", |b| {
        b.iter(|| {
            let deadline = Instant::now() + Duration::from_secs(5);
            runtime
                .block_on(queue.run(vec![input.clone()], deadline))
                .unwrap()
        })
    });
}

/// 64 callers with one instance each, all in flight at once: dynamic batching on (up to 64
/// instances per call) against off (one call per request). Throughput is in requests.
fn pool_concurrent(c: &mut Criterion) {
    let (model, rows) = digits();
    let model = Arc::new(model);
    let pool = WorkerPool::start(PoolConfig {
        workers: 1,
        ..PoolConfig::default()
    })
    .unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let input = batch(&rows, 1);
    let mut group = c.benchmark_group("digits_mlp_64_concurrent_callers");
    group.throughput(Throughput::Elements(64));
    for (name, max_batch) in [("batching_off", 1usize), ("batching_64", 64)] {
        let queue = queue(&pool, &model, max_batch);
        group.bench_function(name, |b| {
            b.iter(|| {
                runtime.block_on(async {
                    let deadline = Instant::now() + Duration::from_secs(5);
                    let calls: Vec<_> = (0..64)
                        .map(|_| {
                            let (queue, input) = (queue.clone(), input.clone());
                            tokio::spawn(async move { queue.run(vec![input], deadline).await })
                        })
                        .collect();
                    for call in calls {
                        call.await.unwrap().unwrap();
                    }
                })
            })
        });
    }
    group.finish();
}

/// JSON text of the instances array to input tensor: the parse straight into numbers that
/// request bodies get, against parsing into JSON values first (the general path, used for named
/// features and malformed input).
fn decode(c: &mut Criterion) {
    let (model, rows) = digits();
    let manifest = Manifest::read(&models().join("digits/model.toml")).unwrap();
    let contract = build_contract(Some(&manifest), model.signature()).unwrap();
    let mut group = c.benchmark_group("digits_parse_and_decode");
    for n in [1usize, 64] {
        let text = serde_json::to_vec(&rows.iter().cycle().take(n).collect::<Vec<_>>()).unwrap();
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("numbers", n), &text, |b, text| {
            b.iter(|| {
                let instances: Vec<Instance> = serde_json::from_slice(text).unwrap();
                decode_instances(&contract.input, &instances).unwrap()
            })
        });
        group.bench_with_input(BenchmarkId::new("json_values", n), &text, |b, text| {
            b.iter(|| {
                let values: Vec<Value> = serde_json::from_slice(text).unwrap();
                let instances: Vec<Instance> = values.into_iter().map(Instance::Json).collect();
                decode_instances(&contract.input, &instances).unwrap()
            })
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    tract_run,
    cnn_run,
    pool_round_trip,
    pool_concurrent,
    decode,
    monitoring_per_instance
);
criterion_main!(benches);
