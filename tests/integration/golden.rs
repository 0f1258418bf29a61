//! Every shipped model reproduces onnxruntime's reference outputs, through the engine and
//! through the HTTP API; a batch answers each row as the row would be answered alone.

use serde_json::{json, Value};

use crate::common::{post, shipped, shipped_models};
use infera::repository::{check_golden, GoldenFile};

const MODELS: [&str; 6] = [
    "iris",
    "digits",
    "diabetes",
    "breast-cancer",
    "penguins",
    "tweet-source",
];

fn golden(model: &str) -> GoldenFile {
    GoldenFile::read(&shipped_models().join(model).join("1").join("golden.json")).unwrap()
}

fn close(got: f64, want: f64, tol: f64) -> bool {
    (got - want).abs() <= tol * want.abs().max(1.0)
}

#[test]
fn engine_matches_onnxruntime_for_every_shipped_model() {
    let infera = shipped();
    let catalog = infera.state.predictor.store().snapshot();
    for model in MODELS {
        let loaded = catalog.resolve(Some(model), None).unwrap();
        let report = check_golden(&loaded, &golden(model));
        assert!(report.passed(), "{model}: {:?}", report.mismatches);
        assert!(
            report.instances >= 16 && report.outputs_checked >= 1,
            "{model}: {report:?}"
        );
    }
}

#[tokio::test]
async fn http_predictions_match_onnxruntime() {
    let app = shipped().router();
    for model in MODELS {
        let g = golden(model);
        let r = post(
            &app,
            &format!("/models/{model}/predict"),
            &json!({"instances": g.inputs}),
        )
        .await;
        assert_eq!(r.status, 200, "{model}: {}", r.text);
        let body = r.json();
        assert_eq!(body["model"], model);
        assert_eq!(body["version"], 1);
        let predictions = body["predictions"].as_array().unwrap();
        assert_eq!(predictions.len(), g.inputs.len());
        for (i, p) in predictions.iter().enumerate() {
            let labels = g.outputs.get("label").or(g.outputs.get("output_label"));
            if let Some(labels) = labels {
                // String class labels (penguins, tweet-source) are compared by name.
                let key = if labels[i].is_string() {
                    "label"
                } else {
                    "class_index"
                };
                assert_eq!(p[key], labels[i], "{model} instance {i}");
                let probs = &g
                    .outputs
                    .get("probabilities")
                    .or(g.outputs.get("output_probability"))
                    .unwrap()[i];
                let got = p["probabilities"].as_array().unwrap();
                assert_eq!(got.len(), probs.as_array().unwrap().len());
                for (g_p, w_p) in got.iter().zip(probs.as_array().unwrap()) {
                    assert!(
                        close(g_p.as_f64().unwrap(), w_p.as_f64().unwrap(), g.tolerance),
                        "{model} {i}: {got:?} vs {probs}"
                    );
                }
                let class = p["class_index"].as_u64().unwrap() as usize;
                assert_eq!(p["confidence"], got[class]);
            } else {
                let want = g.outputs["variable"][i][0].as_f64().unwrap();
                let value = p["value"].as_f64().unwrap();
                assert!(
                    close(value, want, g.tolerance),
                    "{model} {i}: {value} vs {want}"
                );
            }
        }
    }
}

#[tokio::test]
async fn batch_rows_equal_single_answers_over_http() {
    let app = shipped().router();
    for model in MODELS {
        let g = golden(model);
        let batch = post(
            &app,
            &format!("/models/{model}/predict"),
            &json!({"instances": g.inputs}),
        )
        .await
        .json();
        for (i, instance) in g.inputs.iter().enumerate() {
            let single = post(
                &app,
                &format!("/models/{model}/predict"),
                &json!({"instances": [instance]}),
            )
            .await
            .json();
            let (one, row) = (&single["predictions"][0], &batch["predictions"][i]);
            // Labels are identical; numbers may differ in the last float32 bit, because the
            // matrix kernels sum in a different order for different batch sizes.
            assert_eq!(
                one["class_index"], row["class_index"],
                "{model} instance {i}"
            );
            assert_eq!(one["label"], row["label"], "{model} instance {i}");
            let numbers = |p: &Value| -> Vec<f64> {
                match (&p["probabilities"], &p["value"]) {
                    (Value::Array(ps), _) => ps.iter().map(|x| x.as_f64().unwrap()).collect(),
                    (_, v) => vec![v.as_f64().unwrap()],
                }
            };
            for (a, b) in numbers(one).iter().zip(numbers(row)) {
                assert!(
                    close(*a, b, g.tolerance),
                    "{model} instance {i}: alone {one} vs batched {row}"
                );
            }
        }
    }
}

#[tokio::test]
async fn named_features_answer_like_arrays_and_labels_come_from_the_card() {
    let app = shipped().router();
    let named = json!({"sepal_length_cm": 6.7, "sepal_width_cm": 3.0, "petal_length_cm": 5.2, "petal_width_cm": 2.3});
    let r = post(
        &app,
        "/predict",
        &json!({"instances": [[6.7, 3.0, 5.2, 2.3], named], "id": "abc"}),
    )
    .await
    .json();
    assert_eq!(r["id"], "abc");
    assert_eq!(r["model"], "iris", "repository.toml names iris the default");
    assert_eq!(r["predictions"][0]["id"], "abc/0");
    assert_eq!(r["predictions"][1]["id"], "abc/1");
    for key in ["label", "class_index", "confidence", "probabilities"] {
        assert_eq!(r["predictions"][0][key], r["predictions"][1][key], "{key}");
    }
    assert_eq!(r["predictions"][0]["label"], "virginica");
    let probs: f64 = r["predictions"][0]["probabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_f64().unwrap())
        .sum();
    assert!((probs - 1.0).abs() < 1e-5);
}

#[tokio::test]
async fn explicit_version_route_serves_that_version() {
    let app = shipped().router();
    let r = post(
        &app,
        "/models/digits/versions/1/predict",
        &json!({"instances": [golden("digits").inputs[0]]}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let body: Value = r.json();
    assert_eq!(body["version"], 1);
    assert_eq!(
        body["predictions"][0]["class_index"],
        golden("digits").outputs["label"][0]
    );
}
