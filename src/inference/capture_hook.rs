//! The predictor's side of data capture: for a sampled request, copy the inputs before they
//! move to a worker, and after the answer hand one record to the capture queue. Plain data
//! only; the writing happens on the capture thread (src/capture).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

use arc_swap::ArcSwap;

use crate::capture::{
    fill_outputs, now_ms, sampled_at, Answer, Capture, ColumnType, Columns, Fields, Format,
    PredictionBatch, Record, Spare,
};
use crate::contract::{FeatureType, InputContract, Prediction};
use crate::engine::{DataType, Tensor, TensorData};
use crate::repository::LoadedVersion;

/// Inputs kept for a sampled request (empty when inputs are not captured).
pub struct Sampled {
    /// Numbers, integers and (later) answers and id, in buffers reused from written records.
    spare: Spare,
    texts: Vec<String>,
    policy: Arc<VersionPolicy>,
}

impl Sampled {
    /// Copies `rows` rows of the inputs (row-major, the inputs of one instance side by side):
    /// numbers as f64, integer columns exactly, strings cut to `cap` bytes, redacted strings
    /// not copied. Returns how many strings were cut.
    fn copy_inputs(&mut self, inputs: &[Tensor], rows: usize, width: usize, cap: usize) -> usize {
        let columns = self.policy.columns.clone();
        self.spare.features.reserve(rows.saturating_mul(width));
        self.texts
            .reserve(rows.saturating_mul(columns.text_width()));
        self.spare
            .ints
            .reserve(rows.saturating_mul(columns.int_width()));
        let mut truncated = 0;
        for row in 0..rows {
            let mut j = 0;
            for t in inputs {
                let n = t.row_len();
                let range = row * n..(row + 1) * n;
                match &t.data {
                    TensorData::String(v) => {
                        for i in range {
                            let keep = !columns.is_redacted(j);
                            let s = v.get(i).filter(|_| keep).map_or("", String::as_str);
                            let (s, cut) = capped(s, cap);
                            truncated += usize::from(cut);
                            self.texts.push(s.to_string());
                            self.spare.features.push(0.0);
                            j += 1;
                        }
                    }
                    data if columns.int_width() == 0 => {
                        let value = |i| data.get_f64(i).unwrap_or(f64::NAN);
                        self.spare.features.extend(range.map(value));
                        j += n;
                    }
                    data => {
                        for i in range {
                            if columns.types().get(j) == Some(&ColumnType::Int64) {
                                self.spare.ints.push(data.get_i64(i));
                                self.spare.features.push(0.0);
                            } else {
                                self.spare
                                    .features
                                    .push(data.get_f64(i).unwrap_or(f64::NAN));
                            }
                            j += 1;
                        }
                    }
                }
            }
        }
        truncated
    }
}

/// What is captured of one model version at one row width: the server's settings with the
/// card's `[capture]` applied, and the feature names (built once, then shared by every record).
#[derive(Debug)]
struct VersionPolicy {
    /// The version it was built for (a reloaded card makes a new `LoadedVersion`); held so its
    /// address stays unique while this entry is cached.
    _loaded: Weak<LoadedVersion>,
    /// The model's name, shared by every record (no allocation per request).
    model: Arc<str>,
    sample_rate: f64,
    fields: Fields,
    format: Format,
    columns: Arc<Columns>,
}

/// Policies per (loaded version's address, row width): looked up on every request without
/// allocating or locking (an immutable map behind an `ArcSwap`, replaced whole on the rare
/// insert under `insert_lock`). An entry's `Weak` keeps its version's allocation, so an address
/// is never reused while its entry exists. Row widths can vary for tensor models with free
/// dimensions, so the map is bounded: past [`MAX_POLICIES`] it starts again empty.
type PolicyMap = HashMap<(usize, usize), Arc<VersionPolicy>>;
const MAX_POLICIES: usize = 1024;

/// Capture plus each model version's policy.
#[derive(Debug)]
pub struct CaptureHook {
    capture: Capture,
    policies: ArcSwap<PolicyMap>,
    insert_lock: Mutex<()>,
}

impl CaptureHook {
    pub fn new(capture: Capture) -> CaptureHook {
        CaptureHook {
            capture,
            policies: ArcSwap::from_pointee(HashMap::new()),
            insert_lock: Mutex::new(()),
        }
    }

    pub fn capture(&self) -> &Capture {
        &self.capture
    }

