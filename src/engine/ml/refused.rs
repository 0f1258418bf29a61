//! Graphs infera refuses before tract parses them, with an error that names the reason.
//!
//! Map and sequence values: skl2onnx exports DictVectorizer with a `map(string, float)` graph
//! input, and CastMap consumes maps too. tract-onnx's protobuf schema knows tensor types only
//! (`TypeProto` has no `map_type` / `sequence_type`), so such a type is dropped while decoding
//! and tract would fail with "graph input has no type value". infera's values are tensors end to
//! end (engine, batching, V1/V2 and /predict decoding), so these graphs are refused here, naming
//! the operators and the inputs.

use tract_onnx::pb::{GraphProto, ValueInfoProto};
use tract_onnx::tract_hir::internal::*;

/// Operators whose inputs are ONNX maps (ai.onnx.ml).
const MAP_OPERATORS: [&str; 2] = ["DictVectorizer", "CastMap"];

/// Refuses a graph with a map or sequence graph input, or an operator that consumes maps.
pub fn refuse_non_tensor_values(graph: &GraphProto) -> TractResult<()> {
    let inputs: Vec<&str> = graph
        .input
        .iter()
        .filter(|i| !is_tensor(i))
        .map(|i| i.name.as_str())
        .collect();
    let operators: Vec<String> = graph
        .node
        .iter()
        .filter(|n| MAP_OPERATORS.contains(&n.op_type.as_str()))
        .map(|n| {
            format!(
                "{} (node {:?}, input {:?})",
                n.op_type,
                n.name,
                n.input.first()
            )
        })
        .collect();
    if operators.is_empty() && inputs.is_empty() {
        return Ok(());
    }
    let mut reasons = Vec::new();
    if !operators.is_empty() {
        reasons.push(format!(
            "operators on ONNX maps are not supported by infera: {}",
            operators.join(", ")
        ));
    }
    if !inputs.is_empty() {
        reasons.push(format!(
            "graph inputs that are not tensors (a map, sequence or optional type): {}",
            inputs.join(", ")
        ));
    }
    bail!(
        "{}; infera serves tensor inputs only (for DictVectorizer: export the model after \
         the vectorizer, with one tensor input per feature)",
        reasons.join("; ")
    )
}

/// A graph input whose type decoded as a tensor. tract's schema has no map or sequence types,
/// so those decode with no type value at all.
fn is_tensor(input: &ValueInfoProto) -> bool {
    input
        .r#type
        .as_ref()
        .and_then(|t| t.value.as_ref())
        .is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_onnx::pb::{type_proto, NodeProto, TypeProto};

    fn input(name: &str, tensor: bool) -> ValueInfoProto {
        let value = tensor.then(|| type_proto::Value::TensorType(type_proto::Tensor::default()));
        ValueInfoProto {
            name: name.into(),
            r#type: Some(TypeProto {
                value,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn node(op: &str, input: &str) -> NodeProto {
        NodeProto {
            op_type: op.into(),
            name: op.into(),
            input: vec![input.into()],
            ..Default::default()
        }
    }

    #[test]
    fn tensor_graphs_pass() {
        let graph = GraphProto {
            input: vec![input("x", true)],
            node: vec![node("LinearClassifier", "x")],
            ..Default::default()
        };
        refuse_non_tensor_values(&graph).unwrap();
    }

    #[test]
    fn a_dict_vectorizer_on_a_map_input_is_refused_naming_both() {
        let graph = GraphProto {
            input: vec![input("features", false)],
            node: vec![node("DictVectorizer", "features")],
            ..Default::default()
        };
        let error = refuse_non_tensor_values(&graph).unwrap_err().to_string();
        assert!(
            error.contains(
                "operators on ONNX maps are not supported by infera: DictVectorizer \
                 (node \"DictVectorizer\", input Some(\"features\"))"
            ),
            "{error}"
        );
        assert!(
            error.contains("not tensors (a map, sequence or optional type): features"),
            "{error}"
        );
    }

    #[test]
    fn a_cast_map_inside_the_graph_is_refused() {
        let graph = GraphProto {
            input: vec![input("x", true)],
            node: vec![node("CastMap", "m")],
            ..Default::default()
        };
        let error = refuse_non_tensor_values(&graph).unwrap_err().to_string();
        assert!(error.contains("CastMap (node \"CastMap\""), "{error}");
        assert!(!error.contains("graph inputs"), "{error}");
    }
}
