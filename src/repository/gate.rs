//! The validation gate: what a candidate version must pass, in order, before it serves. Load and
//! warm-up happen in `loader.rs`; this file runs the rest on the loaded candidate: contract
//! compatibility with the serving version, the golden file, and the card's `[gate]` thresholds on
//! the version's labelled evaluation set (`eval.json`), absolutely and against the serving
//! version on the same rows. The server's reloader and `infera check` both call [`evaluate`].

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::catalog::LoadedVersion;
pub use super::gate_stage::GateStage;
use super::golden::{check as check_golden, GoldenFile};
use super::layout::VersionDir;
use super::manifest::{Gate, Manifest};
use crate::contract::{
    decode_instances, predictions, InputContract, Instance, ModelContract, OutputContract,
    Prediction,
};

/// Largest `eval.json` read, in bytes.
pub const MAX_EVAL_BYTES: u64 = 64 * 1024 * 1024;
/// Most rows in one `eval.json`.
pub const MAX_EVAL_ROWS: usize = 100_000;
/// Rows per model call while scoring.
const EVAL_CHUNK: usize = 256;

/// How one stage went.
#[derive(Debug, Clone, Serialize)]
pub struct StageResult {
    pub stage: GateStage,
    /// `passed`, `failed` or `skipped` (nothing to check).
    pub outcome: &'static str,
    pub detail: String,
    /// Further lines (e.g. the golden mismatches).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// Scores of a version on an evaluation set.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct EvalScore {
    pub rows: usize,
    /// Classifiers: share of rows whose predicted class is the label.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accuracy: Option<f64>,
    /// Regressors: mean absolute error against the targets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mae: Option<f64>,
}

/// The gate's verdict on one candidate version.
#[derive(Debug, Clone, Serialize)]
pub struct GateReport {
    pub model: String,
    pub version: u64,
    pub passed: bool,
    /// The serving version it was compared with, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compared_with: Option<u64>,
    pub stages: Vec<StageResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eval: Option<EvalScore>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serving_eval: Option<EvalScore>,
}

impl GateReport {
    /// A candidate that could not be loaded.
    pub fn load_failed(model: &str, version: u64, reason: String) -> GateReport {
        GateReport {
            model: model.to_string(),
            version,
            passed: false,
            compared_with: None,
            stages: vec![StageResult {
                stage: GateStage::Load,
                outcome: "failed",
                detail: reason,
                notes: Vec::new(),
            }],
            eval: None,
            serving_eval: None,
        }
    }

    /// Marks the report failed at `stage`.
    pub fn fail(&mut self, stage: GateStage, detail: String) {
        self.passed = false;
        self.stages.push(StageResult {
            stage,
            outcome: "failed",
            detail,
            notes: Vec::new(),
        });
    }

    /// The first failure with its first few notes, in one line.
    pub fn reason(&self) -> Option<String> {
        let failed = self.stages.iter().find(|s| s.outcome == "failed")?;
        let mut reason = failed.detail.clone();
        for note in failed.notes.iter().take(3) {
            reason.push_str("; ");
            reason.push_str(note);
        }
        Some(reason)
    }

    /// The first failed stage and its detail.
    pub fn failure(&self) -> Option<(GateStage, &str)> {
        self.stages
            .iter()
            .find(|s| s.outcome == "failed")
            .map(|s| (s.stage, s.detail.as_str()))
    }

    fn push(&mut self, stage: GateStage, result: Result<Option<String>, Failure>) -> bool {
        let (outcome, detail, notes) = match result {
            Ok(Some(detail)) => ("passed", detail, Vec::new()),
            Ok(None) => ("skipped", "nothing to check".to_string(), Vec::new()),
            Err(f) => ("failed", f.detail, f.notes),
        };
        self.stages.push(StageResult {
            stage,
            outcome,
            detail,
            notes,
        });
        outcome != "failed"
    }
}

/// Why a stage failed, with optional detail lines.
struct Failure {
    detail: String,
    notes: Vec<String>,
}

impl From<String> for Failure {
    fn from(detail: String) -> Failure {
        Failure {
            detail,
            notes: Vec::new(),
        }
    }
}

