//! Explanation cost in-process (no HTTP): one instance of each shipped tabular model explained
//! through `Explainer` and the worker pool, with the default budget (iris and diabetes exact,
//! breast-cancer KernelSHAP on 2048 coalitions), plus the pure coalition math alone (KernelSHAP
//! sampling and the weighted least squares for 30 features). benches/explain/compare_shap.py
//! times the same explanations through HTTP next to the shap package. Run:
//! `cargo bench --bench explain`.

use std::path::PathBuf;

use clap::Parser;
use criterion::{criterion_group, criterion_main, Criterion};
use infera::config::Cli;
use infera::explain::Coalitions;
use infera::inference::{ExplainOptions, Instance, Protocol, Target};
use infera::server::Infera;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn golden_instance(model: &str) -> Instance {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("models")
        .join(model)
        .join("1/golden.json");
    let golden: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    serde_json::from_value(golden["inputs"][0].clone()).unwrap()
}

fn explain(c: &mut Criterion) {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models");
    let argv = [
        "infera",
        "--model-repository",
        repo.to_str().unwrap(),
        "--port",
        "0",
    ];
    let infera = Infera::new(&Cli::try_parse_from(argv).unwrap().serve).unwrap();
    assert!(infera.load_models().is_empty());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let explainer = infera.state.explainer.clone();
    let options = ExplainOptions::default();
    let mut group = c.benchmark_group("explain");
    for model in ["iris", "diabetes", "breast-cancer"] {
        let instances = [golden_instance(model)];
        let target = Target {
            model: Some(model),
            version: None,
            protocol: Protocol::Http,
            route_key: None,
        };
        group.bench_function(model, |b| {
            b.iter(|| {
                runtime
                    .block_on(explainer.explain(target, &instances, &options))
                    .unwrap()
            })
        });
    }
    group.bench_function("kernel_coalitions_30_features_2048", |b| {
        b.iter(|| Coalitions::kernel(30, 2048, 0))
    });
    let coalitions = Coalitions::kernel(30, 2048, 0);
    let values: Vec<f64> = (0..coalitions.len()).map(|k| (k as f64).sin()).collect();
    group.bench_function("kernel_solve_30_features_2048", |b| {
        b.iter(|| coalitions.attribute(&values).unwrap())
    });
    group.finish();
}

criterion_group!(benches, explain);
criterion_main!(benches);
