//! The learned merge limit (src/engine/batch_limit.rs): requests of a model whose cost per row
//! grows with the batch end up running alone, while a model that batches well (iris) keeps
//! merging the requests that queue up together.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use infera::engine::{
    BatchPolicy, CompiledModel, IntraOpThreads, LoadOptions, ModelQueue, PlanMode, PoolConfig,
    Tensor, TensorData, WorkerPool,
};

use crate::common::{eventually, shipped_models, Quiet};
use crate::onnx;

const WIDTH: usize = 65_536;
const QUEUED: usize = 8;
/// Rounds of queued requests the limit has to learn in (it takes two or three).
const ROUNDS: usize = 8;

fn deadline() -> Instant {
    Instant::now() + Duration::from_secs(60)
}

fn row(width: usize, seed: usize) -> Tensor {
    let data = (0..width)
        .map(|i| ((i * 31 + seed * 7) % 97) as f32 / 97.0)
        .collect();
    Tensor::new(vec![1, width], TensorData::F32(data)).unwrap()
}

/// The one-row tensors `rows` as one tensor of `rows.len()` rows.
fn stacked(rows: &[Tensor]) -> Tensor {
    let mut data = Vec::new();
    for r in rows {
        let TensorData::F32(v) = &r.data else {
            unreachable!()
        };
        data.extend_from_slice(v);
    }
    Tensor::new(vec![rows.len(), WIDTH], TensorData::F32(data)).unwrap()
}

fn queue(pool: &WorkerPool, path: &Path) -> Arc<ModelQueue> {
    let model = Arc::new(CompiledModel::load(path).expect("model loads"));
    pool.queue(model, BatchPolicy::default(), Arc::new(Quiet))
}

