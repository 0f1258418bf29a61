//! Golden files: inputs with reference outputs (from onnxruntime) that a model version must
//! reproduce. `infera check` and the test suite both use this.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use super::catalog::LoadedVersion;
use super::error::RepositoryError;
use crate::contract::{decode_instances, Instance};
use crate::engine::{Tensor, TensorData};

fn default_tolerance() -> f64 {
    1e-5
}

/// `golden.json`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoldenFile {
    /// Input tensor name (informational for single-input models).
    #[serde(default)]
    pub input: Option<String>,
    /// Instances, in the same form `/predict` takes.
    pub inputs: Vec<Value>,
    /// Output name -> expected values (nested arrays, batch first).
    pub outputs: BTreeMap<String, Value>,
    /// Allowed difference: |got - want| <= tolerance * max(1, |want|).
    #[serde(default = "default_tolerance")]
    pub tolerance: f64,
}

impl GoldenFile {
    pub fn read(path: &Path) -> Result<GoldenFile, RepositoryError> {
        let text = std::fs::read_to_string(path).map_err(|e| RepositoryError::io(path, &e))?;
        serde_json::from_str(&text).map_err(|e| RepositoryError::Golden {
            path: path.display().to_string(),
            reason: e.to_string(),
        })
    }
}

/// The outcome of running one golden file.
#[derive(Debug, Clone)]
pub struct GoldenReport {
    pub model: String,
    pub version: u64,
    pub instances: usize,
    pub outputs_checked: usize,
    /// Largest |got - want| over every checked value.
    pub max_abs_diff: f64,
    pub mismatches: Vec<String>,
}

impl GoldenReport {
    pub fn passed(&self) -> bool {
        self.mismatches.is_empty() && self.outputs_checked > 0
    }
}

/// Runs the golden inputs through the model as one batch and compares every expected output,
/// then runs each instance on its own and compares it with the reference and with the batch.
pub fn check(loaded: &LoadedVersion, golden: &GoldenFile) -> GoldenReport {
    let mut report = GoldenReport {
        model: loaded.model.clone(),
        version: loaded.version,
        instances: golden.inputs.len(),
        outputs_checked: 0,
        max_abs_diff: 0.0,
        mismatches: Vec::new(),
    };
    let outputs = match run(loaded, &golden.inputs) {
        Ok(outputs) => outputs,
        Err(e) => {
            report.mismatches.push(e);
            return report;
        }
    };
    let names: Vec<&str> = loaded
        .contract
        .signature
        .outputs
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    for (name, expected) in &golden.outputs {
        let Some(ix) = names.iter().position(|n| n == name) else {
            report.mismatches.push(format!(
                "output {name:?} is not produced by the model (outputs: {names:?})"
            ));
            continue;
        };
        compare(name, &outputs[ix], expected, golden.tolerance, &mut report);
        report.outputs_checked += 1;
    }
    if golden.outputs.is_empty() {
        report
            .mismatches
            .push("the golden file lists no outputs to compare".into());
    }
    check_instances_alone(loaded, golden, &outputs, &mut report);
    report
}

/// Each instance run alone must reproduce its row of the reference outputs (so batch-1 answers
/// are checked against the reference directly, not only against the batch) and its row of the
/// batched answer.
fn check_instances_alone(
    loaded: &LoadedVersion,
    golden: &GoldenFile,
    batched: &[Tensor],
    report: &mut GoldenReport,
) {
    let names: Vec<&str> = loaded
        .contract
        .signature
        .outputs
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    let tolerance = golden.tolerance;
    for i in 0..golden.inputs.len() {
        let single = match run(loaded, &golden.inputs[i..=i]) {
            Ok(single) => single,
            Err(e) => {
                report.mismatches.push(format!("instance {i} alone: {e}"));
                return;
            }
        };
        for (out, (one, all)) in single.iter().zip(batched).enumerate() {
            let n = one.data.len();
            let got = |j: usize| Elem::of(&one.data, j);
            if (0..n).any(|j| !got(j).within(&Elem::of(&all.data, i * n + j), tolerance)) {
                report.mismatches.push(format!(
                    "batch invariance: output {:?} of instance {i} alone differs from row {i} of the batch",
                    names[out]
                ));
            }
            let Some(row) = golden.outputs.get(names[out]).and_then(|v| v.get(i)) else {
                continue;
            };
            let mut want = Vec::new();
            if flatten(row, &mut want).is_ok()
                && want.len() == n
                && (0..n).any(|j| !got(j).within(&want[j], tolerance))
            {
                report.mismatches.push(format!(
                    "output {:?} of instance {i} alone differs from the reference: got {:?}, want {want:?}",
                    names[out],
                    (0..n).map(got).collect::<Vec<_>>()
                ));
            }
        }
    }
}

