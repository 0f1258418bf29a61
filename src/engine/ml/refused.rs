//! Graphs infera refuses before tract parses them, with an error that names the reason.
//!
//! Map and sequence values: a map-typed graph input read only by DictVectorizer / CastMap is
//! rewritten into tensors before this check (`map_inputs.rs`). What is left is refused here:
//! graph inputs of other non-tensor types (sequences, optionals, maps read by other operators),
//! which tract's schema decodes without a type, and map operators whose map is not such a graph
//! input (a map made inside the graph).

use tract_onnx::pb::{GraphProto, ValueInfoProto};
use tract_onnx::tract_hir::internal::*;

use super::map_inputs::{KEY_TYPE_ATTR, MAP_OPERATORS};

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
        .filter(|n| !n.attribute.iter().any(|a| a.name == KEY_TYPE_ATTR))
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
            "operators on ONNX maps are supported by infera only on a map graph input: {}",
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
        "{}; infera serves tensor inputs, and map graph inputs read only by DictVectorizer or \
         CastMap",
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
                "operators on ONNX maps are supported by infera only on a map graph input: \
                 DictVectorizer \
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
        assert!(
            !error.contains("graph inputs that are not tensors"),
            "{error}"
        );
    }
}
