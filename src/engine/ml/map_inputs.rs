//! Map-typed graph inputs (`map(K, V)`), rewritten at load into three tensor inputs
//! (`engine/maps.rs`: keys `[N, M]`, values `[N, M]`, lengths `[N]`) that infera's DictVectorizer
//! and CastMap (`map_ops.rs`) read.
//!
//! tract-onnx's protobuf schema knows tensor types only (its `TypeProto` has no `map_type`), so
//! a map input decodes there with no type at all. Its key and value types are read here from the
//! file's bytes with a few messages of our own (the ONNX field numbers of `ModelProto.graph`,
//! `GraphProto.input`, `ValueInfoProto.type`, `TypeProto.tensor_type` / `map_type`), and only when
//! tract's graph has an input without a type.

use std::collections::HashMap;
use std::path::Path;

use prost::Message;
use tract_onnx::pb::tensor_proto::DataType as PbType;
use tract_onnx::pb::tensor_shape_proto::{dimension, Dimension};
use tract_onnx::pb::{
    type_proto, AttributeProto, GraphProto, TensorShapeProto, TypeProto, ValueInfoProto,
};
use tract_onnx::tract_hir::internal::*;

use crate::engine::maps::{KEYS, LENGTHS, VALUES};

/// Operators that take a map, and where infera's versions of them find its types.
pub const MAP_OPERATORS: [&str; 2] = ["DictVectorizer", "CastMap"];
/// Attribute the rewrite adds to a map operator: the map's key type (an ONNX element type).
pub const KEY_TYPE_ATTR: &str = "infera_map_key_type";
/// Attribute the rewrite adds to a map operator: the map's value type (an ONNX element type).
pub const VALUE_TYPE_ATTR: &str = "infera_map_value_type";

#[derive(Clone, PartialEq, Message)]
struct Model {
    #[prost(message, optional, tag = "7")]
    graph: Option<Graph>,
}

#[derive(Clone, PartialEq, Message)]
struct Graph {
    #[prost(message, repeated, tag = "11")]
    input: Vec<ValueInfo>,
}

#[derive(Clone, PartialEq, Message)]
struct ValueInfo {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(message, optional, tag = "2")]
    r#type: Option<Type>,
}

#[derive(Clone, PartialEq, Message)]
struct Type {
    #[prost(message, optional, tag = "1")]
    tensor_type: Option<TensorType>,
    #[prost(message, optional, boxed, tag = "5")]
    map_type: Option<Box<MapType>>,
}

#[derive(Clone, PartialEq, Message)]
struct TensorType {
    #[prost(int32, tag = "1")]
    elem_type: i32,
}

#[derive(Clone, PartialEq, Message)]
struct MapType {
    #[prost(int32, tag = "1")]
    key_type: i32,
    #[prost(message, optional, tag = "2")]
    value_type: Option<Type>,
}

/// A map input's key and value element types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapTypes {
    pub key: PbType,
    pub value: PbType,
}

/// Rewrites every map input of `graph` (read from the file at `path`) that only DictVectorizer
/// or CastMap nodes read. Inputs of other non-tensor types, and maps read by anything else, are
/// left for `refused.rs` to name.
pub fn rewrite(path: &Path, graph: &mut GraphProto) -> TractResult<()> {
    if graph.input.iter().all(has_type) {
        return Ok(());
    }
    let bytes = std::fs::read(path).with_context(|| format!("reading {path:?}"))?;
    let maps = read_map_types(&bytes)?;
    rewrite_with(graph, &maps)
}

fn has_type(input: &ValueInfoProto) -> bool {
    input
        .r#type
        .as_ref()
        .and_then(|t| t.value.as_ref())
        .is_some()
}

/// The map-typed graph inputs of an ONNX file, by name.
fn read_map_types(bytes: &[u8]) -> TractResult<HashMap<String, MapTypes>> {
    let model = Model::decode(bytes).context("reading the graph's input types")?;
    let inputs = model.graph.map(|g| g.input).unwrap_or_default();
    Ok(inputs
        .into_iter()
        .filter_map(|input| {
            let map = input.r#type?.map_type?;
            let value = map.value_type?.tensor_type?.elem_type;
            let types = MapTypes {
                key: PbType::try_from(map.key_type).ok()?,
                value: PbType::try_from(value).ok()?,
            };
            Some((input.name, types))
        })
        .collect())
}

/// The rewrite proper, given the map inputs' types.
fn rewrite_with(graph: &mut GraphProto, maps: &HashMap<String, MapTypes>) -> TractResult<()> {
    let mut inputs = Vec::with_capacity(graph.input.len() + 2 * maps.len());
    for input in std::mem::take(&mut graph.input) {
        let Some(types) = maps.get(&input.name).filter(|_| !has_type(&input)) else {
            inputs.push(input);
            continue;
        };
        let mut readers = graph.node.iter().filter(|n| n.input.contains(&input.name));
        if !readers.all(|n| MAP_OPERATORS.contains(&n.op_type.as_str()) && n.input.len() == 1) {
            inputs.push(input);
            continue;
        }
        check_types(&input.name, *types)?;
        let name = input.name.clone();
        for node in graph
            .node
            .iter_mut()
            .filter(|n| n.input.first() == Some(&name))
        {
            node.input = [KEYS, VALUES, LENGTHS]
                .iter()
                .map(|s| format!("{name}{s}"))
                .collect();
            node.attribute
                .push(int_attr(KEY_TYPE_ATTR, types.key as i64));
            node.attribute
                .push(int_attr(VALUE_TYPE_ATTR, types.value as i64));
        }
        let entries = format!("{name}_entries");
        inputs.push(tensor_input(&name, KEYS, types.key, Some(&entries)));
        inputs.push(tensor_input(&name, VALUES, types.value, Some(&entries)));
        inputs.push(tensor_input(&name, LENGTHS, PbType::Int64, None));
    }
    graph.input = inputs;
    Ok(())
}

