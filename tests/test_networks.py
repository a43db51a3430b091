"""The conditional-BatchNorm generator at any size (96x96 for the anime faces), its optional low-pass filter, and
the inference rewrites (BatchNorm folded) that must keep its function."""

import numpy as np
import pytest
import torch

from cgan_export.checkpoint import save_generator
from cgan_export.export import export
from cgan_export.folding import fold_batchnorms
from cgan_export.networks import Blur, build_generator, up_stages
from cgan_export.runtime import OnnxBackend


def trained_statistics(net: torch.nn.Module, z_dim: int) -> torch.nn.Module:
    """``net`` with random weights of std 0.1 (images far from flat grey) after a few train-mode passes
    (BatchNorm running statistics away from 0 and 1), in eval mode."""
    torch.manual_seed(0)
    with torch.no_grad():
        for weight in net.parameters():
            weight.normal_(0.0, 0.1)
        net.train()
        for _ in range(3):
            net(torch.randn(8, z_dim) * 2 + 0.5, (torch.rand(8, 24) < 0.2).float())
    return net.eval()


@pytest.mark.parametrize("size, expected", [(16, (2, 4)), (32, (3, 4)), (64, (4, 4)), (96, (4, 6)), (128, (5, 4))])
def test_each_size_is_drawn_from_the_largest_whole_start_of_at_least_four_pixels(size, expected):
    assert up_stages(size) == expected


def test_a_size_no_doubling_reaches_is_refused():
    with pytest.raises(ValueError, match="image size 7"):
        up_stages(7)


@pytest.mark.parametrize("size", [64, 96])
@pytest.mark.parametrize("blur", [False, True])
def test_folding_batchnorm_keeps_the_generator_s_images(size, blur):
    """Tolerance 1e-5 on images in [-1, 1]: the fold is exact up to float32 rounding (the filter keeps constants)."""
    net = trained_statistics(build_generator("cbn", {"z_dim": 16, "ngf": 8, "embed_dim": 16, "image_size": size,
                                                     "blur": blur}), 16)
    noise, condition = torch.randn(5, 16), (torch.rand(5, 24) < 0.15).float()
    with torch.no_grad():
        before = net(noise, condition)  # [5, 3, size, size]
        after = fold_batchnorms(net)(noise, condition)
    assert before.shape == (5, 3, size, size)
    assert (before - after).abs().max() < 1e-5 and before.std() > 0.05


def test_the_filter_has_no_weights_and_leaves_the_default_generator_as_it_was():
    plain = build_generator("cbn", {"z_dim": 16, "ngf": 8})
    filtered = build_generator("cbn", {"z_dim": 16, "ngf": 8, "blur": True})
    assert list(plain.state_dict()) == list(filtered.state_dict())
    assert not any(isinstance(m, Blur) for m in plain.modules())


def test_the_filter_keeps_constants_and_removes_the_checkerboard():
    constant = torch.full((1, 2, 8, 8), 0.7)
    checkerboard = (torch.arange(8)[:, None] + torch.arange(8)[None, :]) % 2 * 2.0 - 1.0  # [8, 8] of +-1
    out = Blur()(checkerboard.expand(1, 2, 8, 8).contiguous())
    assert torch.allclose(Blur()(constant), constant, atol=1e-6)
    assert out[..., 1:-1, 1:-1].abs().max() < 1e-6  # inside the edges the Nyquist pattern is gone


def test_a_96_pixel_filtered_generator_exports_to_onnx_and_matches_torch(tmp_path, vocabulary):
    """The export ends with its own parity check; here the ONNX images also match the eager ones to 1e-4."""
    net = trained_statistics(build_generator("cbn", {"z_dim": 16, "ngf": 8, "embed_dim": 16, "image_size": 96,
                                                     "blur": True}), 16)
    save_generator(tmp_path / "generator.pt", net, vocabulary, {"score": 0.5})
    export(tmp_path / "generator.pt", ["onnx"], tmp_path / "out", report=lambda _: None)
    noise = np.random.default_rng(0).standard_normal((3, 16)).astype(np.float32)
    condition = np.zeros((3, 24), np.float32)
    condition[[0, 1, 2], [0, 5, 9]] = 1
    onnx_images = OnnxBackend(tmp_path / "out" / "generator.onnx", "cpu").run(noise, condition)  # [3, 3, 96, 96]
    with torch.no_grad():
        eager = net(torch.from_numpy(noise), torch.from_numpy(condition)).numpy()
    assert onnx_images.shape == (3, 3, 96, 96) and np.abs(onnx_images - eager).max() < 1e-4