fn run(loaded: &LoadedVersion, inputs: &[Value]) -> Result<Vec<Tensor>, String> {
    let inputs: Vec<Instance> = inputs.iter().cloned().map(Instance::from).collect();
    let tensors = decode_instances(&loaded.contract.input, &inputs)
        .map_err(|e| format!("golden inputs break the model's contract: {e}"))?;
    loaded
        .compiled
        .run_request(&tensors)
        .map_err(|e| e.to_string())
}

/// |got - want| <= tolerance * max(1, |want|); false when either is NaN.
fn within(got: f64, want: f64, tolerance: f64) -> bool {
    (got - want).abs() <= tolerance * want.abs().max(1.0)
}

/// One output element: a number, or a string (labels of classifiers with string classes).
#[derive(Debug, Clone, PartialEq)]
enum Elem {
    Num(f64),
    Str(String),
}

impl Elem {
    fn of(data: &TensorData, i: usize) -> Elem {
        match data.get_str(i) {
            Some(s) => Elem::Str(s.to_string()),
            None => Elem::Num(data.get_f64(i).unwrap_or(f64::NAN)),
        }
    }

    /// Numbers within the tolerance, strings identical.
    fn within(&self, want: &Elem, tolerance: f64) -> bool {
        match (self, want) {
            (Elem::Num(g), Elem::Num(w)) => within(*g, *w, tolerance),
            (Elem::Str(g), Elem::Str(w)) => g == w,
            _ => false,
        }
    }

    fn diff(&self, want: &Elem) -> f64 {
        match (self, want) {
            (Elem::Num(g), Elem::Num(w)) => (g - w).abs(),
            _ if self == want => 0.0,
            _ => f64::INFINITY,
        }
    }
}

impl std::fmt::Display for Elem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Elem::Num(v) => write!(f, "{v}"),
            Elem::Str(s) => write!(f, "{s:?}"),
        }
    }
}

fn flatten(value: &Value, out: &mut Vec<Elem>) -> Result<(), String> {
    match value {
        Value::Array(items) => items.iter().try_for_each(|v| flatten(v, out)),
        Value::Number(n) => {
            out.push(Elem::Num(n.as_f64().ok_or("number out of range")?));
            Ok(())
        }
        Value::Bool(b) => {
            out.push(Elem::Num(f64::from(u8::from(*b))));
            Ok(())
        }
        Value::String(s) => {
            out.push(Elem::Str(s.clone()));
            Ok(())
        }
        other => Err(format!("expected numbers or strings, found {other}")),
    }
}

fn compare(name: &str, got: &Tensor, expected: &Value, tolerance: f64, report: &mut GoldenReport) {
    let mut want = Vec::new();
    if let Err(e) = flatten(expected, &mut want) {
        report.mismatches.push(format!("output {name:?}: {e}"));
        return;
    }
    if want.len() != got.data.len() {
        report.mismatches.push(format!(
            "output {name:?}: expected {} values, the model produced {} (shape {:?})",
            want.len(),
            got.data.len(),
            got.shape
        ));
        return;
    }
    let row_len = got.row_len().max(1);
    let mut shown = 0;
    for (i, w) in want.iter().enumerate() {
        let g = Elem::of(&got.data, i);
        let diff = g.diff(w);
        if diff.is_finite() {
            report.max_abs_diff = report.max_abs_diff.max(diff);
        }
        if !g.within(w, tolerance) {
            if shown < 5 {
                report.mismatches.push(format!(
                    "output {name:?} instance {} element {}: got {g}, want {w} (diff {diff:.3e}, tolerance {tolerance:e})",
                    i / row_len,
                    i % row_len
                ));
            }
            shown += 1;
        }
    }
    if shown > 5 {
        report
            .mismatches
            .push(format!("output {name:?}: {} more mismatches", shown - 5));
    }
}
