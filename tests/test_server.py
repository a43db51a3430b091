"""The generation server: every endpoint, the micro-batcher, and each bad request (4xx, one-line JSON error)."""

import base64
import io
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from cgan_export import Generator
from cgan_export.server import MAX_BODY, MAX_N, create_app

from .conftest import ROOT, live_server


@pytest.fixture()
def served(exported_best):
    generator = Generator.load(exported_best / "generator.onnx", device="cpu")
    app = create_app(generator, exported_best / "generator.onnx", max_batch=64, wait_ms=50)
    with TestClient(app) as client:
        yield client, generator, app


def _decode(png: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(png))))


def test_health_and_metadata_describe_the_model(served, exported_best):
    import hashlib

    client, generator, _ = served
    assert client.get("/health").json()["status"] == "ok"
    meta = client.get("/metadata").json()
    assert meta["z_dim"] == 16 and meta["image_size"] == 64 and "red cube" in meta["vocabulary"]
    assert meta["model_sha256"] == hashlib.sha256((exported_best / "generator.onnx").read_bytes()).hexdigest()


def test_generate_returns_what_a_direct_call_with_the_same_seed_gives(served):
    client, generator, _ = served
    reply = client.post("/generate", json={"objects": ["Red Cube", "blue cylinder"], "n": 3, "seed": 5})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["objects"] == ["red cube", "blue cylinder"] and len(body["images"]) == 3
    expected = generator.generate(["red cube", "blue cylinder"], n=3, seed=5)
    np.testing.assert_array_equal(np.stack([_decode(p) for p in body["images"]]), expected)


def test_concurrent_requests_share_model_calls_and_each_gets_its_own_images(served):
    client, generator, app = served
    requests = [{"objects": [name], "n": 2, "seed": seed} for seed, name in
                enumerate(["red cube", "blue sphere", "gray cylinder", "green cube", "cyan sphere", "yellow cube"] * 2)]
    before = app.state.batcher.batches
    with ThreadPoolExecutor(12) as pool:
        replies = list(pool.map(lambda r: client.post("/generate", json=r), requests))
    assert all(r.status_code == 200 for r in replies)
    assert app.state.batcher.batches - before < len(requests)  # gathered, not one call per request
    for request, reply in zip(requests, replies):
        expected = generator.generate(request["objects"], n=2, seed=request["seed"])
        np.testing.assert_array_equal(np.stack([_decode(p) for p in reply.json()["images"]]), expected)


def test_grid_png_is_one_captioned_image(served):
    client, _, _ = served
    reply = client.get("/grid.png", params={"objects": ["red cube", "blue cylinder"], "n": 4, "seed": 0})
    assert reply.status_code == 200 and reply.headers["content-type"] == "image/png"
    grid = Image.open(io.BytesIO(reply.content))
    assert grid.width == 4 * 128 and grid.height > 128


def test_the_web_page_offers_objects_n_and_seed(served):
    client, _, _ = served
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert 'id="seed"' in page.text and 'id="n"' in page.text and "/generate" in page.text


@pytest.mark.parametrize("body, status, message", [
    ({"objects": ["pink cube"], "n": 1}, 400, "did you mean"),
    ({"objects": ["red cube", "red cube"], "n": 1}, 400, "duplicate"),
    ({"objects": ["red cube", "blue cube", "gray cube", "green cube"], "n": 1}, 400, "at most 3"),
    ({"objects": [], "n": 1}, 400, "empty"),
    ({"objects": ["red cube"], "n": 0}, 422, "n"),
    ({"objects": ["red cube"], "n": MAX_N + 1}, 422, "n"),
    ({"objects": ["red cube"], "n": 1, "seed": -1}, 422, "seed"),
    ({"objects": "red cube", "n": 1}, 422, "objects"),
    ([1, 2], 422, "JSON object"),
])
def test_bad_requests_get_a_4xx_with_one_line_and_the_server_keeps_serving(served, body, status, message):
    client, _, _ = served
    reply = client.post("/generate", json=body)
    assert reply.status_code == status, reply.text
    error = reply.json()["error"]
    assert message in error and "\n" not in error
    assert client.post("/generate", json={"objects": ["red cube"], "n": 1}).status_code == 200


def test_malformed_json_and_oversized_bodies_are_refused(served):
    client, _, _ = served
    reply = client.post("/generate", content=b"{not json", headers={"content-type": "application/json"})
    assert reply.status_code == 400 and reply.json()["error"] == "malformed JSON body"
    reply = client.post("/generate", content=b" " * (MAX_BODY + 1), headers={"content-type": "application/json"})
    assert reply.status_code == 413
    reply = client.get("/grid.png", params={"objects": ["red cube"], "n": "many"})
    assert reply.status_code == 422 and "n" in reply.json()["error"]


@pytest.mark.slow
@pytest.mark.parametrize("model, query, caption", [
    (None, "objects=red+cube&objects=blue+cylinder", "red cube, blue cylinder"),
    ("anime-faces/generator.onnx", "objects=red+eyes&objects=blue+hair", "blue hair, red eyes"),  # one select per group
    ("infogan-faces/generator.onnx", "objects=cat%3D3&objects=c1%3D-1.5", "cat=3, c1=-1.5, c2=0"),  # codes
])
def test_the_web_page_shows_generated_images_in_a_real_headless_browser(model, query, caption, tmp_path):
    """Chromium (Debian's package) loads the page, which fills its form from the URL, posts and shows n images."""
    import re
    import shutil
    import subprocess

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("needs Chromium (apt-get install chromium)")
    extra = ["--model", str(ROOT / "exported" / model)] if model else []
    with live_server(["cli.py", "serve", "--port", "{port}", "--device", "cpu", *extra]) as (_, port):
        url = f"http://127.0.0.1:{port}/?{query}&n=5&seed=3"
        dom = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=10000",
                              f"--user-data-dir={tmp_path}", "--dump-dom", url],
                             capture_output=True, text=True, timeout=120).stdout
    images = re.findall(r'<img src="data:image/png;base64,[^"]+" alt="([^"]*)"', dom)
    assert images == [caption] * 5, dom[-1500:]
    captions = re.findall(r"<figcaption>([^<]*) <a ", dom)  # a caption and a PNG download link under each image
    assert captions == [f"{caption} #{k}" for k in range(5)], dom[-1500:]
    assert len(re.findall(r'<a href="data:image/png;base64,[^"]+" id="download\d" download="[^"]+_00\d\.png">PNG</a>', dom)) == 5
    share = re.search(r'<a href="([^"]+)" id="share">', dom).group(1).replace("&amp;", "&")
    assert share.startswith("/?objects=") and share.endswith("n=5&seed=3")  # reproduces the request
    assert re.search(r'<a href="/grid\.png\?objects=[^"]+" id="grid" download=', dom)
