"""CUDA paths: run wherever ONNX Runtime's CUDA provider and a GPU are usable, reported skipped elsewhere."""

import numpy as np
import pytest

from cgan_export.export import export, parity_inputs
from cgan_export.runtime import OnnxBackend, TorchBackend, cuda_usable

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not cuda_usable(), reason="no usable CUDA GPU / CUDAExecutionProvider")]
FP32_ATOL, FP16_ATOL = 1e-3, 1e-2


@pytest.fixture(scope="module")
def gpu_exports(exported_best, tmp_path_factory):
    folder = tmp_path_factory.mktemp("gpu")
    export(exported_best / "generator.pt", ["onnx", "onnx-fp16"], folder, report=lambda _: None)
    return exported_best / "generator.pt", folder


@pytest.mark.parametrize("batch", [1, 64])
def test_cuda_io_binding_matches_cpu(gpu_exports, batch):
    checkpoint, folder = gpu_exports
    cuda = OnnxBackend(folder / "generator.onnx", "cuda")
    noise, condition = parity_inputs(cuda.metadata, batch)
    expected = TorchBackend(checkpoint, "cpu").run(noise, condition)
    np.testing.assert_allclose(cuda.run(noise, condition), expected, atol=FP32_ATOL, rtol=0)
    np.testing.assert_allclose(cuda.run(noise, condition), expected, atol=FP32_ATOL, rtol=0)  # reused binding


def test_fp16_onnx_matches_fp32_eager(gpu_exports):
    checkpoint, folder = gpu_exports
    fp16 = OnnxBackend(folder / "generator.fp16.onnx", "cuda")
    noise, condition = parity_inputs(fp16.metadata, 16)
    out = fp16.run(noise, condition)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, TorchBackend(checkpoint, "cpu").run(noise, condition), atol=FP16_ATOL, rtol=0)


def test_cuda_graph_replay_matches(gpu_exports):
    checkpoint, folder = gpu_exports
    graph = OnnxBackend(folder / "generator.onnx", "cuda", cuda_graph=True)
    noise, condition = parity_inputs(graph.metadata, 32)
    expected = TorchBackend(checkpoint, "cpu").run(noise, condition)
    for _ in range(3):  # capture, then replays with new values in the same buffers
        np.testing.assert_allclose(graph.run(noise, condition), expected, atol=FP32_ATOL, rtol=0)