/// Runs the stages after loading on `candidate`, stopping at the first failure. `serving` is
/// the version that serves now (None for the first version of a model).
pub fn evaluate(
    candidate: &LoadedVersion,
    dir: &VersionDir,
    manifest: Option<&Manifest>,
    serving: Option<&LoadedVersion>,
) -> GateReport {
    let gate = manifest.and_then(|m| m.gate.clone()).unwrap_or_default();
    let mut report = GateReport {
        model: candidate.model.clone(),
        version: candidate.version,
        passed: false,
        compared_with: serving.map(|s| s.version),
        stages: vec![StageResult {
            stage: GateStage::Load,
            outcome: "passed",
            detail: format!(
                "loaded and warmed up in {:.1} ms",
                candidate.load_duration.as_secs_f64() * 1e3
            ),
            notes: Vec::new(),
        }],
        eval: None,
        serving_eval: None,
    };
    let breaking = gate.breaking_versions.contains(&candidate.version);
    let contract = match serving {
        None => Ok(None),
        Some(_) if breaking => Ok(Some(
            "declared breaking change ([gate] breaking_versions)".to_string(),
        )),
        Some(s) => compatible(&candidate.contract, &s.contract)
            .map(|()| Some(format!("same inputs and outputs as version {}", s.version)))
            .map_err(Failure::from),
    };
    if !report.push(GateStage::Contract, contract) {
        return report;
    }
    if !report.push(GateStage::Golden, golden_stage(candidate, dir, &gate)) {
        return report;
    }
    // A declared breaking change cannot be scored by the serving version on the new rows.
    let serving = serving.filter(|_| !breaking);
    let eval = eval_stage(candidate, dir, &gate, serving, &mut report).map_err(Failure::from);
    report.passed = report.push(GateStage::Eval, eval);
    report
}

/// Whether `candidate` takes the same inputs and answers in the same form as `serving`.
pub fn compatible(candidate: &ModelContract, serving: &ModelContract) -> Result<(), String> {
    if candidate.task != serving.task {
        return Err(format!(
            "task changed from {} to {}",
            serving.task.as_str(),
            candidate.task.as_str()
        ));
    }
    match (&candidate.input, &serving.input) {
        (
            InputContract::Tabular { features: a, .. },
            InputContract::Tabular { features: b, .. },
        ) => {
            let names = |f: &[crate::contract::FeatureSpec]| {
                f.iter().map(|f| f.name.clone()).collect::<Vec<_>>()
            };
            if names(a) != names(b) {
                return Err(format!(
                    "features changed from {:?} to {:?}",
                    names(b),
                    names(a)
                ));
            }
        }
        (InputContract::Tensors { inputs: a }, InputContract::Tensors { inputs: b }) => {
            if a != b {
                return Err("input tensors changed (names, types or shapes)".into());
            }
        }
        _ => return Err("input form changed between tabular and tensors".into()),
    }
    match (&candidate.output, &serving.output) {
        (
            OutputContract::Classification { labels: a, .. },
            OutputContract::Classification { labels: b, .. },
        ) if a != b => Err(format!("class labels changed from {b:?} to {a:?}")),
        (OutputContract::Raw, OutputContract::Raw)
            if candidate.signature.outputs != serving.signature.outputs =>
        {
            Err("output tensors changed (names, types or shapes)".into())
        }
        _ => Ok(()),
    }
}

fn golden_stage(
    candidate: &LoadedVersion,
    dir: &VersionDir,
    gate: &Gate,
) -> Result<Option<String>, Failure> {
    let Some(path) = &dir.golden_file else {
        return if gate.require_golden {
            Err("no golden.json, and the card's [gate] requires one"
                .to_string()
                .into())
        } else {
            Ok(None)
        };
    };
    let golden = GoldenFile::read(path).map_err(|e| Failure::from(e.to_string()))?;
    let report = check_golden(candidate, &golden);
    if report.passed() {
        Ok(Some(format!(
            "{} instances, {} outputs, max |diff| {:.2e}; each instance alone matches too",
            report.instances, report.outputs_checked, report.max_abs_diff
        )))
    } else {
        Err(Failure {
            detail: "golden outputs do not match".into(),
            notes: report.mismatches,
        })
    }
}

