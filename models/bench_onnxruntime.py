#!/usr/bin/env python3
"""Time onnxruntime on every model of a model repository (the reference
numbers infera's own implementation is compared with).

    python models/bench_onnxruntime.py models/conformance
    python models/bench_onnxruntime.py models/conformance --batch 1 --batch 64 --json /tmp/ort.json
    python models/bench_onnxruntime.py models/conformance --only 'rf_*'

For every <repo>/<name>/<version>/model.onnx (highest version) with a
golden.json beside it, the script builds one onnxruntime InferenceSession
(CPUExecutionProvider, intra_op_num_threads=1, inter_op_num_threads=1,
graph_optimization_level=ORT_ENABLE_ALL) and, for every requested batch size
(default 1 and 64), feeds the first `batch` golden input rows (cycled if the
file has fewer) as float32 and times `sess.run(None, feed)`.

Timing is timeit-style: the number of calls per measurement is calibrated so
that one measurement takes at least --min-time seconds (default 0.2), then
--repeat measurements (default 5) are taken; the script reports, in
microseconds per call, the minimum (the best estimate of the cost) and the
median of those measurements.  Output is a table on stdout and, with --json,
a list of {"model", "batch", "calls", "min_us", "median_us"} records.

Needs only numpy and onnxruntime (e.g. the venv of
models/requirements-conformance.txt).  Pin the process to one core for
steadier numbers, e.g. `taskset -c 1 python models/bench_onnxruntime.py ...`.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort


def find_models(repo: Path) -> list[tuple[str, Path]]:
    found = []
    for d in sorted(p for p in repo.iterdir() if p.is_dir()):
        versions = sorted((v for v in d.iterdir() if v.is_dir() and v.name.isdigit()), key=lambda v: int(v.name))
        if versions and (versions[-1] / "model.onnx").exists() and (versions[-1] / "golden.json").exists():
            found.append((d.name, versions[-1]))
    return found


def session(model: Path) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    return ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])


def measure(fn, min_time: float, repeat: int) -> tuple[int, list[float]]:
    """timeit-style: calibrate `number` so one measurement lasts >= min_time,
    then return (number, [seconds per call] * repeat)."""
    fn()  # warm-up (first run allocates)
    number = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        elapsed = time.perf_counter() - t0
        if elapsed >= min_time:
            break
        number = max(number * 2, int(number * min_time / max(elapsed, 1e-9) * 1.1))
    times = [elapsed / number]
    for _ in range(repeat - 1):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        times.append((time.perf_counter() - t0) / number)
    return number, times


def feeds(golden: dict, batch: int, sess: ort.InferenceSession) -> dict:
    """The first `batch` golden instances (cycled): one [batch, width] array of float32 or
    strings, or, for instances that are objects (one input per DataFrame column), one [batch, 1]
    array per input."""
    rows = [golden["inputs"][i % len(golden["inputs"])] for i in range(batch)]

    def column(values, width):
        kind = object if all(isinstance(v, str) for v in values) else np.float32
        return np.asarray(values, dtype=kind).reshape(batch, width)

    if isinstance(rows[0], dict):
        return {i.name: column([r[i.name] for r in rows], 1) for i in sess.get_inputs()}
    return {golden["input"]: column([v for r in rows for v in r], len(rows[0]))}


def is_map_model(sess: ort.InferenceSession) -> bool:
    return [i.type.startswith("map(") for i in sess.get_inputs()] == [True]


def map_runs(golden: dict, batch: int, sess: ort.InferenceSession):
    """A map-input model (DictVectorizer, CastMap): onnxruntime takes one map per call, so a
    batch is `batch` calls, one per golden map (int keys back from their JSON names)."""
    name, kind = sess.get_inputs()[0].name, sess.get_inputs()[0].type
    rows = [golden["inputs"][i % len(golden["inputs"])] for i in range(batch)]
    if kind.startswith("map(int64"):
        rows = [{int(k): v for k, v in r.items()} for r in rows]
    feeds_ = [{name: r} for r in rows]
    return lambda: [sess.run(None, f) for f in feeds_]


def single_run(golden: dict, batch: int, sess: ort.InferenceSession):
    feed = feeds(golden, batch, sess)
    return lambda: sess.run(None, feed)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("repo", type=Path, help="model repository directory, e.g. models/conformance")
    ap.add_argument("--batch", type=int, action="append", help="batch size (repeatable; default 1 and 64)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--only", action="append", default=[], metavar="GLOB", help="only models whose name matches (repeatable)")
    ap.add_argument("--min-time", type=float, default=0.2, help="seconds per measurement (default 0.2)")
    ap.add_argument("--repeat", type=int, default=5, help="measurements per model and batch (default 5)")
    args = ap.parse_args()
    batches = args.batch or [1, 64]

    models = [(n, d) for n, d in find_models(args.repo) if not args.only or any(fnmatch.fnmatch(n, g) for g in args.only)]
    if not models:
        sys.exit(f"no <name>/<version>/model.onnx with golden.json under {args.repo}")
    print(f"onnxruntime {ort.__version__}, {len(models)} models, 1 thread, ORT_ENABLE_ALL")
    print(f"{'model':44} {'batch':>5} {'min us':>10} {'median us':>10} {'calls':>8}")
    results = []
    for name, d in models:
        golden = json.loads((d / "golden.json").read_text(encoding="utf-8"))
        sess = session(d / "model.onnx")
        for b in batches:
            run = map_runs(golden, b, sess) if is_map_model(sess) else single_run(golden, b, sess)
            calls, times = measure(run, args.min_time, args.repeat)
            r = {
                "model": name,
                "batch": b,
                "calls": calls,
                "min_us": round(min(times) * 1e6, 2),
                "median_us": round(statistics.median(times) * 1e6, 2),
            }
            results.append(r)
            print(f"{name:44} {b:>5} {r['min_us']:>10.2f} {r['median_us']:>10.2f} {calls:>8}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
