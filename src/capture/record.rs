//! What the request path hands to the capture writer: plain data, one message per request (a
//! batch of rows), so a busy server sends one queue message per request, not per instance.

use std::sync::Arc;

/// The type of a captured feature column (Parquet/Arrow `Float64`, `Int64` or `Utf8`; JSON
/// numbers, integers or strings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    Float64,
    Int64,
    Utf8,
}

impl ColumnType {
    /// Name in the files' metadata (`infera.feature_types`).
    pub fn name(self) -> &'static str {
        match self {
            ColumnType::Float64 => "float64",
            ColumnType::Int64 => "int64",
            ColumnType::Utf8 => "utf8",
        }
    }

    pub fn parse(name: &str) -> Option<ColumnType> {
        match name {
            "float64" => Some(ColumnType::Float64),
            "int64" => Some(ColumnType::Int64),
            "utf8" => Some(ColumnType::Utf8),
            _ => None,
        }
    }
}

/// The feature columns of one model version (built once per version, shared by its records):
/// names, types, which are redacted, and where each string column's values are in `texts` and
/// each integer column's in `ints`.
#[derive(Debug, Clone, PartialEq)]
pub struct Columns {
    names: Vec<String>,
    types: Vec<ColumnType>,
    redacted: Vec<bool>,
    /// Per column: its index among the columns of its kind (string columns among the string
    /// ones, integer columns among the integer ones; unused for `Float64` columns).
    slots: Vec<usize>,
    text_width: usize,
    int_width: usize,
}

impl Columns {
    /// Columns from parallel lists (a missing type is `Float64`, a missing flag not redacted).
    pub fn new(names: Vec<String>, types: Vec<ColumnType>, redacted: Vec<bool>) -> Columns {
        let types: Vec<ColumnType> = (0..names.len())
            .map(|j| types.get(j).copied().unwrap_or(ColumnType::Float64))
            .collect();
        let redacted = (0..names.len())
            .map(|j| redacted.get(j).copied().unwrap_or(false))
            .collect();
        let (mut text_width, mut int_width) = (0, 0);
        let slots = types
            .iter()
            .map(|t| {
                let width = match t {
                    ColumnType::Utf8 => &mut text_width,
                    ColumnType::Int64 => &mut int_width,
                    ColumnType::Float64 => return 0,
                };
                *width += 1;
                *width - 1
            })
            .collect();
        Columns {
            names,
            types,
            redacted,
            slots,
            text_width,
            int_width,
        }
    }

    /// Number-only columns (tensor models without string inputs, and tests).
    pub fn numbers(names: Vec<String>, redacted: Vec<bool>) -> Columns {
        Columns::new(names, Vec::new(), redacted)
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    pub fn types(&self) -> &[ColumnType] {
        &self.types
    }

    pub fn width(&self) -> usize {
        self.names.len()
    }

    /// How many columns are strings (the width of a row of `texts`).
    pub fn text_width(&self) -> usize {
        self.text_width
    }

    /// How many columns are integers (the width of a row of `ints`).
    pub fn int_width(&self) -> usize {
        self.int_width
    }

    pub fn is_redacted(&self, j: usize) -> bool {
        self.redacted.get(j).copied().unwrap_or(false)
    }

    /// Whether two column sets make the same file schema (names and types; redaction is applied
    /// per record).
    pub fn same_schema(&self, other: &Columns) -> bool {
        self.names == other.names && self.types == other.types
    }
}

/// One captured feature value, as the writers read it from a record.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    Null,
    Float(f64),
    Int(i64),
    Text(&'a str),
}

/// One request's predictions for one model version.
#[derive(Debug, Clone)]
pub struct PredictionBatch {
    /// The model's name (shared: built once per model version, not per request).
    pub model: Arc<str>,
    pub version: u64,
    /// Request id: row `i` is captured as `"{id}/{i}"`, the id feedback refers to. None when
    /// the protocol gives no id (V2 tensors).
    pub id: Option<String>,
    /// Milliseconds since the Unix epoch when the answer was ready.
    pub time_ms: i64,
    /// Seconds from the start of prediction to the answer (the whole request's).
    pub latency: f64,
    /// The feature columns (cached per model version).
    pub columns: Arc<Columns>,
    /// Row-major numeric inputs, `rows * columns.width()` values (a placeholder for a string
    /// or integer column); empty when inputs are not captured.
    pub features: Vec<f64>,
    /// Row-major integer inputs, `rows * columns.int_width()` values, exact (an integer tensor's
    /// value as sent; None for a value that is not a whole number); empty when inputs are not
    /// captured.
    pub ints: Vec<Option<i64>>,
    /// Row-major string inputs, `rows * columns.text_width()` values, each capped in length
    /// (empty for a redacted column); empty when inputs are not captured.
    pub texts: Vec<String>,
    /// One answer per row.
    pub outputs: Vec<CapturedOutput>,
    /// Which fields are written (the server's, or the model card's `[capture] fields`).
    pub fields: super::Fields,
    /// The file format (the server's `--capture-format`, or the card's `[capture] format`).
    pub format: super::Format,
}

impl PredictionBatch {
    pub fn rows(&self) -> usize {
        self.outputs.len()
    }