    /// Decides whether this request is captured and, if so, copies its inputs (row-major, the
    /// inputs of one instance side by side; string values cut to the cap, redacted ones not
    /// copied).
    pub fn sample(&self, loaded: &Arc<LoadedVersion>, inputs: &[Tensor]) -> Option<Sampled> {
        let width: usize = inputs.iter().map(Tensor::row_len).sum();
        let policy = self.policy(loaded, inputs, width);
        if !sampled_at(policy.sample_rate) {
            return None;
        }
        let mut sampled = Sampled {
            spare: self.capture.spare(),
            texts: Vec::new(),
            policy,
        };
        if sampled.policy.fields.inputs {
            let rows = inputs.first().map_or(0, Tensor::rows);
            let truncated =
                sampled.copy_inputs(inputs, rows, width, self.capture.max_string_bytes());
            self.capture.truncated(truncated);
        }
        Some(sampled)
    }

    /// Queues the record of a sampled request.
    pub fn record(
        &self,
        loaded: &LoadedVersion,
        sampled: Sampled,
        predictions: &[Prediction],
        id: Option<&str>,
        started: Instant,
    ) {
        let Sampled {
            mut spare,
            texts,
            policy,
        } = sampled;
        fill_outputs(&mut spare.outputs, predictions.iter().map(answer));
        let id = id.filter(|id| capturable_id(id)).map(|id| {
            spare.id.push_str(id);
            std::mem::take(&mut spare.id)
        });
        self.capture.push(Record::Predictions(PredictionBatch {
            model: policy.model.clone(),
            version: loaded.version,
            id,
            time_ms: now_ms(),
            latency: started.elapsed().as_secs_f64(),
            columns: policy.columns.clone(),
            features: spare.features,
            texts,
            ints: spare.ints,
            outputs: spare.outputs,
            fields: policy.fields,
            format: policy.format,
        }));
    }

    fn policy(
        &self,
        loaded: &Arc<LoadedVersion>,
        inputs: &[Tensor],
        width: usize,
    ) -> Arc<VersionPolicy> {
        let key = (Arc::as_ptr(loaded) as usize, width);
        if let Some(p) = self.policies.load().get(&key) {
            return p.clone();
        }
        let _guard = self.insert_lock.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.policies.load_full();
        if let Some(p) = current.get(&key) {
            return p.clone();
        }
        let mut next = if current.len() >= MAX_POLICIES {
            HashMap::new()
        } else {
            (*current).clone()
        };
        let policy = Arc::new(self.build_policy(loaded, inputs, width));
        next.insert(key, policy.clone());
        self.policies.store(Arc::new(next));
        policy
    }

    fn build_policy(
        &self,
        loaded: &Arc<LoadedVersion>,
        inputs: &[Tensor],
        width: usize,
    ) -> VersionPolicy {
        let card = loaded.capture.as_ref();
        let (names, types) = feature_columns(loaded, inputs, width);
        let redact = |n: &String| {
            self.capture.redact().contains(n) || card.is_some_and(|c| c.redact.contains(n))
        };
        let redacted = names.iter().map(redact).collect();
        VersionPolicy {
            _loaded: Arc::downgrade(loaded),
            model: loaded.model.as_str().into(),
            sample_rate: card
                .and_then(|c| c.sample_rate)
                .unwrap_or(self.capture.sample_rate()),
            // The card's fields were checked when it was parsed.
            fields: card
                .and_then(|c| c.fields.as_ref())
                .and_then(|f| Fields::parse(f).ok())
                .unwrap_or(self.capture.fields()),
            format: card
                .and_then(|c| c.format.as_deref())
                .and_then(|f| Format::parse(f).ok())
                .unwrap_or(self.capture.format()),
            columns: Arc::new(Columns::new(names, types, redacted)),
        }
    }
}

/// Whether a client's request id is kept in capture files: 1-128 characters of
/// `[A-Za-z0-9._:/-]` (the rule REST request ids follow); V2 and gRPC ids are free text.
fn capturable_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'/' | b'-'))
}

/// A string cut to at most `cap` bytes (on a character boundary), and whether it was cut.
fn capped(s: &str, cap: usize) -> (&str, bool) {
    if s.len() <= cap {
        return (s, false);
    }
    let mut end = cap;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    (&s[..end], true)
}

/// A numeric tensor's column type: integers (and booleans) as `Int64`, the rest `Float64`.
fn numeric_type(dtype: DataType) -> ColumnType {
    match dtype {
        DataType::String => ColumnType::Utf8,
        d if d.is_float() => ColumnType::Float64,
        _ => ColumnType::Int64,
    }
}

