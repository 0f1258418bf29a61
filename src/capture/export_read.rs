//! The export's readers: captured predictions and ground truth, from Parquet or gzip JSON-lines
//! files, a bounded chunk at a time (one record batch, or [`CHUNK_ROWS`] lines), never a whole
//! file in memory.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use anyhow::Context;
use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type, TimestampMillisecondType, UInt64Type};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::DataType;
use flate2::read::MultiGzDecoder;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;
use serde_json::Value;

use super::record::ColumnType;
use super::schema::{FEATURE_NAMES_KEY, FEATURE_PREFIX};

/// Rows per chunk handed to the export.
pub const CHUNK_ROWS: usize = 8192;
/// Longest JSON line accepted (a capture line of 64 features is about 2 KiB).
const MAX_LINE_BYTES: u64 = 16 << 20;

/// The ground truth of one id (the latest one sent wins).
pub struct Truth {
    pub time: i64,
    pub label: Option<String>,
    pub class_index: Option<i64>,
    pub value: Option<f64>,
}

/// One captured feature value as read back.
#[derive(Debug, Clone, PartialEq)]
pub enum Feature {
    Null,
    Float(f64),
    Int(i64),
    Text(String),
}

impl Feature {
    /// The column type this value needs (None for null).
    pub fn column_type(&self) -> Option<ColumnType> {
        match self {
            Feature::Null => None,
            Feature::Float(_) => Some(ColumnType::Float64),
            Feature::Int(_) => Some(ColumnType::Int64),
            Feature::Text(_) => Some(ColumnType::Utf8),
        }
    }

    fn from_json(v: &Value) -> Feature {
        match v {
            Value::String(s) => Feature::Text(s.clone()),
            Value::Number(n) => match n.as_i64() {
                Some(i) => Feature::Int(i),
                None => n.as_f64().map_or(Feature::Null, Feature::Float),
            },
            _ => Feature::Null,
        }
    }
}

/// The type a column needs to hold values of both types: strings hold anything, floats hold
/// integers.
pub fn wider(a: Option<ColumnType>, b: Option<ColumnType>) -> Option<ColumnType> {
    use ColumnType::*;
    match (a, b) {
        (None, t) | (t, None) => t,
        (Some(Utf8), _) | (_, Some(Utf8)) => Some(Utf8),
        (Some(Float64), _) | (_, Some(Float64)) => Some(Float64),
        (Some(Int64), Some(Int64)) => Some(Int64),
    }
}

/// One captured prediction; `features[j]` is the file's feature `j`.
pub struct Row {
    pub id: Option<String>,
    pub time: Option<i64>,
    pub version: Option<u64>,
    pub features: Vec<Feature>,
    pub label: Option<String>,
    pub value: Option<f64>,
}

/// Whether a capture file is gzip JSON lines (else Parquet).
pub fn is_jsonl(path: &Path) -> bool {
    path.to_str().is_some_and(|p| p.ends_with(".jsonl.gz"))
}

/// The feature names of a predictions file, in column order, with each column's type (from
/// the Parquet schema; for JSON lines from the first line's values, None where it is null).
pub fn feature_columns(path: &Path) -> anyhow::Result<Vec<(String, Option<ColumnType>)>> {
    if is_jsonl(path) {
        let mut columns = Vec::new();
        lines(path, &mut |line| {
            columns = line
                .iter()
                .filter_map(|(k, v)| {
                    let name = k.strip_prefix(FEATURE_PREFIX)?;
                    Some((name.to_string(), Feature::from_json(v).column_type()))
                })
                .collect();
            Ok(false)
        })?;
        return Ok(columns);
    }
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .with_context(|| format!("reading {}", path.display()))?;
    let schema = builder.schema();
    let names: Vec<String> = schema
        .metadata()
        .get(FEATURE_NAMES_KEY)
        .map(|j| serde_json::from_str(j))
        .transpose()
        .with_context(|| format!("{}: bad feature names", path.display()))?
        .unwrap_or_default();
    Ok(names
        .into_iter()
        .map(|n| {
            let t = match schema.field_with_name(&format!("{FEATURE_PREFIX}{n}")) {
                Ok(f) if *f.data_type() == DataType::Utf8 => ColumnType::Utf8,
                Ok(f) if *f.data_type() == DataType::Int64 => ColumnType::Int64,
                // Float64 columns, and files with the older `features` list column.
                _ => ColumnType::Float64,
            };
            (n, Some(t))
        })
        .collect())
}

