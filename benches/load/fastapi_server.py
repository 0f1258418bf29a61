#!/usr/bin/env python3
"""The Python peer for infera's load benchmarks: FastAPI + uvicorn + onnxruntime.

This is the server a Python team would deploy for the same job, set up the way a
team that cares about speed would: uvicorn with uvloop and httptools, no access
log, request bodies parsed with orjson (not stdlib json or pydantic models),
responses written with orjson straight from the numpy arrays, one onnxruntime
session per model per worker process.

Usage (from the repository root; install benches/load/requirements.txt first):

    python benches/load/fastapi_server.py --models models/digits \
        [--models models/bench/cnn ...] [--host 127.0.0.1] [--port 8000] [--workers 1]

--models DIR (repeatable) is either a model directory `<repo>/<name>` holding
numbered versions (`<name>/<version>/model.onnx`), or a model repository holding
such directories (every model in it is served; nested directories with their
own repository.toml are skipped, as infera does).  The highest version is served,
under the directory's name.  --workers N starts N uvicorn worker processes
(uvicorn's multi-process mode: the app is given as the import string
"fastapi_server:app" and the workers share one listening socket); the model list
reaches them through the environment variable INFERA_PEER_CONFIG (JSON), which
this script sets before it starts uvicorn.

Endpoints, the same shapes as infera's:

    GET  /health                 200 {"status": "ok"}
    POST /models/{name}/predict  {"instances": [...]}
         -> 200 {"model": name, "version": v,
                 "predictions": [{"label": "3", "class_index": 3,
                                  "confidence": 0.97, "probabilities": [...]}]}

An instance is one input row in the model's row shape: for digits a list of 64
numbers, for the benchmark CNN a nested [3][64][64] list (a flat list of
3*64*64 numbers is accepted too, as infera does).  A body that is not JSON, an
`instances` that is not a non-empty list (at most 1024 items, infera's default
limit), ragged or non-numeric instances, the wrong row shape or non-finite
values get 422 with {"error": ..., "error_type": ...}; an unknown model gets 404.
Labels are the class index as a string (the example models' classes are 0..C-1).
Not checked, to keep the hot path as lean as a real deployment would: numeric
strings such as "1.5" are converted by numpy instead of rejected.

Threads: every onnxruntime session runs with intra_op_num_threads=1 and
inter_op_num_threads=1.  The benchmark machine has 2 cores; the fair split is
one inference at a time per worker process, each on one thread, and scaling by
--workers (like infera's one inference per worker thread).  onnxruntime's default
(one intra-op thread per core) would make every worker fight the others and
uvicorn's event loop for the same 2 cores.

Handler: `async def`, running the session directly on the event loop (the
default, --handler async), or a sync `def` that FastAPI runs in its threadpool
(--handler sync; the body is still read and parsed by an async dependency).
Measured on the 2-core machine, idle, wrk -t2 -c64 for 5 s, digits, one
instance per request: async 3,580 req/s with 1 worker and 5,780 with 2; sync
1,740 and 3,570.  The threadpool hop costs more than the ~15 us inference it
moves off the loop.  The sync variant also lets one worker run several
inferences at once on threadpool threads (onnxruntime releases the GIL), which
breaks the one-inference-per-worker split above.

FastAPI's own per-request work (dependency solving, exit stacks, endpoint
context) is most of the cost for small models: in the same process a plain
Starlette route doing the same work served ~4,900 req/s with 1 worker and
/health ~7,500.  The route stays a FastAPI route because that is what a team
deploys.
"""

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import onnxruntime as ort
import orjson
from fastapi import Depends, FastAPI, Request
from fastapi.responses import Response

CONFIG_ENV = "INFERA_PEER_CONFIG"
MAX_INSTANCES = 1024


# --------------------------------------------------------------------------
# Model discovery (parent process only: plain paths, no onnxruntime)
# --------------------------------------------------------------------------


def _versions(model_dir: Path) -> list[int]:
    return sorted(
        int(p.name)
        for p in model_dir.iterdir()
        if p.is_dir() and p.name.isdigit() and int(p.name) > 0 and (p / "model.onnx").is_file()
    )


def discover(dirs: list[str]) -> dict[str, dict]:
    """--models arguments -> {name: {"path": ".../model.onnx", "version": v}}."""
    found: dict[str, dict] = {}

    def add(model_dir: Path) -> None:
        versions = _versions(model_dir)
        if not versions:
            return
        name = model_dir.name
        if name in found:
            sys.exit(f"model {name!r} given twice ({found[name]['path']} and {model_dir})")
        v = versions[-1]
        found[name] = {"path": str((model_dir / str(v) / "model.onnx").resolve()), "version": v}

    for d in map(Path, dirs):
        if not d.is_dir():
            sys.exit(f"--models {d}: not a directory")
        if _versions(d):
            add(d)
            continue
        for sub in sorted(p for p in d.iterdir() if p.is_dir()):
            if not (sub / "repository.toml").exists():
                add(sub)
    if not found:
        sys.exit(f"no model found in {dirs} (expected <name>/<version>/model.onnx)")
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description="FastAPI + onnxruntime peer server for infera's load benchmarks")
    ap.add_argument(
        "--models",
        action="append",
        required=True,
        metavar="DIR",
        help="model directory <repo>/<name> or a repository of them (repeatable)",
    )
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    ap.add_argument(
        "--handler",
        choices=("async", "sync"),
        default="async",
        help="async def on the event loop (default) or sync def in FastAPI's threadpool",
    )
    args = ap.parse_args()

    models = discover(args.models)
    os.environ[CONFIG_ENV] = json.dumps({"models": models, "handler": args.handler})
    for name, m in models.items():
        print(f"serving {name} v{m['version']} from {m['path']}", flush=True)

    import uvicorn  # only the parent process needs it

    uvicorn.run(
        "fastapi_server:app",
        app_dir=str(Path(__file__).resolve().parent),
        host=args.host,
        port=args.port,
        workers=args.workers,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
    )


