"""CUDA paths, reported skipped where no GPU answers: inference needs ONNX Runtime's CUDA provider too,
training only torch's CUDA.

They use the shipped generator (outputs span [-1, 1], so a stale buffer, a replay of old noise or an all-zero
output fails the tolerances) and draw new noise for every run.
"""

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from cgan_export.export import export, parity_inputs
from cgan_export.runtime import OnnxBackend, TorchBackend, cuda_usable

pytestmark = pytest.mark.gpu
needs_ort_cuda = pytest.mark.skipif(not cuda_usable(), reason="no usable CUDA GPU / CUDAExecutionProvider")
needs_torch_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="torch sees no CUDA GPU")
SHIPPED = Path(__file__).resolve().parent.parent / "exported" / "generator.pt"
FP32_ATOL = 2e-2  # CUDA's default TF32 convolutions against fp32 eager on the CPU (H200: up to 0.0096 in 41 of 86,016 values)
FP32_MEAN_ATOL = 1e-3  # ... and on average (a stale buffer or a replay of old noise is off by > 0.05)
FP16_ATOL = 3e-2
MUST_DIFFER = 0.05  # mean abs difference between images of different noises (the shipped model: >0.05)


@pytest.fixture(scope="module")
def gpu_exports(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gpu")
    export(SHIPPED, ["onnx", "onnx-fp16"], folder, report=lambda _: None)
    return folder


@pytest.fixture(scope="module")
def eager():
    return TorchBackend(SHIPPED, "cpu")


@needs_ort_cuda
def test_the_cuda_provider_really_loads(gpu_exports):
    backend = OnnxBackend(gpu_exports / "generator.onnx", "cuda")
    assert backend.device == "cuda"
    assert "CUDAExecutionProvider" in backend.session.session.get_providers()


@needs_ort_cuda
@pytest.mark.parametrize("cuda_graph", [False, True])
def test_one_session_follows_new_noise_and_batch_sizes(gpu_exports, eager, cuda_graph):
    cuda = OnnxBackend(gpu_exports / "generator.onnx", "cuda", cuda_graph=cuda_graph)
    previous = None
    for i, batch in enumerate([32, 32, 32, 7, 32, 1, 7]):  # capture, replays, a smaller last chunk, back again
        noise, condition = parity_inputs(cuda.metadata, batch, seed=100 + i)
        got, want = cuda.run(noise, condition), eager.run(noise, condition)
        assert np.abs(want).max() > 10 * FP32_ATOL  # so the tolerance tells these images from an all-zero buffer
        np.testing.assert_allclose(got, want, atol=FP32_ATOL, rtol=0)
        assert np.abs(got - want).mean() < FP32_MEAN_ATOL
        if previous is not None and len(previous) == batch:
            assert np.abs(got - previous).mean() > MUST_DIFFER  # new noise, new images: no stale replay
        previous = got


@needs_ort_cuda
def test_fp16_onnx_matches_fp32_eager(gpu_exports, eager):
    fp16 = OnnxBackend(gpu_exports / "generator.fp16.onnx", "cuda")
    for batch in (16, 5):
        noise, condition = parity_inputs(fp16.metadata, batch, seed=batch)
        out = fp16.run(noise, condition)
        assert out.dtype == np.float32
        np.testing.assert_allclose(out, eager.run(noise, condition), atol=FP16_ATOL, rtol=0)


@needs_ort_cuda
def test_export_checks_fp32_parity_on_the_cpu_provider_even_on_a_gpu_machine(gpu_exports):
    files = json.loads((gpu_exports / "manifest.json").read_text())["files"]
    assert files["generator.onnx"]["parity_max_abs_diff"] < 1e-4
    assert files["generator.fp16.onnx"]["parity_max_abs_diff"] < FP16_ATOL


@needs_torch_cuda
def test_training_resumes_on_cuda(data_root, random_evaluator, tmp_path):
    from training.loop import RunOptions, train
    from training.presets import get_preset

    config = get_preset("best", batch_size=4, gpu_batch_size=0, eval_every=2, eval_seeds=1, epochs=2 / 6,
                        generator_config={"z_dim": 16, "ngf": 8, "embed_dim": 16}, discriminator_config={"ndf": 8})
    options = RunOptions(out=tmp_path / "run", data=data_root, evaluator=random_evaluator,
                         device="cuda", compile=False, show_progress=False)
    assert train(config, options)["step"] == 2
    from dataclasses import replace

    assert train(replace(config, epochs=4 / 6), replace(options, resume=True))["step"] == 4


@needs_torch_cuda
@pytest.mark.parametrize("preset", ["acgan", "cdcgan", "wgan-gp", "sagan", "best"])
def test_each_preset_trains_a_few_steps_on_cuda_with_its_default_compile(data_root, random_evaluator, tmp_path, preset):
    from tests.test_training import TINY
    from training.loop import RunOptions, train
    from training.presets import get_preset

    config = get_preset(preset, batch_size=4, eval_every=2, eval_seeds=1, **TINY[preset])
    steps = 10 if config.guide_weight else 2  # `best`: its guide (trained on the GPU first) joins at 140/170: step 9
    result = train(replace(config, epochs=steps / 6), RunOptions(out=tmp_path / "run", data=data_root,
                                                                 evaluator=random_evaluator, device="cuda",
                                                                 show_progress=False))
    assert result["step"] == steps
    last = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert ("g_guide" in last["losses"]) == bool(config.guide_weight)


UINT8_TOLERANCE = 2  # levels of 255: TF32 convolutions on CUDA against the CPU's fp32 (0.0096 seen: 1.2 levels)


@pytest.fixture(scope="module")
def cpu_generator(gpu_exports):
    from cgan_export import Generator

    return Generator.load(gpu_exports / "generator.onnx", device="cpu")


@needs_ort_cuda
def test_uint8_images_converted_on_the_gpu_equal_the_host_conversion(gpu_exports):
    from cgan_export.runtime import to_uint8

    cuda = OnnxBackend(gpu_exports / "generator.onnx", "cuda")
    for i, batch in enumerate([16, 3, 16, 1]):  # one conversion binding per batch size, reused
        noise, condition = parity_inputs(cuda.metadata, batch, seed=200 + i)
        pixels = cuda.run_uint8(noise, condition)
        assert pixels.dtype == np.uint8 and pixels.shape == (batch, 64, 64, 3)
        np.testing.assert_array_equal(pixels, to_uint8(cuda.run(noise, condition)))


@needs_ort_cuda
def test_bulk_generation_on_cuda_draws_the_cpu_images_in_order(gpu_exports, cpu_generator):
    from cgan_export import Generator

    cuda = Generator.load(gpu_exports / "generator.onnx", device="cuda")
    assert cuda.device == "cuda"
    multi_hot = cuda.encode([["red cube", "blue cylinder"], ["green sphere"], ["gray cube", "cyan sphere", "brown cylinder"]])
    # 3 x 37 = 111 images on 4 workers: batches of 28, 28, 28, 27 share one session's bindings under its lock
    got = list(cuda.map_batches(multi_hot, n=37, seed=4, batch_size=64, work=lambda b: b, workers=4))
    want = list(cpu_generator.batches(multi_hot, n=37, seed=4, batch_size=28))
    assert [b.start for b in got] == [b.start for b in want] == [0, 28, 56, 84]
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g.condition_index, w.condition_index)
        assert np.abs(g.images.astype(int) - w.images.astype(int)).max() <= UINT8_TOLERANCE
    first = got[0].images.astype(float)
    assert np.abs(first[0] - first[1]).mean() > 2.0  # two noises of one condition: two different images


