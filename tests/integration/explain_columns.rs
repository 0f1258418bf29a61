//! Explanations of a DataFrame model with string columns (the shipped penguins example: island
//! and sex are strings, one graph input per column): every column is named, a string column's
//! "absent" value comes from the background (background.json strings, or the profile's
//! categories), the values equal exact Shapley values computed here from `/predict` answers, long
//! strings are evaluated in bounded chunks. A text classifier (tweet-source) is explained token
//! by token; a free-text column beside other columns is refused, naming it.

use axum::http::StatusCode;
use axum::Router;
use serde_json::{json, Value};

use crate::common::{
    copy_dir, get, loaded, metric, penguin_golden_inputs, post, shipped_models, PENGUIN_FEATURES,
};

/// The shipped penguins model in a repository of its own; with `background` rows (objects of
/// named values) written as its background.json when given.
fn penguins(background: Option<&[Value]>) -> (tempfile::TempDir, Router) {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(
        &shipped_models().join("penguins"),
        &dir.path().join("penguins"),
    );
    if let Some(rows) = background {
        let rows: Vec<Value> = rows
            .iter()
            .map(|r| Value::Array(PENGUIN_FEATURES.iter().map(|f| r[f].clone()).collect()))
            .collect();
        let file = json!({"source": "golden rows 3-7", "features": PENGUIN_FEATURES, "rows": rows});
        std::fs::write(
            dir.path().join("penguins/1/background.json"),
            file.to_string(),
        )
        .unwrap();
    }
    let router = loaded(dir.path(), &[]).router();
    (dir, router)
}

fn attributions(e: &Value) -> Vec<f64> {
    let map = e["attributions"].as_object().unwrap();
    assert_eq!(map.len(), PENGUIN_FEATURES.len(), "{e}");
    PENGUIN_FEATURES
        .iter()
        .map(|f| map[*f].as_f64().unwrap_or_else(|| panic!("{f} in {e}")))
        .collect()
}

fn assert_sums(e: &Value, tolerance: f64) {
    let sum: f64 = attributions(e).iter().sum();
    let gap = e["output"].as_f64().unwrap() - e["base_value"].as_f64().unwrap();
    assert!((sum - gap).abs() <= tolerance, "sum {sum} vs {gap}: {e}");
}

/// `x` with the features outside `mask` taken from `b`.
fn blend(x: &Value, b: &Value, mask: usize) -> Value {
    let mut row = serde_json::Map::new();
    for (j, f) in PENGUIN_FEATURES.iter().enumerate() {
        let from = if mask & (1 << j) != 0 { x } else { b };
        row.insert(f.to_string(), from[f].clone());
    }
    Value::Object(row)
}

fn factorial(n: usize) -> f64 {
    (1..=n).map(|k| k as f64).product()
}

