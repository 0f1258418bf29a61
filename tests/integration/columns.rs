//! The model card speaks of columns: `type = "string" | "integer"`, `categories`,
//! `unknown_categories`, checked against the graph at load and on every protocol's requests;
//! categorical drift (PSI over categories plus an unseen bucket) on a known window; string class
//! names as feedback labels.

use std::path::{Path, PathBuf};

use axum::http::StatusCode;
use serde_json::{json, Value};

use crate::common::{copy_dir, get, loaded, metric, post, Reply};

const PENGUINS: &str = "str_mixed_onehot_logreg_clf_penguins";

const CARD: &str = r#"
[[features]]
name = "island"
type = "string"
categories = ["Biscoe", "Dream", "Torgersen"]
[[features]]
name = "sex"
type = "string"
categories = ["female", "male"]
unknown_categories = "allow"
[[features]]
name = "bill_length_mm"
min = 0.0
[[features]]
name = "bill_depth_mm"
[[features]]
name = "flipper_length_mm"
type = "integer"
[[features]]
name = "body_mass_g"
type = "integer"
max = 10000
"#;

fn conformance() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/conformance")
}

/// A repository with the penguins DataFrame model as `penguins`, under `card`.
fn penguins(card: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let to = dir.path().join("penguins");
    copy_dir(&conformance().join(PENGUINS), &to);
    std::fs::write(to.join("model.toml"), card).unwrap();
    dir
}

fn app(dir: &Path) -> axum::Router {
    loaded(dir, &[]).router()
}

fn row() -> Value {
    json!({"island": "Dream", "sex": "male", "bill_length_mm": 41.3, "bill_depth_mm": 20.3,
           "flipper_length_mm": 194, "body_mass_g": 3550})
}

fn with(field: &str, value: Value) -> Value {
    let mut r = row();
    r[field] = value;
    r
}

async fn predict(app: &axum::Router, instances: &[Value]) -> Reply {
    post(
        app,
        "/models/penguins/predict",
        &json!({ "instances": instances }),
    )
    .await
}

/// A V2 request of `rows` (one tensor per column).
async fn infer(app: &axum::Router, rows: &[Value]) -> Reply {
    let names = [
        "island",
        "sex",
        "bill_length_mm",
        "bill_depth_mm",
        "flipper_length_mm",
        "body_mass_g",
    ];
    let inputs: Vec<Value> = names
        .iter()
        .map(|n| {
            let column: Vec<Value> = rows.iter().map(|r| r[n].clone()).collect();
            let datatype = if column[0].is_string() {
                "BYTES"
            } else {
                "FP32"
            };
            json!({"name": n, "shape": [rows.len(), 1], "datatype": datatype, "data": column})
        })
        .collect();
    post(
        app,
        "/v2/models/penguins/infer",
        &json!({ "inputs": inputs }),
    )
    .await
}