@needs_ort_cuda
def test_generate_cli_on_cuda_writes_the_cpu_images(gpu_exports, tmp_path):
    from PIL import Image
    from typer.testing import CliRunner

    from cli import app

    model = str(gpu_exports / "generator.onnx")
    for device in ("cuda", "cpu"):
        args = ["generate", "red cube", "blue cylinder", "-n", "20", "--seed", "3", "--scale", "1",
                "--device", device, "--model", model, "--out", str(tmp_path / device)]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        assert f"on {device}" in result.output
    names = sorted(p.name for p in (tmp_path / "cpu").glob("red-cube*.png"))
    assert len(names) == 20 and names == sorted(p.name for p in (tmp_path / "cuda").glob("red-cube*.png"))
    for name in names:
        a, b = (np.asarray(Image.open(tmp_path / d / name), dtype=int) for d in ("cuda", "cpu"))
        assert np.abs(a - b).max() <= UINT8_TOLERANCE, name


@needs_ort_cuda
def test_server_on_cuda_answers_concurrent_requests_with_the_cpu_images(gpu_exports, cpu_generator):
    import base64
    import io
    from concurrent.futures import ThreadPoolExecutor

    from fastapi.testclient import TestClient
    from PIL import Image

    from cgan_export import Generator
    from cgan_export.server import create_app

    cuda = Generator.load(gpu_exports / "generator.onnx", device="cuda")
    app = create_app(cuda, gpu_exports / "generator.onnx", max_batch=64, wait_ms=20)
    requests = [{"objects": [name], "n": 3, "seed": seed} for seed, name in
                enumerate(["red cube", "blue sphere", "gray cylinder", "green cube", "cyan sphere", "yellow cube"] * 3)]
    with TestClient(app) as client, ThreadPoolExecutor(18) as pool:
        replies = list(pool.map(lambda r: client.post("/generate", json=r), requests))
    for request, reply in zip(requests, replies):
        assert reply.status_code == 200, reply.text
        got = np.stack([np.asarray(Image.open(io.BytesIO(base64.b64decode(p)))) for p in reply.json()["images"]])
        want = cpu_generator.generate(request["objects"], n=3, seed=request["seed"])
        assert np.abs(got.astype(int) - want.astype(int)).max() <= UINT8_TOLERANCE
