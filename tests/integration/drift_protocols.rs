//! Drift sees every protocol: `/predict`, KServe V1, V2 REST with JSON tensors and with the
//! binary extension (BYTES columns included) count each instance once in the drift window of
//! the shipped penguins model (one string or number input per column). gRPC: `grpc.rs`.

use axum::http::StatusCode;
use axum::Router;
use serde_json::{json, Value};

use crate::common::{
    binary_infer, copy_dir, get, loaded, penguin_golden_inputs, post, shipped_models,
    PENGUIN_FEATURES,
};

/// Instances counted towards the next drift comparison.
async fn pending(router: &Router) -> u64 {
    let view = get(router, "/models/penguins/monitoring").await.json();
    view["drift"]["pending"]
        .as_u64()
        .unwrap_or_else(|| panic!("{view}"))
}

/// One V2 JSON tensor per column.
fn v2_json(rows: &[Value]) -> Value {
    let inputs: Vec<Value> = PENGUIN_FEATURES
        .iter()
        .map(|f| {
            let column: Vec<Value> = rows.iter().map(|r| r[f].clone()).collect();
            let datatype = if column[0].is_string() {
                "BYTES"
            } else {
                "FP32"
            };
            json!({"name": f, "shape": [rows.len(), 1], "datatype": datatype, "data": column})
        })
        .collect();
    json!({ "inputs": inputs })
}

/// The binary extension: each column's bytes (length-prefixed strings, little-endian f32s).
fn v2_binary(rows: &[Value]) -> (Value, Vec<u8>) {
    let mut tail = Vec::new();
    let inputs: Vec<Value> = PENGUIN_FEATURES
        .iter()
        .map(|f| {
            let start = tail.len();
            let mut datatype = "FP32";
            for r in rows {
                match &r[f] {
                    Value::String(s) => {
                        datatype = "BYTES";
                        tail.extend_from_slice(&(s.len() as u32).to_le_bytes());
                        tail.extend_from_slice(s.as_bytes());
                    }
                    v => tail.extend_from_slice(&(v.as_f64().unwrap() as f32).to_le_bytes()),
                }
            }
            json!({"name": f, "shape": [rows.len(), 1], "datatype": datatype,
                   "parameters": {"binary_data_size": tail.len() - start}})
        })
        .collect();
    (json!({ "inputs": inputs }), tail)
}

#[tokio::test]
async fn every_rest_protocol_counts_each_instance_once_for_drift() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(
        &shipped_models().join("penguins"),
        &dir.path().join("penguins"),
    );
    let router = loaded(dir.path(), &[]).router();
    let rows = penguin_golden_inputs();
    assert_eq!(pending(&router).await, 0);

    let r = post(&router, "/v2/models/penguins/infer", &v2_json(&rows[..2])).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(pending(&router).await, 2, "V2 JSON");

    let (header, tail) = v2_binary(&rows[2..5]);
    let (status, head, _) = binary_infer(&router, "penguins", &header, &tail).await;
    assert_eq!(status, StatusCode::OK, "{head}");
    assert_eq!(pending(&router).await, 5, "V2 binary");

    let r = post(
        &router,
        "/models/penguins/predict",
        &json!({"instances": [rows[0]]}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(pending(&router).await, 6, "/predict");

    let r = post(
        &router,
        "/v1/models/penguins:predict",
        &json!({"instances": [rows[1], rows[2]]}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(pending(&router).await, 8, "V1");

    // A refused request counts nothing.
    let mut bad = rows[0].clone();
    bad["bill_length_mm"] = json!(-1.0);
    let r = post(&router, "/v2/models/penguins/infer", &v2_json(&[bad])).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert!(r.text.contains("out_of_range"), "{}", r.text);
    assert_eq!(pending(&router).await, 8, "refused");
}

/// A window of V2 instances is compared like one of `/predict` instances: the same rows through
/// either protocol give the same report, string columns and predictions included.
#[tokio::test]
async fn a_v2_window_reports_like_a_predict_window() {
    let report = |via_v2: bool| async move {
        let dir = tempfile::tempdir().unwrap();
        let to = dir.path().join("penguins");
        copy_dir(&shipped_models().join("penguins"), &to);
        let card = std::fs::read_to_string(to.join("model.toml")).unwrap();
        std::fs::write(
            to.join("model.toml"),
            card.replace("[monitoring]", "[monitoring]\ndrift_window = 8"),
        )
        .unwrap();
        let router = loaded(dir.path(), &[]).router();
        let rows = &penguin_golden_inputs()[..8];
        // Twice: predictions are counted after their inputs, into the slice after theirs, so
        // the second window holds the first request's predictions.
        for _ in 0..2 {
            let r = if via_v2 {
                post(&router, "/v2/models/penguins/infer", &v2_json(rows)).await
            } else {
                post(
                    &router,
                    "/models/penguins/predict",
                    &json!({ "instances": rows }),
                )
                .await
            };
            assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        }
        let view = get(&router, "/models/penguins/monitoring").await.json();
        let mut latest = view["drift"]["latest"].clone();
        assert_eq!(latest["instances"], 8, "{view}");
        // The window's time stamps differ between the two runs.
        for key in ["window_start", "window_end"] {
            latest.as_object_mut().unwrap().remove(key);
        }
        latest
    };
    let v2 = report(true).await;
    let predict = report(false).await;
    assert_eq!(v2, predict);
    assert!(
        v2["predictions"]["psi"].as_f64().unwrap().is_finite(),
        "{v2}"
    );
}
