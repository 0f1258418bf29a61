//! Shapes as the graph declares them: variable dimensions at any axis, Triton's batching
//! semantics (a shared variable leading axis is the batch axis; any other model keeps its exact
//! shapes), request-time shape checks, per-shape plans in a bounded cache, and dynamic batching
//! that merges only requests whose shapes agree.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use infera::engine::{CompiledModel, LoadOptions, PlanMode, PlanObserver, Tensor, TensorData};
use serde_json::{json, Value};
use tract_onnx::pb::tensor_proto::DataType;
use tract_onnx::pb::tensor_shape_proto::{dimension, Dimension};
use tract_onnx::pb::{
    type_proto, GraphProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};

use crate::common::{get, loaded, metric, post};
use crate::onnx::{self, F32, I64};

/// A graph input/output whose dims are written as in an ONNX file: a number, a `dim_param`
/// name, or `?` for a variable dimension without a name.
fn io(name: &str, elem: DataType, dims: &[&str]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| Dimension {
            denotation: String::new(),
            value: match (*d, d.parse::<i64>()) {
                ("?", _) => None,
                (_, Ok(n)) => Some(dimension::Value::DimValue(n)),
                (name, Err(_)) => Some(dimension::Value::DimParam(name.into())),
            },
        })
        .collect();
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            denotation: String::new(),
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: elem as i32,
                shape: Some(TensorShapeProto { dim }),
            })),
        }),
        doc_string: String::new(),
    }
}

/// y = 2x with x and y declared as `dims`.
pub fn doubler_named(repo: &Path, name: &str, dims: &[&str]) {
    doubler(repo, name, dims)
}

fn doubler(repo: &Path, name: &str, dims: &[&str]) {
    onnx::write(
        repo,
        name,
        GraphProto {
            node: vec![onnx::node("Mul", &["x", "two"], &["y"], vec![])],
            name: name.into(),
            initializer: vec![onnx::f32_tensor("two", &[], vec![2.0])],
            input: vec![io("x", F32, dims)],
            output: vec![io("y", F32, dims)],
            ..Default::default()
        },
    );
}

/// A recurrent-style graph without a batch axis: x [T, 4] -> y = 2x, state [1, 1, 3] -> hn =
/// state + 1 (hn also feeds an Identity, as exported recurrent graphs do).
fn recurrent(repo: &Path, name: &str) {
    onnx::write(
        repo,
        name,
        GraphProto {
            node: vec![
                onnx::node("Mul", &["x", "two"], &["y"], vec![]),
                onnx::node("Add", &["state", "one"], &["hn"], vec![]),
                onnx::node("Identity", &["hn"], &["hn_copy"], vec![]),
            ],
            name: name.into(),
            initializer: vec![
                onnx::f32_tensor("two", &[], vec![2.0]),
                onnx::f32_tensor("one", &[], vec![1.0]),
            ],
            input: vec![
                io("x", F32, &["T", "4"]),
                io("state", F32, &["1", "1", "3"]),
            ],
            output: vec![io("y", F32, &["T", "4"]), io("hn", F32, &["1", "1", "3"])],
            ..Default::default()
        },
    );
}

/// Token ids and attention mask sharing `[batch, sequence]`: y = ids * mask (int64).
fn ids_and_mask(repo: &Path, name: &str) {
    onnx::write(
        repo,
        name,
        GraphProto {
            node: vec![onnx::node("Mul", &["ids", "mask"], &["y"], vec![])],
            name: name.into(),
            input: vec![
                io("ids", I64, &["batch", "sequence"]),
                io("mask", I64, &["batch", "sequence"]),
            ],
            output: vec![io("y", I64, &["batch", "sequence"])],
            ..Default::default()
        },
    );
}

/// x [N, W] reshaped to [N, 2, W/2]: only even widths fit.
fn halves(repo: &Path, name: &str) {
    let shape = TensorProto {
        name: "shape".into(),
        dims: vec![3],
        data_type: I64 as i32,
        int64_data: vec![0, 2, -1],
        ..Default::default()
    };
    onnx::write(
        repo,
        name,
        GraphProto {
            node: vec![onnx::node("Reshape", &["x", "shape"], &["y"], vec![])],
            name: name.into(),
            initializer: vec![shape],
            input: vec![io("x", F32, &["N", "W"])],
            output: vec![io("y", F32, &["N", "2", "H"])],
            ..Default::default()
        },
    );
}

fn v2_input(name: &str, shape: &[usize], datatype: &str, data: Value) -> Value {
    json!({"name": name, "shape": shape, "datatype": datatype, "data": data})
}

