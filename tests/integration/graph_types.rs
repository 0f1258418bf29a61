//! Names and element types exactly as the ONNX graph declares them: every numeric datatype in
//! and out through V2 JSON, the V2 binary extension and /predict, and outputs named and ordered
//! as in the graph even where tract's optimiser replaces the output node.

use axum::http::StatusCode;
use serde_json::{json, Value};
use tract_onnx::pb::tensor_proto::DataType as OnnxType;

use crate::common::{binary_infer, get, loaded, post};
use crate::onnx::{io, node, write};

/// ONNX element type, V2 datatype name, card name, little-endian encoder for small integers.
struct Case {
    onnx: OnnxType,
    v2: &'static str,
    card: &'static str,
    le: fn(i64) -> Vec<u8>,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            onnx: OnnxType::Int8,
            v2: "INT8",
            card: "i8",
            le: |x| (x as i8).to_le_bytes().to_vec(),
        },
        Case {
            onnx: OnnxType::Int16,
            v2: "INT16",
            card: "i16",
            le: |x| (x as i16).to_le_bytes().to_vec(),
        },
        Case {
            onnx: OnnxType::Uint16,
            v2: "UINT16",
            card: "u16",
            le: |x| (x as u16).to_le_bytes().to_vec(),
        },
        Case {
            onnx: OnnxType::Uint32,
            v2: "UINT32",
            card: "u32",
            le: |x| (x as u32).to_le_bytes().to_vec(),
        },
        Case {
            onnx: OnnxType::Uint64,
            v2: "UINT64",
            card: "u64",
            le: |x| (x as u64).to_le_bytes().to_vec(),
        },
        Case {
            onnx: OnnxType::Float16,
            v2: "FP16",
            card: "f16",
            le: |x| half::f16::from_f32(x as f32).to_le_bytes().to_vec(),
        },
        Case {
            onnx: OnnxType::Int32,
            v2: "INT32",
            card: "i32",
            le: |x| (x as i32).to_le_bytes().to_vec(),
        },
        Case {
            onnx: OnnxType::Double,
            v2: "FP64",
            card: "f64",
            le: |x| (x as f64).to_le_bytes().to_vec(),
        },
    ]
}

/// y = x + x, x and y of one element type, shape [N, 2].
fn adder(repo: &std::path::Path, name: &str, elem: OnnxType) {
    write(
        repo,
        name,
        tract_onnx::pb::GraphProto {
            node: vec![node("Add", &["x", "x"], &["y"], vec![])],
            name: name.into(),
            input: vec![io("x", elem, &[-1, 2])],
            output: vec![io("y", elem, &[-1, 2])],
            ..Default::default()
        },
    );
}

async fn binary_ok(app: &axum::Router, model: &str, header: &Value, data: &[u8]) -> Vec<u8> {
    let (status, head, tail) = binary_infer(app, model, header, data).await;
    assert_eq!(status, StatusCode::OK, "{model}: {head}");
    assert_eq!(
        head["outputs"][0]["shape"],
        json!([2, 2]),
        "{model}: {head}"
    );
    tail
}