/// Calls `each` with every chunk of prediction rows of a file.
pub fn predictions(
    path: &Path,
    names: &[String],
    each: &mut dyn FnMut(Vec<Row>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    if is_jsonl(path) {
        let mut chunk = Vec::new();
        lines(path, &mut |line| {
            chunk.push(json_row(&line, names));
            if chunk.len() >= CHUNK_ROWS {
                each(std::mem::take(&mut chunk))?;
            }
            Ok(true)
        })?;
        return if chunk.is_empty() {
            Ok(())
        } else {
            each(chunk)
        };
    }
    parquet_batches(path, &mut |b| each(parquet_rows(path, &b, names)?))
}

/// Calls `each` with the answer (`prediction`, `prediction_value`) of every row of a Parquet
/// predictions file, reading only those two columns (the export's first pass: the features
/// are read once, in the second).
pub fn parquet_answers(
    path: &Path,
    each: &mut dyn FnMut(Option<&str>, Option<f64>),
) -> anyhow::Result<()> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .with_context(|| format!("reading {}", path.display()))?;
    let mask =
        ProjectionMask::columns(builder.parquet_schema(), ["prediction", "prediction_value"]);
    let reader = builder
        .with_projection(mask)
        .with_batch_size(CHUNK_ROWS)
        .build()?;
    for batch in reader {
        let b = batch.with_context(|| format!("reading {}", path.display()))?;
        let col = |name: &str| {
            b.column_by_name(name)
                .with_context(|| format!("{}: no column {name}", path.display()))
        };
        let label = col("prediction")?.as_string::<i32>();
        let value = col("prediction_value")?.as_primitive::<Float64Type>();
        for i in 0..b.num_rows() {
            each(
                label.is_valid(i).then(|| label.value(i)),
                value.is_valid(i).then(|| value.value(i)),
            );
        }
    }
    Ok(())
}

/// Adds a feedback file's ground truth to `truths` (the latest per id wins).
pub fn feedback(path: &Path, truths: &mut HashMap<String, Truth>) -> anyhow::Result<()> {
    let mut add = |id: &str, truth: Truth| {
        if truths.get(id).is_none_or(|t| t.time <= truth.time) {
            truths.insert(id.to_string(), truth);
        }
    };
    if is_jsonl(path) {
        return lines(path, &mut |line| {
            let get = |k: &str| line.iter().find(|(n, _)| n == k).map(|(_, v)| v);
            if let Some(id) = get("id").and_then(Value::as_str) {
                let truth = Truth {
                    time: get("time").and_then(Value::as_i64).unwrap_or(0),
                    label: get("label").and_then(Value::as_str).map(String::from),
                    class_index: get("class_index").and_then(Value::as_i64),
                    value: get("value").and_then(Value::as_f64),
                };
                add(id, truth);
            }
            Ok(true)
        });
    }
    parquet_batches(path, &mut |b| {
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
            add(id.value(i), truth);
        }
        Ok(())
    })
}

fn parquet_batches(
    path: &Path,
    each: &mut dyn FnMut(RecordBatch) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .with_context(|| format!("reading {}", path.display()))?
        .with_batch_size(CHUNK_ROWS)
        .build()?;
    for batch in reader {
        each(batch.with_context(|| format!("reading {}", path.display()))?)?;
    }
    Ok(())
}

