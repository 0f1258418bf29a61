"""Deep models: tract and infera against onnxruntime, in one run (benches/deep_vs_onnxruntime.sh).

For a CNN classifier (ocr-cls), a detector (ocr-det) and a small transformer encoder (encoder)
from the zoo, at batch 1 and 8, each round measures in turn:
  (a) tract in process through the engine API at 1 and 2 intra-op threads (benches/deep.rs);
  (b) onnxruntime in process, one thread (intra_op_num_threads=1) and its default session;
  (c) infera over V2 binary tensors, one client, one request at a time (loadgen -c 1), with
      infera's defaults and bare model.onnx files (no model cards);
  (d) images/s (requests of one image or one sequence) under 64 concurrent requests through
      infera (loadgen -c 64) against onnxruntime in process with 2 caller threads (the better of
      a default session and a one-thread session shared by both callers).
Rounds interleave every measurement, so a burst of load from the other users of the machine
spreads over all of them; the spread across rounds is printed beside each median.

Writes the raw figures as JSON and a markdown table; prints the table.
"""

import argparse
import json
import queue
import re
import shutil
import signal
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

MODELS = {
    # name: (role, {input: (kind, shape after the batch)})
    "ocr-cls": ("CNN classifier (PP-OCR angle classifier)", {"x": ("f32", [3, 48, 192])}),
    "ocr-det": ("detector (PP-OCRv4 text detector), 320x320", {"x": ("f32", [3, 320, 320])}),
    "encoder": ("transformer encoder (generated), 64 tokens",
                {"input_ids": ("ids1000", [64]), "attention_mask": ("ones", [64])}),
}
BATCHES = (1, 8)
CONCURRENCY = 64


def make_inputs(spec, batch, seed=1):
    rng = np.random.default_rng(seed)
    out = {}
    for name, (kind, shape) in spec.items():
        dims = [batch, *shape]
        if kind == "f32":
            out[name] = rng.uniform(-1, 1, dims).astype(np.float32)
        elif kind == "ones":
            out[name] = np.ones(dims, np.int64)
        else:
            out[name] = rng.integers(1, int(kind[3:]), dims, dtype=np.int64)
    return out


def v2_binary_body(inputs):
    """A V2 request with binary input tensors and every output asked for as binary."""
    datatypes = {np.dtype(np.float32): "FP32", np.dtype(np.int64): "INT64"}
    header = {
        "inputs": [{"name": n, "shape": list(v.shape), "datatype": datatypes[v.dtype],
                    "parameters": {"binary_data_size": v.nbytes}} for n, v in inputs.items()],
        "parameters": {"binary_data_output": True},
    }
    head = json.dumps(header).encode()
    return head, head + b"".join(np.ascontiguousarray(v).tobytes() for v in inputs.values())


def median_ms(fn, secs):
    fn()
    times, started = [], time.perf_counter()
    while len(times) < 3 or time.perf_counter() - started < secs:
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def callers_per_second(session, inputs, secs, callers=2):
    """Calls per second with `callers` Python threads calling one session (ORT drops the GIL)."""
    session.run(None, inputs)
    stop = time.perf_counter() + secs
    counts = [0] * callers

    def loop(i):
        while time.perf_counter() < stop:
            session.run(None, inputs)
            counts[i] += 1

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(callers)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / (time.perf_counter() - started)


class Server:
    """The release binary on 127.0.0.1 port 0 with its defaults, serving `repo`."""

    def __init__(self, binary, repo):
        argv = [str(binary), "--host", "127.0.0.1", "--port", "0", "--grpc-port", "0",
                "--model-repository", str(repo), "--log-format", "json"]
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True, errors="replace")
        lines = queue.Queue()
        threading.Thread(target=lambda: [lines.put(x) for x in self.proc.stderr] and None,
                         daemon=True).start()
        deadline = time.monotonic() + 120
        self.addr = None
        while self.addr is None:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.stop()
                raise SystemExit("infera did not start")
            try:
                record = json.loads(lines.get(timeout=1))
            except (queue.Empty, ValueError):
                continue
            value = record.get("addr") if isinstance(record, dict) else None
            if isinstance(value, str) and re.fullmatch(r"[0-9.]+:\d+", value):
                self.addr = value

    def wait_ready(self, models):
        import urllib.request
        deadline = time.monotonic() + 300
        for m in models:
            while True:
                try:
                    with urllib.request.urlopen(f"http://{self.addr}/v2/models/{m}/ready") as r:
                        if r.status == 200:
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit(f"{m} not ready")
                time.sleep(0.2)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=30)


