use arrow_array::Array;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;

#[derive(Default)]
struct Counts {
    queued: AtomicUsize,
    dropped: AtomicUsize,
    written: AtomicUsize,
    closed: AtomicUsize,
    deleted: AtomicUsize,
}

impl CaptureObserver for Counts {
    fn queued(&self, _: &'static str, rows: usize) {
        self.queued.fetch_add(rows, Ordering::Relaxed);
    }
    fn dropped(&self, _: &'static str, rows: usize) {
        self.dropped.fetch_add(rows, Ordering::Relaxed);
    }
    fn written(&self, rows: usize) {
        self.written.fetch_add(rows, Ordering::Relaxed);
    }
    fn write_failed(&self, _: usize) {}
    fn file_closed(&self, _: u64) {
        self.closed.fetch_add(1, Ordering::Relaxed);
    }
    fn files_deleted(&self, count: usize) {
        self.deleted.fetch_add(count, Ordering::Relaxed);
    }
    fn events(&self, _: &'static str, _: usize) {}
    fn truncated(&self, _: usize) {}
}

fn settings(dir: &std::path::Path) -> CaptureSettings {
    CaptureSettings {
        dir: Some(dir.to_path_buf()),
        sample_rate: 1.0,
        fields: Fields::parse(&Fields::NAMES).unwrap(),
        redact: vec!["b".into()],
        queue: 1024,
        queue_bytes: 64 << 20,
        max_string_bytes: 4096,
        max_file_bytes: 64 << 20,
        max_file_age: Duration::from_secs(3600),
        flush_every: Duration::from_millis(50),
        max_total_bytes: 1 << 30,
        replica: "r1".into(),
        format: Format::Parquet,
        http: None,
    }
}

fn batch(id: &str, version: u64, rows: usize, time_ms: i64) -> Record {
    let columns = Columns::numbers(vec!["a".into(), "b".into()], vec![false, true]);
    Record::Predictions(PredictionBatch {
        model: "m".into(),
        version,
        id: Some(id.into()),
        time_ms,
        latency: 0.001,
        columns: Arc::new(columns),
        features: (0..rows * 2).map(|v| v as f64).collect(),
        ints: Vec::new(),
        texts: Vec::new(),
        outputs: (0..rows)
            .map(|r| CapturedOutput {
                label: Some(format!("c{}", r % 2)),
                value: Some((r % 2) as f64),
                confidence: Some(0.9),
            })
            .collect(),
        fields: Fields::parse(&Fields::NAMES).unwrap(),
        format: Format::Parquet,
    })
}

fn parquet_files(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn capture_then_export_joins_predictions_with_feedback_across_versions() {
    capture_then_export(Format::Parquet, ".parquet");
}

#[test]
fn json_lines_capture_exports_the_same_as_parquet() {
    capture_then_export(Format::Jsonl, ".jsonl.gz");
}

fn in_format(record: Record, format: Format) -> Record {
    match record {
        Record::Predictions(mut b) => {
            b.format = format;
            Record::Predictions(b)
        }
        other => other,
    }
}

fn capture_then_export(format: Format, suffix: &str) {
    let dir = tempfile::tempdir().unwrap();
    let counts = Arc::new(Counts::default());
    let mut s = settings(dir.path());
    s.format = format;
    let capture = Capture::start(s, counts.clone()).unwrap();
    let t = parse_date_ms("2026-12-01").unwrap() + 1000;
    capture.push(in_format(batch("req1", 1, 3, t), format));
    capture.push(in_format(batch("req2", 2, 2, t + 10), format));
    capture.push(Record::Feedback(FeedbackBatch {
        model: "m".into(),
        time_ms: t + 20,
        items: vec![
            FeedbackItem {
                id: "req1/0".into(),
                label: Some("c1".into()),
                class_index: None,
                value: None,
            },
            FeedbackItem {
                id: "req2/1".into(),
                label: None,
                class_index: Some(0),
                value: None,
            },
            FeedbackItem {
                id: "never/0".into(),
                label: Some("c0".into()),
                class_index: None,
                value: None,
            },
        ],
    }));
    capture.shutdown();
    capture.shutdown(); // idempotent
    assert_eq!(counts.queued.load(Ordering::Relaxed), 8);
    assert_eq!(counts.written.load(Ordering::Relaxed), 8);
    assert_eq!(counts.closed.load(Ordering::Relaxed), 3);
    let files = parquet_files(dir.path());
    assert_eq!(files.len(), 3, "{files:?}");
    for f in &files {
        let rel = f
            .strip_prefix(dir.path())
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        assert!(rel.contains("/date=2026-12-01/r1-"), "{rel}");
        assert!(rel.ends_with(suffix) && !rel.contains(".tmp"), "{rel}");
    }
    let out = dir.path().join("train.parquet");
    let summary = export(&ExportOptions {
        capture: dir.path().to_path_buf(),
        model: "m".into(),
        out: out.clone(),
        since_ms: None,
        labels: vec![],
    })
    .unwrap();
    assert_eq!(summary.rows, 5);
    assert_eq!(summary.joined, 2);
    assert_eq!(summary.unlabelled, 3);
    assert_eq!(summary.orphan_feedback, 1);

    let file = std::fs::File::open(&out).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let b: Vec<_> = reader.map(|b| b.unwrap()).collect();
    let b = &b[0];
    let names: Vec<_> = b
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(
        names,
        ["a", "b", "prediction", "label", "version", "time", "id"]
    );
    use arrow_array::cast::AsArray;
    let a = b
        .column(0)
        .as_primitive::<arrow_array::types::Float64Type>();
    assert_eq!(a.value(1), 2.0); // row 1 of req1: features [2, 3]
    assert_eq!(b.column(1).null_count(), 5, "feature b is redacted");
    let label = b.column(3).as_string::<i32>();
    let id = b.column(6).as_string::<i32>();
    let by_id: HashMap<&str, Option<&str>> = (0..b.num_rows())
        .map(|i| (id.value(i), label.is_valid(i).then(|| label.value(i))))
        .collect();
    assert_eq!(by_id["req1/0"], Some("c1"));
    assert_eq!(
        by_id["req2/1"],
        Some("c0"),
        "class index 0 mapped to its label"
    );
    assert_eq!(by_id["req1/1"], None);

    // With the card's labels (`--repository`), class indices take the card's names.
    let card = dir.path().join("card.parquet");
    export(&ExportOptions {
        capture: dir.path().to_path_buf(),
        model: "m".into(),
        out: card.clone(),
        since_ms: None,
        labels: vec!["zero".into(), "one".into()],
    })
    .unwrap();
    let file = std::fs::File::open(&card).unwrap();
    let b = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    let (id, label) = (
        b.column(6).as_string::<i32>(),
        b.column(3).as_string::<i32>(),
    );
    let row = (0..b.num_rows())
        .find(|&i| id.value(i) == "req2/1")
        .unwrap();
    assert_eq!(label.value(row), "zero", "class index 0 named by the card");
}

use std::collections::HashMap;

#[test]
fn a_full_queue_drops_and_counts_instead_of_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let counts = Arc::new(Counts::default());
    let mut s = settings(dir.path());
    s.queue = 1;
    let capture = Capture::start(s, counts.clone()).unwrap();
    let t = now_ms();
    for i in 0..2000 {
        capture.push(batch(&format!("r{i}"), 1, 1, t));
    }
    capture.shutdown();
    let (q, d) = (
        counts.queued.load(Ordering::Relaxed),
        counts.dropped.load(Ordering::Relaxed),
    );
    assert_eq!(q + d, 2000);
    assert!(d > 0, "queue of one never filled");
    assert_eq!(counts.written.load(Ordering::Relaxed), q);
}

#[test]
fn files_rotate_by_size_and_retention_deletes_the_oldest() {
    let dir = tempfile::tempdir().unwrap();
    let counts = Arc::new(Counts::default());
    let mut s = settings(dir.path());
    s.max_file_bytes = 1; // every row group closes its file
    s.max_total_bytes = 6_000;
    let capture = Capture::start(s, counts.clone()).unwrap();
    let t = now_ms();
    for i in 0..20 {
        capture.push(batch(&format!("r{i}"), 1, 50, t));
        // Wait until the writer took it, so each lands in its own row group and file.
        let want = (i + 1) * 50;
        while counts.written.load(Ordering::Relaxed) < want {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    capture.shutdown();
    let closed = counts.closed.load(Ordering::Relaxed);
    assert!(closed >= 20, "closed {closed}");
    let files = parquet_files(dir.path());
    let total: u64 = files.iter().map(|f| f.metadata().unwrap().len()).sum();
    assert!(total <= 6_000, "retention kept {total} bytes");
    assert!(counts.deleted.load(Ordering::Relaxed) > 0);
    assert!(!files.is_empty());
}

#[test]
fn leftovers_of_this_replica_are_removed_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let part = dir.path().join("m/1/date=2026-12-01");
    std::fs::create_dir_all(&part).unwrap();
    std::fs::write(part.join(".r1-5.parquet.tmp"), b"PAR1 partial").unwrap();
    std::fs::write(part.join(".r2-5.parquet.tmp"), b"PAR1 other replica").unwrap();
    let capture = Capture::start(settings(dir.path()), Arc::new(Counts::default())).unwrap();
    capture.shutdown();
    assert!(!part.join(".r1-5.parquet.tmp").exists());
    assert!(part.join(".r2-5.parquet.tmp").exists());
}

#[test]
fn fields_parse_and_unknown_ones_are_named() {
    let f = Fields::parse(&["inputs", "ids"]).unwrap();
    assert!(f.inputs && f.ids && !f.outputs);
    assert!(Fields::parse(&["passwords"])
        .unwrap_err()
        .contains("passwords"));
    assert_eq!(replica_name("pod/a b:1"), "podab1");
    assert_eq!(replica_name("///"), "replica");
}

#[test]
fn export_streams_a_capture_larger_than_one_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let counts = Arc::new(Counts::default());
    let capture = Capture::start(settings(dir.path()), counts.clone()).unwrap();
    let t = parse_date_ms("2026-12-01").unwrap();
    let requests = export_read::CHUNK_ROWS * 2 / 100 + 1;
    let rows = requests * 100;
    for r in 0..requests {
        capture.push(batch(&format!("q{r}"), 1, 100, t + r as i64));
    }
    let truth = (0..requests)
        .map(|r| FeedbackItem {
            id: format!("q{r}/7"),
            label: None,
            class_index: Some(1),
            value: None,
        })
        .collect();
    capture.push(Record::Feedback(FeedbackBatch {
        model: "m".into(),
        time_ms: t,
        items: truth,
    }));
    capture.shutdown();
    assert_eq!(counts.written.load(Ordering::Relaxed), rows + requests);
    let out = dir.path().join("train.parquet");
    let summary = export(&ExportOptions {
        capture: dir.path().to_path_buf(),
        model: "m".into(),
        out: out.clone(),
        since_ms: None,
        labels: vec![],
    })
    .unwrap();
    assert_eq!(summary.rows, rows);
    assert_eq!(summary.joined, requests);
    assert_eq!(summary.orphan_feedback, 0);
    let file = std::fs::File::open(&out).unwrap();
    let reader =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
    let groups = reader.metadata().num_row_groups();
    assert!(
        groups >= 3,
        "written a chunk at a time: {groups} row groups"
    );
    let total: usize = reader.build().unwrap().map(|b| b.unwrap().num_rows()).sum();
    assert_eq!(total, rows);
}

#[test]
fn a_json_lines_file_is_plain_gzip_json_with_the_parquet_fields() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(dir.path());
    s.format = Format::Jsonl;
    let capture = Capture::start(s, Arc::new(Counts::default())).unwrap();
    let t = parse_date_ms("2026-12-01").unwrap();
    capture.push(in_format(batch("req1", 1, 2, t), Format::Jsonl));
    capture.shutdown();
    let files = parquet_files(dir.path());
    assert_eq!(files.len(), 1, "{files:?}");
    let mut text = String::new();
    flate2::read::MultiGzDecoder::new(std::fs::File::open(&files[0]).unwrap())
        .read_to_string(&mut text)
        .unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(
        lines[1],
        serde_json::json!({
            "id": "req1/1", "time": t, "model": "m", "version": 1, "latency_seconds": 0.001,
            "prediction": "c1", "prediction_value": 1.0, "confidence": 0.9,
            "feature_a": 2.0, "feature_b": null,
        })
    );
}

