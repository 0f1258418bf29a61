//! The Arrow schemas of captured files and the conversion of queued records into record
//! batches. Predictions and feedback go to separate files (one schema each); the feature names
//! of a predictions file are in its key-value metadata under [`FEATURE_NAMES_KEY`].

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::builder::{
    Float32Builder, Float64Builder, Int64Builder, StringBuilder, TimestampMillisecondBuilder,
    UInt64Builder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef, TimeUnit};

use super::record::{ColumnType, Columns, FeedbackBatch, PredictionBatch, Value};

/// Metadata key holding the JSON array of feature names of a predictions file.
pub const FEATURE_NAMES_KEY: &str = "infera.feature_names";
/// Metadata key holding the JSON array of the feature columns' types (`float64`, `int64`,
/// `utf8`), parallel to the names.
pub const FEATURE_TYPES_KEY: &str = "infera.feature_types";
/// Metadata key naming what a file holds: `predictions` or `feedback`.
pub const KIND_KEY: &str = "infera.kind";

fn time_type() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

/// Prefix of the feature columns of a predictions file: `feature_<name>`, one column per
/// feature typed from the contract (float64, int64 or utf8; a flat column per feature: no list
/// offsets or repetition levels to encode, and readers select features by name).
pub const FEATURE_PREFIX: &str = "feature_";

/// The columns every predictions file starts with; the feature columns follow them.
pub const PREDICTION_COLUMNS: usize = 8;

fn arrow_type(t: ColumnType) -> DataType {
    match t {
        ColumnType::Float64 => DataType::Float64,
        ColumnType::Int64 => DataType::Int64,
        ColumnType::Utf8 => DataType::Utf8,
    }
}

/// Schema of a predictions file.
pub fn predictions_schema(columns: &Columns) -> SchemaRef {
    let mut fields = vec![
        Field::new("id", DataType::Utf8, true),
        Field::new("time", time_type(), true),
        Field::new("model", DataType::Utf8, false),
        Field::new("version", DataType::UInt64, true),
        Field::new("latency_seconds", DataType::Float64, true),
        Field::new("prediction", DataType::Utf8, true),
        Field::new("prediction_value", DataType::Float64, true),
        Field::new("confidence", DataType::Float32, true),
    ];
    fields.extend(
        columns
            .names()
            .iter()
            .zip(columns.types())
            .map(|(n, t)| Field::new(format!("{FEATURE_PREFIX}{n}"), arrow_type(*t), true)),
    );
    let names = serde_json::to_string(columns.names()).unwrap_or_else(|_| "[]".into());
    let types: Vec<&str> = columns.types().iter().map(|t| t.name()).collect();
    let types = serde_json::to_string(&types).unwrap_or_else(|_| "[]".into());
    let meta = HashMap::from([
        (FEATURE_NAMES_KEY.to_string(), names),
        (FEATURE_TYPES_KEY.to_string(), types),
        (KIND_KEY.to_string(), "predictions".to_string()),
    ]);
    Arc::new(Schema::new(fields).with_metadata(meta))
}

/// Schema of a feedback file.
pub fn feedback_schema() -> SchemaRef {
    let fields = vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("time", time_type(), false),
        Field::new("model", DataType::Utf8, false),
        Field::new("label", DataType::Utf8, true),
        Field::new("class_index", DataType::Int64, true),
        Field::new("value", DataType::Float64, true),
    ];
    let meta = HashMap::from([(KIND_KEY.to_string(), "feedback".to_string())]);
    Arc::new(Schema::new(fields).with_metadata(meta))
}

/// A feature column being built.
enum FeatureBuilder {
    Float(Float64Builder),
    Int(Int64Builder),
    Text(StringBuilder),
}

impl FeatureBuilder {
    fn new(t: &DataType, rows: usize) -> FeatureBuilder {
        match t {
            DataType::Int64 => FeatureBuilder::Int(Int64Builder::with_capacity(rows)),
            DataType::Utf8 => FeatureBuilder::Text(StringBuilder::with_capacity(rows, rows * 8)),
            _ => FeatureBuilder::Float(Float64Builder::with_capacity(rows)),
        }
    }

