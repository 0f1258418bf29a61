//! `infera export`: joins a model's captured predictions (every version, every replica) with
//! the captured ground truth into one training-ready Parquet file: one column per feature by
//! name, `prediction`, `label` (null where no ground truth came), `version`, `time`, `id`.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use arrow_array::builder::{
    Float64Builder, StringBuilder, TimestampMillisecondBuilder, UInt64Builder,
};
use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float32Type, Float64Type, Int64Type, TimestampMillisecondType, UInt64Type,
};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;

use super::schema::FEATURE_NAMES_KEY;
use super::time::date_of;

/// What to export.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// The capture directory (`--capture-dir` of the servers).
    pub capture: PathBuf,
    pub model: String,
    pub out: PathBuf,
    /// Only predictions at or after this time (milliseconds since the epoch).
    pub since_ms: Option<i64>,
    /// Class labels by index (from the model card, `--repository`): ground truth sent as a
    /// class index is written as this label. Without them, the labels seen in the captured
    /// predictions are used, and an index never predicted stays a number.
    pub labels: Vec<String>,
}

/// What the export found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportSummary {
    /// Rows written (captured predictions).
    pub rows: usize,
    /// Predictions with ground truth.
    pub joined: usize,
    /// Predictions without ground truth (`label` null).
    pub unlabelled: usize,
    /// Ground-truth ids with no captured prediction (not sampled, expired, or unknown).
    pub orphan_feedback: usize,
    pub files: usize,
}

/// The ground truth of one id (the latest one sent wins).
struct Truth {
    time: i64,
    label: Option<String>,
    class_index: Option<i64>,
    value: Option<f64>,
}

/// One captured prediction.
struct Row {
    id: Option<String>,
    time: Option<i64>,
    version: Option<u64>,
    /// Export column of each of the file's features.
    columns: Arc<[usize]>,
    features: Vec<Option<f64>>,
    label: Option<String>,
    value: Option<f64>,
}

/// Runs the export and writes `out` (via a temporary file and a rename).
pub fn export(opts: &ExportOptions) -> anyhow::Result<ExportSummary> {
    let root = opts.capture.join(&opts.model);
    anyhow::ensure!(
        root.is_dir(),
        "no capture of model {:?} under {}",
        opts.model,
        opts.capture.display()
    );
    let since_date = opts.since_ms.map(date_of);
    let mut summary = ExportSummary::default();
    let mut truths: HashMap<String, Truth> = HashMap::new();
    let mut names: Vec<String> = Vec::new();
    let mut rows: Vec<Row> = Vec::new();
    for (sub, path) in partition_files(&root, since_date.as_deref())? {
        summary.files += 1;
        if sub == "feedback" {
            read_feedback(&path, &mut truths)?;
        } else {
            read_predictions(&path, &mut names, &mut rows)?;
        }
    }
    if let Some(since) = opts.since_ms {
        rows.retain(|r| r.time.is_none_or(|t| t >= since));
    }
    rows.sort_by_key(|r| r.time);
    let batch = joined_batch(&names, &rows, &truths, &opts.labels, &mut summary)?;
    write_atomically(&opts.out, &batch)?;
    Ok(summary)
}

/// `(version dir or "feedback", file)` for every closed file of the model.
fn partition_files(root: &Path, since: Option<&str>) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    for sub in read_dir_sorted(root)? {
        let Some(name) = sub.file_name().and_then(|n| n.to_str()).map(String::from) else {
            continue;
        };
        if !(name == "feedback" || name.parse::<u64>().is_ok()) || !sub.is_dir() {
            continue;
        }
        for date_dir in read_dir_sorted(&sub)? {
            let date = date_dir
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix("date="))
                .map(String::from);
            let Some(date) = date else { continue };
            // Feedback for an old prediction may come later: read all of it.
            if name != "feedback" && since.is_some_and(|s| date.as_str() < s) {
                continue;
            }
            for file in read_dir_sorted(&date_dir)? {
                let visible = file
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.ends_with(".parquet") && !n.starts_with('.'));
                if visible {
                    out.push((name.clone(), file));
                }
            }
        }
    }
    Ok(out)
}

