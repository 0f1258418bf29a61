"""Security settings of the release binary, driven from outside as an operator would: TLS with a
real TLS client (Python's ssl), API keys never reaching the log, a public address refused
without keys, /metrics on its own port, and CORS closed unless configured.

Each test starts its own server on 127.0.0.1 port 0 and stops it with SIGTERM.
"""

import collections
import hashlib
import http.client
import json
import os
import queue
import secrets
import signal
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MODELS_DIR = REPO / "models"
IRIS = json.dumps({"instances": [[5.1, 3.5, 1.4, 0.2]]})


def infera_bin():
    if os.environ.get("INFERA_BIN"):
        return Path(os.environ["INFERA_BIN"])
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    return target / "release" / "infera"


class Server:
    """The release binary with `flags`; `addr` is read from its JSON start-up log line."""

    def __init__(self, *flags):
        self.argv = [
            str(infera_bin()),
            "--host", "127.0.0.1",
            "--port", "0",
            "--model-repository", str(MODELS_DIR),
            "--log-format", "json",
            *flags,
        ]
        self.proc = subprocess.Popen(
            self.argv,
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        )
        self.log = collections.deque(maxlen=5000)
        lines = queue.Queue()

        def drain():
            for line in self.proc.stdout:
                self.log.append(line)
                lines.put(line)
            lines.put(None)

        self.reader = threading.Thread(target=drain, daemon=True)
        self.reader.start()
        self.addr = None
        deadline = time.monotonic() + 20
        while self.addr is None:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            if line is None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"infera did not start: {self.text()}")
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and "addr" in record:
                self.addr = record["addr"]
        self.host, port = self.addr.rsplit(":", 1)
        self.port = int(port)

    def text(self):
        return "".join(self.log)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.reader.join(timeout=5)


@pytest.fixture
def started():
    servers = []

    def start(*flags):
        s = Server(*flags)
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.stop()


def request(conn, method, path, body=None, headers=None):
    headers = dict(headers or {})
    if body is not None:
        headers.setdefault("content-type", "application/json")
    conn.request(method, path, body=body, headers=headers)
    r = conn.getresponse()
    return r.status, dict((k.lower(), v) for k, v in r.getheaders()), r.read()


