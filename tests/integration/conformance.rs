//! ai.onnx.ml operators: every model of `models/conformance` (skl2onnx, onnxmltools exports of
//! trees, SVMs, linear models and pipelines, with and without ZipMap) reproduces onnxruntime's
//! outputs on 64 held-out rows as one batch, and each row alone matches its batch row.

use std::path::PathBuf;

use serde_json::json;

use crate::common::{loaded, post};
use infera::config::{CheckArgs, LogArgs, LogFormat};

fn conformance() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/conformance")
}

fn model_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(conformance())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn every_conformance_model_matches_onnxruntime_at_batch_64_and_alone() {
    let names = model_names();
    assert!(names.len() >= 30, "the conformance set is there: {names:?}");
    let mut out = Vec::new();
    let args = CheckArgs {
        repository: conformance(),
        report: None,
        log: LogArgs {
            log_format: LogFormat::Pretty,
            log: "warn".into(),
        },
    };
    let passed = infera::cli::check(&args, &mut out).unwrap();
    let report = String::from_utf8(out).unwrap();
    let failing: Vec<&str> = report
        .lines()
        .filter(|l| l.contains("FAIL") || l.starts_with("          "))
        .collect();
    assert!(passed, "{} failing:\n{}", failing.len(), failing.join("\n"));
    for name in &names {
        assert!(
            report.contains(&format!("ok    {name} v1: ")),
            "{name} not checked:\n{report}"
        );
        assert!(report.contains("64 instances"), "{report}");
    }
}

#[tokio::test]
async fn conformance_models_serve_predictions_over_http() {
    let app = loaded(&conformance(), &[]).router();
    for name in model_names() {
        let golden: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(conformance().join(&name).join("1/golden.json")).unwrap(),
        )
        .unwrap();
        let rows = &golden["inputs"].as_array().unwrap()[..2];
        let r = post(
            &app,
            &format!("/models/{name}/predict"),
            &json!({ "instances": rows }),
        )
        .await;
        assert_eq!(r.status, 200, "{name}: {}", r.text);
        assert_eq!(
            r.json()["predictions"].as_array().unwrap().len(),
            2,
            "{name}"
        );
    }
}