#[test]
fn leftovers_of_a_replica_whose_name_prefixes_another_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let part = dir.path().join("m/feedback/date=2026-12-01");
    std::fs::create_dir_all(&part).unwrap();
    std::fs::write(part.join(".r1-5.jsonl.gz.tmp"), b"partial").unwrap();
    std::fs::write(part.join(".r1-a-5.parquet.tmp"), b"replica r1-a's").unwrap();
    let capture = Capture::start(settings(dir.path()), Arc::new(Counts::default())).unwrap();
    capture.shutdown();
    assert!(!part.join(".r1-5.jsonl.gz.tmp").exists());
    assert!(part.join(".r1-a-5.parquet.tmp").exists());
}

#[test]
fn the_queue_budget_bounds_messages_and_bytes() {
    let budget = QueueBudget::new(3, 1000);
    assert!(budget.try_take(400));
    assert!(budget.try_take(400));
    assert!(
        !budget.try_take(400),
        "1,200 bytes would pass the 1,000-byte bound"
    );
    assert!(budget.try_take(200));
    assert!(!budget.try_take(0), "three messages is the bound");
    budget.give_back(400);
    assert!(budget.try_take(400), "room given back is taken again");
    assert!(
        !QueueBudget::new(10, 100).try_take(101),
        "a message larger than the bound"
    );
}

