//! The properties attributions must have, checked on models given as plain functions.

use super::*;

fn bg(rows: &[&[f64]]) -> Background {
    let rows: Vec<Vec<f64>> = rows.iter().map(|r| r.to_vec()).collect();
    Background::new(rows[0].len(), &rows, "test".into()).unwrap()
}

/// Runs a scalar model over row-major rows of `width`.
fn scalar(f: impl Fn(&[f64]) -> f64, width: usize) -> impl FnMut(&[f64]) -> Vec<f64> {
    move |rows: &[f64]| rows.chunks(width).map(&f).collect()
}

fn explain(
    f: impl Fn(&[f64]) -> f64,
    coalitions: &Coalitions,
    background: &Background,
    x: &[f64],
) -> Attribution {
    let mut model = scalar(f, x.len());
    let table = evaluate_with(&mut model, 1, coalitions, background, x, 7);
    coalitions.attribute(&table).expect("determined")
}

fn random_background(width: usize, rows: usize, seed: u64) -> Background {
    let mut rng = rng::SplitMix64::new(seed);
    let table: Vec<Vec<f64>> = (0..rows)
        .map(|_| (0..width).map(|_| rng.next_f64() * 4.0 - 2.0).collect())
        .collect();
    Background::new(width, &table, "random".into()).unwrap()
}

fn nonlinear(x: &[f64]) -> f64 {
    x[0] * x[1] + x[2].sin() + x[3] * x[3] - 0.5 * x[4] + (x[5] * x[0]).tanh()
}

#[test]
fn attributions_sum_to_the_output_minus_the_base_value() {
    let b = random_background(6, 9, 1);
    let x = [0.3, -1.2, 2.0, 0.7, 1.1, -0.4];
    for c in [Coalitions::exact(6), Coalitions::kernel(6, 40, 3)] {
        let a = explain(nonlinear, &c, &b, &x);
        let sum: f64 = a.values.iter().sum();
        assert!(
            (sum - (a.output - a.base_value)).abs() < 1e-9,
            "{:?}",
            c.method()
        );
        assert!((a.output - nonlinear(&x)).abs() < 1e-12);
        let mean_f: f64 = (0..b.rows()).map(|i| nonlinear(b.row(i))).sum::<f64>() / b.rows() as f64;
        assert!((a.base_value - mean_f).abs() < 1e-12);
    }
}

#[test]
fn a_linear_model_gets_coef_times_distance_from_the_background_mean() {
    let coef = [1.5, -2.0, 0.0, 0.25, 3.0];
    let f = |x: &[f64]| 0.7 + x.iter().zip(coef).map(|(a, b)| a * b).sum::<f64>();
    let b = random_background(5, 11, 2);
    let x = [1.0, 0.5, -3.0, 2.0, -0.1];
    let mean = b.mean();
    // Exact, and KernelSHAP on a sampled budget: for a linear model every coalition's value is
    // linear in the mask, so the weighted fit is exact whatever the sample.
    for c in [Coalitions::exact(5), Coalitions::kernel(5, 14, 9)] {
        let a = explain(f, &c, &b, &x);
        for j in 0..5 {
            let want = coef[j] * (x[j] - mean[j]);
            assert!(
                (a.values[j] - want).abs() < 1e-9,
                "{:?} feature {j}: {} vs {want}",
                c.method(),
                a.values[j]
            );
        }
    }
}

#[test]
fn symmetric_features_get_equal_attributions() {
    // f is symmetric in features 0 and 1, x has equal values there, and the background is
    // symmetric under swapping them.
    let f = |x: &[f64]| (x[0] + x[1]).powi(2) + x[0] * x[1] * x[2] + x[3];
    let b = bg(&[
        &[1.0, 1.0, 0.5, 0.0],
        &[-1.0, -1.0, 2.0, 1.0],
        &[0.3, 0.3, -1.0, 2.0],
    ]);
    let x = [2.0, 2.0, 1.0, -1.0];
    for c in [Coalitions::exact(4), Coalitions::kernel(4, 16, 5)] {
        let a = explain(f, &c, &b, &x);
        assert!(
            (a.values[0] - a.values[1]).abs() < 1e-9,
            "{:?}: {:?}",
            c.method(),
            a.values
        );
        assert!(a.values[0].abs() > 0.1);
    }
}

