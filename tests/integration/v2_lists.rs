//! The lists of a V2 inference request (src/contract/bounded_lists.rs) stop while the body is
//! parsed, JSON and binary extension alike: `inputs` and `outputs` at the tensor past
//! `--max-tensors`, a `shape` at the dimension past `--max-rank`, parameters at the one past
//! `--max-parameters`; 413 with the REST error kind. Each refusal has invalid JSON right after
//! the item past the limit: a parser that read on would answer malformed_json instead.

use axum::http::{Method, StatusCode};
use serde_json::json;

use crate::common::{binary_infer, call, loaded, repo_with};

const URI: &str = "/v2/models/iris/infer";
const INPUT: &str =
    r#"{"name": "float_input", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}"#;

async fn post(app: &axum::Router, body: String) -> crate::common::Reply {
    call(app, Method::POST, URI, Some("application/json"), body).await
}

fn app(flags: &[&str]) -> (tempfile::TempDir, axum::Router) {
    let repo = repo_with(&["iris"]);
    let app = loaded(repo.path(), flags).router();
    (repo, app)
}

#[tokio::test]
async fn each_v2_list_stops_at_the_item_past_its_limit() {
    let flags = [
        "--max-tensors",
        "2",
        "--max-rank",
        "3",
        "--max-parameters",
        "2",
    ];
    let (_repo, app) = app(&flags);
    // At every limit: served.
    let fits = format!(
        r#"{{"parameters": {{"a": 1}}, "inputs": [{INPUT}], "outputs": [{{"name": "label", "parameters": {{"b": true}}}}, {{"name": "probabilities"}}]}}"#
    );
    let r = post(&app, fits).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let broken = ", ]]] not json";
    let cases = [
        (
            format!(r#"{{"inputs": [{INPUT}, {INPUT}, {INPUT}{broken}"#),
            "too_many_tensors",
            "more than 2 inputs in one request; the limit is 2 (--max-tensors)",
        ),
        (
            format!(
                r#"{{"inputs": [{INPUT}], "outputs": [{{"name": "a"}}, {{"name": "b"}}, {{"name": "c"}}{broken}"#
            ),
            "too_many_tensors",
            "more than 2 requested outputs in one request; the limit is 2 (--max-tensors)",
        ),
        (
            format!(r#"{{"inputs": [{{"name": "float_input", "shape": [1, 1, 1, 4{broken}"#),
            "too_many_dimensions",
            "more than 3 dimensions in one tensor's shape; the limit is 3 (--max-rank)",
        ),
        (
            format!(
                r#"{{"parameters": {{"a": 1, "b": 2}}, "inputs": [{{"name": "float_input", "parameters": {{"c": {broken}"#
            ),
            "too_many_parameters",
            "more than 2 parameters in one request; the limit is 2 (--max-parameters)",
        ),
    ];
    for (body, kind, message) in cases {
        let r = post(&app, body).await;
        let (msg, got) = r.error(StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!((msg.as_str(), got.as_str()), (message, kind));
    }
    // A parameter value is a boolean, a number or a string: a list is refused as it is read.
    let list = format!(r#"{{"parameters": {{"a": [1, 2]}}, "inputs": [{INPUT}]}}"#);
    let (msg, kind) = post(&app, list).await.error(StatusCode::BAD_REQUEST);
    assert_eq!(kind, "malformed_json");
    assert!(msg.contains("a parameter value"), "{msg}");
}

#[tokio::test]
async fn the_binary_extension_header_is_held_to_the_same_limits() {
    let (_repo, app) = app(&["--max-rank", "3"]);
    let values: Vec<u8> = [5.1f32, 3.5, 1.4, 0.2]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let header = |shape: serde_json::Value| {
        json!({"inputs": [{"name": "float_input", "shape": shape, "datatype": "FP32",
                           "parameters": {"binary_data_size": 16}}]})
    };
    let (status, head, _) = binary_infer(&app, "iris", &header(json!([1, 4])), &values).await;
    assert_eq!(status, StatusCode::OK, "{head}");
    let (status, head, _) = binary_infer(&app, "iris", &header(json!([1, 1, 1, 4])), &values).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{head}");
    assert_eq!(head["error_type"], "too_many_dimensions", "{head}");
}

#[tokio::test]
async fn a_shape_of_two_million_ones_is_refused_at_the_default_rank_limit() {
    let (_repo, app) = app(&[]);
    // 4 MB of JSON (under the 4 MiB body limit): one shape of 2,000,000 dimensions (16 MB as a
    // Vec<i64>) with broken JSON after it; the parse stops at dimension 33.
    let ones = vec!["1"; 2_000_000].join(",");
    let body = format!(r#"{{"inputs": [{{"name": "float_input", "shape": [{ones}, ]]] not json"#);
    assert!(body.len() < 4 * 1024 * 1024, "{}", body.len());
    let r = post(&app, body).await;
    let (msg, kind) = r.error(StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(kind, "too_many_dimensions", "{msg}");
    assert!(msg.contains("the limit is 32 (--max-rank)"), "{msg}");
}
