"""Checks behind tests/deploy/run (stdlib, PyYAML, and grpcio for the gRPC check). Each subcommand exits non-zero with a
message naming what is wrong.

  manifests BASE OVERLAY KSERVE DOCKERFILE   semantic checks of rendered Kubernetes manifests
  kserve-pod KSERVE OUT                      the InferenceService's predictor as a Pod, for a schema validator
  compose-mounts CONFIG_JSON                 every bind mount of `docker compose config` exists
  dashboard-lint DASHBOARD                   structure of the Grafana dashboard
  free-port                                  a free TCP port on 127.0.0.1
  wait-ready URL TIMEOUT_S                   poll URL until 200; print seconds waited
  smoke BASE_URL                             /health, /predict, /models, /metrics through the port
  repo-models BASE_URL NAME...               GET /models lists exactly NAME...
  grpc HOST:PORT                             health, ServerLive, ModelReady, ModelInfer and auth over gRPC
  prometheus PROM_URL INFERA_URL DASHBOARD MODELS_DIR [--alerts]
                                             traffic, then every dashboard query against Prometheus
"""

import json
import os
import re
import socket
import sys
import time
import tomllib
import urllib.error
import urllib.parse
import urllib.request

import yaml


def fail(msg):
    print(f"FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def read_json(path):
    with open(path) as f:
        return json.load(f)


def http(method, url, body=None, timeout=10):
    data = None
    headers = {}
    # The container under test requires an API key (see tests/deploy/run).
    if os.environ.get("INFERA_TEST_KEY"):
        headers["authorization"] = f"Bearer {os.environ['INFERA_TEST_KEY']}"
    if body is not None:
        data = json.dumps(body).encode()
        headers["content-type"] = "application/json"
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def http_json(method, url, body=None, expect=200):
    status, raw = http(method, url, body)
    if status != expect:
        fail(f"{method} {url}: expected {expect}, got {status}: {raw[:300]!r}")
    return json.loads(raw)


# ---- Kubernetes ---------------------------------------------------------------------------------


def load_docs(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def env_of(container, configmaps):
    env = {}
    for src in container.get("envFrom", []):
        name = src.get("configMapRef", {}).get("name")
        if name not in configmaps:
            fail(f"envFrom names config map {name!r}, which the manifests do not define")
        env.update(configmaps[name])
    for e in container.get("env", []):
        env[e["name"]] = e.get("value")
    return env


def check_pod(where, pod, env, image_user):
    """Probes, security and shutdown timing of infera's pod spec."""
    c = pod["containers"][0]
    probes = {
        k: c.get(k, {}).get("httpGet", {}).get("path") for k in ("livenessProbe", "readinessProbe")
    }
    if probes["livenessProbe"] not in ("/health/live", "/v2/health/live"):
        fail(f"{where}: liveness probe must GET /health/live, has {probes['livenessProbe']}")
    if probes["readinessProbe"] not in ("/health/ready", "/v2/health/ready"):
        fail(f"{where}: readiness probe must GET /health/ready, has {probes['readinessProbe']}")
    port = str(env.get("INFERA_PORT", "8080"))
    want = [port] + ([str(env["INFERA_GRPC_PORT"])] if env.get("INFERA_GRPC_PORT") else [])
    ports = c.get("ports", [])
    if [str(p["containerPort"]) for p in ports] != want:
        fail(f"{where}: container ports {ports} do not match INFERA_PORT (+ INFERA_GRPC_PORT) {want}")
    if env.get("INFERA_HOST") != "0.0.0.0":
        fail(f"{where}: INFERA_HOST must be 0.0.0.0 in a pod, is {env.get('INFERA_HOST')!r}")
    keys = env.get("INFERA_API_KEYS_FILE")
    mounts = {m["name"]: m["mountPath"] for m in c.get("volumeMounts", [])}
    secrets = {v["name"] for v in pod.get("volumes", []) if "secret" in v}
    keyed = keys and any(
        keys.startswith(path.rstrip("/") + "/") and name in secrets for name, path in mounts.items()
    )
    if not keyed and env.get("INFERA_ALLOW_UNAUTHENTICATED") != "true":
        fail(f"{where}: a pod serving 0.0.0.0 needs INFERA_API_KEYS_FILE on a mounted Secret")
    sc = {**pod.get("securityContext", {}), **c.get("securityContext", {})}
    for key, want in (
        ("runAsNonRoot", True),
        ("readOnlyRootFilesystem", True),
        ("allowPrivilegeEscalation", False),
    ):
        if sc.get(key) is not want:
            fail(f"{where}: securityContext.{key} must be {want}")
    if "ALL" not in sc.get("capabilities", {}).get("drop", []):
        fail(f"{where}: capabilities must drop ALL")
    if str(sc.get("runAsUser")) != image_user:
        fail(f"{where}: runAsUser {sc.get('runAsUser')} differs from the image's USER {image_user}")
    res = c.get("resources", {})
    if not res.get("requests", {}).get("cpu") or not res.get("limits", {}).get("memory"):
        fail(f"{where}: needs a CPU request (for the HPA) and a memory limit")
    grace = int(env.get("INFERA_SHUTDOWN_GRACE_SECS", 20))
    pre_stop = c.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    period = pod.get("terminationGracePeriodSeconds", 30)
    if not pre_stop + grace < period:
        fail(
            f"{where}: preStop {pre_stop}s + INFERA_SHUTDOWN_GRACE_SECS {grace}s must be below "
            f"terminationGracePeriodSeconds {period}s"
        )
    return f"grace {pre_stop}+{grace}s < {period}s"


def image_user(dockerfile):
    with open(dockerfile) as f:
        users = re.findall(r"^USER\s+(\S+)", f.read(), re.MULTILINE)
    if not users:
        fail("Dockerfile sets no USER")
    return users[-1].split(":")[0]


def cmd_manifests(base, overlay, kserve, dockerfile):
    user = image_user(dockerfile)
    for path in (base, overlay):
        docs = load_docs(path)
        kinds = {}
        for d in docs:
            kinds.setdefault(d["kind"], []).append(d)
        for kind in (
            "Deployment",
            "Service",
            "HorizontalPodAutoscaler",
            "PodDisruptionBudget",
            "ConfigMap",
        ):
            if len(kinds.get(kind, [])) != 1:
                fail(f"{path}: expected one {kind}, found {len(kinds.get(kind, []))}")
        cms = {d["metadata"]["name"]: d.get("data", {}) for d in kinds["ConfigMap"]}
        dep = kinds["Deployment"][0]
        pod = dep["spec"]["template"]["spec"]
        labels = dep["spec"]["template"]["metadata"]["labels"]
        if dep["spec"]["selector"]["matchLabels"].items() - labels.items():
            fail(f"{path}: Deployment selector does not match its pod labels")
        ann = dep["spec"]["template"]["metadata"].get("annotations", {})
        env = env_of(pod["containers"][0], cms)
        if (
            ann.get("prometheus.io/scrape") != "true"
            or ann.get("prometheus.io/path") != "/metrics"
            or ann.get("prometheus.io/port") != str(env.get("INFERA_PORT"))
        ):
            fail(
                f"{path}: pod needs prometheus.io scrape/path/port annotations matching INFERA_PORT"
            )
        timing = check_pod(path, pod, env, user)
        svc = kinds["Service"][0]
        if svc["spec"]["selector"].items() - labels.items():
            fail(f"{path}: Service selector does not match the pods")
        pdb = kinds["PodDisruptionBudget"][0]
        if pdb["spec"]["selector"]["matchLabels"].items() - labels.items():
            fail(f"{path}: PodDisruptionBudget selector does not match the pods")
        hpa = kinds["HorizontalPodAutoscaler"][0]
        ref = hpa["spec"]["scaleTargetRef"]
        if (ref["kind"], ref["name"]) != ("Deployment", dep["metadata"]["name"]):
            fail(f"{path}: HPA targets {ref}, not the Deployment")
        if hpa["spec"]["minReplicas"] < 2:
            fail(f"{path}: HPA minReplicas < 2 leaves the PodDisruptionBudget nothing to protect")
        print(
            f"  ok    {path}: {len(docs)} objects; probes, security context, {timing}, "
            f"selectors, HPA -> {dep['metadata']['name']}, scrape annotations"
        )
    (isvc,) = load_docs(kserve)
    if (isvc["apiVersion"], isvc["kind"]) != ("serving.kserve.io/v1beta1", "InferenceService"):
        fail(f"{kserve}: not a serving.kserve.io/v1beta1 InferenceService")
    pred = isvc["spec"]["predictor"]
    c = pred["containers"][0]
    if c["name"] != "kserve-container":
        fail(f"{kserve}: KServe expects the predictor container to be named kserve-container")
    timing = check_pod(kserve, pred, env_of(c, {}), user)
    print(f"  ok    {kserve}: InferenceService predictor; probes, security context, {timing}")


def cmd_kserve_pod(kserve, out):
    """The predictor's pod-level fields and containers, as a Pod a schema validator knows."""
    (isvc,) = load_docs(kserve)
    pred = dict(isvc["spec"]["predictor"])
    for key in (
        "minReplicas",
        "maxReplicas",
        "scaleMetric",
        "scaleTarget",
        "containerConcurrency",
        "timeout",
        "canaryTrafficPercent",
        "logger",
        "batcher",
        "model",
        "labels",
        "annotations",
        "deploymentStrategy",
    ):
        pred.pop(key, None)
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": isvc["metadata"]["name"]},
        "spec": pred,
    }
    with open(out, "w") as f:
        yaml.safe_dump(pod, f)


# ---- compose and dashboard ----------------------------------------------------------------------


def cmd_compose_mounts(config_json):
    cfg = read_json(config_json)
    n = 0
    for name, svc in cfg["services"].items():
        for v in svc.get("volumes", []):
            if v.get("type") == "bind":
                n += 1
                if not os.path.exists(v["source"]):
                    fail(f"compose service {name}: bind mount source {v['source']} does not exist")
    home = cfg["services"]["grafana"]["environment"].get(
        "GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"
    )
    mounted = {
        v["target"]: v["source"]
        for v in cfg["services"]["grafana"]["volumes"]
        if v.get("type") == "bind"
    }
    if home:
        d = os.path.dirname(home)
        if d not in mounted or not os.path.exists(os.path.join(mounted[d], os.path.basename(home))):
            fail(f"Grafana home dashboard {home} is not in a mounted directory")
    print(f"  ok    {n} bind mounts exist; Grafana home dashboard is mounted")


def dashboard_queries(dashboard):
    """(panel title, refId, expr) for every query in the dashboard, template variables included."""
    out = []

    def walk(panels):
        for p in panels:
            for t in p.get("targets", []):
                if t.get("expr"):
                    out.append((p["title"], t["refId"], t["expr"]))
            walk(p.get("panels", []))

    walk(dashboard["panels"])
    for v in dashboard.get("templating", {}).get("list", []):
        if v.get("type") == "query":
            q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
            out.append((f"variable ${v['name']}", "var", q))
    return out


def cmd_dashboard_lint(path):
    d = read_json(path)
    ids = []
    datasources = set()

    def walk(panels):
        for p in panels:
            ids.append(p["id"])
            if p["type"] != "row":
                if not p.get("targets"):
                    fail(f"panel {p['title']!r} has no queries")
                datasources.add(json.dumps(p.get("datasource"), sort_keys=True))
                for t in p["targets"]:
                    datasources.add(json.dumps(t.get("datasource"), sort_keys=True))
            walk(p.get("panels", []))

    walk(d["panels"])
    if len(ids) != len(set(ids)):
        fail("panel ids are not unique")
    want = json.dumps({"type": "prometheus", "uid": "${datasource}"}, sort_keys=True)
    if datasources != {want}:
        fail(f"every panel and query must use the $datasource variable, found {datasources}")
    names = {v["name"] for v in d["templating"]["list"]}
    for _, _, expr in dashboard_queries(d):
        for var in re.findall(r"\$\{?(\w+)", expr):
            if var not in names and not var.startswith("__"):
                fail(f"query uses undefined variable ${var}: {expr}")
    print(
        f"  ok    {path}: {len(ids)} panels, {len(dashboard_queries(d))} queries, "
        f"all on the provisioned Prometheus datasource"
    )


# ---- the running server -------------------------------------------------------------------------


def cmd_status(method, url):
    """Prints the status code of an empty-bodied request."""
    print(http(method, url, body={})[0])


def cmd_free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        print(s.getsockname()[1])


def cmd_wait_ready(url, timeout):
    start = time.monotonic()
    while time.monotonic() - start < float(timeout):
        try:
            if http("GET", url, timeout=1)[0] == 200:
                print(f"{time.monotonic() - start:.3f}")
                return
        except OSError:
            pass
        time.sleep(0.02)
    fail(f"{url} not ready after {timeout} s")


def golden_inputs(models_dir, model):
    with open(os.path.join(models_dir, model, "1", "golden.json")) as f:
        return json.load(f)["inputs"]


def cmd_smoke(base):
    live = http_json("GET", f"{base}/health/live")
    r = http_json(
        "POST", f"{base}/predict", {"instances": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}
    )
    labels = [p.get("label") for p in r["predictions"]]
    if r["model"] != "iris" or labels != ["setosa", "virginica"]:
        fail(f"POST /predict answered {r}")
    bad = http("POST", f"{base}/predict", {"instances": [[5.1, 3.5, 1.4, 99]]})
    if bad[0] != 422 or json.loads(bad[1]).get("error_type") != "out_of_range":
        fail(f"out-of-range instance answered {bad}")
    status, metrics = http("GET", f"{base}/metrics")
    text = metrics.decode()
    for needle in (
        'infera_http_requests_total{method="POST",route="/predict",status="200"}',
        'infera_model_instances_total{model="iris",protocol="http",version="1"}',
        "infera_build_info{",
    ):
        if status != 200 or needle not in text:
            fail(f"GET /metrics ({status}) lacks {needle}")
    docs = http("GET", f"{base}/docs/")
    if docs[0] != 200:
        fail(f"GET /docs/ answered {docs[0]}")
    print(
        f"  ok    /health/live {live}, POST /predict -> {labels}, 422 out_of_range, "
        f"/metrics ({len(text.splitlines())} lines), /docs/"
    )


def cmd_grpc(addr):
    import grpc_check

    grpc_check.check(addr, fail)


def cmd_repo_models(base, *names):
    got = http_json("GET", f"{base}/models")
    listed = sorted(m["name"] for m in (got["models"] if isinstance(got, dict) else got))
    if listed != sorted(names):
        fail(f"GET /models lists {listed}, expected {sorted(names)}")
    print(f"  ok    the mounted repository is served: {listed}")


# ---- Prometheus and the dashboard ----------------------------------------------------------------


def prom(prom_url, path, **params):
    url = f"{prom_url}{path}"
    if params:
        url += "?" + urllib.parse.urlencode(params)
    status, raw = http("GET", url)
    body = json.loads(raw)
    return status, body


def wait_for_scrape(prom_url, timeout=60):
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        _, body = prom(prom_url, "/api/v1/targets")
        targets = body.get("data", {}).get("activeTargets", [])
        if targets and all(t["health"] == "up" for t in targets):
            return time.monotonic() - start
        time.sleep(0.25)
    fail(f"Prometheus did not scrape infera within {timeout} s: {targets}")


def last_scrapes(prom_url):
    _, body = prom(prom_url, "/api/v1/targets")
    return [(t.get("lastScrape"), t["health"]) for t in body["data"]["activeTargets"]]


def scrapes_after(prom_url, before, count=2, timeout=30):
    """Waits until the target has been scraped `count` more times since `before` was read."""
    start = time.monotonic()
    seen = set()
    while time.monotonic() - start < timeout:
        for scrape, health in last_scrapes(prom_url):
            if scrape not in before and health == "up":
                seen.add(scrape)
        if len(seen) >= count:
            return
        time.sleep(0.2)
    fail(f"fewer than {count} scrapes after the traffic within {timeout} s")


def monitoring_settings(models_dir, model):
    with open(os.path.join(models_dir, model, "model.toml"), "rb") as f:
        return tomllib.load(f).get("monitoring", {})


def card_has(models_dir, model, section):
    with open(os.path.join(models_dir, model, "model.toml"), "rb") as f:
        return section in tomllib.load(f)


def send_traffic(infera, models_dir, models, rounds_instances):
    """Valid predictions for every model (golden inputs), feedback for them, and a few errors."""
    predicted = {}
    for model in models:
        rows = golden_inputs(models_dir, model)
        want = rounds_instances[model]
        sent = 0
        while sent < want:
            batch = [rows[(sent + i) % len(rows)] for i in range(min(100, want - sent))]
            r = http_json("POST", f"{infera}/models/{model}/predict", {"instances": batch})
            predicted.setdefault(model, []).extend(r["predictions"])
            sent += len(batch)
    # Ground truth for some predictions: the predicted answer for most, a wrong one for a few.
    for model, preds in predicted.items():
        items = []
        for i, p in enumerate(preds[:200]):
            if "class_index" in p:
                right = p["class_index"]
                n = len(p.get("probabilities") or [0, 0]) or 2
                items.append({"id": p["id"], "class_index": right if i % 10 else (right + 1) % n})
            elif "value" in p:
                items.append({"id": p["id"], "value": p["value"] + (5.0 if i % 2 else -3.0)})
        if items:
            http_json("POST", f"{infera}/models/{model}/feedback", {"feedback": items})
    http_json(
        "POST",
        f"{infera}/models/iris/feedback",
        {"feedback": [{"id": "never-predicted/0", "label": "setosa"}]},
    )
    # Client errors: a contract violation (422, a predict failure), an unknown model (404).
    for body, url, code in (
        ({"instances": [[5.1, 3.5, 1.4, 99]]}, "/predict", 422),
        ({"instances": [[1, 2, 3, 4]]}, "/models/no-such-model/predict", 404),
    ):
        status, _ = http("POST", f"{infera}{url}", body)
        if status != code:
            fail(f"POST {url} answered {status}, expected {code}")


def substitute(expr, rate_interval):
    expr = expr.replace("$__rate_interval", rate_interval).replace(
        "${__rate_interval}", rate_interval
    )
    expr = re.sub(r"\$\{?model(:\w+)?\}?", ".*", expr)
    return expr


def cmd_prometheus(prom_url, infera, dashboard_path, models_dir, *flags):
    dashboard = read_json(dashboard_path)
    models = sorted(
        m
        for m in os.listdir(models_dir)
        if os.path.isfile(os.path.join(models_dir, m, "model.toml"))
    )
    waited = wait_for_scrape(prom_url)
    print(f"  ok    Prometheus scrapes infera (first successful scrape after {waited:.1f} s)")

    # Enough instances to fill a drift window (a quarter window is compared at a time) for models
    # with a training profile.
    profiles = {
        m
        for m in models
        if any(
            os.path.isfile(os.path.join(models_dir, m, v, "profile.json"))
            for v in os.listdir(os.path.join(models_dir, m))
            if v.isdigit()
        )
    }
    instances = {}
    for m in models:
        window = int(monitoring_settings(models_dir, m).get("drift_window", 1000))
        instances[m] = int(window * 1.3) if m in profiles else 200
    for _ in range(2):
        send_traffic(infera, models_dir, models, instances)
        scrapes_after(prom_url, {s for s, _ in last_scrapes(prom_url)})
    print(
        f"  ok    traffic sent: {sum(instances.values()) * 2} instances over {', '.join(models)}, "
        f"feedback, 422s and 404s; scraped twice since"
    )

    # Which series can exist in this repository: targets only when a card sets them, drift only
    # with a profile.json.
    cards = {m: monitoring_settings(models_dir, m) for m in models}
    optional = {
        "infera_model_accuracy_target": (
            not any("accuracy_target" in c for c in cards.values()),
            "no model card sets monitoring.accuracy_target",
        ),
        "infera_model_mae_target": (
            not any("mae_target" in c for c in cards.values()),
            "no model card sets monitoring.mae_target",
        ),
        "infera_feature_drift_psi": (not profiles, "no model version has a profile.json"),
        "infera_prediction_drift_psi": (not profiles, "no model version has a profile.json"),
        "infera_rate_limited_total": (True, "the test container sets no rate limit"),
        "infera_shadow_": (
            not any(card_has(models_dir, m, "shadow") for m in models),
            "no model card sets [shadow] (the admin API is off without an admin key)",
        ),
        "infera_canary_": (
            not any(card_has(models_dir, m, "canary") for m in models),
            "no model card sets [canary] (the admin API is off without an admin key)",
        ),
    }
    # The feedback sent above gives known answers: every tenth class wrong, regression values off
    # by 5 and 3 in turn.
    expected = {
        ("Live accuracy vs target", "A"): (0.85, 0.95, "accuracy 0.9"),
        ("Live mean absolute error vs target", "A"): (3.9, 4.1, "MAE 4"),
    }
    data, parse_only = [], []
    for title, ref, expr in dashboard_queries(dashboard):
        m = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", expr.strip())
        if m:
            status, body = prom(
                prom_url, f"/api/v1/label/{m.group(2)}/values", **{"match[]": m.group(1)}
            )
            result = body.get("data") or []
        else:
            q = substitute(expr, "30s")
            status, body = prom(prom_url, "/api/v1/query", query=q)
            if body.get("status") != "success":
                fail(f"panel {title!r} query {ref} does not run: {body.get('error')}\n  {q}")
            result = body["data"]["result"]
        if status != 200:
            fail(f"panel {title!r} query {ref}: HTTP {status}")
        label = f"{title} [{ref}]"
        if result and (title, ref) in expected:
            lo, hi, what = expected[(title, ref)]
            values = {r["metric"].get("model"): float(r["value"][1]) for r in result}
            if not all(lo <= v <= hi for v in values.values()):
                fail(f"panel {title!r} query {ref} shows {values}; the feedback sent means {what}")
            label += f": {', '.join(f'{m} {v:.3g}' for m, v in sorted(values.items()))} as the feedback implies"
        if result:
            data.append(label)
            continue
        reason = next(
            (why for metric, (allowed, why) in optional.items() if metric in expr and allowed), None
        )
        if reason is None:
            fail(f"panel {title!r} query {ref} returned no data after traffic:\n  {expr}")
        parse_only.append(f"{label}: {reason}")
    print(f"  ok    {len(data)} dashboard queries parsed and returned data:")
    for d in data:
        print(f"          {d}")
    if parse_only:
        print(f"  ok    {len(parse_only)} parsed, no data possible in this repository:")
        for d in parse_only:
            print(f"          {d}")

    if "--alerts" in flags:
        # Evaluated at least twice since the traffic (evaluation_interval is 1 s in the test).
        time.sleep(2.5)
        _, body = prom(prom_url, "/api/v1/rules")
        rules = [r for g in body["data"]["groups"] for r in g["rules"]]
        bad = [f"{r['name']}: {r.get('lastError')}" for r in rules if r.get("health") != "ok"]
        if bad:
            fail("alert rules fail to evaluate against infera's metrics:\n  " + "\n  ".join(bad))
        firing = sorted({r["name"] for r in rules if r.get("state") in ("firing", "pending")})
        print(
            f"  ok    {len(rules)} alert rules evaluate without error against live metrics"
            + (f" (pending/firing after the test traffic: {', '.join(firing)})" if firing else "")
        )


COMMANDS = {
    "status": cmd_status,
    "manifests": cmd_manifests,
    "kserve-pod": cmd_kserve_pod,
    "compose-mounts": cmd_compose_mounts,
    "dashboard-lint": cmd_dashboard_lint,
    "free-port": cmd_free_port,
    "wait-ready": cmd_wait_ready,
    "smoke": cmd_smoke,
    "repo-models": cmd_repo_models,
    "grpc": cmd_grpc,
    "prometheus": cmd_prometheus,
}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        print(__doc__)
        sys.exit(2)
    COMMANDS[sys.argv[1]](*sys.argv[2:])
