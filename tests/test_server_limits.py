"""The server under load and faults: a bounded queue (503 + Retry-After), a request deadline (504), header and body
read timeouts, and a drain on SIGTERM that answers the requests in flight and exits 0."""

import base64
import io
import json
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from cgan_export import Generator
from cgan_export.hosting import ServeLimits
from cgan_export.server import create_app

from .conftest import live_server

class SlowBackend:
    """A backend that takes ``seconds`` per model call: requests pile up in the queue as under a flood."""

    def __init__(self, backend, seconds: float):
        self.backend, self.seconds, self.metadata = backend, seconds, backend.metadata

    def run(self, noise, condition):
        time.sleep(self.seconds)
        return self.backend.run(noise, condition)


def _slow(exported_best, seconds: float) -> Generator:
    fast = Generator.load(exported_best / "generator.onnx", device="cpu")
    return Generator(SlowBackend(fast.backend, seconds), fast.vocabulary, fast.metadata)


def _decode(png: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(png))))


def test_a_flood_past_the_queue_gets_503_with_retry_after_and_every_accepted_request_its_images(exported_best):
    generator = _slow(exported_best, 0.3)
    app = create_app(generator, max_batch=64, wait_ms=5, limits=ServeLimits(max_queue=8))
    requests = [{"objects": ["red cube"], "n": 4, "seed": seed} for seed in range(24)]
    with TestClient(app) as client, ThreadPoolExecutor(24) as pool:
        replies = list(pool.map(lambda r: client.post("/generate", json=r), requests))
        health = client.get("/health").json()
    codes = [r.status_code for r in replies]
    assert set(codes) == {200, 503} and codes.count(503) >= 12, codes  # at most 8 images (2 requests) wait at once
    for request, reply in zip(requests, replies):
        if reply.status_code == 503:
            assert reply.headers["retry-after"] == "1" and "at capacity" in reply.json()["error"]
            continue
        expected = generator.generate(["red cube"], n=4, seed=request["seed"])
        np.testing.assert_array_equal(np.stack([_decode(p) for p in reply.json()["images"]]), expected)
    assert health["refused"] == codes.count(503) and health["queued_images"] == 0 and health["max_queue"] == 8


def test_a_request_past_its_deadline_gets_504_and_costs_no_model_time_after(exported_best):
    app = create_app(_slow(exported_best, 0.5), limits=ServeLimits(deadline_s=0.2))
    with TestClient(app) as client:
        reply = client.post("/generate", json={"objects": ["red cube"], "n": 2})
        assert reply.status_code == 504 and "within 0.2 s" in reply.json()["error"]
        time.sleep(0.5)
        assert client.get("/health").json()["queued_requests"] == 0


def test_the_openapi_schema_describes_the_request_body_and_the_errors(exported_best):
    app = create_app(Generator.load(exported_best / "generator.onnx", device="cpu"))
    with TestClient(app) as client:
        paths = client.get("/openapi.json").json()["paths"]
    body = paths["/generate"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["properties"]["n"]["maximum"] == 64 and body["required"] == ["objects"]
    for path, method in (("/generate", "post"), ("/grid.png", "get")):
        assert {"400", "413", "422", "503", "504"} <= set(paths[path][method]["responses"]), path


SERVER = """
import sys
from cgan_export import Generator
from cgan_export.hosting import ServeLimits, run
from cgan_export.server import create_app
model, port = sys.argv[1], int(sys.argv[2])
limits = ServeLimits(header_timeout_s=1, body_timeout_s=1, drain_s=20)
run(create_app(Generator.load(model, device="cpu"), limits=limits), "127.0.0.1", port, limits,
    on_listening=lambda: print("listening", flush=True))
print("drained", flush=True)
"""


@pytest.fixture()
def server(exported_best):
    with live_server(["-c", SERVER, str(exported_best / "generator.onnx"), "{port}"], stdout=subprocess.PIPE,
                     stderr=subprocess.PIPE, text=True) as (proc, port):
        yield proc, port


def _post(port: int, body: dict) -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/generate", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as reply:
            return reply.status if len(json.loads(reply.read())["images"]) == body["n"] else -1
    except urllib.error.HTTPError as exc:
        return exc.code
    except ConnectionRefusedError:
        return 0  # came after the server stopped accepting: never in flight


def test_a_client_that_never_finishes_its_headers_is_cut_off_and_others_are_served(server):
    proc, port = server
    slow = socket.create_connection(("127.0.0.1", port))
    slow.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # no blank line: the headers never end
    slow.settimeout(5)
    start = time.time()
    assert slow.recv(100) == b"" and time.time() - start < 3  # closed by the server after its 1 s header timeout
    assert urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5).status == 200


def test_a_body_that_stops_arriving_gets_408(server):
    proc, port = server
    conn = socket.create_connection(("127.0.0.1", port))
    conn.sendall(b"POST /generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{")
    conn.settimeout(5)
    reply = b""
    while b'"error"' not in reply and (chunk := conn.recv(1000)):
        reply += chunk
    assert reply.decode().startswith("HTTP/1.1 408") and b"did not arrive within 1 s" in reply


@pytest.mark.slow
def test_sigterm_drains_the_requests_in_flight_and_exits_0(server):
    proc, port = server
    bodies = [{"objects": ["red cube", "blue sphere"], "n": 64, "seed": seed} for seed in range(32)]
    with ThreadPoolExecutor(32) as pool:
        futures = [pool.submit(_post, port, body) for body in bodies]
        for _ in range(200):  # wait until requests are queued, i.e. in flight
            if json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5).read())["queued_requests"] >= 4:
                break
            time.sleep(0.01)
        proc.send_signal(signal.SIGTERM)
        codes = [f.result() for f in futures]
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0 and "drained" in stdout, stderr[-2000:]
    assert set(codes) <= {200, 0} and codes.count(200) >= 4, codes  # every request in flight got its images
