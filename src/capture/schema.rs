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

use super::record::{FeedbackBatch, PredictionBatch};

/// Metadata key holding the JSON array of feature names of a predictions file.
pub const FEATURE_NAMES_KEY: &str = "infera.feature_names";
/// Metadata key naming what a file holds: `predictions` or `feedback`.
pub const KIND_KEY: &str = "infera.kind";

fn time_type() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

/// Prefix of the feature columns of a predictions file: `feature_<name>`, one float64 column
/// per feature (a flat column per feature: no list offsets or repetition levels to encode, and
/// readers select features by name).
pub const FEATURE_PREFIX: &str = "feature_";

/// The columns every predictions file starts with; the feature columns follow them.
pub const PREDICTION_COLUMNS: usize = 8;

/// Schema of a predictions file.
pub fn predictions_schema(names: &[String]) -> SchemaRef {
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
        names
            .iter()
            .map(|n| Field::new(format!("{FEATURE_PREFIX}{n}"), DataType::Float64, true)),
    );
    let names = serde_json::to_string(names).unwrap_or_else(|_| "[]".into());
    let meta = HashMap::from([
        (FEATURE_NAMES_KEY.to_string(), names),
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

/// Rows of several prediction batches of one model version (same feature names), with each
/// batch's unselected fields left null and its redacted feature columns nulled.
pub fn prediction_rows(
    schema: &SchemaRef,
    batches: &[PredictionBatch],
) -> Result<RecordBatch, ArrowError> {
    let rows: usize = batches.iter().map(PredictionBatch::rows).sum();
    let width = schema.fields().len().saturating_sub(PREDICTION_COLUMNS);
    let mut id = StringBuilder::with_capacity(rows, rows * 16);
    let mut time = TimestampMillisecondBuilder::with_capacity(rows).with_timezone("UTC");
    let mut model = StringBuilder::with_capacity(rows, rows * 8);
    let mut version = UInt64Builder::with_capacity(rows);
    let mut latency = Float64Builder::with_capacity(rows);
    let mut label = StringBuilder::with_capacity(rows, rows * 4);
    let mut value = Float64Builder::with_capacity(rows);
    let mut confidence = Float32Builder::with_capacity(rows);
    let mut features: Vec<Float64Builder> = (0..width)
        .map(|_| Float64Builder::with_capacity(rows))
        .collect();
    let mut id_text = String::new();
    for b in batches {
        let fields = b.fields;
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
            let values = b
                .features
                .get(row * width..(row + 1) * width)
                .filter(|_| fields.inputs && b.names.len() == width);
            for (j, column) in features.iter_mut().enumerate() {
                let hidden = b.redacted.get(j).copied().unwrap_or(false);
                column.append_option(values.and_then(|v| v.get(j).copied()).filter(|_| !hidden));
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
    columns.extend(
        features
            .iter_mut()
            .map(|c| Arc::new(c.finish()) as ArrayRef),
    );
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