#[tokio::test]
async fn an_unseen_category_is_a_422_naming_the_feature_and_the_value() {
    let dir = penguins(CARD);
    let app = app(dir.path());
    // The card's columns are the contract's features.
    let card = get(&app, "/models/penguins").await.json();
    let features = &card["contract"]["features"];
    assert_eq!(features[0], json!({"name": "island", "type": "string"}));
    assert_eq!(
        features[4],
        json!({"name": "flipper_length_mm", "type": "integer"})
    );
    assert_eq!(features[2], json!({"name": "bill_length_mm", "min": 0.0}));
    let r = predict(&app, &[row()]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = predict(&app, &[row(), with("island", json!("Atlantis"))]).await;
    let (message, kind) = r.error(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(kind, "unknown_category");
    assert!(message.contains("instance 1"), "{message}");
    assert!(message.contains("feature \"island\""), "{message}");
    assert!(message.contains("\"Atlantis\""), "{message}");
    assert!(
        message.contains("\"Biscoe\", \"Dream\", \"Torgersen\""),
        "{message}"
    );
    // A long value is quoted cut short, with its length.
    let long = "A".repeat(100_000);
    let r = predict(&app, &[with("island", json!(long))]).await;
    let (message, kind) = r.error(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(kind, "unknown_category");
    assert!(message.contains("(100000 bytes)"), "{message}");
    assert!(message.len() < 400, "{} bytes", message.len());
    // V2 (BYTES) and V1 are held to the same card (V2 says 400 where infera's API says 422).
    let r = infer(&app, &[row(), with("island", json!("Atlantis"))]).await;
    let (message, kind) = r.error(StatusCode::BAD_REQUEST);
    assert_eq!(kind, "unknown_category");
    assert!(message.contains("\"Atlantis\""), "{message}");
    let r = post(
        &app,
        "/v1/models/penguins:predict",
        &json!({"instances": [with("island", json!("Atlantis"))]}),
    )
    .await;
    let (_, kind) = r.error(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(kind, "unknown_category");
    let text = get(&app, "/metrics").await.text;
    assert_eq!(
        metric(
            &text,
            "infera_model_failures_total{model=\"penguins\",protocol=\"http\",reason=\"unknown_category\",version=\"1\"}"
        ),
        Some(4.0),
        "{text}"
    );
}

#[tokio::test]
async fn allowed_unknown_categories_are_served_and_counted() {
    let dir = penguins(CARD);
    let app = app(dir.path());
    let unknown = with("sex", json!("unknown"));
    let r = predict(&app, &[row(), unknown.clone(), unknown.clone()]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = infer(&app, &[unknown.clone(), row()]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let series = "infera_unseen_categories_total{feature=\"sex\",model=\"penguins\"}";
    let text = get(&app, "/metrics").await.text;
    assert_eq!(metric(&text, series), Some(3.0), "{text}");
    // A request refused for another reason counts nothing.
    let r = predict(&app, &[unknown, with("island", json!("Atlantis"))]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    let text = get(&app, "/metrics").await.text;
    assert_eq!(metric(&text, series), Some(3.0));
    // Features that refuse unknowns have no series.
    assert!(!text.contains("infera_unseen_categories_total{feature=\"island\""));
}

#[tokio::test]
async fn integer_features_refuse_fractions_and_ranges_hold_per_column() {
    let dir = penguins(CARD);
    let app = app(dir.path());
    let r = predict(&app, &[with("flipper_length_mm", json!(194.5))]).await;
    let (message, kind) = r.error(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(kind, "wrong_type");
    assert!(
        message.contains("feature \"flipper_length_mm\""),
        "{message}"
    );
    assert!(message.contains("expected an integer"), "{message}");
    let r = infer(&app, &[row(), with("flipper_length_mm", json!(194.5))]).await;
    let (message, kind) = r.error(StatusCode::BAD_REQUEST);
    assert_eq!(kind, "wrong_type");
    assert!(message.contains("instance 1"), "{message}");
    // 194.0 is a whole number: served.
    let r = predict(&app, &[with("flipper_length_mm", json!(194.0))]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    for (reply, status) in [
        (
            predict(&app, &[with("body_mass_g", json!(20000))]).await,
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            infer(&app, &[with("body_mass_g", json!(20000))]).await,
            StatusCode::BAD_REQUEST,
        ),
        (
            predict(&app, &[with("bill_length_mm", json!(-1.0))]).await,
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ] {
        let (message, kind) = reply.error(status);
        assert_eq!(kind, "out_of_range", "{message}");
        assert!(message.contains("outside its valid range"), "{message}");
    }
}

#[tokio::test]
async fn a_card_that_contradicts_the_graph_is_refused_at_load() {
    let card = CARD.replace(
        "name = \"bill_length_mm\"\nmin = 0.0",
        "name = \"bill_length_mm\"\ntype = \"string\"",
    );
    let dir = penguins(&card);
    let app = app(dir.path());
    let card = get(&app, "/models/penguins").await.json();
    assert_eq!(card["state"], "failed", "{card}");
    let reason = card["versions"][0]["error"].as_str().unwrap();
    assert!(
        reason.contains(
            "feature \"bill_length_mm\" has type = \"string\" but graph input \"bill_length_mm\" is a"
        ),
        "{reason}"
    );
    // Features in another order than the graph's inputs.
    let card = CARD
        .replacen("name = \"island\"", "name = \"tmp\"", 1)
        .replacen("name = \"sex\"", "name = \"island\"", 1)
        .replacen("name = \"tmp\"", "name = \"sex\"", 1);
    let dir = penguins(&card);
    let reason = get(&app_of(&dir), "/models/penguins").await.json()["versions"][0]["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(reason.contains("input order"), "{reason}");
    // A string feature on a tabular float input names the feature and the input.
    let dir = tempfile::tempdir().unwrap();
    let shipped = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/iris");
    copy_dir(&shipped, &dir.path().join("iris"));
    let features = [
        "sepal_length_cm",
        "sepal_width_cm",
        "petal_length_cm",
        "petal_width_cm",
    ]
    .iter()
    .enumerate()
    .map(|(i, n)| {
        let kind = if i == 0 { "string" } else { "number" };
        format!("[[features]]\nname = \"{n}\"\ntype = \"{kind}\"\n")
    })
    .collect::<String>();
    std::fs::write(dir.path().join("iris/model.toml"), features).unwrap();
    let reason = get(&app_of(&dir), "/models/iris").await.json()["versions"][0]["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        reason.contains("has type = \"string\" but it is a column of input \"float_input\""),
        "{reason}"
    );
}

fn app_of(dir: &tempfile::TempDir) -> axum::Router {
    app(dir.path())
}

/// A profile whose `sex` is 50/50 female/male and whose other features split at one edge.
fn profile() -> Value {
    let numeric =
        |name: &str, edge: f64| json!({"name": name, "edges": [edge], "shares": [0.5, 0.5]});
    json!({
        "source": "test", "rows": 4,
        "features": [
            {"name": "island", "categories": ["Biscoe", "Dream", "Torgersen"], "shares": [0.5, 0.25, 0.25]},
            {"name": "sex", "categories": ["female", "male"], "shares": [0.5, 0.5]},
            numeric("bill_length_mm", 44.0),
            numeric("bill_depth_mm", 17.0),
            numeric("flipper_length_mm", 197.0),
            numeric("body_mass_g", 4050.0)
        ],
        "predictions": {"kind": "classes", "shares": [0.44, 0.2, 0.36]}
    })
}

#[tokio::test]
async fn categorical_psi_on_a_known_window() {
    let card = format!("{CARD}\n[monitoring]\ndrift_window = 4\n");
    let dir = penguins(&card);
    std::fs::write(
        dir.path().join("penguins/1/profile.json"),
        profile().to_string(),
    )
    .unwrap();
    let app = app(dir.path());
    // sex: female, female, male, unseen. island: Dream x4.
    let rows = [
        with("sex", json!("female")),
        with("sex", json!("female")),
        row(),
        with("sex", json!("not recorded")),
    ];
    let r = predict(&app, &rows).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let view = get(&app, "/models/penguins/monitoring").await.json();
    let latest = &view["drift"]["latest"];
    assert_eq!(latest["instances"], 4, "{view}");
    let feature = |name: &str| -> Value {
        latest["features"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == name)
            .unwrap()
            .clone()
    };
    // PSI = sum (q - p) ln(q / p) over female, male, unseen, shares floored at 1e-4:
    // female 0.5 vs 0.5 -> 0; male 0.25 vs 0.5; unseen 0.25 vs 0 (-> 1e-4).
    let want_sex = (0.25 - 0.5) * (0.25f64 / 0.5).ln() + (0.25 - 1e-4) * (0.25f64 / 1e-4).ln();
    let sex = feature("sex");
    assert!(
        (sex["psi"].as_f64().unwrap() - want_sex).abs() < 1e-9,
        "{sex} vs {want_sex}"
    );
    assert_eq!(sex["unseen_share"], 0.25);
    assert_eq!(sex["status"], "drifting");
    // island: Dream 1.0 vs 0.25; Biscoe and Torgersen 0 (-> 1e-4) vs 0.5 and 0.25; unseen 0.
    let want_island = (1.0 - 0.25) * (1.0f64 / 0.25).ln()
        + (1e-4 - 0.5) * (1e-4f64 / 0.5).ln()
        + (1e-4 - 0.25) * (1e-4f64 / 0.25).ln();
    let island = feature("island");
    assert!(
        (island["psi"].as_f64().unwrap() - want_island).abs() < 1e-9,
        "{island} vs {want_island}"
    );
    assert_eq!(island["unseen_share"], 0.0);
    // Numeric features keep their bins (no unseen share).
    assert!(feature("bill_length_mm").get("unseen_share").is_none());
    let text = get(&app, "/metrics").await.text;
    let psi = metric(
        &text,
        "infera_feature_drift_psi{feature=\"sex\",model=\"penguins\",version=\"1\"}",
    )
    .unwrap();
    assert!((psi - want_sex).abs() < 1e-9, "{psi}");
    assert_eq!(
        metric(
            &text,
            "infera_feature_drift_unseen_share{feature=\"sex\",model=\"penguins\",version=\"1\"}"
        ),
        Some(0.25)
    );
    assert_eq!(
        metric(
            &text,
            "infera_model_drift_status{model=\"penguins\",version=\"1\"}"
        ),
        Some(2.0)
    );
}

#[tokio::test]
async fn string_class_names_are_feedback_labels() {
    let dir = tempfile::tempdir().unwrap();
    let model = "str_logreg_clf_iris";
    copy_dir(&conformance().join(model), &dir.path().join(model));
    let app = app(dir.path());
    let golden: Value = serde_json::from_str(
        &std::fs::read_to_string(conformance().join(model).join("1/golden.json")).unwrap(),
    )
    .unwrap();
    let rows = &golden["inputs"].as_array().unwrap()[..4];
    let r = post(
        &app,
        &format!("/models/{model}/predict"),
        &json!({"instances": rows, "id": "fb"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let predicted: Vec<String> = r.json()["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["label"].as_str().unwrap().to_string())
        .collect();
    // Three answers agree with the prediction (by name), one names another class.
    let other = ["setosa", "versicolor", "virginica"]
        .into_iter()
        .find(|c| *c != predicted[3])
        .unwrap();
    let items = json!({"feedback": [
        {"id": "fb/0", "label": predicted[0]},
        {"id": "fb/1", "label": predicted[1]},
        {"id": "fb/2", "label": predicted[2]},
        {"id": "fb/3", "label": other},
    ]});
    let r = post(&app, &format!("/models/{model}/feedback"), &items).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["matched"], 4, "{}", r.text);
    let view = get(&app, &format!("/models/{model}/monitoring"))
        .await
        .json();
    assert_eq!(view["quality"]["samples"], 4, "{view}");
    assert_eq!(view["quality"]["accuracy"], 0.75, "{view}");
    // A name that is not one of the graph's classes is invalid, and the prediction stays.
    let r = post(
        &app,
        &format!("/models/{model}/predict"),
        &json!({"instances": [rows[0]], "id": "late"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = post(
        &app,
        &format!("/models/{model}/feedback"),
        &json!({"feedback": [{"id": "late/0", "label": "tulip"}]}),
    )
    .await;
    assert_eq!(r.json()["invalid"], 1, "{}", r.text);
    assert!(r.text.contains("unknown label \\\"tulip\\\""), "{}", r.text);
    let r = post(
        &app,
        &format!("/models/{model}/feedback"),
        &json!({"feedback": [{"id": "late/0", "label": predicted[0]}]}),
    )
    .await;
    assert_eq!(r.json()["matched"], 1, "{}", r.text);
    let view = get(&app, &format!("/models/{model}/monitoring"))
        .await
        .json();
    assert_eq!(view["quality"]["accuracy"], 0.8, "{view}");
}

/// Explanations name the string columns (main refused them with 422 `not_explainable` before
/// the explainer carried strings as background codes): with the profile, its categories stand
/// in for an absent island or sex; without background data, the refusal says what is missing.
#[tokio::test]
async fn explanations_name_string_columns() {
    let dir = penguins(CARD);
    let app = app(dir.path());
    let r = post(
        &app,
        "/models/penguins/explain",
        &json!({ "instances": [row()] }),
    )
    .await;
    let (message, kind) = r.error(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(kind, "not_explainable");
    assert!(message.contains("\"penguins\""), "{message}");
    assert!(message.contains("background.json"), "{message}");
    std::fs::write(
        dir.path().join("penguins/1/profile.json"),
        profile().to_string(),
    )
    .unwrap();
    let app = self::app(dir.path());
    let r = post(
        &app,
        "/models/penguins/explain",
        &json!({ "instances": [row()] }),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let e = &r.json()["explanations"][0];
    let names: Vec<&String> = e["attributions"].as_object().unwrap().keys().collect();
    for f in ["island", "sex", "bill_length_mm", "body_mass_g"] {
        assert!(names.iter().any(|n| *n == f), "{f} in {e}");
    }
    assert_eq!(names.len(), 6, "{e}");
}
