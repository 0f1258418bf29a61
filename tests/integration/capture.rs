//! Data capture end to end: predictions through REST and V2 on one replica, ground truth sent to
//! another replica sharing the capture directory, clean shutdown, then `export` joins them.

use arrow_array::cast::AsArray;
use arrow_array::types::Float64Type;
use arrow_array::Array;
use axum::http::StatusCode;
use infera::capture::{export, ExportOptions};
use serde_json::json;

use crate::capture_support::{files, read, replica};
use crate::common::{get, metric, post};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feedback_sent_to_another_replica_joins_in_the_export() {
    let dir = tempfile::tempdir().unwrap();
    let a = replica(dir.path(), "pod-a", &["--capture-redact", "petal_width_cm"]);
    let b = replica(dir.path(), "pod-b", &[]);
    let (app_a, app_b) = (a.router(), b.router());
    let setosa = [5.1, 3.5, 1.4, 0.2];
    let virginica = [7.7, 3.0, 6.1, 2.3];
    let r = post(
        &app_a,
        "/models/iris/predict",
        &json!({"instances": [setosa, virginica, setosa], "id": "req-1"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let body = json!({
        "id": "v2-req",
        "inputs": [{"name": "float_input", "shape": [1, 4], "datatype": "FP32", "data": [virginica]}],
    });
    let r = post(&app_a, "/v2/models/iris/infer", &body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    // Ground truth arrives at the other replica, which never saw these predictions.
    let feedback = json!({"feedback": [
        {"id": "req-1/0", "label": "setosa"},
        {"id": "req-1/1", "class_index": 2},
        {"id": "not-captured/0", "label": "setosa"},
        {"id": "v2-req/0", "label": "virginica"},
    ]});
    let r = post(&app_b, "/models/iris/feedback", &feedback).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["unmatched"], 4, "replica b kept no predictions");

    let text = get(&app_a, "/metrics").await.text;
    let queued = "infera_capture_rows_total{kind=\"prediction\",outcome=\"queued\"}";
    assert_eq!(metric(&text, queued), Some(4.0), "{text}");
    tokio::task::block_in_place(|| {
        a.stop_capture();
        b.stop_capture();
    });
    let text = get(&app_a, "/metrics").await.text;
    let written = "infera_capture_rows_total{kind=\"any\",outcome=\"written\"}";
    assert_eq!(metric(&text, written), Some(4.0), "{text}");
    assert_eq!(
        metric(&text, "infera_capture_files_closed_total"),
        Some(1.0)
    );

    let found = files(dir.path());
    assert_eq!(found.len(), 2, "{found:?}");
    for f in &found {
        let name = f.file_name().unwrap().to_str().unwrap();
        assert!(
            name.ends_with(".parquet") && !name.starts_with('.'),
            "{f:?}"
        );
    }
    assert!(found
        .iter()
        .any(|f| f.to_str().unwrap().contains("/iris/1/date=")
            && f.to_str().unwrap().contains("/pod-a-")));
    assert!(found
        .iter()
        .any(|f| f.to_str().unwrap().contains("/iris/feedback/date=")
            && f.to_str().unwrap().contains("/pod-b-")));

    let out = dir.path().join("train.parquet");
    let summary = export(&ExportOptions {
        capture: dir.path().to_path_buf(),
        model: "iris".into(),
        out: out.clone(),
        since_ms: None,
        labels: vec![],
    })
    .unwrap();
    assert_eq!(
        (summary.rows, summary.joined, summary.unlabelled),
        (4, 3, 1)
    );
    assert_eq!(summary.orphan_feedback, 1);
    let t = read(&out);
    let names: Vec<String> = t
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(
        names,
        [
            "sepal_length_cm",
            "sepal_width_cm",
            "petal_length_cm",
            "petal_width_cm",
            "prediction",
            "label",
            "version",
            "time",
            "id"
        ]
    );
    let id = t.column_by_name("id").unwrap().as_string::<i32>();
    let label = t.column_by_name("label").unwrap().as_string::<i32>();
    let prediction = t.column_by_name("prediction").unwrap().as_string::<i32>();
    let sepal = t
        .column_by_name("sepal_length_cm")
        .unwrap()
        .as_primitive::<Float64Type>();
    let row = |want: Option<&str>| {
        (0..t.num_rows())
            .find(|&i| (id.is_valid(i).then(|| id.value(i))) == want)
            .unwrap_or_else(|| panic!("no row {want:?}"))
    };
    let r0 = row(Some("req-1/0"));
    assert_eq!(
        (prediction.value(r0), label.value(r0)),
        ("setosa", "setosa")
    );
    assert!((sepal.value(r0) - 5.1).abs() < 1e-6);
    let r1 = row(Some("req-1/1"));
    assert_eq!(
        label.value(r1),
        "virginica",
        "class index 2 mapped to its label"
    );
    assert!(label.is_null(row(Some("req-1/2"))));
    let v2 = row(Some("v2-req/0"));
    assert_eq!(
        (prediction.value(v2), label.value(v2)),
        ("virginica", "virginica"),
        "the V2 request is captured under its id and joined"
    );
    let petal = t.column_by_name("petal_width_cm").unwrap();
    assert_eq!(petal.null_count(), 4, "replica a redacts petal_width_cm");
    assert_eq!(t.column_by_name("petal_length_cm").unwrap().null_count(), 0);
}

#[tokio::test]
async fn sampling_at_zero_captures_no_prediction_but_all_feedback() {
    let dir = tempfile::tempdir().unwrap();
    let a = replica(dir.path(), "pod-a", &["--capture-sample-rate", "0"]);
    let app = a.router();
    let r = post(
        &app,
        "/models/iris/predict",
        &json!({"instances": [[5.1, 3.5, 1.4, 0.2]]}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = post(
        &app,
        "/models/iris/feedback",
        &json!({"feedback": [{"id": "x/0", "label": "setosa"}]}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    a.stop_capture();
    let found = files(dir.path());
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].to_str().unwrap().contains("/iris/feedback/"));
}
