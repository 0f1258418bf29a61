//! Oversize requests are refused while their body is parsed (src/contract/decode_budget.rs):
//! the parse stops at the first instance past `--max-instances` (V2: the first value past
//! `--max-elements`), with the same status and error_type as a refusal after parsing. Each test
//! puts invalid JSON right after the limit: a parser that read on would answer malformed_json.

use axum::http::{Method, StatusCode};

use crate::common::{call, loaded, repo_with};

const ROW: &str = "[5.1, 3.5, 1.4, 0.2]";

fn rows(n: usize) -> String {
    vec![ROW; n].join(", ")
}

async fn post_raw(app: &axum::Router, uri: &str, body: String) -> crate::common::Reply {
    call(app, Method::POST, uri, Some("application/json"), body).await
}

#[tokio::test]
async fn instance_lists_stop_at_the_row_past_max_instances() {
    let repo = repo_with(&["iris"]);
    let app = loaded(repo.path(), &["--max-instances", "3"]).router();
    for uri in [
        "/predict",
        "/models/iris/predict",
        "/models/iris/versions/1/predict",
        "/v1/models/iris:predict",
    ] {
        // Row 4 is past the limit; what follows it is not JSON and is never read.
        for tail in [", [1, 2, 3, 4], ]]] not json", " @@@", ", {\"x\": "] {
            let r = post_raw(&app, uri, format!("{{\"instances\": [{}{tail}", rows(4))).await;
            let (msg, kind) = r.error(StatusCode::PAYLOAD_TOO_LARGE);
            assert_eq!(kind, "too_many_instances", "{uri} {tail}");
            assert_eq!(
                msg, "more than 4 instances in one request; the limit is 3",
                "{uri} {tail}"
            );
        }
        // The control: the same broken tail within the limit is read, and refused as JSON.
        let r = post_raw(&app, uri, format!("{{\"instances\": [{} @@@", rows(3))).await;
        assert_eq!(
            r.error(StatusCode::BAD_REQUEST).1,
            "malformed_json",
            "{uri}"
        );
        // Exactly one over, well-formed: the exact count, as before.
        let r = post_raw(&app, uri, format!("{{\"instances\": [{}]}}", rows(4))).await;
        let (msg, kind) = r.error(StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(kind, "too_many_instances", "{uri}");
        assert_eq!(msg, "4 instances in one request; the limit is 3", "{uri}");
        let r = post_raw(&app, uri, format!("{{\"instances\": [{}]}}", rows(3))).await;
        assert_eq!(r.status, StatusCode::OK, "{uri}: {}", r.text);
    }
}

#[tokio::test]
async fn v2_data_stops_at_the_value_past_max_elements() {
    let repo = repo_with(&["iris"]);
    let app = loaded(repo.path(), &["--max-elements", "8"]).router();
    let head =
        r#"{"inputs": [{"name": "float_input", "shape": [2, 4], "datatype": "FP32", "data": "#;
    let nine = "[5.1, 3.5, 1.4, 0.2, 5.1, 3.5, 1.4, 0.2, 9";
    let r = post_raw(
        &app,
        "/v2/models/iris/infer",
        format!("{head}{nine}, ]]] not json"),
    )
    .await;
    let (msg, kind) = r.error(StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(kind, "too_many_elements");
    assert_eq!(
        msg,
        "the request holds more than 8 tensor elements; the limit is 8"
    );
    // The control: eight values and the same broken tail are read, and refused as JSON.
    let eight = "[5.1, 3.5, 1.4, 0.2, 5.1, 3.5, 1.4, 0.2";
    let r = post_raw(
        &app,
        "/v2/models/iris/infer",
        format!("{head}{eight}, ]]] not json"),
    )
    .await;
    assert_eq!(r.error(StatusCode::BAD_REQUEST).1, "malformed_json");
    let r = post_raw(
        &app,
        "/v2/models/iris/infer",
        format!("{head}{eight}]}}]}}"),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}

#[tokio::test]
async fn explain_bodies_stop_at_the_row_past_the_explain_instance_limit() {
    let repo = repo_with(&["iris"]);
    let app = loaded(repo.path(), &["--explain-max-instances", "16"]).router();
    for uri in [
        "/models/iris/explain",
        "/models/iris/versions/1/explain",
        "/v1/models/iris:explain",
    ] {
        // About 2 MB: 100,000 instances, with something that is not JSON right after the 17th.
        // A parser that read on (and grew the list to 100,000) would answer malformed_json.
        let body = format!(
            "{{\"instances\": [{}, ]]] not json, {}]}}",
            rows(17),
            rows(100_000 - 17)
        );
        assert!(body.len() > 2_000_000, "{}", body.len());
        let r = post_raw(&app, uri, body).await;
        let (msg, kind) = r.error(StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(kind, "too_many_instances", "{uri}");
        assert_eq!(
            msg, "more than 17 instances in one request; the limit is 16",
            "{uri}"
        );
        // The control: the same broken tail within the limit is read, and refused as JSON.
        let r = post_raw(&app, uri, format!("{{\"instances\": [{} @@@", rows(16))).await;
        assert_eq!(
            r.error(StatusCode::BAD_REQUEST).1,
            "malformed_json",
            "{uri}"
        );
        let r = post_raw(&app, uri, format!("{{\"instances\": [{}]}}", rows(2))).await;
        assert_eq!(r.status, StatusCode::OK, "{uri}: {}", r.text);
    }
}

#[tokio::test]
async fn feedback_lists_stop_at_the_item_past_ten_thousand() {
    let repo = repo_with(&["iris"]);
    let app = loaded(repo.path(), &[]).router();
    let item = r#"{"id": "x/0", "label": "setosa"}"#;
    let items = |n: usize| vec![item; n].join(", ");
    // Item 10,001 is past the limit; what follows it is not JSON and is never read.
    let body = format!("{{\"feedback\": [{}, ]]] not json", items(10_001));
    let r = post_raw(&app, "/models/iris/feedback", body).await;
    let (msg, kind) = r.error(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(kind, "invalid_request");
    assert!(
        msg.starts_with("feedback: more than 10000 items; the limit is 10000"),
        "{msg}"
    );
    // The control: the same tail after 10,000 items is read, and refused as JSON.
    let body = format!("{{\"feedback\": [{}, ]]] not json", items(10_000));
    let r = post_raw(&app, "/models/iris/feedback", body).await;
    assert_eq!(r.error(StatusCode::BAD_REQUEST).1, "malformed_json");
    let body = format!("{{\"feedback\": [{}]}}", items(10_000));
    let r = post_raw(&app, "/models/iris/feedback", body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["unmatched"], 10_000);
}