def loadgen(binary, url, body_file, head_len, connections, secs):
    out = subprocess.run(
        [str(binary), "--url", url, "--body", str(body_file), "--connections", str(connections),
         "--duration-secs", str(secs), "--warmup-secs", "0.5",
         "--header", "Content-Type: application/octet-stream",
         "--header", f"Inference-Header-Content-Length: {head_len}"],
        check=True, capture_output=True, text=True).stdout
    result = json.loads(out)
    if result["errors"] or set(result["status"]) - {"200"}:
        raise SystemExit(f"loadgen saw failures: {result}")
    return result


def tract(deep, path, spec, batch, secs):
    argv = [str(deep), "--model", str(path), "--threads", "1,2", "--rounds", "1",
            "--min-secs", str(secs)]
    for name, (kind, shape) in spec.items():
        argv += ["--input", f"{name}:{kind}:{'x'.join(map(str, [batch, *shape]))}"]
    figures = json.loads(subprocess.run(argv, check=True, capture_output=True,
                                        text=True).stdout)["threads"]
    return figures["1"][0], figures["2"][0]


def one_round(ctx, rnd, record):
    for model, (_, spec) in MODELS.items():
        path = ctx.repo / model / "1" / "model.onnx"
        for batch in BATCHES:
            key = f"{model}/{batch}"
            inputs = make_inputs(spec, batch)
            t1, t2 = tract(ctx.deep, path, spec, batch, ctx.secs)
            o1 = median_ms(lambda: ctx.ort1[model].run(None, inputs), ctx.secs)
            od = median_ms(lambda: ctx.ortd[model].run(None, inputs), ctx.secs)
            body = ctx.bodies[key]
            lg = loadgen(ctx.loadgen, ctx.url(model), body[0], body[1], 1, ctx.secs)
            if lg["latency_us"]["ok"]["count"] < 3:  # slow calls: measure for longer
                window = max(ctx.secs, 4 * max(t1, o1) / 1e3)
                lg = loadgen(ctx.loadgen, ctx.url(model), body[0], body[1], 1, window)
            v2 = lg["latency_us"]["ok"]["p50"] / 1e3
            for name, v in (("tract_1t", t1), ("tract_2t", t2), ("ort_1t", o1),
                            ("ort_default", od), ("infera_v2", v2)):
                record.setdefault(key, {}).setdefault(name, []).append(v)
            print(f"round {rnd} {key}: tract 1t {t1:.2f} 2t {t2:.2f} | ort 1t {o1:.2f} "
                  f"default {od:.2f} | infera V2 {v2:.2f} ms", flush=True)
        inputs = make_inputs(spec, 1)
        body = ctx.bodies[f"{model}/1"]
        lg = loadgen(ctx.loadgen, ctx.url(model), body[0], body[1], CONCURRENCY, ctx.secs * 2)
        infera_rps = lg["ok_rps"]
        ort_d = callers_per_second(ctx.ortd[model], inputs, ctx.secs)
        ort_1 = callers_per_second(ctx.ort1[model], inputs, ctx.secs)
        key = f"{model}/c{CONCURRENCY}"
        for name, v in (("infera_per_s", infera_rps), ("ort_default_2callers_per_s", ort_d),
                        ("ort_1t_2callers_per_s", ort_1)):
            record.setdefault(key, {}).setdefault(name, []).append(v)
        print(f"round {rnd} {key}: infera {infera_rps:.1f}/s | ort 2 callers default "
              f"{ort_d:.1f}/s, one-thread session {ort_1:.1f}/s", flush=True)


def spread(values):
    med = statistics.median(values)
    return med, (max(values) - min(values)) / med * 100 if med else 0.0