/// Rows of one record batch of a predictions file: feature columns `feature_<name>`, or the
/// single list column `features` of files written before per-feature columns.
fn parquet_rows(path: &Path, b: &RecordBatch, names: &[String]) -> anyhow::Result<Vec<Row>> {
    let col = |name: &str| {
        b.column_by_name(name)
            .with_context(|| format!("{}: no column {name}", path.display()))
    };
    let id = col("id")?.as_string::<i32>();
    let time = col("time")?.as_primitive::<TimestampMillisecondType>();
    let version = col("version")?.as_primitive::<UInt64Type>();
    let label = col("prediction")?.as_string::<i32>();
    let value = col("prediction_value")?.as_primitive::<Float64Type>();
    let list = b.column_by_name("features").map(|c| c.as_list::<i32>());
    let columns = match list {
        Some(_) => Vec::new(),
        None => names
            .iter()
            .map(|n| col(&format!("{FEATURE_PREFIX}{n}")).cloned())
            .collect::<anyhow::Result<Vec<ArrayRef>>>()?,
    };
    let opt = |a: &arrow_array::Float64Array, i: usize| a.is_valid(i).then(|| a.value(i));
    let float = |v: Option<f64>| v.map_or(Feature::Null, Feature::Float);
    Ok((0..b.num_rows())
        .map(|i| Row {
            id: id.is_valid(i).then(|| id.value(i).to_string()),
            time: time.is_valid(i).then(|| time.value(i)),
            version: version.is_valid(i).then(|| version.value(i)),
            features: match list {
                Some(l) if l.is_valid(i) => {
                    let v = l.value(i);
                    let v = v.as_primitive::<Float64Type>();
                    (0..v.len()).map(|j| float(opt(v, j))).collect()
                }
                Some(_) => Vec::new(),
                None => columns.iter().map(|c| cell(c, i)).collect(),
            },
            label: label.is_valid(i).then(|| label.value(i).to_string()),
            value: opt(value, i),
        })
        .collect())
}

/// Value `i` of a feature column (float64, int64 or utf8).
fn cell(c: &ArrayRef, i: usize) -> Feature {
    if c.is_null(i) {
        return Feature::Null;
    }
    match c.data_type() {
        DataType::Utf8 => Feature::Text(c.as_string::<i32>().value(i).to_string()),
        DataType::Int64 => Feature::Int(c.as_primitive::<Int64Type>().value(i)),
        DataType::Float64 => Feature::Float(c.as_primitive::<Float64Type>().value(i)),
        _ => Feature::Null,
    }
}

fn json_row(line: &[(String, Value)], names: &[String]) -> Row {
    let get = |k: &str| line.iter().find(|(n, _)| n == k).map(|(_, v)| v);
    let mut features = vec![Feature::Null; names.len()];
    let mut j = 0;
    for (k, v) in line {
        if k.starts_with(FEATURE_PREFIX) && j < features.len() {
            features[j] = Feature::from_json(v);
            j += 1;
        }
    }
    Row {
        id: get("id").and_then(Value::as_str).map(String::from),
        time: get("time").and_then(Value::as_i64),
        version: get("version").and_then(Value::as_u64),
        features,
        label: get("prediction").and_then(Value::as_str).map(String::from),
        value: get("prediction_value").and_then(Value::as_f64),
    }
}

/// Calls `each` with every line of a gzip JSON-lines file, parsed in key order, until it
/// returns false.
fn lines(
    path: &Path,
    each: &mut dyn FnMut(Vec<(String, Value)>) -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut reader = BufReader::new(MultiGzDecoder::new(file));
    let mut buf = Vec::new();
    for n in 1.. {
        buf.clear();
        let read = (&mut reader)
            .take(MAX_LINE_BYTES)
            .read_until(b'\n', &mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if read == 0 {
            break;
        }
        anyhow::ensure!(
            buf.ends_with(b"\n") || (read as u64) < MAX_LINE_BYTES,
            "{}: line {n} is longer than {MAX_LINE_BYTES} bytes",
            path.display()
        );
        if buf.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let line: Ordered = serde_json::from_slice(&buf)
            .with_context(|| format!("{}: line {n} is not a JSON object", path.display()))?;
        if !each(line.0)? {
            break;
        }
    }
    Ok(())
}

/// A JSON object's members in the order written (serde_json's map would sort them).
struct Ordered(Vec<(String, Value)>);

impl<'de> serde::Deserialize<'de> for Ordered {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Members;
        impl<'de> serde::de::Visitor<'de> for Members {
            type Value = Ordered;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<Ordered, A::Error> {
                let mut out = Vec::new();
                while let Some(member) = m.next_entry::<String, Value>()? {
                    out.push(member);
                }
                Ok(Ordered(out))
            }
        }
        d.deserialize_map(Members)
    }
}