fn read_dir_sorted(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut paths: Vec<PathBuf> = fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    paths.sort();
    Ok(paths)
}

fn batches(path: &Path) -> anyhow::Result<(arrow_schema::Metadata, Vec<RecordBatch>)> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .with_context(|| format!("reading {}", path.display()))?;
    let meta = builder.schema().metadata().clone();
    let batches = builder
        .build()?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("reading {}", path.display()))?;
    Ok((meta, batches))
}

fn read_feedback(path: &Path, truths: &mut HashMap<String, Truth>) -> anyhow::Result<()> {
    let (_, batches) = batches(path)?;
    for b in batches {
        let col = |name: &str| {
            b.column_by_name(name)
                .with_context(|| format!("{}: no column {name}", path.display()))
        };
        let id = col("id")?.as_string::<i32>();
        let time = col("time")?.as_primitive::<TimestampMillisecondType>();
        let label = col("label")?.as_string::<i32>();
        let class_index = col("class_index")?.as_primitive::<Int64Type>();
        let value = col("value")?.as_primitive::<Float64Type>();
        for i in 0..b.num_rows() {
            let truth = Truth {
                time: time.value(i),
                label: label.is_valid(i).then(|| label.value(i).to_string()),
                class_index: class_index.is_valid(i).then(|| class_index.value(i)),
                value: value.is_valid(i).then(|| value.value(i)),
            };
            let newer = truths.get(id.value(i)).is_none_or(|t| t.time <= truth.time);
            if newer {
                truths.insert(id.value(i).to_string(), truth);
            }
        }
    }
    Ok(())
}

fn read_predictions(
    path: &Path,
    names: &mut Vec<String>,
    rows: &mut Vec<Row>,
) -> anyhow::Result<()> {
    let (meta, batches) = batches(path)?;
    let file_names: Vec<String> = meta
        .get(FEATURE_NAMES_KEY)
        .map(|j| serde_json::from_str(j))
        .transpose()
        .with_context(|| format!("{}: bad feature names", path.display()))?
        .unwrap_or_default();
    let columns: Arc<[usize]> = file_names
        .iter()
        .map(|n| match names.iter().position(|m| m == n) {
            Some(i) => i,
            None => {
                names.push(n.clone());
                names.len() - 1
            }
        })
        .collect();
    for b in batches {
        let col = |name: &str| {
            b.column_by_name(name)
                .with_context(|| format!("{}: no column {name}", path.display()))
        };
        let id = col("id")?.as_string::<i32>();
        let time = col("time")?.as_primitive::<TimestampMillisecondType>();
        let version = col("version")?.as_primitive::<UInt64Type>();
        let features = col("features")?.as_list::<i32>();
        let label = col("prediction")?.as_string::<i32>();
        let value = col("prediction_value")?.as_primitive::<Float64Type>();
        let _ = col("confidence")?.as_primitive::<Float32Type>();
        for i in 0..b.num_rows() {
            let values = if features.is_valid(i) {
                let v = features.value(i);
                let v = v.as_primitive::<Float64Type>();
                (0..v.len())
                    .map(|j| v.is_valid(j).then(|| v.value(j)))
                    .collect()
            } else {
                Vec::new()
            };
            rows.push(Row {
                id: id.is_valid(i).then(|| id.value(i).to_string()),
                time: time.is_valid(i).then(|| time.value(i)),
                version: version.is_valid(i).then(|| version.value(i)),
                columns: columns.clone(),
                features: values,
                label: label.is_valid(i).then(|| label.value(i).to_string()),
                value: value.is_valid(i).then(|| value.value(i)),
            });
        }
    }
    Ok(())
}

