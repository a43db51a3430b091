"""`serve --engine ray`: the same HTTP API on Ray Serve, the same images as `Generator.generate`, a bounded queue,
and SIGTERM answers the requests in flight, then exits 0."""

import base64
import http.client
import io
import json
import signal
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from cgan_export import Generator

from .conftest import live_server

pytest.importorskip("ray.serve", reason="needs the [scale] extra (ray[serve]): pip install -e '.[scale]'")
pytestmark = pytest.mark.slow  # one local Ray with Serve (~20 s to start)

MAX_QUEUE = 256  # images: four requests of 64


@pytest.fixture(scope="module")
def ray_server(exported_best):
    command = ["cli.py", "serve", "--engine", "ray", "--port", "{port}", "--model", str(exported_best / "generator.onnx"),
               "--precision", "fp32", "--device", "cpu", "--max-queue", str(MAX_QUEUE), "--wait-ms", "20"]
    with live_server(command, start_s=120, stdout=-1, stderr=-1, text=True) as (proc, port):
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        yield proc, port, Generator.load(exported_best / "generator.onnx", device="cpu", precision="fp32")


def _call(port: int, path: str, body: dict | None = None, raw: bytes | None = None) -> tuple[int, dict, bytes]:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data)
    try:
        with urllib.request.urlopen(request, timeout=120) as reply:
            return reply.status, dict(reply.headers), reply.read()
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, dict(exc.headers), exc.read()
        except (ConnectionError, http.client.IncompleteRead):
            return 0, {}, b""  # it stopped while refusing: the refusal's body was cut, never in flight
    except (ConnectionError, urllib.error.URLError, http.client.IncompleteRead):
        return 0, {}, b""  # no server (any more): never in flight


def _images(reply: bytes) -> np.ndarray:
    return np.stack([np.asarray(Image.open(io.BytesIO(base64.b64decode(p)))) for p in json.loads(reply)["images"]])


def _assert_same_images(generator: Generator, body: dict, reply: bytes) -> None:
    expected = generator.generate(body["objects"], n=body["n"], seed=body["seed"])  # uint8 [n, H, W, 3]
    got = _images(reply)
    assert got.shape == expected.shape
    assert np.abs(got.astype(int) - expected).max() <= 2  # within 2 levels: the replica's threads may differ


def test_concurrent_requests_get_the_images_generate_gives(ray_server):
    _, port, generator = ray_server
    bodies = [{"objects": [name], "n": n, "seed": seed} for seed, (name, n) in
              enumerate([("red cube", 3), ("blue sphere", 1), ("gray cylinder", 5), ("green cube", 2)] * 2)]
    bodies.append({"objects": ["Red Cube", "blue cylinder"], "n": 4, "seed": 2 ** 40})
    with ThreadPoolExecutor(len(bodies)) as pool:
        replies = list(pool.map(lambda b: _call(port, "/generate", b), bodies))
    for body, (status, _, reply) in zip(bodies, replies):
        assert status == 200, reply[:300]
        _assert_same_images(generator, body, reply)
    assert json.loads(replies[-1][2])["objects"] == ["red cube", "blue cylinder"]


def test_every_endpoint_and_error_is_the_local_servers(ray_server):
    _, port, _ = ray_server
    health = json.loads(_call(port, "/health")[2])
    assert health["status"] == "ok" and health["engine"] == "ray" and health["max_queue"] == MAX_QUEUE
    meta = json.loads(_call(port, "/metadata")[2])
    assert meta["z_dim"] == 16 and "red cube" in meta["vocabulary"]
    assert b"<html" in _call(port, "/")[2].lower()
    status, headers, png = _call(port, "/grid.png?objects=red%20cube&n=2")
    assert status == 200 and headers["content-type"] == "image/png" and Image.open(io.BytesIO(png)).size[0] > 64
    for body, raw, code, words in [({"objects": ["red cubee"]}, None, 400, "unknown object"),
                                   ({"objects": ["red cube"], "n": 0}, None, 422, '"n" must be'),
                                   (None, b"{not json", 400, "malformed JSON"),
                                   (None, b"x" * 20000, 413, "request body over")]:
        status, _, reply = _call(port, "/generate", body, raw)
        assert status == code and words in json.loads(reply)["error"], reply


def test_a_flood_past_the_queue_gets_503_and_every_accepted_request_its_images(ray_server):
    _, port, generator = ray_server
    bodies = [{"objects": ["red cube", "blue sphere"], "n": 64, "seed": seed} for seed in range(16)]
    with ThreadPoolExecutor(16) as pool:
        replies = list(pool.map(lambda b: _call(port, "/generate", b), bodies))
    statuses = [status for status, _, _ in replies]
    assert 503 in statuses and 200 in statuses and set(statuses) <= {200, 503}, statuses
    for body, (status, headers, reply) in zip(bodies, replies):
        if status == 503:
            assert headers["retry-after"] == "1" and "at capacity" in json.loads(reply)["error"]
        else:
            _assert_same_images(generator, body, reply)


def test_sigterm_answers_the_requests_in_flight_and_exits_0(ray_server):
    proc, port, _ = ray_server
    bodies = [{"objects": ["red cube"], "n": 64, "seed": seed} for seed in range(64)]
    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(_call, port, "/generate", body) for body in bodies]
        in_flight = 0
        for _ in range(500):  # wait until requests are in flight
            if (in_flight := json.loads(_call(port, "/health")[2])["queued_requests"]) >= 2:
                break
        proc.send_signal(signal.SIGTERM)
        statuses = [f.result()[0] for f in futures]
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0 and in_flight >= 2, stderr[-2000:]
    assert statuses.count(200) >= 2 and set(statuses) <= {200, 503, 0}, statuses  # 0: came after it stopped