#[test]
fn typed_columns_keep_strings_and_integers() {
    let dir = tempfile::tempdir().unwrap();
    let counts = Arc::new(Counts::default());
    let capture = Capture::start(settings(dir.path()), counts.clone()).unwrap();
    let columns = Columns::new(
        vec!["city".into(), "rooms".into(), "area".into(), "note".into()],
        vec![
            ColumnType::Utf8,
            ColumnType::Int64,
            ColumnType::Float64,
            ColumnType::Utf8,
        ],
        vec![false, false, false, true],
    );
    capture.push(Record::Predictions(PredictionBatch {
        model: "m".into(),
        version: 1,
        id: Some("q".into()),
        time_ms: now_ms(),
        latency: 0.001,
        columns: Arc::new(columns),
        features: vec![0.0, 0.0, 51.5, 0.0, 0.0, 0.0, 40.0, 0.0],
        // 2^53 + 1 has no f64: it must arrive as sent.
        ints: vec![Some(9_007_199_254_740_993), None],
        texts: vec!["rome".into(), String::new(), "oslo".into(), String::new()],
        outputs: vec![
            CapturedOutput {
                label: Some("a".into()),
                value: Some(0.0),
                confidence: Some(0.9),
            };
            2
        ],
        fields: Fields::parse(&Fields::NAMES).unwrap(),
        format: Format::Parquet,
    }));
    capture.shutdown();
    let file = parquet_files(dir.path()).pop().unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        std::fs::File::open(&file).unwrap(),
    )
    .unwrap();
    let types = reader.schema().metadata()[FEATURE_TYPES_KEY].clone();
    assert_eq!(types, r#"["utf8","int64","float64","utf8"]"#);
    let b = reader.build().unwrap().next().unwrap().unwrap();
    use arrow_array::cast::AsArray;
    let city = b.column_by_name("feature_city").unwrap().as_string::<i32>();
    assert_eq!((city.value(0), city.value(1)), ("rome", "oslo"));
    let rooms = b.column_by_name("feature_rooms").unwrap();
    let rooms = rooms.as_primitive::<arrow_array::types::Int64Type>();
    assert_eq!(rooms.value(0), 9_007_199_254_740_993);
    assert!(
        rooms.is_null(1),
        "a value that is no integer is null, not a wrong number"
    );
    let area = b.column_by_name("feature_area").unwrap();
    assert_eq!(
        area.as_primitive::<arrow_array::types::Float64Type>()
            .value(1),
        40.0
    );
    assert_eq!(b.column_by_name("feature_note").unwrap().null_count(), 2);
}
