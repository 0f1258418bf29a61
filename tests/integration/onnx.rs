//! Builds small ONNX graphs at test time (slow models for overload tests, graphs without a
//! symbolic batch, several inputs), so no test fixture needs committing.

use std::path::Path;

use prost::Message;
use tract_onnx::pb::tensor_proto::DataType;
use tract_onnx::pb::tensor_shape_proto::{dimension, Dimension};
use tract_onnx::pb::{
    type_proto, AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto,
};

pub const F32: DataType = DataType::Float;
pub const I64: DataType = DataType::Int64;

/// A graph input/output; -1 is the symbolic batch dimension `N`.
pub fn io(name: &str, elem: DataType, dims: &[i64]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|&d| Dimension {
            denotation: String::new(),
            value: Some(if d < 0 {
                dimension::Value::DimParam("N".into())
            } else {
                dimension::Value::DimValue(d)
            }),
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

pub fn node(
    op: &str,
    inputs: &[&str],
    outputs: &[&str],
    attribute: Vec<AttributeProto>,
) -> NodeProto {
    NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        name: format!("{op}_{}", outputs[0]),
        op_type: op.into(),
        attribute,
        ..Default::default()
    }
}

pub fn int_attr(name: &str, i: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: 2,
        i,
        ..Default::default()
    }
}

pub fn f32_tensor(name: &str, dims: &[i64], data: Vec<f32>) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: F32 as i32,
        float_data: data,
        ..Default::default()
    }
}

/// Writes `<repo>/<name>/1/model.onnx`.
pub fn write(repo: &Path, name: &str, graph: GraphProto) {
    let dir = repo.join(name).join("1");
    std::fs::create_dir_all(&dir).unwrap();
    let model = ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 15,
        }],
        producer_name: "infera-tests".into(),
        graph: Some(graph),
        ..Default::default()
    };
    std::fs::write(dir.join("model.onnx"), model.encode_to_vec()).unwrap();
}

/// x [N, width] -> (MatMul W, Tanh) x depth -> y [N, width]: CPU-heavy per instance.
pub fn slow(repo: &Path, name: &str, width: i64, depth: usize) {
    let w: Vec<f32> = (0..width * width)
        .map(|i| if i % (width + 1) == 0 { 0.9 } else { 0.001 })
        .collect();
    let mut nodes = Vec::new();
    let mut last = "x".to_string();
    for i in 0..depth {
        let (m, t) = (
            format!("m{i}"),
            if i + 1 == depth {
                "y".to_string()
            } else {
                format!("t{i}")
            },
        );
        nodes.push(node("MatMul", &[&last, "w"], &[&m], vec![]));
        nodes.push(node("Tanh", &[&m], &[&t], vec![]));
        last = t;
    }
    write(
        repo,
        name,
        GraphProto {
            node: nodes,
            name: name.into(),
            initializer: vec![f32_tensor("w", &[width, width], w)],
            input: vec![io("x", F32, &[-1, width])],
            output: vec![io("y", F32, &[-1, width])],
            ..Default::default()
        },
    );
}

/// y = x * 2 with x declared as `dims` (e.g. [1, 3]: batch fixed at one; [3]: no batch axis).
pub fn doubler(repo: &Path, name: &str, dims: &[i64]) {
    write(
        repo,
        name,
        GraphProto {
            node: vec![node("Mul", &["x", "two"], &["y"], vec![])],
            name: name.into(),
            initializer: vec![f32_tensor("two", &[], vec![2.0])],
            input: vec![io("x", F32, dims)],
            output: vec![io("y", F32, dims)],
            ..Default::default()
        },
    );
}

/// y = a + float(b), with a: f32 [N, 2] and b: i64 [N, 2].
pub fn two_inputs(repo: &Path, name: &str) {
    write(
        repo,
        name,
        GraphProto {
            node: vec![
                node("Cast", &["b"], &["bf"], vec![int_attr("to", F32 as i64)]),
                node("Add", &["a", "bf"], &["y"], vec![]),
            ],
            name: name.into(),
            input: vec![io("a", F32, &[-1, 2]), io("b", I64, &[-1, 2])],
            output: vec![io("y", F32, &[-1, 2])],
            ..Default::default()
        },
    );
}

fn i64_tensor(name: &str, data: Vec<i64>) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: vec![data.len() as i64],
        data_type: I64 as i32,
        int64_data: data,
        ..Default::default()
    }
}

/// y = x + min_j |x_j - x| over the rows j of the call, with x: f32 [N, width]: always y = x
/// (the row itself is among the j), but a call of n rows does n x n x width work, so its cost
/// per row grows with the batch.
pub fn pairwise(repo: &Path, name: &str, width: i64) {
    pairwise_with_output(repo, name, width, io("y", F32, &[-1, width]));
}

/// [`pairwise`] whose output declares its second dimension as `w_out`, a name no input has: with
/// specialised plans infera cannot tell the output's size from the inputs', so requests to it
/// never share a call.
pub fn pairwise_unsized_output(repo: &Path, name: &str, width: i64) {
    let mut y = io("y", F32, &[-1, width]);
    if let Some(TypeProto {
        value: Some(type_proto::Value::TensorType(t)),
        ..
    }) = y.r#type.as_mut()
    {
        if let Some(shape) = t.shape.as_mut() {
            shape.dim[1].value = Some(dimension::Value::DimParam("w_out".into()));
        }
    }
    pairwise_with_output(repo, name, width, y);
}

fn pairwise_with_output(repo: &Path, name: &str, width: i64, output: ValueInfoProto) {
    let axes = AttributeProto {
        name: "axes".into(),
        r#type: 7,
        ints: vec![1],
        ..Default::default()
    };
    write(
        repo,
        name,
        GraphProto {
            node: vec![
                node("Unsqueeze", &["x", "zero"], &["rows"], vec![]),
                node("Unsqueeze", &["x", "one"], &["cols"], vec![]),
                node("Sub", &["rows", "cols"], &["diff"], vec![]),
                node("Abs", &["diff"], &["dist"], vec![]),
                node(
                    "ReduceMin",
                    &["dist"],
                    &["nearest"],
                    vec![axes, int_attr("keepdims", 0)],
                ),
                node("Add", &["x", "nearest"], &["y"], vec![]),
            ],
            name: name.into(),
            initializer: vec![i64_tensor("zero", vec![0]), i64_tensor("one", vec![1])],
            input: vec![io("x", F32, &[-1, width])],
            output: vec![output],
            ..Default::default()
        },
    );
}