# --------------------------------------------------------------------------
# The app (imported by each uvicorn worker; configured from the environment)
# --------------------------------------------------------------------------


def _create_app() -> FastAPI:
    class OrjsonResponse(Response):
        # What fastapi.responses.ORJSONResponse does; that class is deprecated in the pinned
        # FastAPI (0.165, FastAPIDeprecationWarning), so its two lines live here.
        media_type = "application/json"

        def render(self, content) -> bytes:
            return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)

    class ClientError(Exception):
        def __init__(self, status: int, error_type: str, message: str):
            self.status, self.error_type, self.message = status, error_type, message

    class Model:
        def __init__(self, name: str, path: str, version: int):
            so = ort.SessionOptions()
            so.intra_op_num_threads = 1
            so.inter_op_num_threads = 1
            self.name, self.version = name, version
            self.session = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
            (inp,) = self.session.get_inputs()
            self.input = inp.name
            self.row_shape = tuple(int(d) for d in inp.shape[1:])
            self.row_size = int(np.prod(self.row_shape))
            outs = {o.type: o.name for o in reversed(self.session.get_outputs())}
            if "tensor(int64)" not in outs or "tensor(float)" not in outs:
                raise RuntimeError(f"{path}: expected an int64 label and a float probabilities output")
            self.label_out, self.proba_out = outs["tensor(int64)"], outs["tensor(float)"]
            self.outputs = [self.label_out, self.proba_out]

        def decode(self, body) -> np.ndarray:
            instances = body.get("instances") if isinstance(body, dict) else None
            if not isinstance(instances, list) or not instances:
                raise ClientError(422, "invalid_request", "`instances` must be a non-empty list")
            if len(instances) > MAX_INSTANCES:
                raise ClientError(
                    422,
                    "too_many_instances",
                    f"{len(instances)} instances; at most {MAX_INSTANCES} per request",
                )
            try:
                x = np.asarray(instances, dtype=np.float32)
            except (ValueError, TypeError) as e:
                raise ClientError(
                    422, "wrong_type", f"instances are not numeric arrays of one shape: {e}"
                ) from None
            if x.shape[1:] != self.row_shape:
                if x.ndim == 2 and x.shape[1] == self.row_size:  # flat rows, as infera accepts
                    x = x.reshape((len(x),) + self.row_shape)
                else:
                    raise ClientError(
                        422,
                        "wrong_shape",
                        f"each instance must have shape {list(self.row_shape)}, got {list(x.shape[1:])}",
                    )
            if not np.isfinite(x).all():
                raise ClientError(422, "non_finite_value", "instances contain non-finite values")
            return x

        def predict(self, x: np.ndarray) -> dict:
            label, proba = self.session.run(self.outputs, {self.input: x})
            rows = range(len(label))
            return {
                "model": self.name,
                "version": self.version,
                "predictions": [
                    {
                        "label": str(int(label[i])),
                        "class_index": int(label[i]),
                        "confidence": proba[i, label[i]],  # np.float32: orjson writes it like infera
                        "probabilities": proba[i],
                    }
                    for i in rows
                ],
            }

    raw = os.environ.get(CONFIG_ENV)
    if not raw:
        raise RuntimeError(f"{CONFIG_ENV} is not set: start the server with `python fastapi_server.py ...`")
    config = json.loads(raw)
    models = {name: Model(name, m["path"], m["version"]) for name, m in config["models"].items()}

    # FastAPI 0.165 has native OpenTelemetry hooks, on by default.  With no OpenTelemetry SDK
    # configured they record nothing but still cost a little per request: switched off.
    telemetry = {"tracing": False, "metrics": False, "logs": False, "operation_spans": False}
    app = FastAPI(
        title="infera peer: FastAPI + onnxruntime",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        default_response_class=OrjsonResponse,
        telemetry=telemetry,
    )

    @app.exception_handler(ClientError)
    async def client_error(_request: Request, e: ClientError) -> Response:
        return OrjsonResponse({"error": e.message, "error_type": e.error_type}, status_code=e.status)

    def lookup(name: str) -> Model:
        model = models.get(name)
        if model is None:
            raise ClientError(404, "model_not_found", f"no model named {name!r}; models: {sorted(models)}")
        return model

    async def parsed_body(request: Request):
        try:
            return orjson.loads(await request.body())
        except orjson.JSONDecodeError as e:
            raise ClientError(422, "invalid_json", f"the body is not valid JSON: {e}") from None

    @app.get("/health")
    async def health() -> Response:
        return OrjsonResponse({"status": "ok"})

    if config.get("handler", "async") == "async":

        @app.post("/models/{name}/predict")
        async def predict(name: str, request: Request) -> Response:
            model = lookup(name)
            return OrjsonResponse(model.predict(model.decode(await parsed_body(request))))

    else:

        @app.post("/models/{name}/predict")
        def predict(name: str, body: Annotated[Any, Depends(parsed_body)]) -> Response:
            model = lookup(name)
            return OrjsonResponse(model.predict(model.decode(body)))

    return app


if __name__ == "__main__":
    main()
else:
    app = _create_app()
