//! Intra-op threads: a lone call on an idle pool runs multithreaded when the model's calls are
//! costly, calls under load keep to one thread, small models never go multithreaded, a pinned
//! count (card or flag) wins, and multithreaded outputs equal single-threaded ones.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use infera::engine::{
    available_cores, BatchPolicy, CompiledModel, IntraOpThreads, LoadOptions, PoolConfig, PoolLoad,
    Tensor, TensorData, WorkerPool,
};

use infera::repository::VersionState;

use crate::common::{get, loaded, shipped_models, Quiet};
use crate::onnx;

fn load(path: &Path, threads: IntraOpThreads) -> CompiledModel {
    let options = LoadOptions {
        threads,
        ..Default::default()
    };
    CompiledModel::load_with(path, &options).expect("model loads")
}

fn cnn_path() -> std::path::PathBuf {
    shipped_models().join("bench/cnn/1/model.onnx")
}

/// `n` seeded 3x64x64 images for the benchmark CNN.
fn images(n: usize) -> Tensor {
    let data = (0..n * 3 * 64 * 64)
        .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
        .collect();
    Tensor::new(vec![n, 3, 64, 64], TensorData::F32(data)).unwrap()
}

/// A chain of twelve 512x512 matrix products over `rows` rows: 400 MFLOP, several ms a call at
/// 64 rows on one core (three products were close to the 1 ms threshold on a fast core).
fn wide(repo: &Path) -> std::path::PathBuf {
    onnx::slow(repo, "wide", 512, 12);
    repo.join("wide/1/model.onnx")
}

fn rows(n: usize) -> Tensor {
    Tensor::new(
        vec![n, 512],
        TensorData::F32((0..n * 512).map(|i| (i % 13) as f32 / 13.0).collect()),
    )
    .unwrap()
}

fn digits_row() -> Tensor {
    Tensor::new(vec![1, 64], TensorData::F32(vec![3.0; 64])).unwrap()
}

#[test]
fn the_decision_follows_load_cost_and_the_pin() {
    let cores = available_cores();
    let repo = tempfile::tempdir().unwrap();
    let cnn = load(&wide(repo.path()), IntraOpThreads::Auto);
    // Nothing measured yet: one thread.
    assert_eq!(cnn.intra_op_threads(PoolLoad::Idle), 1);
    cnn.run_request(&[rows(64)]).unwrap();
    assert_eq!(
        cnn.intra_op_threads(PoolLoad::Idle),
        cores,
        "idle: every core"
    );
    assert_eq!(
        cnn.intra_op_threads(PoolLoad::Busy),
        1,
        "loaded: one thread"
    );

    // A classic ML model's calls cost microseconds: never multithreaded.
    let digits = load(
        &shipped_models().join("digits/1/model.onnx"),
        IntraOpThreads::Auto,
    );
    for _ in 0..3 {
        digits.run_request(&[digits_row()]).unwrap();
    }
    assert_eq!(digits.intra_op_threads(PoolLoad::Idle), 1);

    // A pinned count wins over the load and the cost.
    let pinned = load(&wide(repo.path()), IntraOpThreads::Fixed(1));
    pinned.run_request(&[rows(64)]).unwrap();
    assert_eq!(pinned.intra_op_threads(PoolLoad::Idle), 1);
    let pinned = load(
        &shipped_models().join("digits/1/model.onnx"),
        IntraOpThreads::Fixed(2),
    );
    assert_eq!(pinned.intra_op_threads(PoolLoad::Busy), 2);
    pinned
        .run_callers_under(&[vec![digits_row()]], PoolLoad::Busy)
        .unwrap();
    assert_eq!(pinned.threaded_calls(), (1, 0));
}