/// Exact Shapley values of `x` for class `class` against `background`, from the coalitions'
/// outputs as `/predict` gives them (one request holding every blended row).
async fn shapley_from_predictions(
    router: &Router,
    x: &Value,
    background: &[Value],
    class: usize,
) -> (Vec<f64>, f64) {
    let f = PENGUIN_FEATURES.len();
    let instances: Vec<Value> = (0..1usize << f)
        .flat_map(|mask| background.iter().map(move |b| blend(x, b, mask)))
        .collect();
    let r = post(
        router,
        "/models/penguins/predict",
        &json!({ "instances": instances }),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let predictions = r.json()["predictions"].as_array().unwrap().clone();
    let v: Vec<f64> = predictions
        .chunks(background.len())
        .map(|rows| {
            rows.iter()
                .map(|p| p["probabilities"][class].as_f64().unwrap())
                .sum::<f64>()
                / rows.len() as f64
        })
        .collect();
    let phi = (0..f)
        .map(|i| {
            (0..1usize << f)
                .filter(|s| s & (1 << i) == 0)
                .map(|s| {
                    let size = s.count_ones() as usize;
                    let weight = factorial(size) * factorial(f - size - 1) / factorial(f);
                    weight * (v[s | (1 << i)] - v[s])
                })
                .sum()
        })
        .collect();
    (phi, v[0])
}

#[tokio::test]
async fn string_columns_are_named_and_equal_exact_shapley_values_from_predictions() {
    let golden = penguin_golden_inputs();
    let background = &golden[3..8];
    let (_dir, router) = penguins(Some(background));
    for x in &golden[..3] {
        let r = post(
            &router,
            "/models/penguins/explain",
            &json!({"instances": [x], "method": "exact_shapley"}),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let body = r.json();
        assert_eq!(body["background"]["rows"], 5, "{body}");
        assert_eq!(body["background"]["source"], "golden rows 3-7");
        let e = &body["explanations"][0];
        assert_eq!(e["method"], "exact_shapley");
        assert_eq!(e["samples"], 64);
        let got = attributions(e);
        assert_sums(e, 1e-9);
        let labels = get(&router, "/models/penguins").await.json()["contract"]["labels"].clone();
        let class = labels
            .as_array()
            .unwrap()
            .iter()
            .position(|l| *l == e["target"])
            .unwrap_or_else(|| panic!("{} in {labels}", e["target"]));
        let (want, base) = shapley_from_predictions(&router, x, background, class).await;
        assert!(
            (e["base_value"].as_f64().unwrap() - base).abs() < 1e-6,
            "{e} vs {base}"
        );
        for (j, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (g - w).abs() < 1e-6,
                "{}: infera {g} vs {w} ({e})",
                PENGUIN_FEATURES[j]
            );
        }
        // A string column carries weight: the island or the sex moves the output.
        assert!(got[0].abs() + got[1].abs() > 1e-3, "{e}");
    }
}

#[tokio::test]
async fn the_profile_gives_string_columns_their_categories_and_unseen_values_are_explained() {
    let (_dir, router) = penguins(None);
    let x = penguin_golden_inputs()[0].clone();
    let mut unseen = x.clone();
    unseen["island"] = json!("Atlantis");
    let r = post(
        &router,
        "/models/penguins/explain",
        &json!({"instances": [x, unseen], "method": "kernel_shap", "budget": 64}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let body = r.json();
    assert!(
        body["background"]["source"]
            .as_str()
            .unwrap()
            .starts_with("profile.json quantiles"),
        "{body}"
    );
    assert_eq!(body["background"]["rows"], 10);
    for e in body["explanations"].as_array().unwrap() {
        assert_sums(e, 1e-9);
    }
    // The model ignores an island it never saw (all-zero one-hot) while every background row
    // holds a known one: the two instances differ in the island's attribution only by that.
    let known = attributions(&body["explanations"][0]);
    let other = attributions(&body["explanations"][1]);
    assert!((known[0] - other[0]).abs() > 1e-4, "{known:?} vs {other:?}");
}

#[tokio::test]
async fn long_strings_are_evaluated_in_chunks_bounded_by_their_bytes() {
    let golden = penguin_golden_inputs();
    let (_dir, router) = penguins(Some(&golden[3..8]));
    // A 400 kB island (the card allows unseen categories): 64 coalitions x 5 background rows
    // would be one 320-row chunk; its strings bound a chunk to 8 MiB, 20 rows.
    let mut x = golden[0].clone();
    x["island"] = json!("x".repeat(400_000));
    let r = post(
        &router,
        "/models/penguins/explain",
        &json!({"instances": [x], "method": "exact_shapley"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_sums(&r.json()["explanations"][0], 1e-9);
    let text = get(&router, "/metrics").await.text;
    let series = |suffix: &str| {
        let name = format!("infera_model_batch_size{suffix}");
        metric(&text, &name).unwrap_or_else(|| panic!("{name}"))
    };
    let labels = "model=\"penguins\",version=\"1\"";
    let calls = series(&format!("_count{{{labels}}}"));
    let rows = series(&format!("_sum{{{labels}}}"));
    let small = series(&format!("_bucket{{{labels},le=\"64\"}}"));
    // Chunks of 20 rows, at most two in the queue at once (joined into one call of 40 at most);
    // without the bound the 320 rows would be one call.
    assert!(rows >= 320.0, "{rows} rows in {calls} calls");
    assert_eq!(small, calls, "every model call holds at most 64 rows");
}

fn tweet_source() -> (tempfile::TempDir, Router) {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(
        &shipped_models().join("tweet-source"),
        &dir.path().join("tweet-source"),
    );
    let router = loaded(dir.path(), &[]).router();
    (dir, router)
}

/// The probability of class `class` for each text, from `/predict`.
async fn probabilities(router: &Router, texts: &[String], class: usize) -> Vec<f64> {
    let instances: Vec<Value> = texts.iter().map(|t| json!({ "text": t })).collect();
    let r = post(
        router,
        "/models/tweet-source/predict",
        &json!({ "instances": instances }),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.json()["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["probabilities"][class].as_f64().unwrap())
        .collect()
}

#[tokio::test]
async fn a_text_classifier_is_explained_token_by_token() {
    let (_dir, router) = tweet_source();
    let tokens = ["Thank", "you", "Ohio!", "#MAGA", "http://t.co/x"];
    let doc = tokens.join(" ");
    let r = post(
        &router,
        "/models/tweet-source/explain",
        &json!({"instances": [{ "text": doc }]}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let body = r.json();
    assert_eq!(body["background"]["rows"], 1, "{body}");
    let e = &body["explanations"][0];
    assert_eq!(e["method"], "exact_shapley");
    assert_eq!(e["samples"], 32);
    let map = e["attributions"].as_object().unwrap();
    let names: Vec<String> = (0..tokens.len())
        .map(|i| format!("{i}:{}", tokens[i]))
        .collect();
    assert_eq!(map.len(), tokens.len(), "{e}");
    let got: Vec<f64> = names.iter().map(|n| map[n].as_f64().unwrap()).collect();
    let sum: f64 = got.iter().sum();
    let gap = e["output"].as_f64().unwrap() - e["base_value"].as_f64().unwrap();
    assert!((sum - gap).abs() < 1e-9, "{sum} vs {gap}: {e}");
    // Exact Shapley values over the 32 sub-documents, from /predict.
    let labels = get(&router, "/models/tweet-source").await.json()["contract"]["labels"].clone();
    let class = labels
        .as_array()
        .unwrap()
        .iter()
        .position(|l| *l == e["target"])
        .unwrap();
    let f = tokens.len();
    let texts: Vec<String> = (0..1usize << f)
        .map(|mask| {
            let kept: Vec<&str> = (0..f)
                .filter(|j| mask & (1 << j) != 0)
                .map(|j| tokens[j])
                .collect();
            kept.join(" ")
        })
        .collect();
    // Sub-documents differ from infera's only in trailing spaces, which the model's tokenizer
    // ignores.
    let v = probabilities(&router, &texts, class).await;
    assert!(
        (v[0] - e["base_value"].as_f64().unwrap()).abs() < 1e-6,
        "{e}"
    );
    assert!(
        (v[(1 << f) - 1] - e["output"].as_f64().unwrap()).abs() < 1e-6,
        "{e}"
    );
    for i in 0..f {
        let want: f64 = (0..1usize << f)
            .filter(|s| s & (1 << i) == 0)
            .map(|s| {
                let size = s.count_ones() as usize;
                factorial(size) * factorial(f - size - 1) / factorial(f) * (v[s | (1 << i)] - v[s])
            })
            .sum();
        assert!(
            (got[i] - want).abs() < 1e-6,
            "{}: {} vs {want}",
            names[i],
            got[i]
        );
    }
    // Too many tokens for one explanation.
    let long = vec!["word"; 300].join(" ");
    let (message, kind) = post(
        &router,
        "/models/tweet-source/explain",
        &json!({"instances": [{ "text": long }]}),
    )
    .await
    .error(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(kind, "invalid_request");
    assert!(
        message.contains("300 whitespace-separated tokens"),
        "{message}"
    );
    assert!(message.contains("1 to 256"), "{message}");
}

/// A free-text column beside other columns has no "absent" value that keeps the rest of the
/// row meaningful: refused, naming the column.
#[tokio::test]
async fn a_free_text_column_among_others_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let to = dir.path().join("penguins");
    copy_dir(&shipped_models().join("penguins"), &to);
    // island: a string without categories, and no profile to take them from.
    let card = std::fs::read_to_string(to.join("model.toml")).unwrap();
    let card = card.replacen(
        "categories = [\"Biscoe\", \"Dream\", \"Torgersen\"]\nunknown_categories = \"allow\"\n",
        "",
        1,
    );
    assert!(!card.contains("Torgersen"), "{card}");
    std::fs::write(to.join("model.toml"), card).unwrap();
    std::fs::remove_file(to.join("1/profile.json")).unwrap();
    let router = loaded(dir.path(), &[]).router();
    let x = penguin_golden_inputs()[0].clone();
    let r = post(
        &router,
        "/models/penguins/explain",
        &json!({"instances": [x]}),
    )
    .await;
    let (message, kind) = r.error(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(kind, "not_explainable");
    assert!(
        message.contains("free text in column \"island\""),
        "{message}"
    );
    let text = get(&router, "/metrics").await.text;
    assert_eq!(
        metric(&text, "infera_explain_failures_total{reason=\"free_text\"}"),
        Some(1.0)
    );
}