fn eval_stage(
    candidate: &LoadedVersion,
    dir: &VersionDir,
    gate: &Gate,
    serving: Option<&LoadedVersion>,
    report: &mut GateReport,
) -> Result<Option<String>, String> {
    let Some(path) = &dir.eval_file else {
        return if gate.require_eval {
            Err("no eval.json, and the card's [gate] requires one".into())
        } else {
            Ok(None)
        };
    };
    let set = EvalSet::read(path)?;
    let ours = score(candidate, &set)?;
    report.eval = Some(ours);
    let theirs = match serving {
        Some(s) => Some(score(s, &set).map_err(|e| {
            format!(
                "the serving version {} cannot score eval.json: {e}",
                s.version
            )
        })?),
        None => None,
    };
    report.serving_eval = theirs;
    judge(gate, ours, theirs)
}

/// Compares the scores with the card's targets and margins.
fn judge(
    gate: &Gate,
    ours: EvalScore,
    theirs: Option<EvalScore>,
) -> Result<Option<String>, String> {
    let mut said = Vec::new();
    if let Some(acc) = ours.accuracy {
        said.push(format!("accuracy {acc:.4} on {} rows", ours.rows));
        if let Some(min) = gate.min_accuracy {
            if acc < min {
                return Err(format!(
                    "accuracy {acc:.4} on {} rows is below the card's gate.min_accuracy {min}",
                    ours.rows
                ));
            }
        }
        if let Some(serving) = theirs.and_then(|t| t.accuracy) {
            let margin = gate.max_accuracy_drop.unwrap_or(0.0);
            if acc < serving - margin - 1e-12 {
                return Err(format!(
                    "accuracy {acc:.4} is worse than the serving version's {serving:.4} by more than gate.max_accuracy_drop {margin}"
                ));
            }
            said.push(format!("serving version {serving:.4}"));
        }
    }
    if let Some(mae) = ours.mae {
        said.push(format!("MAE {mae:.4} on {} rows", ours.rows));
        if let Some(max) = gate.max_mae {
            if mae > max {
                return Err(format!(
                    "MAE {mae:.4} on {} rows is above the card's gate.max_mae {max}",
                    ours.rows
                ));
            }
        }
        if let Some(serving) = theirs.and_then(|t| t.mae) {
            let margin = gate.max_mae_increase.unwrap_or(0.0);
            if mae > serving + margin + 1e-12 {
                return Err(format!(
                    "MAE {mae:.4} is worse than the serving version's {serving:.4} by more than gate.max_mae_increase {margin}"
                ));
            }
            said.push(format!("serving version {serving:.4}"));
        }
    }
    Ok(Some(said.join(", ")))
}

/// `eval.json`: labelled rows shipped with a version.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalSet {
    /// Instances, in the forms `/predict` takes.
    pub inputs: Vec<Value>,
    /// Classifiers: the true class of each row, as a class index or a label name.
    #[serde(default)]
    pub labels: Option<Vec<Value>>,
    /// Regressors: the true value of each row.
    #[serde(default)]
    pub targets: Option<Vec<f64>>,
}

impl EvalSet {
    /// Reads and bounds-checks `eval.json` (size before reading, row counts after).
    pub fn read(path: &Path) -> Result<EvalSet, String> {
        let shown = path.display();
        let size = std::fs::metadata(path)
            .map_err(|e| format!("{shown}: {e}"))?
            .len();
        if size > MAX_EVAL_BYTES {
            return Err(format!(
                "{shown}: {size} bytes, more than the {MAX_EVAL_BYTES} an evaluation set may have"
            ));
        }
        let text = std::fs::read_to_string(path).map_err(|e| format!("{shown}: {e}"))?;
        let set: EvalSet = serde_json::from_str(&text).map_err(|e| format!("{shown}: {e}"))?;
        let rows = set.inputs.len();
        if rows == 0 || rows > MAX_EVAL_ROWS {
            return Err(format!(
                "{shown}: {rows} rows; an evaluation set has 1 to {MAX_EVAL_ROWS}"
            ));
        }
        let truths = match (&set.labels, &set.targets) {
            (Some(l), None) => l.len(),
            (None, Some(t)) => t.len(),
            _ => return Err(format!("{shown}: give exactly one of labels or targets")),
        };
        if truths != rows {
            return Err(format!(
                "{shown}: {rows} inputs but {truths} labels/targets"
            ));
        }
        Ok(set)
    }
}