#[tokio::test]
async fn every_numeric_datatype_is_served_as_declared_in_json_binary_and_predict() {
    let repo = tempfile::tempdir().unwrap();
    let cases = cases();
    for case in &cases {
        adder(repo.path(), case.card, case.onnx);
    }
    let app = loaded(repo.path(), &[]).router();
    for case in &cases {
        let model = case.card;
        let meta = get(&app, &format!("/v2/models/{model}")).await.json();
        assert_eq!(meta["inputs"][0]["datatype"], case.v2, "{meta}");
        assert_eq!(meta["outputs"][0]["datatype"], case.v2, "{meta}");

        let request = json!({"inputs": [
            {"name": "x", "shape": [2, 2], "datatype": case.v2, "data": [[1, 2], [3, 4]]}
        ]});
        let r = post(&app, &format!("/v2/models/{model}/infer"), &request).await;
        assert_eq!(r.status, StatusCode::OK, "{model}: {}", r.text);
        let out = &r.json()["outputs"][0];
        assert_eq!(out["name"], "y");
        assert_eq!(out["datatype"], case.v2, "{model}");
        let got: Vec<f64> = out["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(got, vec![2.0, 4.0, 6.0, 8.0], "{model}");

        let mut bytes = Vec::new();
        [1, 2, 3, 4]
            .iter()
            .for_each(|x| bytes.extend((case.le)(*x)));
        let header = json!({
            "inputs": [{"name": "x", "shape": [2, 2], "datatype": case.v2,
                        "parameters": {"binary_data_size": bytes.len()}}],
            "outputs": [{"name": "y", "parameters": {"binary_data": true}}],
        });
        let mut want = Vec::new();
        [2, 4, 6, 8].iter().for_each(|x| want.extend((case.le)(*x)));
        assert_eq!(
            binary_ok(&app, model, &header, &bytes).await,
            want,
            "{model}"
        );

        let r = post(
            &app,
            &format!("/models/{model}/predict"),
            &json!({"instances": [[1, 2], [3, 4]]}),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{model}: {}", r.text);
        let y = &r.json()["predictions"][1]["outputs"]["y"];
        assert_eq!(y["datatype"], case.card, "{model}");
        let got: Vec<f64> = y["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(got, vec![6.0, 8.0], "{model}");
    }
}

#[tokio::test]
async fn values_outside_the_declared_type_are_refused_naming_it() {
    let repo = tempfile::tempdir().unwrap();
    adder(repo.path(), "small", OnnxType::Int8);
    adder(repo.path(), "half", OnnxType::Float16);
    let app = loaded(repo.path(), &[]).router();
    let v2 = |model: &str, datatype: &str, data: Value| {
        (
            format!("/v2/models/{model}/infer"),
            json!({"inputs": [{"name": "x", "shape": [1, 2], "datatype": datatype, "data": data}]}),
        )
    };
    for (model, datatype, data, needle) in [
        ("small", "INT8", json!([1, 128]), "integer in -128..=127"),
        (
            "small",
            "INT16",
            json!([1, 2]),
            "does not match the model's INT8",
        ),
        ("half", "FP16", json!([1, "a"]), "a number"),
        ("half", "BYTES", json!([1, 2]), "BYTES"),
    ] {
        let (uri, body) = v2(model, datatype, data);
        let r = post(&app, &uri, &body).await;
        assert_eq!(
            r.status,
            StatusCode::BAD_REQUEST,
            "{model} {datatype}: {}",
            r.text
        );
        assert!(r.text.contains(needle), "{model} {datatype}: {}", r.text);
    }
    // /predict: out of range for i8, and an f16 overflow (65520 rounds to infinity).
    for (model, instance) in [("small", json!([1, 300])), ("half", json!([1, 70000.0]))] {
        let r = post(
            &app,
            &format!("/models/{model}/predict"),
            &json!({"instances": [instance]}),
        )
        .await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{model}: {}",
            r.text
        );
    }
}

#[tokio::test]
async fn outputs_keep_the_graph_names_and_order_after_optimisation() {
    // `hn` is a graph output that also feeds an Identity (`z`, internal). The optimiser removes
    // the Identity by moving its outlet onto `hn`'s, and with it the label `z`: the plan's first
    // output is then labelled `z` (as a real recurrent model's `hn` came out as
    // `/recurrent/Squeeze_output_0`). The graph lists `hn` before `neg`.
    let repo = tempfile::tempdir().unwrap();
    write(
        repo.path(),
        "recurrent",
        tract_onnx::pb::GraphProto {
            node: vec![
                node("Add", &["x", "x"], &["hn"], vec![]),
                node("Identity", &["hn"], &["z"], vec![]),
                node("Neg", &["z"], &["neg"], vec![]),
            ],
            name: "recurrent".into(),
            input: vec![io("x", crate::onnx::F32, &[-1, 3])],
            output: vec![
                io("hn", crate::onnx::F32, &[-1, 3]),
                io("neg", crate::onnx::F32, &[-1, 3]),
            ],
            ..Default::default()
        },
    );
    let app = loaded(repo.path(), &[]).router();
    let meta = get(&app, "/v2/models/recurrent").await.json();
    let names: Vec<&str> = meta["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["hn", "neg"], "{meta}");
    let r = post(
        &app,
        "/v2/models/recurrent/infer",
        &json!({"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let body = r.json();
    assert_eq!(body["outputs"][0]["name"], "hn");
    assert_eq!(body["outputs"][0]["data"], json!([2.0, 4.0, 6.0]));
    assert_eq!(body["outputs"][1]["name"], "neg");
    assert_eq!(body["outputs"][1]["data"], json!([-2.0, -4.0, -6.0]));
}