def wait_ready(conn_factory, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            status, _, _ = request(conn_factory(), "GET", "/health/ready")
            if status == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    pytest.fail("not ready in time")


def self_signed(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=localhost",
            "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def test_tls_serves_a_real_tls_client_and_nothing_in_plain_text(started, tmp_path):
    cert, key = self_signed(tmp_path)
    s = started("--tls-cert", str(cert), "--tls-key", str(key))
    trusting = ssl.create_default_context(cafile=str(cert))
    connect = lambda: http.client.HTTPSConnection(s.host, s.port, context=trusting, timeout=5)
    wait_ready(connect)
    conn = connect()
    status, _, body = request(conn, "POST", "/predict", IRIS)
    assert status == 200, body
    assert json.loads(body)["predictions"][0]["label"] == "setosa"
    assert conn.sock.version() in ("TLSv1.2", "TLSv1.3")
    # Keep-alive over TLS: a second request on the same connection.
    status, _, _ = request(conn, "GET", "/models/iris")
    assert status == 200
    # A client that does not trust the certificate refuses the server.
    with pytest.raises(ssl.SSLCertVerificationError):
        request(http.client.HTTPSConnection(s.host, s.port, timeout=5), "GET", "/health/live")
    # Plain HTTP to the TLS port gets no HTTP answer.
    with pytest.raises((http.client.HTTPException, OSError)):
        request(http.client.HTTPConnection(s.host, s.port, timeout=5), "GET", "/health/live")


def test_api_keys_are_never_logged(started, tmp_path):
    key, wrong = secrets.token_hex(20), secrets.token_hex(20)
    digest = subprocess.run(
        [str(infera_bin()), "hash-key"], input=key, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert digest == hashlib.sha256(key.encode()).hexdigest()
    keys = tmp_path / "keys.toml"
    keys.write_text(
        f'[[keys]]\nname = "app"\nsha256 = "{digest}"\nscopes = ["predict", "read"]\n'
    )
    s = started("--api-keys-file", str(keys), "--log", "trace")
    connect = lambda: http.client.HTTPConnection(s.host, s.port, timeout=5)
    wait_ready(connect)
    for secret, want in ((key, 200), (wrong, 401)):
        status, headers, body = request(
            connect(), "POST", "/predict", IRIS, {"authorization": f"Bearer {secret}"}
        )
        assert status == want, body
    status, headers, _ = request(connect(), "POST", "/predict", IRIS)
    assert status == 401 and headers["www-authenticate"].startswith("Bearer")
    s.stop()
    log = s.text()
    assert "request" in log, "the trace log should show the requests"
    for secret in (key, wrong, digest):
        assert secret not in log, "a key or its digest reached the log"


def test_a_public_address_without_keys_is_refused():
    done = subprocess.run(
        [str(infera_bin()), "--host", "0.0.0.0", "--port", "0",
         "--model-repository", str(MODELS_DIR)],
        capture_output=True, text=True, timeout=30,
    )
    assert done.returncode != 0
    assert "--api-keys-file" in done.stderr and "--allow-unauthenticated" in done.stderr


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_metrics_can_move_to_their_own_port(started):
    port = free_port()
    s = started("--metrics-port", str(port))
    connect = lambda: http.client.HTTPConnection(s.host, s.port, timeout=5)
    wait_ready(connect)
    status, _, body = request(connect(), "GET", "/metrics")
    assert status == 404 and str(port).encode() in body
    status, _, body = request(http.client.HTTPConnection("127.0.0.1", port, timeout=5), "GET", "/metrics")
    assert status == 200 and b"infera_build_info" in body


def test_cors_is_closed_unless_origins_are_configured(started):
    preflight = {
        "origin": "https://app.example.com",
        "access-control-request-method": "POST",
        "access-control-request-headers": "content-type, authorization",
    }
    closed = started()
    connect = lambda: http.client.HTTPConnection(closed.host, closed.port, timeout=5)
    wait_ready(connect)
    _, headers, _ = request(connect(), "POST", "/predict", IRIS, {"origin": "https://app.example.com"})
    assert "access-control-allow-origin" not in headers
    assert headers["x-content-type-options"] == "nosniff"

    open_ = started("--cors-origins", "https://app.example.com")
    connect = lambda: http.client.HTTPConnection(open_.host, open_.port, timeout=5)
    wait_ready(connect)
    status, headers, _ = request(connect(), "OPTIONS", "/predict", None, preflight)
    assert status == 200
    assert headers["access-control-allow-origin"] == "https://app.example.com"
    assert "authorization" in headers["access-control-allow-headers"].lower()
    _, headers, _ = request(connect(), "POST", "/predict", IRIS, {"origin": "https://app.example.com"})
    assert headers["access-control-allow-origin"] == "https://app.example.com"
    _, headers, _ = request(connect(), "POST", "/predict", IRIS, {"origin": "https://evil.example"})
    assert "access-control-allow-origin" not in headers


def grpc_addr(server, timeout=20):
    """The gRPC address from the server's start-up log line."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in list(server.log):
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and "grpc_addr" in record:
                return record["grpc_addr"], record.get("tls")
        time.sleep(0.05)
    pytest.fail(f"no gRPC address logged: {server.text()}")


def test_tls_covers_the_grpc_port_for_a_real_grpc_client(started, tmp_path):
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException
    import numpy as np

    cert, key = self_signed(tmp_path)
    s = started("--tls-cert", str(cert), "--tls-key", str(key), "--grpc-port", "0")
    addr, tls = grpc_addr(s)
    assert tls is True
    client = grpcclient.InferenceServerClient(
        addr, ssl=True, root_certificates=str(cert)
    )
    deadline = time.monotonic() + 20
    while not client.is_server_ready():
        assert time.monotonic() < deadline, "gRPC over TLS never ready"
        time.sleep(0.05)
    x = grpcclient.InferInput("float_input", [1, 4], "FP32")
    x.set_data_from_numpy(np.array([[5.1, 3.5, 1.4, 0.2]], dtype=np.float32))
    result = client.infer("iris", [x])
    assert result.as_numpy("label").tolist() == [0]
    # A plain-text client gets no gRPC answer from the TLS port.
    plain = grpcclient.InferenceServerClient(addr)
    with pytest.raises(InferenceServerException):
        plain.is_server_live(client_timeout=3)
