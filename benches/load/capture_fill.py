"""Fills a capture directory with N digits predictions (64 features each) and ground truth for
a tenth of them, through a running infera (`--capture-dir`). Used to measure `infera export`.

    benches/load/capture_fill.py ADDR N     (run from the repository root)
"""
import json, sys, urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

addr, n = sys.argv[1], int(sys.argv[2])
golden = json.loads(Path("models/digits/1/golden.json").read_text())
rows = [golden["inputs"][i % len(golden["inputs"])] for i in range(256)]
per = 256

def post(path, body):
    req = urllib.request.Request(f"http://{addr}{path}", data=json.dumps(body).encode(),
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())

def one(i):
    post("/models/digits/predict", {"instances": rows, "id": f"r{i}"})
    # Ground truth for a tenth of the rows.
    post("/models/digits/feedback",
         {"feedback": [{"id": f"r{i}/{j}", "class_index": j % 10} for j in range(0, per, 10)]})

with ThreadPoolExecutor(8) as ex:
    list(ex.map(one, range(n // per)))
print("requests", n // per, "rows", n // per * per)
