"""Capture files and the export, read by the tools users train with (pyarrow, pandas, DuckDB),
and crash safety: kill -9 while writing never leaves a corrupt closed file.

Drives the infera release binary (INFERA_BIN, else $CARGO_TARGET_DIR/release/infera) on
127.0.0.1 port 0 with the shipped models.
"""

import json
import os
import re
import signal
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[2]
WAIT_S = 30.0


def _bin():
    if os.environ.get("INFERA_BIN"):
        return os.environ["INFERA_BIN"]
    target = os.environ.get("CARGO_TARGET_DIR", str(REPO / "target"))
    return str(Path(target) / "release" / "infera")


class Server:
    def __init__(self, capture_dir, *extra):
        self.proc = subprocess.Popen(
            [_bin(), "--model-repository", str(REPO / "models"), "--port", "0",
             "--log-format", "json", "--capture-dir", str(capture_dir),
             "--capture-replica", "py", "--capture-flush-ms", "100", *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.addr = None
        deadline = time.monotonic() + WAIT_S
        while self.addr is None:
            assert time.monotonic() < deadline, "no listening address logged"
            line = self.proc.stderr.readline()
            assert line, f"infera exited with {self.proc.poll()}"
            m = re.search(r"https?://([0-9.]+:[0-9]+)/docs", line)
            self.addr = m.group(1) if m else None
        threading.Thread(target=lambda: [None for _ in self.proc.stderr], daemon=True).start()
        while True:
            assert time.monotonic() < deadline, "not ready in time"
            try:
                with urllib.request.urlopen(f"http://{self.addr}/health/ready", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.05)

    def post(self, path, body):
        req = urllib.request.Request(f"http://{self.addr}{path}", data=json.dumps(body).encode(),
                                     headers={"content-type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(timeout=WAIT_S) == 0


def digits_rows(n):
    golden = json.loads((REPO / "models/digits/1/golden.json").read_text())
    rows = golden["inputs"]
    return [rows[i % len(rows)] for i in range(n)]


def closed_files(root):
    return sorted(p for p in Path(root).rglob("*.parquet") if not p.name.startswith("."))


def read_everywhere(path):
    """Rows of a Parquet file as pyarrow, pandas and DuckDB see it (they must agree)."""
    n_arrow = pq.read_table(path).num_rows
    n_pandas = len(pd.read_parquet(path))
    n_duck = duckdb.sql(f"select count(*) from read_parquet('{path}')").fetchall()[0][0]
    assert n_arrow == n_pandas == n_duck, (path, n_arrow, n_pandas, n_duck)
    return n_arrow


def test_capture_and_export_are_read_by_pyarrow_pandas_and_duckdb(tmp_path):
    cap = tmp_path / "capture"
    server = Server(cap)
    ids = []
    for i in range(20):
        out = server.post("/models/digits/predict", {"instances": digits_rows(4), "id": f"r{i}"})
        ids += [p["id"] for p in out["predictions"]]
    truth = [{"id": pid, "class_index": 3} for pid in ids[:30]] + [{"id": "ghost/0", "class_index": 1}]
    server.post("/models/digits/feedback", {"feedback": truth})
    server.stop()  # a clean shutdown closes every file

    files = closed_files(cap)
    assert files and not list(cap.rglob("*.tmp")), files
    assert sum(read_everywhere(f) for f in files if "/feedback/" not in str(f)) == 80
    for f in files:
        assert f.relative_to(cap).parts[2].startswith("date=")

    out = tmp_path / "train.parquet"
    done = subprocess.run([_bin(), "export", "--capture", str(cap), "--model", "digits",
                           "--out", str(out)], capture_output=True, text=True, check=True)
    assert "joined 30, unlabelled 50, orphan feedback 1" in done.stdout, done.stdout
    assert read_everywhere(out) == 80
    df = pd.read_parquet(out)
    assert {"prediction", "label", "version", "time", "id"} <= set(df.columns)
    features = [c for c in df.columns if c not in ("prediction", "label", "version", "time", "id")]
    assert len(features) == 64
    assert df["label"].notna().sum() == 30
    joined = duckdb.sql(f"select count(*) from read_parquet('{out}') where label is not null").fetchall()[0][0]
    assert joined == 30


def test_kill_9_while_writing_leaves_only_complete_closed_files(tmp_path):
    cap = tmp_path / "capture"
    server = Server(cap, "--capture-max-file-secs", "1")
    stop = threading.Event()
    sent = [0]

    def load():
        while not stop.is_set():
            try:
                server.post("/models/digits/predict", {"instances": digits_rows(8)})
            except OSError:  # the server was killed
                return
            sent[0] += 8

    workers = [threading.Thread(target=load) for _ in range(4)]
    for w in workers:
        w.start()
    deadline = time.monotonic() + WAIT_S
    while len(closed_files(cap)) < 3:  # files are rotating under load
        assert time.monotonic() < deadline, "no file was closed"
        time.sleep(0.05)
    server.proc.kill()
    server.proc.wait()
    stop.set()
    for w in workers:
        w.join(timeout=WAIT_S)

    files = closed_files(cap)
    captured = sum(read_everywhere(f) for f in files)  # every closed file is complete
    assert 0 < captured <= sent[0]
    leftovers = list(cap.rglob(".py-*.parquet.tmp"))
    # A restart of the same replica removes what the killed process left open.
    server = Server(cap)
    assert all(not p.exists() for p in leftovers)
    server.stop()
    assert [f for f in closed_files(cap) if f in files] == files


def test_json_lines_capture_is_read_by_pandas_and_duckdb_and_exported(tmp_path):
    cap = tmp_path / "capture"
    server = Server(cap, "--capture-format", "jsonl")
    ids = []
    for i in range(5):
        out = server.post("/models/digits/predict", {"instances": digits_rows(4), "id": f"j{i}"})
        ids += [p["id"] for p in out["predictions"]]
    server.post("/models/digits/feedback", {"feedback": [{"id": pid, "class_index": 3} for pid in ids[:7]]})
    server.stop()

    files = sorted(p for p in cap.rglob("*.jsonl.gz") if not p.name.startswith("."))
    predictions = [f for f in files if "/feedback/" not in str(f)]
    assert predictions and not list(cap.rglob("*.tmp")), files
    df = pd.concat(pd.read_json(f, lines=True, compression="gzip") for f in predictions)
    assert len(df) == 20
    features = [c for c in df.columns if c.startswith("feature_")]
    assert len(features) == 64
    assert {"id", "time", "model", "version", "prediction", "prediction_value"} <= set(df.columns)
    assert sorted(df["id"]) == sorted(ids)
    n_duck = sum(duckdb.sql(f"select count(*) from read_json_auto('{f}', format='newline_delimited')")
                 .fetchall()[0][0] for f in predictions)
    assert n_duck == 20

    out = tmp_path / "train.parquet"
    done = subprocess.run([_bin(), "export", "--capture", str(cap), "--model", "digits",
                           "--out", str(out)], capture_output=True, text=True, check=True)
    assert "joined 7, unlabelled 13, orphan feedback 0" in done.stdout, done.stdout
    assert read_everywhere(out) == 20


def penguins_rows():
    golden = json.loads((REPO / "models/penguins/1/golden.json").read_text())
    return golden["inputs"]


def test_string_and_integer_columns_keep_their_types_in_every_reader(tmp_path):
    """A DataFrame model (one graph input per column, island and sex strings): the capture files
    and the export hold the strings as strings and the integer columns as integers, in pyarrow,
    pandas and DuckDB alike, for Parquet and JSON lines."""
    rows = penguins_rows()[:6]
    for fmt in ("parquet", "jsonl"):
        cap = tmp_path / fmt
        server = Server(cap, "--capture-format", fmt)
        out = server.post("/models/penguins/predict", {"instances": rows, "id": "pg"})
        ids = [p["id"] for p in out["predictions"]]
        server.post("/models/penguins/feedback", {"feedback": [{"id": ids[0], "label": "Adelie"}]})
        server.stop()

        ext = ".parquet" if fmt == "parquet" else ".jsonl.gz"
        files = sorted(p for p in (cap / "penguins" / "1").rglob("*" + ext) if not p.name.startswith("."))
        assert len(files) == 1, files
        if fmt == "parquet":
            table = pq.read_table(files[0])
            assert str(table.schema.field("feature_island").type) == "string"
            assert str(table.schema.field("feature_flipper_length_mm").type) == "int64"
            assert str(table.schema.field("feature_bill_length_mm").type) == "double"
            df = pd.read_parquet(files[0])
            duck = duckdb.sql(f"select feature_island, feature_flipper_length_mm from read_parquet('{files[0]}')").fetchall()
        else:
            df = pd.read_json(files[0], lines=True, compression="gzip")
            duck = duckdb.sql(f"select feature_island, feature_flipper_length_mm from read_json_auto('{files[0]}', format='newline_delimited')").fetchall()
        assert list(df["feature_island"]) == [r["island"] for r in rows]
        assert list(df["feature_sex"]) == [r["sex"] for r in rows]
        assert list(df["feature_flipper_length_mm"]) == [int(r["flipper_length_mm"]) for r in rows]
        assert [d[0] for d in duck] == [r["island"] for r in rows]
        assert [d[1] for d in duck] == [int(r["flipper_length_mm"]) for r in rows]

        train = tmp_path / f"penguins-{fmt}.parquet"
        done = subprocess.run([_bin(), "export", "--capture", str(cap), "--model", "penguins",
                               "--out", str(train)], capture_output=True, text=True, check=True)
        assert "joined 1, unlabelled 5, orphan feedback 0" in done.stdout, done.stdout
        assert read_everywhere(train) == 6
        t = pq.read_table(train)
        assert str(t.schema.field("island").type) == "string"
        assert str(t.schema.field("flipper_length_mm").type) == "int64"
        df = pd.read_parquet(train)
        assert list(df["island"]) == [r["island"] for r in rows]
        assert df["label"].tolist().count("Adelie") == 1
        islands = duckdb.sql(f"select island from read_parquet('{train}') order by id").fetchall()
        assert sorted(i[0] for i in islands) == sorted(r["island"] for r in rows)
