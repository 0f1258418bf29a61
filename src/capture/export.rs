//! `infera export`: joins a model's captured predictions (every version, every replica, Parquet
//! or JSON lines) with the captured ground truth into one training-ready Parquet file: one
//! column per feature by name with its captured type (float64, int64 or utf8), `prediction`,
//! `label` (null where no ground truth came), `version`, `time`, `id`.
//!
//! Streaming: the ground truth of the model is held in memory (one entry per feedback id);
//! predictions are read a chunk at a time and written out as one row group per chunk, so memory
//! is bounded by the feedback ids plus one chunk, whatever the size of the capture. A first pass
//! over the predictions finds the union of feature names and types and the class labels (so the
//! output schema is known before the first row group): for Parquet files it reads the schema
//! and only the two answer columns; JSON lines carry no schema and are read whole. The second
//! pass reads every column, joins and writes.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use arrow_array::builder::{
    Float64Builder, Int64Builder, StringBuilder, TimestampMillisecondBuilder, UInt64Builder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use parquet::arrow::ArrowWriter;

use super::export_read::{self, wider, Feature, Row, Truth};
use super::record::ColumnType;
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

/// What the first pass learns: the output's feature columns and how to name classes.
struct Plan {
    names: Vec<String>,
    /// Per feature: the type that holds every captured value (None: only nulls seen).
    types: Vec<Option<ColumnType>>,
    classifier: bool,
    class_labels: HashMap<i64, String>,
    truths: HashMap<String, Truth>,
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
    let files = partition_files(&root, since_date.as_deref())?;
    let mut summary = ExportSummary {
        files: files.len(),
        ..ExportSummary::default()
    };
    let plan = plan(&files, &opts.labels)?;
    let tmp = opts.out.with_extension("parquet.tmp");
    let mut out = Output::create(&tmp, &plan)?;
    let mut seen: HashSet<String> = HashSet::new();
    for (_, path) in files.iter().filter(|(sub, _)| sub != "feedback") {
        let file_names: Vec<String> = export_read::feature_columns(path)?
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        let columns: Vec<usize> = file_names
            .iter()
            .filter_map(|n| plan.names.iter().position(|m| m == n))
            .collect();
        export_read::predictions(path, &file_names, &mut |mut rows| {
            if let Some(since) = opts.since_ms {
                rows.retain(|r| r.time.is_none_or(|t| t >= since));
            }
            out.write(&rows, &columns, &mut seen, &mut summary)
        })?;
    }
    summary.orphan_feedback = plan.truths.len() - seen.len();
    out.finish()?;
    fs::rename(&tmp, &opts.out).with_context(|| format!("writing {}", opts.out.display()))?;
    Ok(summary)
}

/// The first pass: every ground truth, the union of feature names, and the class labels.
fn plan(files: &[(String, PathBuf)], card_labels: &[String]) -> anyhow::Result<Plan> {
    let mut plan = Plan {
        names: Vec::new(),
        types: Vec::new(),
        classifier: false,
        class_labels: HashMap::new(),
        truths: HashMap::new(),
    };
    for (sub, path) in files {
        if sub == "feedback" {
            export_read::feedback(path, &mut plan.truths)?;
            continue;
        }
        let file_columns = export_read::feature_columns(path)?;
        let mut at = Vec::with_capacity(file_columns.len());
        for (n, t) in &file_columns {
            let c = match plan.names.iter().position(|m| m == n) {
                Some(c) => c,
                None => {
                    plan.names.push(n.clone());
                    plan.types.push(None);
                    plan.names.len() - 1
                }
            };
            plan.types[c] = wider(plan.types[c], *t);
            at.push(c);
        }
        let mut answer = |label: Option<&str>, value: Option<f64>| {
            if let (Some(label), Some(value)) = (label, value) {
                plan.classifier = true;
                plan.class_labels
                    .entry(value as i64)
                    .or_insert_with(|| label.to_string());
            }
        };
        if !export_read::is_jsonl(path) {
            // The schema gave the types: read only the answers.
            export_read::parquet_answers(path, &mut answer)?;
            continue;
        }
        let names: Vec<String> = file_columns.into_iter().map(|(n, _)| n).collect();
        export_read::predictions(path, &names, &mut |rows| {
            for r in rows {
                // JSON lines carry no schema: the values say which type a column needs.
                for (v, &c) in r.features.iter().zip(&at) {
                    plan.types[c] = wider(plan.types[c], v.column_type());
                }
                answer(r.label.as_deref(), r.value);
            }
            Ok(())
        })?;
    }
    for (i, l) in card_labels.iter().enumerate() {
        plan.class_labels.insert(i as i64, l.clone());
    }
    for tail in TAIL {
        anyhow::ensure!(
            !plan.names.iter().any(|n| n == tail),
            "a feature is named {tail:?}, like an export column"
        );
    }
    Ok(plan)
}

/// The export's columns after the features.
const TAIL: [&str; 5] = ["prediction", "label", "version", "time", "id"];

/// The output file, written one row group per chunk.
struct Output<'a> {
    plan: &'a Plan,
    schema: SchemaRef,
    writer: ArrowWriter<File>,
}