/// Scores `loaded` on `set`, running the model directly (not through the worker pool).
pub fn score(loaded: &LoadedVersion, set: &EvalSet) -> Result<EvalScore, String> {
    let contract = &loaded.contract;
    let truth_index = match (&contract.output, &set.labels, &set.targets) {
        (OutputContract::Classification { labels, .. }, Some(truth), _) => Some(
            truth
                .iter()
                .map(|t| class_index(t, labels))
                .collect::<Result<Vec<_>, _>>()?,
        ),
        (OutputContract::Regression { .. }, _, Some(_)) => None,
        _ => {
            return Err(format!(
                "eval.json must carry labels for a classifier or targets for a regressor (this model's task is {})",
                contract.task.as_str()
            ))
        }
    };
    let (mut hits, mut abs_error) = (0usize, 0.0f64);
    for (chunk_no, chunk) in set.inputs.chunks(EVAL_CHUNK).enumerate() {
        let base = chunk_no * EVAL_CHUNK;
        let instances: Vec<Instance> = chunk.iter().cloned().map(Instance::from).collect();
        let tensors = decode_instances(&contract.input, &instances)
            .map_err(|e| format!("eval.json rows break the model's contract: {e}"))?;
        let outputs = loaded.compiled.run(tensors).map_err(|e| e.to_string())?;
        let answers = predictions(contract, &outputs, chunk.len())?;
        for (i, answer) in answers.iter().enumerate() {
            match answer {
                Prediction::Classification { class_index, .. } => {
                    if truth_index.as_ref().map(|t| t[base + i]) == Some(*class_index) {
                        hits += 1;
                    }
                }
                Prediction::Regression { value } => {
                    let target = set.targets.as_ref().map_or(f64::NAN, |t| t[base + i]);
                    abs_error += (value - target).abs();
                }
                Prediction::Raw { .. } => return Err("raw outputs cannot be scored".into()),
            }
        }
    }
    let rows = set.inputs.len();
    Ok(EvalScore {
        rows,
        accuracy: truth_index.is_some().then(|| hits as f64 / rows as f64),
        mae: truth_index.is_none().then(|| abs_error / rows as f64),
    })
}

fn class_index(truth: &Value, labels: &[String]) -> Result<usize, String> {
    match truth {
        Value::Number(n) => n
            .as_u64()
            .and_then(|i| usize::try_from(i).ok())
            .filter(|i| *i < labels.len())
            .ok_or_else(|| format!("label {n} is not a class index below {}", labels.len())),
        Value::String(s) => labels
            .iter()
            .position(|l| l == s)
            .ok_or_else(|| format!("label {s:?} is not one of {labels:?}")),
        other => Err(format!(
            "a label must be a class index or name, got {other}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn score(accuracy: Option<f64>, mae: Option<f64>) -> EvalScore {
        EvalScore {
            rows: 10,
            accuracy,
            mae,
        }
    }

    #[test]
    fn thresholds_and_margins_decide() {
        let gate = Gate {
            min_accuracy: Some(0.9),
            max_accuracy_drop: Some(0.02),
            ..Gate::default()
        };
        assert!(judge(&gate, score(Some(0.95), None), None).is_ok());
        let err = judge(&gate, score(Some(0.85), None), None).unwrap_err();
        assert!(
            err.contains("below the card's gate.min_accuracy 0.9"),
            "{err}"
        );
        assert!(judge(
            &gate,
            score(Some(0.95), None),
            Some(score(Some(0.96), None))
        )
        .is_ok());
        let err = judge(
            &gate,
            score(Some(0.92), None),
            Some(score(Some(0.96), None)),
        )
        .unwrap_err();
        assert!(err.contains("worse than the serving version"), "{err}");
        let gate = Gate {
            max_mae: Some(50.0),
            ..Gate::default()
        };
        assert!(judge(
            &gate,
            score(None, Some(40.0)),
            Some(score(None, Some(40.0)))
        )
        .is_ok());
        assert!(judge(
            &gate,
            score(None, Some(41.0)),
            Some(score(None, Some(40.0)))
        )
        .is_err());
        assert!(judge(&gate, score(None, Some(51.0)), None).is_err());
    }

    #[test]
    fn labels_are_indices_or_names() {
        let labels = vec!["a".to_string(), "b".to_string()];
        assert_eq!(class_index(&Value::from(1), &labels), Ok(1));
        assert_eq!(class_index(&Value::from("b"), &labels), Ok(1));
        assert!(class_index(&Value::from(2), &labels).is_err());
        assert!(class_index(&Value::from("c"), &labels).is_err());
        assert!(class_index(&Value::from(-1), &labels).is_err());
    }
}