#[test]
fn a_feature_the_model_ignores_gets_zero() {
    let f = |x: &[f64]| x[0] * x[2] + x[3].exp(); // ignores 1 and 4
    let b = random_background(5, 8, 3);
    let x = [0.5, 100.0, -1.0, 0.2, -50.0];
    let a = explain(f, &Coalitions::exact(5), &b, &x);
    assert!(
        a.values[1].abs() < 1e-12 && a.values[4].abs() < 1e-12,
        "{:?}",
        a.values
    );
    let a = explain(f, &Coalitions::kernel(5, 32, 1), &b, &x);
    assert!(
        a.values[1].abs() < 1e-9 && a.values[4].abs() < 1e-9,
        "{:?}",
        a.values
    );
}

#[test]
fn kernel_shap_is_deterministic_for_a_seed() {
    let b = random_background(12, 5, 4);
    let x: Vec<f64> = (0..12).map(|i| i as f64 * 0.1 - 0.5).collect();
    let f = |x: &[f64]| nonlinear(x) + x[6] * x[7] - x[11].cos() * x[8];
    let a = explain(f, &Coalitions::kernel(12, 100, 77), &b, &x);
    let again = explain(f, &Coalitions::kernel(12, 100, 77), &b, &x);
    let other = explain(f, &Coalitions::kernel(12, 100, 78), &b, &x);
    assert_eq!(a, again);
    assert_ne!(a.values, other.values);
}

#[test]
fn kernel_shap_converges_to_the_exact_values_as_the_budget_grows() {
    let width = 10;
    let b = random_background(width, 6, 5);
    let x: Vec<f64> = (0..width).map(|i| (i as f64 * 0.37).sin() * 1.5).collect();
    let f = |x: &[f64]| nonlinear(x) + x[6] * x[7] * x[8] - (x[9] * x[1]).sin();
    let exact = explain(f, &Coalitions::exact(width), &b, &x);
    let error = |budget: usize, seed: u64| {
        let a = explain(f, &Coalitions::kernel(width, budget, seed), &b, &x);
        a.values
            .iter()
            .zip(&exact.values)
            .map(|(p, q)| (p - q).powi(2))
            .sum::<f64>()
            .sqrt()
    };
    // Mean error over seeds, so one lucky draw cannot pass the test.
    let mean_error = |budget: usize| (0..8).map(|s| error(budget, s)).sum::<f64>() / 8.0;
    let (small, medium) = (mean_error(40), mean_error(300));
    assert!(
        medium < small,
        "error {small} at 40 coalitions, {medium} at 300"
    );
    // The whole space: the weighted fit reproduces the exact values.
    assert!(error(1 << width, 0) < 1e-9, "{}", error(1 << width, 0));
}

#[test]
fn rows_and_means_line_up_with_coalitions() {
    let c = Coalitions::exact(2);
    let b = bg(&[&[10.0, 20.0], &[30.0, 40.0]]);
    let mut out = Vec::new();
    rows(&c, 0..4, &[1.0, 2.0], &b, &mut out);
    // masks: 00, 10 (feature 0), 01 (feature 1), 11
    assert_eq!(
        out,
        vec![
            10.0, 20.0, 30.0, 40.0, 1.0, 20.0, 1.0, 40.0, 10.0, 2.0, 30.0, 2.0, 1.0, 2.0, 1.0, 2.0
        ]
    );
    let mut m = Vec::new();
    means(&[1.0, 2.0, 3.0, 4.0], 2, 2, &mut m);
    assert_eq!(m, vec![2.0, 3.0]);
    assert_eq!(column(&[1.0, 2.0, 3.0, 4.0], 2, 1), vec![2.0, 4.0]);
}