/// The key and value types infera's map operators take (onnxruntime's: keys string or int64;
/// values float, double, int64 or string).
fn check_types(name: &str, types: MapTypes) -> TractResult<()> {
    ensure!(
        matches!(types.key, PbType::String | PbType::Int64),
        "map input {name:?}: key type {:?} is not supported (string or int64)",
        types.key
    );
    ensure!(
        matches!(
            types.value,
            PbType::Float | PbType::Double | PbType::Int64 | PbType::String
        ),
        "map input {name:?}: value type {:?} is not supported (float, double, int64 or string)",
        types.value
    );
    Ok(())
}

fn int_attr(name: &str, value: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: 2, // INT
        i: value,
        ..Default::default()
    }
}

/// `<name><suffix>`: `[N, entries]`, or `[N]` without `entries`.
fn tensor_input(name: &str, suffix: &str, elem: PbType, entries: Option<&str>) -> ValueInfoProto {
    let batch = Dimension {
        denotation: String::new(),
        value: None,
    };
    let entries = entries.map(|e| Dimension {
        denotation: String::new(),
        value: Some(dimension::Value::DimParam(e.into())),
    });
    let dim = std::iter::once(batch).chain(entries).collect();
    ValueInfoProto {
        name: format!("{name}{suffix}"),
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

#[cfg(test)]
mod tests {
    use super::*;
    use tract_onnx::pb::NodeProto;

    fn map_input(name: &str, key: PbType, value: PbType) -> Vec<u8> {
        let model = Model {
            graph: Some(Graph {
                input: vec![ValueInfo {
                    name: name.into(),
                    r#type: Some(Type {
                        tensor_type: None,
                        map_type: Some(Box::new(MapType {
                            key_type: key as i32,
                            value_type: Some(Type {
                                tensor_type: Some(TensorType {
                                    elem_type: value as i32,
                                }),
                                map_type: None,
                            }),
                        })),
                    }),
                }],
            }),
        };
        model.encode_to_vec()
    }

    fn graph(op: &str) -> GraphProto {
        GraphProto {
            input: vec![ValueInfoProto {
                name: "m".into(),
                r#type: Some(TypeProto::default()),
                doc_string: String::new(),
            }],
            node: vec![NodeProto {
                op_type: op.into(),
                input: vec!["m".into()],
                output: vec!["y".into()],
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn map_types_are_read_from_the_bytes_tract_drops() {
        let bytes = map_input("features", PbType::String, PbType::Float);
        let maps = read_map_types(&bytes).unwrap();
        let want = MapTypes {
            key: PbType::String,
            value: PbType::Float,
        };
        assert_eq!(maps.get("features"), Some(&want));
        // tract's own schema decodes the same input with no type.
        let tract = tract_onnx::pb::ModelProto::decode(&bytes[..]).unwrap();
        assert!(!has_type(&tract.graph.unwrap().input[0]));
    }

    #[test]
    fn a_map_read_by_a_dict_vectorizer_becomes_three_tensors() {
        let bytes = map_input("m", PbType::Int64, PbType::Double);
        let mut g = graph("DictVectorizer");
        rewrite_with(&mut g, &read_map_types(&bytes).unwrap()).unwrap();
        let names: Vec<&str> = g.input.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["m.keys", "m.values", "m.lengths"]);
        assert!(g.input.iter().all(has_type));
        assert_eq!(g.node[0].input, ["m.keys", "m.values", "m.lengths"]);
        let attr = |n: &str| g.node[0].attribute.iter().find(|a| a.name == n).unwrap().i;
        assert_eq!(attr(KEY_TYPE_ATTR), PbType::Int64 as i64);
        assert_eq!(attr(VALUE_TYPE_ATTR), PbType::Double as i64);
    }

    #[test]
    fn a_map_read_by_another_operator_is_left_for_the_refusal() {
        let bytes = map_input("m", PbType::String, PbType::Float);
        let mut g = graph("Identity");
        rewrite_with(&mut g, &read_map_types(&bytes).unwrap()).unwrap();
        assert_eq!(g.input.len(), 1);
        assert!(!has_type(&g.input[0]));
    }

    #[test]
    fn unsupported_key_types_are_named() {
        let bytes = map_input("m", PbType::Float, PbType::Float);
        let mut g = graph("CastMap");
        let error = rewrite_with(&mut g, &read_map_types(&bytes).unwrap())
            .unwrap_err()
            .to_string();
        assert!(error.contains("map input \"m\": key type Float"), "{error}");
    }
}