/// The training table. Classifiers (predictions carry a label) get string `prediction` and
/// `label` columns, class indices sent as ground truth mapped to labels through the captured
/// predictions; regressors get float columns.
fn joined_batch(
    names: &[String],
    rows: &[Row],
    truths: &HashMap<String, Truth>,
    card_labels: &[String],
    summary: &mut ExportSummary,
) -> anyhow::Result<RecordBatch> {
    let classifier = rows.iter().any(|r| r.label.is_some());
    let mut class_labels: HashMap<i64, &str> = rows
        .iter()
        .filter_map(|r| Some((r.value? as i64, r.label.as_deref()?)))
        .collect();
    for (i, l) in card_labels.iter().enumerate() {
        class_labels.insert(i as i64, l);
    }
    let mut features: Vec<Float64Builder> = names.iter().map(|_| Float64Builder::new()).collect();
    let mut id = StringBuilder::new();
    let mut text_pred = StringBuilder::new();
    let mut text_label = StringBuilder::new();
    let mut num_pred = Float64Builder::new();
    let mut num_label = Float64Builder::new();
    let mut version = UInt64Builder::new();
    let mut time = TimestampMillisecondBuilder::new().with_timezone("UTC");
    let mut seen: HashSet<&str> = HashSet::new();
    for r in rows {
        let mut values: Vec<Option<f64>> = vec![None; names.len()];
        for (j, v) in r.features.iter().enumerate() {
            if let Some(&c) = r.columns.get(j) {
                values[c] = *v;
            }
        }
        for (b, v) in features.iter_mut().zip(values) {
            b.append_option(v);
        }
        let truth = r.id.as_deref().and_then(|i| truths.get(i));
        if let Some(i) = r.id.as_deref().filter(|_| truth.is_some()) {
            seen.insert(i);
        }
        if truth.is_some() {
            summary.joined += 1;
        } else {
            summary.unlabelled += 1;
        }
        id.append_option(r.id.as_deref());
        if classifier {
            text_pred.append_option(r.label.as_deref());
            let label = truth.and_then(|t| {
                t.label.clone().or_else(|| {
                    let i = t.class_index?;
                    Some(
                        class_labels
                            .get(&i)
                            .map_or_else(|| i.to_string(), |l| l.to_string()),
                    )
                })
            });
            text_label.append_option(label);
        } else {
            num_pred.append_option(r.value);
            num_label.append_option(truth.and_then(|t| t.value));
        }
        version.append_option(r.version);
        time.append_option(r.time);
    }
    summary.rows = rows.len();
    summary.orphan_feedback = truths.keys().filter(|k| !seen.contains(k.as_str())).count();
    let answer_type = if classifier {
        DataType::Utf8
    } else {
        DataType::Float64
    };
    let mut fields: Vec<Field> = names
        .iter()
        .map(|n| Field::new(n, DataType::Float64, true))
        .collect();
    let mut columns: Vec<ArrayRef> = features
        .iter_mut()
        .map(|b| Arc::new(b.finish()) as ArrayRef)
        .collect();
    let (pred, label): (ArrayRef, ArrayRef) = if classifier {
        (Arc::new(text_pred.finish()), Arc::new(text_label.finish()))
    } else {
        (Arc::new(num_pred.finish()), Arc::new(num_label.finish()))
    };
    let tail: [(Field, ArrayRef); 5] = [
        (Field::new("prediction", answer_type.clone(), true), pred),
        (Field::new("label", answer_type, true), label),
        (
            Field::new("version", DataType::UInt64, true),
            Arc::new(version.finish()),
        ),
        (
            Field::new(
                "time",
                DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
                true,
            ),
            Arc::new(time.finish()),
        ),
        (
            Field::new("id", DataType::Utf8, true),
            Arc::new(id.finish()),
        ),
    ];
    for (f, c) in tail {
        anyhow::ensure!(
            !names.contains(f.name()),
            "a feature is named {:?}, like an export column",
            f.name()
        );
        fields.push(f);
        columns.push(c);
    }
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?)
}

fn write_atomically(out: &Path, batch: &RecordBatch) -> anyhow::Result<()> {
    let tmp = out.with_extension("parquet.tmp");
    let file = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let mut writer = ArrowWriter::try_new(file, batch.schema(), None)?;
    writer.write(batch)?;
    writer.close()?;
    fs::rename(&tmp, out).with_context(|| format!("writing {}", out.display()))?;
    Ok(())
}
