//! Graphs with `If` nodes: refused at load (naming the node and the operator) when tract cannot
//! type them (the branches' outputs differ in rank, whatever the condition), and served when the
//! branches agree (a condition computed from an input is then evaluated per call).

use std::path::Path;

use infera::engine::{CompiledModel, EngineError, Tensor, TensorData};
use serde_json::json;
use tract_onnx::pb::{AttributeProto, GraphProto, TensorProto, ValueInfoProto};

use crate::common::{get, loaded, post};
use crate::onnx::{self, F32, I64};

fn branch(
    name: &str,
    nodes: Vec<tract_onnx::pb::NodeProto>,
    out: ValueInfoProto,
) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: 5, // GRAPH
        g: Some(GraphProto {
            node: nodes,
            name: name.into(),
            output: vec![out],
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// How the `If`'s condition is made.
enum Cond {
    /// `ReduceSum(x) > 0`: depends on the input.
    FromInput,
    /// A constant `true`.
    Constant,
}

/// x [4] -> If(cond) { then: x (rank 1) } else { `else_op`(x) } -> y. With `Unsqueeze` the
/// branches differ in rank ([4] against [1, 4]); with `Neg` they agree.
fn if_model(repo: &Path, name: &str, cond: Cond, else_op: &str) {
    let mut nodes = Vec::new();
    let mut initializer = vec![
        onnx::f32_tensor("zero", &[], vec![0.0]),
        TensorProto {
            name: "axes".into(),
            dims: vec![1],
            data_type: I64 as i32,
            int64_data: vec![0],
            ..Default::default()
        },
    ];
    match cond {
        Cond::FromInput => {
            nodes.push(onnx::node(
                "ReduceSum",
                &["x"],
                &["s"],
                vec![onnx::int_attr("keepdims", 0)],
            ));
            nodes.push(onnx::node("Greater", &["s", "zero"], &["c"], vec![]));
        }
        Cond::Constant => initializer.push(TensorProto {
            name: "c".into(),
            dims: vec![],
            data_type: tract_onnx::pb::tensor_proto::DataType::Bool as i32,
            int32_data: vec![1],
            ..Default::default()
        }),
    }
    let (else_node, else_dims): (_, &[i64]) = match else_op {
        "Unsqueeze" => (
            onnx::node("Unsqueeze", &["x", "axes"], &["ye"], vec![]),
            &[1, 4],
        ),
        op => (onnx::node(op, &["x"], &["ye"], vec![]), &[4]),
    };
    let mut if_node = onnx::node("If", &["c"], &["y"], vec![]);
    if_node.name = "/decoder/If".into();
    if_node.attribute = vec![
        branch(
            "then_branch",
            vec![onnx::node("Identity", &["x"], &["yt"], vec![])],
            onnx::io("yt", F32, &[4]),
        ),
        branch(
            "else_branch",
            vec![else_node],
            onnx::io("ye", F32, else_dims),
        ),
    ];
    nodes.push(if_node);
    let mut output = onnx::io("y", F32, &[4]);
    if let Some(tract_onnx::pb::type_proto::Value::TensorType(t)) =
        output.r#type.as_mut().and_then(|t| t.value.as_mut())
    {
        t.shape = None; // the graph cannot say: it depends on the branch
    }
    onnx::write(
        repo,
        name,
        GraphProto {
            node: nodes,
            name: name.into(),
            initializer,
            input: vec![onnx::io("x", F32, &[4])],
            output: vec![output],
            ..Default::default()
        },
    );
}

fn x(values: [f32; 4]) -> Tensor {
    // The engine's tensors are batch first; this graph has no batch axis (one instance a call).
    Tensor::new(vec![1, 4], TensorData::F32(values.to_vec())).unwrap()
}

#[test]
fn an_if_whose_branches_differ_and_whose_condition_is_an_input_is_refused_at_load() {
    let repo = tempfile::tempdir().unwrap();
    if_model(repo.path(), "diverging", Cond::FromInput, "Unsqueeze");
    let err = CompiledModel::load(&repo.path().join("diverging/1/model.onnx")).unwrap_err();
    let EngineError::Unsupported { reason, .. } = &err else {
        panic!("expected Unsupported, got {err:?}");
    };
    assert!(reason.contains("\"/decoder/If\" (operator If)"), "{reason}");
    assert!(
        reason.contains("its condition depends on input \"x\""),
        "{reason}"
    );
    assert!(reason.contains("branches"), "{reason}");
    // tract needs the branches to agree even when the condition is a constant.
    if_model(repo.path(), "constant", Cond::Constant, "Unsqueeze");
    let err = CompiledModel::load(&repo.path().join("constant/1/model.onnx")).unwrap_err();
    let EngineError::Unsupported { reason, .. } = &err else {
        panic!("expected Unsupported, got {err:?}");
    };
    assert!(
        reason.contains("\"/decoder/If\" (operator If): "),
        "{reason}"
    );
}

#[test]
fn an_if_tract_can_run_still_loads_and_runs() {
    let repo = tempfile::tempdir().unwrap();
    // Branches that agree: the condition is evaluated per request.
    if_model(repo.path(), "agreeing", Cond::FromInput, "Neg");
    let model = CompiledModel::load(&repo.path().join("agreeing/1/model.onnx")).unwrap();
    let out = model.run_request(&[x([1.0, 2.0, 3.0, 4.0])]).unwrap();
    assert_eq!(out[0].data, TensorData::F32(vec![1.0, 2.0, 3.0, 4.0]));
    let out = model.run_request(&[x([-1.0, -2.0, 0.0, 0.5])]).unwrap();
    assert_eq!(out[0].data, TensorData::F32(vec![1.0, 2.0, -0.0, -0.5]));
    // Agreeing branches under a constant condition.
    if_model(repo.path(), "constant", Cond::Constant, "Neg");
    let model = CompiledModel::load(&repo.path().join("constant/1/model.onnx")).unwrap();
    let out = model.run_request(&[x([1.0, -2.0, 3.0, -4.0])]).unwrap();
    assert_eq!(out[0].data, TensorData::F32(vec![1.0, -2.0, 3.0, -4.0]));
}

#[tokio::test]
async fn the_server_reports_the_refusal_and_serves_the_other_models() {
    let repo = tempfile::tempdir().unwrap();
    if_model(repo.path(), "diverging", Cond::FromInput, "Unsqueeze");
    if_model(repo.path(), "agreeing", Cond::FromInput, "Neg");
    let app = loaded(repo.path(), &[]).router();
    let card = get(&app, "/models/diverging").await.json();
    assert_eq!(card["state"], "failed", "{card}");
    let error = card["versions"][0]["error"].as_str().unwrap();
    assert!(
        error.contains("\"/decoder/If\" (operator If): its condition depends on input \"x\", and"),
        "{error}"
    );
    let reply = post(
        &app,
        "/v2/models/agreeing/infer",
        &json!({"inputs": [{"name": "x", "shape": [4], "datatype": "FP32",
                            "data": [-1.0, 2.0, -3.0, 1.0]}]}),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(
        reply.json()["outputs"][0]["data"],
        json!([1.0, -2.0, 3.0, -1.0])
    );
}
