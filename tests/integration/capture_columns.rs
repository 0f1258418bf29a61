//! Data capture of typed columns (issue 13 meets issue 16): a DataFrame model's string columns
//! are captured as strings and its integer columns as integers, in Parquet and JSON lines,
//! named after the card's features; redaction works on them; `infera export` keeps the types;
//! long strings are capped and counted.

use std::io::Read;
use std::path::Path;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::Array;
use arrow_schema::DataType;
use axum::http::StatusCode;
use serde_json::{json, Value};

use crate::capture_support::{capture_flags, export_model, prediction_files, read};
use crate::common::{get, loaded, metric, post, repo_with};

fn penguin(island: &str, sex: &str, flipper: f64) -> Value {
    json!({"island": island, "sex": sex, "bill_length_mm": 41.3, "bill_depth_mm": 20.3,
           "flipper_length_mm": flipper, "body_mass_g": 3550.0})
}

/// Two penguins predicted under id `p1`, ground truth for the first as a string label, then a
/// clean stop.
async fn capture_penguins(dir: &Path, extra: &[&str]) {
    let repo = repo_with(&["penguins"]);
    let infera = loaded(repo.path(), &capture_flags(dir, extra));
    let app = infera.router();
    let body = json!({"instances": [penguin("Biscoe", "male", 194.0), penguin("Dream", "female", 185.0)], "id": "p1"});
    let r = post(&app, "/models/penguins/predict", &body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let feedback = json!({"feedback": [{"id": "p1/0", "label": "Gentoo"}]});
    let r = post(&app, "/models/penguins/feedback", &feedback).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    tokio::task::block_in_place(|| infera.stop_capture());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn string_and_integer_columns_are_captured_with_their_types() {
    let dir = tempfile::tempdir().unwrap();
    capture_penguins(dir.path(), &["--capture-redact", "sex"]).await;
    let found = prediction_files(dir.path(), "penguins");
    assert_eq!(found.len(), 1, "{found:?}");
    let b = read(&found[0]);
    let column = |n: &str| {
        b.column_by_name(&format!("feature_{n}"))
            .unwrap_or_else(|| panic!("no column feature_{n} in {:?}", b.schema()))
            .clone()
    };
    assert_eq!(column("island").data_type(), &DataType::Utf8);
    assert_eq!(column("sex").data_type(), &DataType::Utf8);
    assert_eq!(column("bill_length_mm").data_type(), &DataType::Float64);
    assert_eq!(column("flipper_length_mm").data_type(), &DataType::Int64);
    let island = column("island");
    let island = island.as_string::<i32>();
    assert_eq!((island.value(0), island.value(1)), ("Biscoe", "Dream"));
    assert_eq!(column("sex").null_count(), 2, "sex is redacted");
    let flipper = column("flipper_length_mm");
    let flipper = flipper.as_primitive::<Int64Type>();
    assert_eq!((flipper.value(0), flipper.value(1)), (194, 185));
    let bill = column("bill_length_mm");
    assert!((bill.as_primitive::<Float64Type>().value(0) - 41.3).abs() < 1e-5);

    let (summary, t) = export_model(dir.path(), "penguins");
    assert_eq!((summary.rows, summary.joined), (2, 1));
    let island = t
        .column_by_name("island")
        .expect("a column named after the feature");
    assert_eq!(island.data_type(), &DataType::Utf8);
    assert_eq!(island.as_string::<i32>().value(0), "Biscoe");
    let flipper = t.column_by_name("flipper_length_mm").unwrap();
    assert_eq!(flipper.data_type(), &DataType::Int64);
    assert_eq!(t.column_by_name("sex").unwrap().null_count(), 2);
    let label = t.column_by_name("label").unwrap().as_string::<i32>();
    let id = t.column_by_name("id").unwrap().as_string::<i32>();
    let first = (0..2).find(|&i| id.value(i) == "p1/0").unwrap();
    assert_eq!(label.value(first), "Gentoo");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_lines_write_strings_and_integers_and_export_keeps_them() {
    let dir = tempfile::tempdir().unwrap();
    capture_penguins(dir.path(), &["--capture-format", "jsonl"]).await;
    let found = prediction_files(dir.path(), "penguins");
    assert_eq!(found.len(), 1, "{found:?}");
    let mut text = String::new();
    flate2::read::MultiGzDecoder::new(std::fs::File::open(&found[0]).unwrap())
        .read_to_string(&mut text)
        .unwrap();
    let first: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(first["feature_island"], "Biscoe", "{first}");
    assert_eq!(first["feature_sex"], "male", "{first}");
    assert!(first["feature_flipper_length_mm"].is_i64(), "{first}");
    assert_eq!(first["feature_flipper_length_mm"], 194, "{first}");
    assert!(first["feature_bill_length_mm"].is_f64(), "{first}");

    let (summary, t) = export_model(dir.path(), "penguins");
    assert_eq!((summary.rows, summary.joined), (2, 1));
    let island = t.column_by_name("island").unwrap();
    assert_eq!(island.data_type(), &DataType::Utf8);
    assert_eq!(island.as_string::<i32>().value(1), "Dream");
    let flipper = t.column_by_name("flipper_length_mm").unwrap();
    assert_eq!(flipper.data_type(), &DataType::Int64);
    assert_eq!(flipper.as_primitive::<Int64Type>().value(1), 185);
    assert_eq!(
        t.column_by_name("bill_depth_mm").unwrap().data_type(),
        &DataType::Float64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_string_is_cut_on_a_character_boundary_and_counted() {
    let repo = repo_with(&["tweet-source"]);
    let dir = tempfile::tempdir().unwrap();
    let flags = capture_flags(dir.path(), &["--capture-max-string-bytes", "4096"]);
    let infera = loaded(repo.path(), &flags);
    let app = infera.router();
    // 'x' then 3,000 two-byte characters: byte 4,096 falls inside a character.
    let long = format!("x{}", "é".repeat(3000));
    let body = json!({"instances": [{"text": long}, {"text": "Make America great"}]});
    let r = post(&app, "/models/tweet-source/predict", &body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    tokio::task::block_in_place(|| infera.stop_capture());
    let metrics = get(&app, "/metrics").await.text;
    assert_eq!(
        metric(&metrics, "infera_capture_values_truncated_total"),
        Some(1.0),
        "{metrics}"
    );
    let found = prediction_files(dir.path(), "tweet-source");
    let b = read(&found[0]);
    let text = b.column_by_name("feature_text").unwrap().as_string::<i32>();
    assert_eq!(
        text.value(0).len(),
        4095,
        "cut before the character at 4,095"
    );
    assert!(long.starts_with(text.value(0)));
    assert_eq!(text.value(1), "Make America great");
}
