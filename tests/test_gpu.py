"""CUDA paths, reported skipped where no GPU answers: inference needs ONNX Runtime's CUDA provider too,
training only torch's CUDA.

They use the shipped generator (outputs span [-1, 1], so a stale buffer, a replay of old noise or an all-zero
output fails the tolerances) and draw new noise for every run.
"""

import json
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
FP32_ATOL = 5e-3  # CUDA's default TF32 convolutions against fp32 eager on the CPU
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
        got = cuda.run(noise, condition)
        np.testing.assert_allclose(got, eager.run(noise, condition), atol=FP32_ATOL, rtol=0)
        assert np.abs(got).mean() > 0.1  # not an all-zero buffer
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

    config = get_preset("best", batch_size=4, eval_every=2, eval_seeds=1,
                        generator_config={"z_dim": 16, "ngf": 8, "embed_dim": 16}, discriminator_config={"ndf": 8})
    options = RunOptions(out=tmp_path / "run", data=data_root, evaluator=random_evaluator, epochs=2 / 6,
                         device="cuda", compile=False, show_progress=False)
    assert train(config, options)["step"] == 2
    from dataclasses import replace

    assert train(config, replace(options, epochs=4 / 6, resume=True))["step"] == 4


@needs_torch_cuda
@pytest.mark.parametrize("preset", ["acgan", "cdcgan", "wgan-gp", "sagan", "best"])
def test_each_preset_trains_a_few_steps_on_cuda_with_its_default_compile(data_root, random_evaluator, tmp_path, preset):
    from tests.test_training import TINY
    from training.loop import RunOptions, train
    from training.presets import get_preset

    config = get_preset(preset, batch_size=4, eval_every=2, eval_seeds=1, **TINY[preset])
    steps = 8 if config.guide_weight else 2  # `best`: its guide (trained on the GPU first) joins at 85%: step 7
    result = train(config, RunOptions(out=tmp_path / "run", data=data_root, evaluator=random_evaluator,
                                      epochs=steps / 6, device="cuda", show_progress=False))
    assert result["step"] == steps
    last = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert ("g_guide" in last["losses"]) == bool(config.guide_weight)
