//! ai.onnx.ml graphs infera refuses at load, naming the operator and the type: ONNX map inputs
//! (skl2onnx's DictVectorizer export, a CastMap graph; made by
//! `models/make_conformance_strings.py --maps tests/integration/maps`, which checks that
//! onnxruntime runs them) and an Imputer on strings (not in the ONNX spec).

use std::path::PathBuf;

use crate::common::{get, loaded};
use crate::onnx;

fn maps() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/integration/maps")
}

#[tokio::test]
async fn map_input_graphs_fail_at_load_naming_the_operator_and_the_input() {
    let app = loaded(&maps(), &[]).router();
    let cases = [
        (
            "dictvec_logreg_clf_iris",
            "DictVectorizer (node \"DictVectorizer\", input Some(\"features\"))",
            "features",
        ),
        ("castmap", "CastMap (node \"\", input Some(\"m\"))", "m"),
    ];
    for (model, operator, input) in cases {
        let card = get(&app, &format!("/models/{model}")).await.json();
        assert_eq!(card["state"], "failed", "{model}: {card}");
        let error = card["versions"][0]["error"].as_str().unwrap();
        assert!(
            error.contains(&format!(
                "operators on ONNX maps are not supported by infera: {operator}"
            )),
            "{model}: {error}"
        );
        assert!(
            error.contains(&format!(
                "graph inputs that are not tensors (a map, sequence or optional type): {input}"
            )),
            "{model}: {error}"
        );
    }
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