    /// Appends a value (null when it does not fit the column's type).
    fn append(&mut self, v: Value<'_>) {
        match (self, v) {
            (FeatureBuilder::Float(b), Value::Float(x)) => b.append_value(x),
            (FeatureBuilder::Float(b), Value::Int(x)) => b.append_value(x as f64),
            (FeatureBuilder::Int(b), Value::Int(x)) => b.append_value(x),
            (FeatureBuilder::Text(b), Value::Text(x)) => b.append_value(x),
            (FeatureBuilder::Float(b), _) => b.append_null(),
            (FeatureBuilder::Int(b), _) => b.append_null(),
            (FeatureBuilder::Text(b), _) => b.append_null(),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            FeatureBuilder::Float(b) => Arc::new(b.finish()),
            FeatureBuilder::Int(b) => Arc::new(b.finish()),
            FeatureBuilder::Text(b) => Arc::new(b.finish()),
        }
    }
}

/// Rows of several prediction batches of one model version (same feature columns), with each
/// batch's unselected fields left null and its redacted feature columns nulled.
pub fn prediction_rows(
    schema: &SchemaRef,
    batches: &[PredictionBatch],
) -> Result<RecordBatch, ArrowError> {
    let rows: usize = batches.iter().map(PredictionBatch::rows).sum();
    let mut id = StringBuilder::with_capacity(rows, rows * 16);
    let mut time = TimestampMillisecondBuilder::with_capacity(rows).with_timezone("UTC");
    let mut model = StringBuilder::with_capacity(rows, rows * 8);
    let mut version = UInt64Builder::with_capacity(rows);
    let mut latency = Float64Builder::with_capacity(rows);
    let mut label = StringBuilder::with_capacity(rows, rows * 4);
    let mut value = Float64Builder::with_capacity(rows);
    let mut confidence = Float32Builder::with_capacity(rows);
    let mut features: Vec<FeatureBuilder> = schema
        .fields()
        .iter()
        .skip(PREDICTION_COLUMNS)
        .map(|f| FeatureBuilder::new(f.data_type(), rows))
        .collect();
    let width = features.len();
    let mut id_text = String::new();
    for b in batches {
        let fields = b.fields;
        let same_width = b.columns.width() == width;
        for (row, out) in b.outputs.iter().enumerate() {
            match b.id.as_deref().filter(|_| fields.ids) {
                Some(request) => {
                    use std::fmt::Write;
                    id_text.clear();
                    let _ = write!(id_text, "{request}/{row}");
                    id.append_value(&id_text);
                }
                None => id.append_null(),
            }
            time.append_option(fields.timestamps.then_some(b.time_ms));
            model.append_value(&*b.model);
            version.append_option(fields.version.then_some(b.version));
            latency.append_option(fields.latency.then_some(b.latency));
            let shown = fields.outputs;
            label.append_option(out.label.as_deref().filter(|_| shown));
            value.append_option(out.value.filter(|_| shown));
            confidence.append_option(out.confidence.filter(|_| shown));
            for (j, column) in features.iter_mut().enumerate() {
                column.append(if same_width {
                    b.value(row, j)
                } else {
                    Value::Null
                });
            }
        }
    }
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(id.finish()),
        Arc::new(time.finish()),
        Arc::new(model.finish()),
        Arc::new(version.finish()),
        Arc::new(latency.finish()),
        Arc::new(label.finish()),
        Arc::new(value.finish()),
        Arc::new(confidence.finish()),
    ];
    columns.extend(features.iter_mut().map(FeatureBuilder::finish));
    RecordBatch::try_new(schema.clone(), columns)
}

/// Rows of several feedback batches of one model.
pub fn feedback_rows(
    schema: &SchemaRef,
    batches: &[FeedbackBatch],
) -> Result<RecordBatch, ArrowError> {
    let mut id = StringBuilder::new();
    let mut time = TimestampMillisecondBuilder::new().with_timezone("UTC");
    let mut model = StringBuilder::new();
    let mut label = StringBuilder::new();
    let mut class_index = Int64Builder::new();
    let mut value = Float64Builder::new();
    for b in batches {
        for item in &b.items {
            id.append_value(&item.id);
            time.append_value(b.time_ms);
            model.append_value(&b.model);
            label.append_option(item.label.as_deref());
            class_index.append_option(item.class_index);
            value.append_option(item.value);
        }
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(id.finish()),
        Arc::new(time.finish()),
        Arc::new(model.finish()),
        Arc::new(label.finish()),
        Arc::new(class_index.finish()),
        Arc::new(value.finish()),
    ];
    RecordBatch::try_new(schema.clone(), columns)
}
