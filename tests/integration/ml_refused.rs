//! ai.onnx.ml graphs infera refuses at load, naming the reason: graph inputs that are neither
//! tensors nor maps read only by DictVectorizer / CastMap (a sequence, or a map read by another
//! operator; tract's schema decodes them with no type), and an Imputer on strings (not in the
//! ONNX spec). Map inputs that are served: `map_inputs.rs`.

use crate::common::{get, loaded};
use crate::onnx;

#[tokio::test]
async fn an_input_without_a_tensor_type_fails_at_load_naming_it() {
    let repo = tempfile::tempdir().unwrap();
    let mut seq = onnx::io("s", tract_onnx::pb::tensor_proto::DataType::Float, &[-1]);
    seq.r#type = Some(tract_onnx::pb::TypeProto::default());
    let float = tract_onnx::pb::tensor_proto::DataType::Float;
    onnx::write(
        repo.path(),
        "sequence",
        tract_onnx::pb::GraphProto {
            node: vec![onnx::node("Identity", &["s"], &["y"], vec![])],
            name: "sequence".into(),
            input: vec![seq],
            output: vec![onnx::io("y", float, &[-1])],
            ..Default::default()
        },
    );
    let app = loaded(repo.path(), &[]).router();
    let card = get(&app, "/models/sequence").await.json();
    assert_eq!(card["state"], "failed", "{card}");
    let error = card["versions"][0]["error"].as_str().unwrap();
    assert!(
        error.contains("graph inputs that are not tensors (a map, sequence or optional type): s"),
        "{error}"
    );
}

#[tokio::test]
async fn an_imputer_on_strings_fails_at_load_naming_it() {
    let repo = tempfile::tempdir().unwrap();
    let fill = tract_onnx::pb::AttributeProto {
        name: "imputed_value_floats".into(),
        r#type: 6,
        floats: vec![0.0],
        ..Default::default()
    };
    let string = tract_onnx::pb::tensor_proto::DataType::String;
    onnx::write(
        repo.path(),
        "imputer",
        tract_onnx::pb::GraphProto {
            node: vec![onnx::node("Imputer", &["x"], &["y"], vec![fill])],
            name: "imputer".into(),
            input: vec![onnx::io("x", string, &[-1, 1])],
            output: vec![onnx::io("y", string, &[-1, 1])],
            ..Default::default()
        },
    );
    let app = loaded(repo.path(), &[]).router();
    let card = get(&app, "/models/imputer").await.json();
    assert_eq!(card["state"], "failed", "{card}");
    let error = card["versions"][0]["error"].as_str().unwrap();
    assert!(
        error.contains("Imputer: string input is not supported"),
        "{error}"
    );
}