/// Keeps the only worker busy with a long call on `slow`, queues `QUEUED` one-row requests on
/// `queue` behind it, and returns, per request, its input and what it got back.
async fn queued_behind_busy_worker(
    pool: &WorkerPool,
    slow: &Arc<ModelQueue>,
    queue: &Arc<ModelQueue>,
    width: usize,
) -> Vec<(Tensor, Tensor, usize)> {
    let busy = {
        let slow = slow.clone();
        let rows = Tensor::new(vec![64, 512], TensorData::F32(vec![0.5; 64 * 512])).unwrap();
        tokio::spawn(async move { slow.run(vec![rows], deadline()).await })
    };
    eventually("the slow call is running", || pool.running() == 1).await;
    let calls: Vec<_> = (0..QUEUED)
        .map(|i| {
            let queue = queue.clone();
            let input = row(width, i);
            tokio::spawn(async move {
                let out = queue.run(vec![input.clone()], deadline()).await.unwrap();
                (input, out.outputs[0].clone(), out.batch_rows)
            })
        })
        .collect();
    let mut replies = Vec::new();
    for call in calls {
        replies.push(call.await.unwrap());
    }
    busy.await.unwrap().expect("slow call");
    replies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_slower_per_row_in_a_batch_runs_alone_and_iris_still_batches() {
    let repo = tempfile::tempdir().unwrap();
    onnx::slow(repo.path(), "slow", 512, 40);
    onnx::pairwise(repo.path(), "pairwise", WIDTH as i64);
    let pool = WorkerPool::start(PoolConfig {
        workers: 1,
        ..Default::default()
    })
    .unwrap();
    let slow = queue(&pool, &repo.path().join("slow/1/model.onnx"));
    let pairwise = queue(&pool, &repo.path().join("pairwise/1/model.onnx"));
    let iris = queue(&pool, &shipped_models().join("iris/1/model.onnx"));

    // Nothing measured yet: requests run alone. Lone calls give the cost of one row.
    assert_eq!(pairwise.merge_limit(), 1);
    assert_eq!(iris.merge_limit(), 1);
    for i in 0..4 {
        pairwise.run(vec![row(WIDTH, i)], deadline()).await.unwrap();
        iris.run(vec![row(4, i)], deadline()).await.unwrap();
    }
    let max = BatchPolicy::default().max_batch_size;
    assert_eq!(iris.merge_limit(), max, "cheap calls: optimistic at first");

    // Learning takes a few rounds: a size is judged bad after two slow calls in one table (calls
    // on one thread or on several), and a queue drained by one call runs on both cores. The
    // rounds stop once every pairwise request ran alone; one more round must keep it so.
    let mut learned_at = None;
    for round in 0..ROUNDS {
        let replies = queued_behind_busy_worker(&pool, &slow, &pairwise, WIDTH).await;
        for (input, output, _) in &replies {
            assert_eq!(output.data, input.data, "pairwise returns its input");
        }
        let sizes: Vec<usize> = replies.iter().map(|r| r.2).collect();
        let iris_replies = queued_behind_busy_worker(&pool, &slow, &iris, 4).await;
        let iris_merged = iris_replies.iter().filter(|r| r.2 > 1).count();
        assert!(
            iris_merged > 0,
            "round {round}: iris requests queued together share calls"
        );
        if round == 0 {
            assert!(
                sizes.iter().any(|&rows| rows > 1),
                "round 0: pairwise requests were first merged: {sizes:?}"
            );
        }
        match learned_at {
            Some(at) => {
                assert!(
                    sizes.iter().all(|&rows| rows == 1),
                    "learned in round {at}, merged again in round {round}: {sizes:?}"
                );
                break;
            }
            None if sizes.iter().all(|&rows| rows == 1) => learned_at = Some(round),
            None => {}
        }
    }
    assert!(
        learned_at.is_some_and(|at| at < ROUNDS - 1),
        "pairwise requests still merged after {ROUNDS} rounds"
    );
    assert_eq!(pairwise.merge_limit(), 1);
    assert_eq!(
        iris.merge_limit(),
        max,
        "iris batches well: no limit learned"
    );

    // One request of eight rows now runs row by row, and gets its eight rows back in order.
    let rows: Vec<Tensor> = (0..8).map(|i| row(WIDTH, 100 + i)).collect();
    let eight = stacked(&rows);
    let out = pairwise.run(vec![eight.clone()], deadline()).await.unwrap();
    assert_eq!(out.batch_rows, 1, "the request ran in one-row calls");
    assert_eq!(out.outputs[0], eight);
    // Iris still takes a request of eight rows in one call.
    let data = (0..32).map(|i| i as f32 / 8.0).collect();
    let eight = Tensor::new(vec![8, 4], TensorData::F32(data)).unwrap();
    let out = iris.run(vec![eight], deadline()).await.unwrap();
    assert_eq!(out.batch_rows, 8);
    pool.close();
}

/// A model whose callers cannot share calls (its output's size is not known from the inputs)
/// still learns how many rows a lone request's call may take: a request of eight rows on the
/// pairwise graph ends up running row by row, and gets its rows back in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_request_is_split_when_callers_cannot_share_calls() {
    let repo = tempfile::tempdir().unwrap();
    onnx::pairwise_unsized_output(repo.path(), "unsized", WIDTH as i64);
    let pool = WorkerPool::start(PoolConfig {
        workers: 1,
        ..Default::default()
    })
    .unwrap();
    // One thread per call: the rows' costs are compared within one table (see batch_limit.rs).
    let options = LoadOptions {
        plans: PlanMode::Specialised,
        threads: IntraOpThreads::Fixed(1),
        ..Default::default()
    };
    let path = repo.path().join("unsized/1/model.onnx");
    let model = Arc::new(CompiledModel::load_with(&path, &options).expect("model loads"));
    assert!(!model.can_batch_callers(), "the output's size is unknown");
    let queue = pool.queue(model, BatchPolicy::default(), Arc::new(Quiet));
    assert_eq!(queue.merge_limit(), 1, "callers never share a call");
    let rows: Vec<Tensor> = (0..8).map(|i| row(WIDTH, 200 + i)).collect();
    let eight = stacked(&rows);
    let mut sizes = Vec::new();
    for _ in 0..ROUNDS {
        let out = queue.run(vec![eight.clone()], deadline()).await.unwrap();
        assert_eq!(
            out.outputs[0], eight,
            "pairwise returns its input, rows in order"
        );
        sizes.push(out.batch_rows);
        if out.batch_rows == 1 {
            break;
        }
    }
    assert_eq!(
        sizes.last(),
        Some(&1),
        "eight-row calls cost more per row than one-row calls: {sizes:?}"
    );
    assert_eq!(queue.split_cap(), 1);
    pool.close();
}