/// A card feature's column type on a tensor of `dtype`.
fn card_type(kind: FeatureType, dtype: DataType) -> ColumnType {
    match kind {
        FeatureType::String => ColumnType::Utf8,
        FeatureType::Integer => ColumnType::Int64,
        FeatureType::Number => numeric_type(dtype),
    }
}

/// Feature names and column types: the card's features for tabular models and for models with
/// one input per card feature (a DataFrame export), `<input>_<j>` typed by the tensor for
/// other tensor models.
fn feature_columns(
    loaded: &LoadedVersion,
    inputs: &[Tensor],
    width: usize,
) -> (Vec<String>, Vec<ColumnType>) {
    let contract = &loaded.contract;
    let per_column = contract.one_input_per_column()
        && contract.columns.len() == width
        && inputs.iter().all(|t| t.row_len() == 1);
    if per_column {
        return contract
            .columns
            .iter()
            .map(|c| {
                let dtype = inputs.get(c.input).map_or(DataType::F64, Tensor::dtype);
                (c.spec.name.clone(), card_type(c.spec.kind, dtype))
            })
            .unzip();
    }
    match &contract.input {
        InputContract::Tabular {
            features, dtype, ..
        } if features.len() == width => features
            .iter()
            .map(|f| (f.name.clone(), card_type(f.kind, *dtype)))
            .unzip(),
        InputContract::Tabular { .. } => (0..width)
            .map(|j| (format!("x{j}"), ColumnType::Float64))
            .unzip(),
        InputContract::Tensors { inputs: specs } => specs
            .iter()
            .zip(inputs)
            .flat_map(|(s, t)| {
                let kind = numeric_type(t.dtype());
                (0..t.row_len()).map(move |j| (format!("{}_{j}", s.name), kind))
            })
            .unzip(),
    }
}

/// What is captured of one answer: label, value (class index or predicted value), confidence.
fn answer(p: &Prediction) -> Answer<'_> {
    match p {
        Prediction::Classification {
            class_index,
            label,
            confidence,
            ..
        } => (
            Some(label.as_str()),
            Some(*class_index as f64),
            Some(*confidence),
        ),
        Prediction::Regression { value } => (None, Some(*value), None),
        Prediction::Raw { .. } => (None, None, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sampled(types: Vec<ColumnType>, redacted: Vec<bool>) -> Sampled {
        let names = (0..types.len()).map(|j| format!("c{j}")).collect();
        Sampled {
            spare: Spare::default(),
            texts: Vec::new(),
            policy: Arc::new(VersionPolicy {
                _loaded: Weak::new(),
                model: "m".into(),
                sample_rate: 1.0,
                fields: Fields::parse(&Fields::NAMES).unwrap(),
                format: Format::Parquet,
                columns: Arc::new(Columns::new(names, types, redacted)),
            }),
        }
    }

    fn column(data: TensorData) -> Tensor {
        let rows = data.len();
        Tensor::new(vec![rows, 1], data).unwrap()
    }

    #[test]
    fn integer_columns_are_copied_exactly() {
        let big = (1i64 << 53) + 1;
        let mut s = sampled(
            vec![ColumnType::Int64, ColumnType::Float64, ColumnType::Int64],
            vec![false; 3],
        );
        let inputs = [
            column(TensorData::I64(vec![big, -big])),
            column(TensorData::F32(vec![0.5, 1.5])),
            column(TensorData::F64(vec![7.0, 2.5])),
        ];
        assert_eq!(s.copy_inputs(&inputs, 2, 3, 16), 0);
        assert_eq!(s.spare.ints, [Some(big), Some(7), Some(-big), None]);
        assert_eq!(s.spare.features, [0.0, 0.5, 0.0, 0.0, 1.5, 0.0]);
    }

    #[test]
    fn strings_are_cut_and_redacted_ones_not_copied() {
        let mut s = sampled(vec![ColumnType::Utf8, ColumnType::Utf8], vec![false, true]);
        let text = |v: &[&str]| {
            column(TensorData::String(
                v.iter().map(|s| s.to_string()).collect(),
            ))
        };
        let inputs = [text(&["héllo", "ok"]), text(&["secret", "secret"])];
        assert_eq!(
            s.copy_inputs(&inputs, 2, 2, 2),
            1,
            "é is cut before, not in half"
        );
        assert_eq!(s.texts, ["h", "", "ok", ""]);
        assert!(s.spare.ints.is_empty());
    }
}