impl<'a> Output<'a> {
    fn create(tmp: &Path, plan: &'a Plan) -> anyhow::Result<Output<'a>> {
        let answer = if plan.classifier {
            DataType::Utf8
        } else {
            DataType::Float64
        };
        let mut fields: Vec<Field> = plan
            .names
            .iter()
            .zip(&plan.types)
            .map(|(n, t)| {
                let t = match t {
                    Some(ColumnType::Utf8) => DataType::Utf8,
                    Some(ColumnType::Int64) => DataType::Int64,
                    Some(ColumnType::Float64) | None => DataType::Float64,
                };
                Field::new(n, t, true)
            })
            .collect();
        fields.extend([
            Field::new(TAIL[0], answer.clone(), true),
            Field::new(TAIL[1], answer, true),
            Field::new(TAIL[2], DataType::UInt64, true),
            Field::new(
                TAIL[3],
                DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
                true,
            ),
            Field::new(TAIL[4], DataType::Utf8, true),
        ]);
        let schema = Arc::new(Schema::new(fields));
        let file = File::create(tmp).with_context(|| format!("creating {}", tmp.display()))?;
        let writer = ArrowWriter::try_new(file, schema.clone(), None)?;
        Ok(Output {
            plan,
            schema,
            writer,
        })
    }

    /// Joins one chunk with the ground truth and writes it as a row group. `columns[j]` is the
    /// output column of the file's feature `j`.
    fn write(
        &mut self,
        rows: &[Row],
        columns: &[usize],
        seen: &mut HashSet<String>,
        summary: &mut ExportSummary,
    ) -> anyhow::Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let plan = self.plan;
        let n = rows.len();
        let mut features: Vec<OutColumn> = self
            .schema
            .fields()
            .iter()
            .take(plan.names.len())
            .map(|f| OutColumn::new(f.data_type(), n))
            .collect();
        let mut id = StringBuilder::new();
        let mut text_pred = StringBuilder::new();
        let mut text_label = StringBuilder::new();
        let mut num_pred = Float64Builder::new();
        let mut num_label = Float64Builder::new();
        let mut version = UInt64Builder::new();
        let mut time = TimestampMillisecondBuilder::new().with_timezone("UTC");
        let mut values: Vec<Option<&Feature>> = vec![None; plan.names.len()];
        for r in rows {
            values.fill(None);
            for (v, &c) in r.features.iter().zip(columns) {
                values[c] = Some(v);
            }
            for (b, v) in features.iter_mut().zip(&values) {
                b.append(*v);
            }
            let truth = r.id.as_deref().and_then(|i| plan.truths.get(i));
            match (truth, r.id.as_deref()) {
                (Some(_), Some(i)) => {
                    summary.joined += 1;
                    if !seen.contains(i) {
                        seen.insert(i.to_string());
                    }
                }
                _ => summary.unlabelled += 1,
            }
            id.append_option(r.id.as_deref());
            if plan.classifier {
                text_pred.append_option(r.label.as_deref());
                text_label.append_option(truth.and_then(|t| self.label_of(t)));
            } else {
                num_pred.append_option(r.value);
                num_label.append_option(truth.and_then(|t| t.value));
            }
            version.append_option(r.version);
            time.append_option(r.time);
        }
        summary.rows += n;
        let mut out: Vec<ArrayRef> = features.iter_mut().map(OutColumn::finish).collect();
        if plan.classifier {
            out.push(Arc::new(text_pred.finish()));
            out.push(Arc::new(text_label.finish()));
        } else {
            out.push(Arc::new(num_pred.finish()));
            out.push(Arc::new(num_label.finish()));
        }
        out.push(Arc::new(version.finish()));
        out.push(Arc::new(time.finish()));
        out.push(Arc::new(id.finish()));
        self.writer
            .write(&RecordBatch::try_new(self.schema.clone(), out)?)?;
        // One row group per chunk: the writer buffers no more than one chunk.
        self.writer.flush()?;
        Ok(())
    }

    /// A classifier's ground truth as a label: as sent, or its class index named.
    fn label_of(&self, t: &Truth) -> Option<String> {
        t.label.clone().or_else(|| {
            let i = t.class_index?;
            Some(
                self.plan
                    .class_labels
                    .get(&i)
                    .map_or_else(|| i.to_string(), Clone::clone),
            )
        })
    }

    fn finish(self) -> anyhow::Result<()> {
        self.writer.close()?;
        Ok(())
    }
}

/// A feature column of the output being built; values are converted to its type (a number
/// in a string column is written as text, an integer in a float column as a float).
enum OutColumn {
    Float(Float64Builder),
    Int(Int64Builder),
    Text(StringBuilder),
}

impl OutColumn {
    fn new(t: &DataType, rows: usize) -> OutColumn {
        match t {
            DataType::Utf8 => OutColumn::Text(StringBuilder::with_capacity(rows, rows * 8)),
            DataType::Int64 => OutColumn::Int(Int64Builder::with_capacity(rows)),
            _ => OutColumn::Float(Float64Builder::with_capacity(rows)),
        }
    }

    fn append(&mut self, v: Option<&Feature>) {
        let v = v.unwrap_or(&Feature::Null);
        match (self, v) {
            (OutColumn::Float(b), Feature::Float(x)) => b.append_value(*x),
            (OutColumn::Float(b), Feature::Int(x)) => b.append_value(*x as f64),
            (OutColumn::Float(b), _) => b.append_null(),
            (OutColumn::Int(b), Feature::Int(x)) => b.append_value(*x),
            (OutColumn::Int(b), _) => b.append_null(),
            (OutColumn::Text(b), Feature::Text(x)) => b.append_value(x),
            (OutColumn::Text(b), Feature::Int(x)) => b.append_value(x.to_string()),
            (OutColumn::Text(b), Feature::Float(x)) => b.append_value(x.to_string()),
            (OutColumn::Text(b), Feature::Null) => b.append_null(),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            OutColumn::Float(b) => Arc::new(b.finish()),
            OutColumn::Int(b) => Arc::new(b.finish()),
            OutColumn::Text(b) => Arc::new(b.finish()),
        }
    }
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
                let visible = file.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                    !n.starts_with('.') && (n.ends_with(".parquet") || n.ends_with(".jsonl.gz"))
                });
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
