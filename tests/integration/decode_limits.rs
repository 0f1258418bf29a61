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