#[test]
fn multithreaded_outputs_equal_single_threaded_ones() {
    let repo = tempfile::tempdir().unwrap();
    onnx::slow(repo.path(), "wide", 512, 12);
    let cases = [
        (cnn_path(), images(8)),
        (
            repo.path().join("wide/1/model.onnx"),
            Tensor::new(
                vec![64, 512],
                TensorData::F32((0..64 * 512).map(|i| (i % 13) as f32 / 13.0).collect()),
            )
            .unwrap(),
        ),
    ];
    for (path, input) in cases {
        let one = load(&path, IntraOpThreads::Fixed(1));
        let two = load(&path, IntraOpThreads::Fixed(2));
        let parts = [vec![input]];
        let single = one.run_callers_under(&parts, PoolLoad::Idle).unwrap();
        let multi = two.run_callers_under(&parts, PoolLoad::Idle).unwrap();
        assert_eq!(two.threaded_calls(), (1, 0));
        assert_eq!(single, multi, "{}", path.display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_runs_a_lone_call_multithreaded_and_calls_under_load_on_one_thread() {
    let pool = WorkerPool::start(PoolConfig {
        workers: 2,
        ..Default::default()
    })
    .unwrap();
    let repo = tempfile::tempdir().unwrap();
    let model = Arc::new(load(&wide(repo.path()), IntraOpThreads::Auto));
    let queue = pool.queue(
        model.clone(),
        BatchPolicy {
            max_batch_size: 1,
            ..Default::default()
        },
        Arc::new(Quiet),
    );
    let deadline = || Instant::now() + Duration::from_secs(60);
    // One request at a time: the first measures the cost, the next ones find the pool idle and
    // try several threads (whether they stay on several depends on the times measured, which
    // the unit tests of `threads.rs` cover: on this machine this model gains about 10%).
    for _ in 0..3 {
        queue.run(vec![rows(64)], deadline()).await.unwrap();
    }
    let (multi, single) = model.threaded_calls();
    if available_cores() > 1 {
        assert_eq!(
            (multi, single),
            (2, 1),
            "lone calls after the first try several threads"
        );
    } else {
        assert_eq!((multi, single), (0, 3), "one core: never multithreaded");
    }
    // 32 requests at once: every call but possibly the last finds work waiting.
    let calls = (0..32).map(|_| queue.run(vec![rows(64)], deadline()));
    for result in futures_util::future::join_all(calls).await {
        result.unwrap();
    }
    let (multi_after, single_after) = model.threaded_calls();
    assert_eq!(multi_after + single_after, multi + single + 32);
    assert!(
        single_after - single >= 30,
        "under load calls keep to one thread: {} of 32 did",
        single_after - single
    );
    pool.shutdown();
}

#[tokio::test]
async fn a_card_pin_and_the_server_flag_reach_the_model() {
    let repo = tempfile::tempdir().unwrap();
    onnx::slow(repo.path(), "pinned", 64, 2);
    std::fs::write(
        repo.path().join("pinned/model.toml"),
        "[runtime]\nthreads = 1\n",
    )
    .unwrap();
    onnx::slow(repo.path(), "bare", 64, 2);
    let infera = loaded(repo.path(), &["--intra-op-threads", "2"]);
    let app = infera.router();
    for (model, want) in [
        ("pinned", IntraOpThreads::Fixed(1)),
        ("bare", IntraOpThreads::Fixed(2)),
    ] {
        assert_eq!(
            get(&app, &format!("/models/{model}")).await.json()["state"],
            "ready"
        );
        let catalog = infera.state.predictor.store().snapshot();
        let Some(VersionState::Ready(version)) =
            catalog.models.get(model).and_then(|m| m.versions.get(&1))
        else {
            panic!("{model} is not ready");
        };
        let compiled = version.compiled.clone();
        assert_eq!(compiled.intra_op_setting(), want, "{model}");
    }

    std::fs::write(
        repo.path().join("pinned/model.toml"),
        "[runtime]\nthreads = 0\n",
    )
    .unwrap();
    let infera = loaded(repo.path(), &[]);
    let card = get(&infera.router(), "/models/pinned").await.json();
    let error = card["card_error"].as_str().unwrap_or_default().to_string()
        + card["versions"][0]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("runtime.threads must be between 1 and 64"),
        "{card}"
    );
}