async fn infer(app: &axum::Router, model: &str, inputs: Vec<Value>) -> crate::common::Reply {
    post(
        app,
        &format!("/v2/models/{model}/infer"),
        &json!({ "inputs": inputs }),
    )
    .await
}

fn floats(n: usize) -> Vec<f32> {
    (0..n).map(|i| i as f32 * 0.5).collect()
}

fn doubled(n: usize) -> Value {
    json!((0..n).map(|i| i as f64).collect::<Vec<_>>())
}

#[tokio::test]
async fn variable_width_takes_any_width_and_shows_minus_one() {
    let repo = tempfile::tempdir().unwrap();
    doubler(repo.path(), "ocr", &["N", "2", "W"]);
    doubler(repo.path(), "unnamed", &["?", "2", "?"]);
    let app = loaded(repo.path(), &[]).router();
    for model in ["ocr", "unnamed"] {
        let meta = get(&app, &format!("/v2/models/{model}")).await.json();
        assert_eq!(meta["inputs"][0]["shape"], json!([-1, 2, -1]), "{model}");
        assert_eq!(meta["outputs"][0]["shape"], json!([-1, 2, -1]), "{model}");
        for (rows, width) in [(1, 3), (2, 5), (3, 1)] {
            let n = rows * 2 * width;
            let r = infer(
                &app,
                model,
                vec![v2_input("x", &[rows, 2, width], "FP32", json!(floats(n)))],
            )
            .await;
            assert_eq!(r.status, StatusCode::OK, "{model} {width}: {}", r.text);
            let out = &r.json()["outputs"][0];
            assert_eq!(out["name"], "y");
            assert_eq!(out["shape"], json!([rows, 2, width]), "{model}");
            assert_eq!(out["data"], doubled(n), "{model}");
        }
        let r = infer(
            &app,
            model,
            vec![v2_input("x", &[1, 3, 2], "FP32", json!(floats(6)))],
        )
        .await;
        assert_eq!(r.error(StatusCode::BAD_REQUEST).1, "wrong_shape", "{model}");
    }
    // /predict: an instance is one row of any width; the instances of a request share it.
    let r = post(
        &app,
        "/models/ocr/predict",
        &json!({"instances": [[[0, 0.5, 1], [1.5, 2, 2.5]], [[3, 3.5, 4], [4.5, 5, 5.5]]]}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let body = r.json();
    assert_eq!(
        body["predictions"][1]["outputs"]["y"]["data"],
        json!([6.0, 7.0, 8.0, 9.0, 10.0, 11.0])
    );
    assert_eq!(
        body["predictions"][1]["outputs"]["y"]["shape"],
        json!([2, 3])
    );
    let r = post(
        &app,
        "/models/ocr/predict",
        &json!({"instances": [[[0, 1], [2, 3]], [[0, 1, 2], [3, 4, 5]]]}),
    )
    .await;
    assert_eq!(r.error(StatusCode::UNPROCESSABLE_ENTITY).1, "wrong_shape");
}

#[tokio::test]
async fn a_graph_without_a_batch_axis_is_served_with_its_exact_shapes() {
    let repo = tempfile::tempdir().unwrap();
    recurrent(repo.path(), "vad");
    let app = loaded(repo.path(), &[]).router();
    let meta = get(&app, "/v2/models/vad").await.json();
    assert_eq!(meta["inputs"][0]["name"], "x");
    assert_eq!(meta["inputs"][0]["shape"], json!([-1, 4]));
    assert_eq!(meta["inputs"][1]["name"], "state");
    assert_eq!(meta["inputs"][1]["shape"], json!([1, 1, 3]));
    assert_eq!(meta["outputs"][0]["name"], "y");
    assert_eq!(meta["outputs"][0]["shape"], json!([-1, 4]));
    assert_eq!(meta["outputs"][1]["name"], "hn");
    assert_eq!(meta["outputs"][1]["shape"], json!([1, 1, 3]));
    for steps in [2, 5] {
        let r = infer(
            &app,
            "vad",
            vec![
                v2_input("x", &[steps, 4], "FP32", json!(floats(steps * 4))),
                v2_input("state", &[1, 1, 3], "FP32", json!([0.0, 1.0, 2.0])),
            ],
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let body = r.json();
        assert_eq!(body["outputs"][0]["name"], "y");
        assert_eq!(body["outputs"][0]["shape"], json!([steps, 4]));
        assert_eq!(body["outputs"][0]["data"], doubled(steps * 4));
        assert_eq!(body["outputs"][1]["name"], "hn");
        assert_eq!(body["outputs"][1]["shape"], json!([1, 1, 3]));
        assert_eq!(body["outputs"][1]["data"], json!([1.0, 2.0, 3.0]));
    }
    // An invented batch axis is refused, naming the exact shape the model takes.
    let r = infer(
        &app,
        "vad",
        vec![
            v2_input("x", &[1, 2, 4], "FP32", json!(floats(8))),
            v2_input("state", &[1, 1, 1, 3], "FP32", json!([0.0, 1.0, 2.0])),
        ],
    )
    .await;
    let (message, kind) = r.error(StatusCode::BAD_REQUEST);
    assert_eq!(kind, "wrong_shape");
    assert!(message.contains("no batch axis"), "{message}");
}

#[tokio::test]
async fn dimensions_one_name_ties_together_must_agree() {
    let repo = tempfile::tempdir().unwrap();
    ids_and_mask(repo.path(), "encoder");
    let app = loaded(repo.path(), &[]).router();
    let meta = get(&app, "/v2/models/encoder").await.json();
    assert_eq!(meta["inputs"][0]["shape"], json!([-1, -1]));
    assert_eq!(meta["inputs"][0]["datatype"], "INT64");
    for len in [3, 7] {
        let ids: Vec<i64> = (0..2 * len as i64).collect();
        let r = infer(
            &app,
            "encoder",
            vec![
                v2_input("ids", &[2, len], "INT64", json!(ids)),
                v2_input("mask", &[2, len], "INT64", json!(vec![1; 2 * len])),
            ],
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.json()["outputs"][0]["data"], json!(ids));
    }
    let r = infer(
        &app,
        "encoder",
        vec![
            v2_input("ids", &[1, 3], "INT64", json!([1, 2, 3])),
            v2_input("mask", &[1, 4], "INT64", json!([1, 1, 1, 1])),
        ],
    )
    .await;
    let (message, kind) = r.error(StatusCode::BAD_REQUEST);
    assert_eq!(kind, "unsupported_shape");
    assert!(
        message.contains("\"ids\"") && message.contains("\"mask\""),
        "{message}"
    );
}

#[tokio::test]
async fn the_card_declares_the_batch_axis_or_none() {
    let repo = tempfile::tempdir().unwrap();
    onnx::doubler(repo.path(), "whole", &[-1, 3]);
    std::fs::write(
        repo.path().join("whole/model.toml"),
        "[runtime]\nbatch_axis = false\n",
    )
    .unwrap();
    onnx::doubler(repo.path(), "one", &[1, 3]);
    std::fs::write(
        repo.path().join("one/model.toml"),
        "[runtime]\nbatch_axis = true\n",
    )
    .unwrap();
    onnx::doubler(repo.path(), "plain", &[1, 3]);
    let app = loaded(repo.path(), &[]).router();
    let shape = |meta: &Value| meta["inputs"][0]["shape"].clone();
    assert_eq!(
        shape(&get(&app, "/v2/models/whole").await.json()),
        json!([-1, 3])
    );
    assert_eq!(
        shape(&get(&app, "/v2/models/one").await.json()),
        json!([-1, 3])
    );
    assert_eq!(
        shape(&get(&app, "/v2/models/plain").await.json()),
        json!([1, 3])
    );
    // Without a batch axis, [2, 3] is one tensor of the declared [-1, 3]: one instance.
    let r = infer(
        &app,
        "whole",
        vec![v2_input("x", &[2, 3], "FP32", json!(floats(6)))],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["outputs"][0]["shape"], json!([2, 3]));
    assert_eq!(r.json()["outputs"][0]["data"], doubled(6));
    let r = infer(
        &app,
        "plain",
        vec![v2_input("x", &[1, 3], "FP32", json!(floats(3)))],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["outputs"][0]["shape"], json!([1, 3]));
    let r = infer(
        &app,
        "plain",
        vec![v2_input("x", &[2, 3], "FP32", json!(floats(6)))],
    )
    .await;
    assert_eq!(r.error(StatusCode::BAD_REQUEST).1, "wrong_shape");
    let r = infer(
        &app,
        "one",
        vec![v2_input("x", &[2, 3], "FP32", json!(floats(6)))],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["outputs"][0]["shape"], json!([2, 3]));
    // A card that declares a batch axis the graph cannot have fails the load, saying why.
    onnx::doubler(repo.path(), "flat", &[3]);
    std::fs::write(
        repo.path().join("flat/model.toml"),
        "[runtime]\nbatch_axis = true\n",
    )
    .unwrap();
    let app = loaded(repo.path(), &[]).router();
    let card = get(&app, "/models/flat").await.json();
    assert_eq!(card["state"], "failed", "{card}");
    assert!(card.to_string().contains("declares a batch axis"), "{card}");
}

#[tokio::test]
async fn specialised_plans_are_cached_with_a_bound_and_refusals_remembered() {
    let repo = tempfile::tempdir().unwrap();
    halves(repo.path(), "halves");
    std::fs::write(
        repo.path().join("halves/model.toml"),
        "[runtime]\nplans = \"specialised\"\nplan_cache = 2\n",
    )
    .unwrap();
    let infera = loaded(repo.path(), &[]);
    let app = infera.router();
    let meta = get(&app, "/v2/models/halves").await.json();
    assert_eq!(meta["inputs"][0]["shape"], json!([-1, -1]));
    assert_eq!(meta["outputs"][0]["shape"], json!([-1, 2, -1]));
    // Widths 2, 2, 4, 6 (evicts 2), 2: four plans built, one hit.
    for width in [2usize, 2, 4, 6, 2] {
        let r = infer(
            &app,
            "halves",
            vec![v2_input("x", &[1, width], "FP32", json!(floats(width)))],
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{width}: {}", r.text);
        let out = &r.json()["outputs"][0];
        assert_eq!(out["shape"], json!([1, 2, width / 2]));
        assert_eq!(out["data"], json!(floats(width)));
    }
    // An odd width fits the declared shape but not the graph: 4xx, and remembered.
    for _ in 0..2 {
        let r = infer(
            &app,
            "halves",
            vec![v2_input("x", &[1, 3], "FP32", json!(floats(3)))],
        )
        .await;
        let (message, kind) = r.error(StatusCode::BAD_REQUEST);
        assert_eq!(kind, "unsupported_shape", "{message}");
        assert!(message.contains("[[1, 3]]"), "{message}");
    }
    let text = infera.state.metrics.render();
    let series = |name: &str, extra: &str| {
        metric(
            &text,
            &format!("{name}{{model=\"halves\",{extra}version=\"1\"}}"),
        )
        .unwrap_or_else(|| panic!("{name} {extra} missing:\n{text}"))
    };
    assert_eq!(series("infera_model_plan_cache_hits_total", ""), 2.0);
    assert_eq!(
        series("infera_model_plan_cache_misses_total", "result=\"ok\","),
        4.0
    );
    assert_eq!(
        series(
            "infera_model_plan_cache_misses_total",
            "result=\"refused\","
        ),
        1.0
    );
    assert_eq!(
        series("infera_model_plan_specialisation_seconds_count", ""),
        5.0
    );
    assert_eq!(
        series(
            "infera_model_failures_total",
            "protocol=\"http\",reason=\"unsupported_shape\","
        ),
        2.0
    );
}

/// Counts plan-cache hits and misses.
#[derive(Default)]
struct Counts {
    hits: AtomicUsize,
    misses: AtomicUsize,
}

impl PlanObserver for Counts {
    fn plan_hit(&self) {
        self.hits.fetch_add(1, Ordering::Relaxed);
    }

    fn plan_miss(&self, _took: Duration, _ok: bool) {
        self.misses.fetch_add(1, Ordering::Relaxed);
    }
}

fn part(rows: usize, width: usize, base: f32) -> Vec<Tensor> {
    let data: Vec<f32> = (0..rows * width).map(|i| base + i as f32).collect();
    vec![Tensor::new(vec![rows, width], TensorData::F32(data)).unwrap()]
}

#[test]
fn callers_share_a_plan_call_only_when_their_shapes_agree() {
    let repo = tempfile::tempdir().unwrap();
    doubler(repo.path(), "w", &["N", "W"]);
    let options = LoadOptions {
        plans: PlanMode::Specialised,
        ..LoadOptions::default()
    };
    let model = CompiledModel::load_with(&repo.path().join("w/1/model.onnx"), &options).unwrap();
    assert!(model.can_batch_callers());
    let counts = Arc::new(Counts::default());
    model.observe_plans(counts.clone());
    let parts = vec![part(1, 2, 0.0), part(2, 3, 10.0), part(1, 2, 20.0)];
    let answers = model.run_callers(&parts).unwrap();
    for (sent, got) in parts.iter().zip(&answers) {
        assert_eq!(got[0].shape, sent[0].shape);
        let TensorData::F32(x) = &sent[0].data else {
            unreachable!()
        };
        let want: Vec<f32> = x.iter().map(|v| v * 2.0).collect();
        assert_eq!(got[0].data, TensorData::F32(want));
    }
    // The two width-2 callers ran as one call of 2 rows, the width-3 caller alone: two plans,
    // no hit (three calls, one per caller, would have hit the width-2 plan once).
    assert_eq!(counts.misses.load(Ordering::Relaxed), 2);
    assert_eq!(counts.hits.load(Ordering::Relaxed), 0);
    assert_eq!(model.plan_cache(), Some((16, 2)));
}