    /// Feature `j` of row `row` as written: null when inputs are not captured, the column is
    /// redacted or the value is missing; an `Int64` column's value only when it is a whole
    /// number (exact: it never passes through a float).
    pub fn value(&self, row: usize, j: usize) -> Value<'_> {
        let c = &*self.columns;
        if !self.fields.inputs || c.is_redacted(j) {
            return Value::Null;
        }
        match c.types.get(j) {
            Some(ColumnType::Utf8) => self
                .texts
                .get(row * c.text_width + c.slots[j])
                .map_or(Value::Null, |s| Value::Text(s)),
            Some(ColumnType::Int64) => match self.ints.get(row * c.int_width + c.slots[j]) {
                Some(Some(v)) => Value::Int(*v),
                _ => Value::Null,
            },
            Some(ColumnType::Float64) => self
                .features
                .get(row * c.width() + j)
                .map_or(Value::Null, |v| Value::Float(*v)),
            None => Value::Null,
        }
    }

    /// Bytes this record holds (what the queue's byte budget counts): the struct and its
    /// heap data.
    pub fn bytes(&self) -> usize {
        let texts: usize = self.texts.iter().map(|t| t.len() + 24).sum();
        let outputs: usize = self
            .outputs
            .iter()
            .map(|o| {
                std::mem::size_of::<CapturedOutput>() + o.label.as_ref().map_or(0, String::len)
            })
            .sum();
        std::mem::size_of::<PredictionBatch>()
            + self.id.as_ref().map_or(0, String::len)
            + self.features.len() * 8
            + self.ints.len() * std::mem::size_of::<Option<i64>>()
            + texts
            + outputs
    }
}

/// One row's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct CapturedOutput {
    /// Class label (classifiers).
    pub label: Option<String>,
    /// Class index (classifiers) or the predicted value (regressors).
    pub value: Option<f64>,
    /// Probability of the predicted class (classifiers).
    pub confidence: Option<f32>,
}

/// The ground truth sent for earlier predictions of one model.
#[derive(Debug, Clone)]
pub struct FeedbackBatch {
    pub model: String,
    pub time_ms: i64,
    pub items: Vec<FeedbackItem>,
}

/// One ground-truth answer, as sent: exactly one of label, class index or value.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedbackItem {
    pub id: String,
    pub label: Option<String>,
    pub class_index: Option<i64>,
    pub value: Option<f64>,
}

/// A queued capture message.
#[derive(Debug, Clone)]
pub enum Record {
    Predictions(PredictionBatch),
    Feedback(FeedbackBatch),
}

impl Record {
    /// Closed-set label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Record::Predictions(_) => "prediction",
            Record::Feedback(_) => "feedback",
        }
    }

    /// Bytes this message holds (what the queue's byte budget counts).
    pub fn bytes(&self) -> usize {
        match self {
            Record::Predictions(b) => b.bytes(),
            Record::Feedback(b) => {
                std::mem::size_of::<FeedbackBatch>()
                    + b.model.len()
                    + b.items
                        .iter()
                        .map(|i| {
                            std::mem::size_of::<FeedbackItem>()
                                + i.id.len()
                                + i.label.as_ref().map_or(0, String::len)
                        })
                        .sum::<usize>()
            }
        }
    }

    /// Rows this message carries.
    pub fn rows(&self) -> usize {
        match self {
            Record::Predictions(b) => b.rows(),
            Record::Feedback(b) => b.items.len(),
        }
    }

    pub fn model(&self) -> &str {
        match self {
            Record::Predictions(b) => &b.model,
            Record::Feedback(b) => &b.model,
        }
    }
}
