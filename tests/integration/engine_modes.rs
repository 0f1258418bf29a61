//! Graphs without a symbolic batch, and graphs with several typed inputs, are served behind the
//! same batch-first contract.

use serde_json::json;

use crate::common::{get, loaded, post};
use crate::onnx;

#[tokio::test]
async fn fixed_batch_and_unbatched_graphs_run_one_instance_at_a_time() {
    let repo = tempfile::tempdir().unwrap();
    onnx::doubler(repo.path(), "fixed", &[1, 3]);
    onnx::doubler(repo.path(), "noaxis", &[3]);
    onnx::doubler(repo.path(), "dynamic", &[-1, 3]);
    let app = loaded(repo.path(), &[]).router();
    for model in ["fixed", "noaxis", "dynamic"] {
        let card = get(&app, &format!("/models/{model}")).await.json();
        assert_eq!(card["state"], "ready", "{model}: {card}");
        assert_eq!(card["contract"]["batched"], model == "dynamic", "{model}");
        assert_eq!(
            card["contract"]["inputs"][0]["shape"],
            json!([-1, 3]),
            "{model}"
        );
        let r = post(
            &app,
            &format!("/models/{model}/predict"),
            &json!({"instances": [[1, 2, 3], [4, 5, 6], [7, 8, 9]]}),
        )
        .await;
        assert_eq!(r.status, 200, "{model}: {}", r.text);
        let body = r.json();
        for (i, want) in [[2.0, 4.0, 6.0], [8.0, 10.0, 12.0], [14.0, 16.0, 18.0]]
            .iter()
            .enumerate()
        {
            let y = &body["predictions"][i]["outputs"]["y"];
            assert_eq!(y["data"], json!(want), "{model} instance {i}");
            assert_eq!(y["shape"], json!([3]), "{model}");
            assert_eq!(y["datatype"], "f32");
        }
    }
}

#[tokio::test]
async fn several_inputs_take_objects_keyed_by_input_name() {
    let repo = tempfile::tempdir().unwrap();
    onnx::two_inputs(repo.path(), "pair");
    let app = loaded(repo.path(), &[]).router();
    let r = post(
        &app,
        "/predict",
        &json!({"instances": [{"a": [0.5, 1.5], "b": [1, 2]}, {"a": [0, 0], "b": [-3, 4]}]}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let body = r.json();
    assert_eq!(
        body["predictions"][0]["outputs"]["y"]["data"],
        json!([1.5, 3.5])
    );
    assert_eq!(
        body["predictions"][1]["outputs"]["y"]["data"],
        json!([-3.0, 4.0])
    );
    for (instance, kind) in [
        (json!({"a": [0.5, 1.5], "b": [1.5, 2]}), "wrong_type"),
        (json!({"a": [0.5, 1.5]}), "missing_feature"),
        (
            json!({"a": [0.5, 1.5], "b": [1, 2], "c": 1}),
            "unknown_feature",
        ),
        (json!({"a": [0.5], "b": [1, 2]}), "wrong_shape"),
        (json!([0.5, 1.5]), "wrong_type"),
    ] {
        let r = post(&app, "/predict", &json!({ "instances": [instance] })).await;
        assert_eq!(
            r.error(axum::http::StatusCode::UNPROCESSABLE_ENTITY).1,
            kind,
            "{instance}"
        );
    }
}

#[tokio::test]
async fn an_unknown_operator_fails_at_load_naming_it() {
    let repo = tempfile::tempdir().unwrap();
    onnx::write(
        repo.path(),
        "odd",
        tract_onnx::pb::GraphProto {
            node: vec![onnx::node("NoSuchOp", &["x"], &["y"], vec![])],
            name: "odd".into(),
            input: vec![onnx::io("x", onnx::F32, &[-1, 3])],
            output: vec![onnx::io("y", onnx::F32, &[-1, 3])],
            ..Default::default()
        },
    );
    let app = loaded(repo.path(), &[]).router();
    let card = get(&app, "/models/odd").await.json();
    assert_eq!(card["state"], "failed");
    let error = card["versions"][0]["error"].as_str().unwrap();
    assert!(
        error.contains("operators not supported by infera: NoSuchOp (node \"NoSuchOp_y\")"),
        "{error}"
    );
}

#[tokio::test]
async fn an_unsupported_ml_attribute_fails_at_load_naming_it() {
    // StringNormalizer's `stopwords` remove whole elements, which infera does not implement.
    let repo = tempfile::tempdir().unwrap();
    let stopwords = tract_onnx::pb::AttributeProto {
        name: "stopwords".into(),
        r#type: 8,
        strings: vec![b"the".to_vec(), b"a".to_vec()],
        ..Default::default()
    };
    let node = onnx::node("StringNormalizer", &["x"], &["y"], vec![stopwords]);
    let string = tract_onnx::pb::tensor_proto::DataType::String;
    onnx::write(
        repo.path(),
        "stopwords",
        tract_onnx::pb::GraphProto {
            node: vec![node],
            name: "stopwords".into(),
            input: vec![onnx::io("x", string, &[-1, 1])],
            output: vec![onnx::io("y", string, &[-1, 1])],
            ..Default::default()
        },
    );
    let app = loaded(repo.path(), &[]).router();
    let card = get(&app, "/models/stopwords").await.json();
    let error = card["versions"][0]["error"].as_str().unwrap();
    assert!(
        error.contains("StringNormalizer") && error.contains("stopwords are not supported"),
        "{error}"
    );
}
