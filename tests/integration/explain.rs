//! Explanations through the HTTP stack on the shipped models: the attribution properties on
//! real models, the options and their limits, KServe V1's `:explain`, metrics, and that
//! explanations never starve predictions.

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::Router;
use serde_json::{json, Value};

use crate::common::{get, loaded, metric, post, shipped, shipped_models};

fn golden_inputs(model: &str) -> Vec<Value> {
    let path = shipped_models().join(model).join("1/golden.json");
    let golden: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    golden["inputs"].as_array().unwrap().clone()
}

fn background(model: &str) -> Value {
    let path = shipped_models().join(model).join("1/background.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The model's feature names, in column order.
fn features(model: &str) -> Vec<String> {
    background(model)["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_string())
        .collect()
}

fn background_mean(model: &str) -> Vec<f64> {
    let bg = background(model);
    let rows = bg["rows"].as_array().unwrap();
    let width = rows[0].as_array().unwrap().len();
    (0..width)
        .map(|j| rows.iter().map(|r| r[j].as_f64().unwrap()).sum::<f64>() / rows.len() as f64)
        .collect()
}

/// The attributions of one explanation (exactly the model's features), in column order.
fn attributions(e: &Value, model: &str) -> Vec<(String, f64)> {
    let names = features(model);
    let map = e["attributions"].as_object().unwrap();
    assert_eq!(map.len(), names.len(), "{e}");
    names
        .into_iter()
        .map(|k| {
            let v = map[&k].as_f64().unwrap();
            (k, v)
        })
        .collect()
}

fn assert_sums(e: &Value, tolerance: f64) {
    let sum: f64 = e["attributions"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_f64().unwrap())
        .sum();
    let gap = e["output"].as_f64().unwrap() - e["base_value"].as_f64().unwrap();
    assert!(
        (sum - gap).abs() <= tolerance,
        "sum {sum} vs output - base {gap}: {e}"
    );
}

#[tokio::test]
async fn iris_is_explained_exactly_for_the_predicted_class() {
    let router = shipped().router();
    let x = golden_inputs("iris")[0].clone();
    let r = post(
        &router,
        "/models/iris/explain",
        &json!({"instances": [x.clone()]}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let body = r.json();
    assert_eq!(body["model"], "iris");
    assert_eq!(body["version"], 1);
    assert_eq!(body["background"]["rows"], 32);
    assert!(body["background"]["source"]
        .as_str()
        .unwrap()
        .starts_with("background.json"));
    let e = &body["explanations"][0];
    assert_eq!(e["method"], "exact_shapley");
    assert_eq!(e["samples"], 16);
    // The attributions object lists the features in the model card's order.
    let at: Vec<usize> = features("iris")
        .iter()
        .map(|f| r.text.find(&format!("\"{f}\":")).unwrap())
        .collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "{}", r.text);
    assert_sums(e, 1e-9);
    // The explained output is the predicted class's probability, as /predict gives it.
    let p = post(&router, "/models/iris/predict", &json!({"instances": [x]}))
        .await
        .json();
    let prediction = &p["predictions"][0];
    assert_eq!(e["target"], prediction["label"]);
    let confidence = prediction["confidence"].as_f64().unwrap();
    assert!(
        (e["output"].as_f64().unwrap() - confidence).abs() < 1e-6,
        "{e} vs {prediction}"
    );
    // Any class may be asked for; each class's attributions sum to its own gap.
    let r = post(
        &router,
        "/models/iris/versions/1/explain",
        &json!({"instances": [golden_inputs("iris")[1]], "target": "setosa"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let e = &r.json()["explanations"][0];
    assert_eq!(e["target"], "setosa");
    assert_sums(e, 1e-9);
}

/// diabetes is a Ridge regression: its exact Shapley values are coef * (x - mean(background)),
/// with the coefficients read off the served model by prediction at unit vectors.
#[tokio::test]
async fn a_linear_regressor_gets_coef_times_distance_from_the_background_mean() {
    let router = shipped().router();
    let width = 10;
    let mut rows = vec![vec![0.0f64; width]];
    for j in 0..width {
        let mut e = vec![0.0; width];
        e[j] = 0.5;
        rows.push(e);
    }
    let p = post(
        &router,
        "/models/diabetes/predict",
        &json!({"instances": rows}),
    )
    .await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.text);
    let values: Vec<f64> = p.json()["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["value"].as_f64().unwrap())
        .collect();
    let coef: Vec<f64> = (0..width)
        .map(|j| (values[j + 1] - values[0]) / 0.5)
        .collect();
    let mean = background_mean("diabetes");
    for x in golden_inputs("diabetes").iter().take(3) {
        let r = post(
            &router,
            "/models/diabetes/explain",
            &json!({"instances": [x]}),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let e = &r.json()["explanations"][0];
        assert_eq!(e["target"], "value");
        assert_eq!(e["method"], "exact_shapley");
        assert_eq!(e["samples"], 1024);
        assert_sums(e, 1e-6);
        for (j, (name, phi)) in attributions(e, "diabetes").into_iter().enumerate() {
            let want = coef[j] * (x[j].as_f64().unwrap() - mean[j]);
            // f32 model arithmetic on outputs around 150: a few 1e-3 of rounding.
            assert!((phi - want).abs() < 2e-2, "{name}: {phi} vs {want}");
        }
    }
}

#[tokio::test]
async fn breast_cancer_is_sampled_within_budget_and_deterministic_for_a_seed() {
    let router = shipped().router();
    let x = golden_inputs("breast-cancer")[0].clone();
    let ask = |seed: u64| json!({"instances": [x.clone()], "budget": 300, "seed": seed});
    let a = post(&router, "/models/breast-cancer/explain", &ask(7)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let a = a.json();
    let e = &a["explanations"][0];
    assert_eq!(e["method"], "kernel_shap");
    let samples = e["samples"].as_u64().unwrap();
    assert!((62..=300).contains(&samples), "{samples}");
    assert_eq!(attributions(e, "breast-cancer").len(), 30);
    assert_sums(e, 1e-9);
    let again = post(&router, "/models/breast-cancer/explain", &ask(7))
        .await
        .json();
    assert_eq!(a, again);
    let other = post(&router, "/models/breast-cancer/explain", &ask(8))
        .await
        .json();
    assert_ne!(
        a["explanations"][0]["attributions"],
        other["explanations"][0]["attributions"]
    );
}

#[tokio::test]
async fn options_over_the_limits_or_against_the_model_are_refused() {
    let router = loaded(&shipped_models(), &["--explain-max-instances", "2"]).router();
    let iris = golden_inputs("iris")[0].clone();
    let cancer = golden_inputs("breast-cancer")[0].clone();
    let cases = [
        (
            "/models/iris/explain",
            json!({"instances": [iris], "target": "rose"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            "rose",
        ),
        (
            "/models/diabetes/explain",
            json!({"instances": [golden_inputs("diabetes")[0]], "target": "setosa"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            "value",
        ),
        (
            "/models/breast-cancer/explain",
            json!({"instances": [cancer], "method": "exact_shapley"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            "12 features",
        ),
        (
            "/models/breast-cancer/explain",
            json!({"instances": [cancer], "budget": 20}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            "at least 62",
        ),
        (
            "/models/iris/explain",
            json!({"instances": [iris], "budget": 1_000_000}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            "16384",
        ),
        (
            "/models/iris/explain",
            json!({"instances": [iris, iris, iris]}),
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_instances",
            "limit is 2",
        ),
        (
            "/models/iris/explain",
            json!({"instances": [[1.0, 2.0]]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "wrong_feature_count",
            "4",
        ),
        (
            "/models/iris/explain",
            json!({"instances": [iris], "method": "magic"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            "method",
        ),
        (
            "/models/nope/explain",
            json!({"instances": [iris]}),
            StatusCode::NOT_FOUND,
            "model_not_found",
            "nope",
        ),
        (
            "/models/iris/versions/7/explain",
            json!({"instances": [iris]}),
            StatusCode::NOT_FOUND,
            "version_not_found",
            "7",
        ),
        (
            "/models/iris/versions/x/explain",
            json!({"instances": [iris]}),
            StatusCode::NOT_FOUND,
            "version_not_found",
            "x",
        ),
    ];
    for (uri, body, status, kind, says) in cases {
        let r = post(&router, uri, &body).await;
        let (error, error_type) = r.error(status);
        assert_eq!(error_type, kind, "{uri} {body}: {error}");
        assert!(
            error.contains(says),
            "{uri} {body}: {error:?} should mention {says:?}"
        );
    }
}

#[tokio::test]
async fn kserve_v1_explain_verb_answers_like_the_rest_route() {
    let router = shipped().router();
    let x = golden_inputs("iris")[2].clone();
    let v1 = post(
        &router,
        "/v1/models/iris:explain",
        &json!({"instances": [x.clone()]}),
    )
    .await;
    assert_eq!(v1.status, StatusCode::OK, "{}", v1.text);
    let rest = post(
        &router,
        "/models/iris/explain",
        &json!({"instances": [x.clone()]}),
    )
    .await;
    assert_eq!(v1.json(), rest.json());
    let predict = post(
        &router,
        "/v1/models/iris:predict",
        &json!({"instances": [x.clone()]}),
    )
    .await;
    assert_eq!(predict.status, StatusCode::OK, "{}", predict.text);
    let (_, kind) = post(&router, "/v1/models/iris:bogus", &json!({"instances": [x]}))
        .await
        .error(StatusCode::NOT_FOUND);
    assert_eq!(kind, "not_found");
}

#[tokio::test]
async fn explanations_are_counted_in_metrics() {
    let router = shipped().router();
    let x = golden_inputs("iris")[0].clone();
    for _ in 0..2 {
        let r = post(
            &router,
            "/models/iris/explain",
            &json!({"instances": [x.clone()]}),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK);
    }
    post(
        &router,
        "/models/iris/explain",
        &json!({"instances": [x], "target": "rose"}),
    )
    .await;
    let text = get(&router, "/metrics").await.text;
    let labels = "{method=\"exact_shapley\",model=\"iris\",version=\"1\"}";
    assert_eq!(
        metric(
            &text,
            &format!("infera_explain_duration_seconds_count{labels}")
        ),
        Some(2.0)
    );
    assert_eq!(
        metric(&text, &format!("infera_explain_coalitions_total{labels}")),
        Some(32.0)
    );
    assert_eq!(
        metric(
            &text,
            "infera_explain_failures_total{reason=\"bad_option\"}"
        ),
        Some(1.0)
    );
}

/// A long explanation of breast-cancer (8192 coalitions x 32 rows, in 512-row chunks) runs; meanwhile predictions on the same
/// model keep answering, and a second explanation is refused with 429 (one slot).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn predictions_keep_answering_while_explanations_saturate() {
    let infera = loaded(
        &shipped_models(),
        &[
            "--explain-max-concurrent",
            "1",
            "--explain-chunk-rows",
            "512",
            "--explain-timeout-ms",
            "60000",
        ],
    );
    let router = infera.router();
    let x = golden_inputs("breast-cancer")[0].clone();
    let long = {
        let (router, x) = (router.clone(), x.clone());
        tokio::spawn(async move {
            let body = json!({"instances": [x], "budget": 8192});
            let r = post(&router, "/models/breast-cancer/explain", &body).await;
            (r, Instant::now())
        })
    };
    // Wait (polling) until the long explanation holds the slot: a short one is refused.
    let busy = refused_while_running(&router).await;
    let (error, kind) = busy.error(StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(kind, "explain_busy", "{error}");
    assert!(busy.headers.contains_key("retry-after"));
    // Predictions answer while the explanation runs.
    let mut answered = Vec::new();
    for _ in 0..20 {
        let r = post(
            &router,
            "/models/breast-cancer/predict",
            &json!({"instances": [x.clone()]}),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        answered.push(Instant::now());
    }
    let (r, finished) = long.await.unwrap();
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let before = answered.iter().filter(|t| **t < finished).count();
    assert_eq!(
        before, 20,
        "predictions finished before the explanation: {before} of 20"
    );
}

/// Waits (polling the running gauge, at most 30 s) until an explanation holds the only slot,
/// then asks for a short one.
async fn refused_while_running(router: &Router) -> crate::common::Reply {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let text = get(router, "/metrics").await.text;
        if metric(&text, "infera_explain_running") == Some(1.0) || Instant::now() > until {
            break;
        }
        tokio::task::yield_now().await;
    }
    let body = json!({"instances": [golden_inputs("iris")[0]]});
    post(router, "/models/iris/explain", &body).await
}

fn bench_cnn_image() -> Value {
    let path = shipped_models().join("bench/cnn/1/golden.json");
    let golden: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    golden["inputs"][0].clone()
}

/// The benchmark CNN (3x64x64 image -> 10 classes) is explained by occlusion: each patch's
/// attribution is the drop of the predicted class's probability when that patch is zeroed,
/// checked against /predict on the occluded image.
#[tokio::test]
async fn an_image_model_is_explained_by_occlusion() {
    let router = loaded(&shipped_models().join("bench"), &[]).router();
    let image = bench_cnn_image();
    let r = post(
        &router,
        "/models/cnn/explain",
        &json!({"instances": [image.clone()], "patch": 16}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let e = &r.json()["explanations"][0];
    assert_eq!(e["method"], "occlusion");
    assert_eq!(
        e["samples"], 18,
        "16 patches, the image and the all-zero image"
    );
    let attributions = e["attributions"].as_object().unwrap();
    assert_eq!(attributions.len(), 16);
    // The output is the predicted class's probability.
    let p = post(
        &router,
        "/models/cnn/predict",
        &json!({"instances": [image.clone()]}),
    )
    .await
    .json();
    let prediction = &p["predictions"][0];
    assert_eq!(e["target"], prediction["label"]);
    let class = prediction["class_index"].as_u64().unwrap() as usize;
    let output = e["output"].as_f64().unwrap();
    assert!((output - prediction["confidence"].as_f64().unwrap()).abs() < 1e-6);
    // Patch (1, 2): rows 16..32, columns 32..48 of every channel, set to 0.
    let mut occluded = image.clone();
    for channel in occluded.as_array_mut().unwrap() {
        for row in &mut channel.as_array_mut().unwrap()[16..32] {
            for v in &mut row.as_array_mut().unwrap()[32..48] {
                *v = json!(0.0);
            }
        }
    }
    let zeros = json!(vec![vec![vec![0.0; 64]; 64]; 3]);
    let p = post(
        &router,
        "/models/cnn/predict",
        &json!({"instances": [occluded, zeros]}),
    )
    .await
    .json();
    let probability = |i: usize| {
        p["predictions"][i]["probabilities"][class]
            .as_f64()
            .unwrap()
    };
    let want = output - probability(0);
    let got = attributions["patch_1_2"].as_f64().unwrap();
    assert!((got - want).abs() < 1e-5, "patch_1_2: {got} vs {want}");
    assert!((e["base_value"].as_f64().unwrap() - probability(1)).abs() < 1e-6);
    // Methods that do not fit the input are refused.
    let (error, kind) = post(
        &router,
        "/models/cnn/explain",
        &json!({"instances": [image.clone()], "method": "kernel_shap"}),
    )
    .await
    .error(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(kind, "invalid_request", "{error}");
    let (error, kind) = post(
        &router,
        "/models/cnn/explain",
        &json!({"instances": [image], "patch": 0}),
    )
    .await
    .error(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(kind, "invalid_request", "{error}");
    let iris = loaded(&shipped_models(), &[]).router();
    let (error, kind) = post(
        &iris,
        "/models/iris/explain",
        &json!({"instances": [[5.0, 3.0, 1.5, 0.2]], "method": "occlusion"}),
    )
    .await
    .error(StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        kind == "invalid_request" && error.contains("tensor"),
        "{error}"
    );
}

/// Without background.json the background comes from profile.json's quantiles (and says so);
/// with neither file the model cannot be explained.
#[tokio::test]
async fn the_profile_stands_in_for_a_missing_background_file() {
    let repo = tempfile::tempdir().unwrap();
    let iris = shipped_models().join("iris");
    for (dir, files) in [
        ("with-profile", &["model.onnx", "profile.json"][..]),
        ("bare", &["model.onnx"][..]),
    ] {
        std::fs::create_dir_all(repo.path().join(dir).join("1")).unwrap();
        std::fs::copy(
            iris.join("model.toml"),
            repo.path().join(dir).join("model.toml"),
        )
        .unwrap();
        for f in files {
            std::fs::copy(
                iris.join("1").join(f),
                repo.path().join(dir).join("1").join(f),
            )
            .unwrap();
        }
    }
    let router = loaded(repo.path(), &[]).router();
    let x = json!({"instances": [golden_inputs("iris")[0]]});
    let r = post(&router, "/models/with-profile/explain", &x).await;
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
    assert_sums(&body["explanations"][0], 1e-9);
    let (error, kind) = post(&router, "/models/bare/explain", &x)
        .await
        .error(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(kind, "not_explainable");
    assert!(error.contains("background.json"), "{error}");
}

/// digits (64 features) is sampled with KernelSHAP by default.
#[tokio::test]
async fn many_features_fall_back_to_kernel_shap() {
    let router = shipped().router();
    let r = post(
        &router,
        "/models/digits/explain",
        &json!({"instances": [golden_inputs("digits")[0]], "budget": 600}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let e = &r.json()["explanations"][0];
    assert_eq!(e["method"], "kernel_shap");
    assert_eq!(attributions(e, "digits").len(), 64);
    assert_sums(e, 1e-9);
}

/// Explaining needs the `predict` scope, on the REST routes and on V1's `:explain`.
#[tokio::test]
async fn explaining_needs_the_predict_scope() {
    use axum::body::Body;
    use axum::http::{header, Request};
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.toml");
    std::fs::write(
        &keys,
        format!(
            "[[keys]]\nname = \"reader\"\nsha256 = \"{}\"\nscopes = [\"read\"]\n\n\
             [[keys]]\nname = \"app\"\nsha256 = \"{}\"\nscopes = [\"predict\"]\n",
            infera::auth::hash_key("reader-key-0123456789"),
            infera::auth::hash_key("app-key-0123456789"),
        ),
    )
    .unwrap();
    let router = loaded(
        &shipped_models(),
        &["--api-keys-file", keys.to_str().unwrap()],
    )
    .router();
    let body = json!({"instances": [golden_inputs("iris")[0]]}).to_string();
    for uri in [
        "/models/iris/explain",
        "/models/iris/versions/1/explain",
        "/v1/models/iris:explain",
    ] {
        for (key, status) in [
            (None, StatusCode::UNAUTHORIZED),
            (Some("reader-key-0123456789"), StatusCode::FORBIDDEN),
            (Some("app-key-0123456789"), StatusCode::OK),
        ] {
            let mut request = Request::post(uri).header(header::CONTENT_TYPE, "application/json");
            if let Some(key) = key {
                request = request.header(header::AUTHORIZATION, format!("Bearer {key}"));
            }
            let r =
                crate::common::send(&router, request.body(Body::from(body.clone())).unwrap()).await;
            assert_eq!(r.status, status, "{uri} with {key:?}: {}", r.text);
        }
    }
}