def table(record, rounds):
    rows = ["| model | batch | tract 1t ms | tract 2t ms | ort 1t ms | ort default ms | "
            "infera V2 ms | tract 1t / ort 1t | tract 2t / ort default | "
            "**infera V2 / ort default** (target <= 1.5) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for model in MODELS:
        for batch in BATCHES:
            r = record[f"{model}/{batch}"]
            m = {k: spread(v) for k, v in r.items()}
            cell = lambda k: f"{m[k][0]:.2f} ±{m[k][1] / 2:.0f}%"  # noqa: E731
            rows.append(
                f"| {model} | {batch} | {cell('tract_1t')} | {cell('tract_2t')} | "
                f"{cell('ort_1t')} | {cell('ort_default')} | {cell('infera_v2')} | "
                f"{m['tract_1t'][0] / m['ort_1t'][0]:.2f} | "
                f"{m['tract_2t'][0] / m['ort_default'][0]:.2f} | "
                f"**{m['infera_v2'][0] / m['ort_default'][0]:.2f}** |")
    rows += ["", f"| model | infera /s ({CONCURRENCY} concurrent V2 binary requests) | "
             "ort /s, 2 callers, default session | ort /s, 2 callers, 1-thread session | "
             "**best ort / infera** (target <= 1.3) |", "|---|---:|---:|---:|---:|"]
    for model in MODELS:
        r = record[f"{model}/c{CONCURRENCY}"]
        m = {k: spread(v) for k, v in r.items()}
        best = max(m["ort_default_2callers_per_s"][0], m["ort_1t_2callers_per_s"][0])
        rows.append(
            f"| {model} | {m['infera_per_s'][0]:.1f} ±{m['infera_per_s'][1] / 2:.0f}% | "
            f"{m['ort_default_2callers_per_s'][0]:.1f} | {m['ort_1t_2callers_per_s'][0]:.1f} | "
            f"**{best / m['infera_per_s'][0]:.2f}** |")
    rows.append(f"\nMedians of {rounds} interleaved rounds; ±: half the spread (max - min) "
                "across rounds, relative to the median.")
    return "\n".join(rows)


class Context:
    pass


def main():
    ap = argparse.ArgumentParser()
    for flag in ("--infera", "--deep", "--loadgen", "--zoo", "--out"):
        ap.add_argument(flag, required=True, type=Path)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--secs", type=float, default=2.0)
    args = ap.parse_args()
    ctx = Context()
    ctx.deep, ctx.loadgen, ctx.secs = args.deep, args.loadgen, args.secs
    work = Path(tempfile.mkdtemp(prefix="infera-deep-"))
    ctx.repo = work / "repo"
    for model in MODELS:  # bare model.onnx files: infera's defaults, no cards
        (ctx.repo / model / "1").mkdir(parents=True)
        shutil.copy(args.zoo / model / "1" / "model.onnx", ctx.repo / model / "1" / "model.onnx")
    one = ort.SessionOptions()
    one.intra_op_num_threads, one.inter_op_num_threads = 1, 1
    load = lambda m, o: ort.InferenceSession(  # noqa: E731
        str(ctx.repo / m / "1" / "model.onnx"), o, providers=["CPUExecutionProvider"])
    ctx.ort1 = {m: load(m, one) for m in MODELS}
    ctx.ortd = {m: load(m, ort.SessionOptions()) for m in MODELS}
    ctx.bodies = {}
    for model, (_, spec) in MODELS.items():
        for batch in BATCHES:
            head, body = v2_binary_body(make_inputs(spec, batch))
            f = work / f"{model}-{batch}.bin"
            f.write_bytes(body)
            ctx.bodies[f"{model}/{batch}"] = (f, len(head))
    server = Server(args.infera, ctx.repo)
    try:
        server.wait_ready(MODELS)
        ctx.url = lambda m: f"http://{server.addr}/v2/models/{m}/infer"
        record = {}
        for rnd in range(1, args.rounds + 1):
            one_round(ctx, rnd, record)
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    text = table(record, args.rounds)
    args.out.with_suffix(".json").write_text(json.dumps(record, indent=1))
    args.out.write_text(text + "\n")
    print("\n" + text)


if __name__ == "__main__":
    main()
