"""Inference-time rewrites of a trained generator that keep its function: BatchNorm folded into the conv
before it, and narrow stride-1 convs as ConvTranspose (faster in ONNX Runtime's CPU kernels)."""

from __future__ import annotations

import torch
import torch.nn as nn


def fuse_conv_bn(conv: nn.Module, bn: nn.BatchNorm2d) -> nn.Module:
    """A copy of ``conv`` (Conv2d or ConvTranspose2d) with ``bn``'s eval-mode transform folded in."""
    scale = (bn.running_var + bn.eps).rsqrt()  # [C]
    if bn.affine:
        scale = scale * bn.weight
    shift = (bn.bias if bn.affine else 0.0) - bn.running_mean * scale
    fused = type(conv)(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                       **({"output_padding": conv.output_padding} if isinstance(conv, nn.ConvTranspose2d) else {}),
                       groups=conv.groups, bias=True, dilation=conv.dilation)
    w = conv.weight.detach()
    if isinstance(conv, nn.ConvTranspose2d):  # weight [Cin, Cout / groups, k, k]
        fused.weight.data = w * scale.detach()[None, :, None, None]
    else:  # weight [Cout, Cin / groups, k, k]
        fused.weight.data = w * scale.detach()[:, None, None, None]
    bias = conv.bias.detach() if conv.bias is not None else torch.zeros_like(scale)
    fused.bias.data = (bias * scale + shift).detach()
    return fused


def conv_as_transposed(conv: nn.Conv2d) -> nn.ConvTranspose2d:
    """The ConvTranspose2d computing the same map as the stride-1 ``conv``: kernel flipped, in and out swapped."""
    padding = [k - 1 - p for k, p in zip(conv.kernel_size, conv.padding)]
    transposed = nn.ConvTranspose2d(conv.in_channels, conv.out_channels, conv.kernel_size, 1, padding,
                                    bias=conv.bias is not None)
    transposed.weight.data = conv.weight.detach().flip(2, 3).transpose(0, 1).contiguous()  # [Cin, Cout, kH, kW]
    if conv.bias is not None:
        transposed.bias.data = conv.bias.detach().clone()
    return transposed


def transposable(module: nn.Module, max_out_channels: int) -> bool:
    """A plain stride-1 Conv2d (zero padding, no groups or dilation) with at most ``max_out_channels`` outputs."""
    return (type(module) is nn.Conv2d and module.out_channels <= max_out_channels and module.stride == (1, 1)
            and module.groups == 1 and module.dilation == (1, 1) and module.padding_mode == "zeros"
            and not isinstance(module.padding, str)
            and all(p <= k - 1 for k, p in zip(module.kernel_size, module.padding)))


def narrow_convs_as_transposed(net: nn.Module, max_out_channels: int = 4) -> nn.Module:
    """Replace, in place, every narrow stride-1 Conv2d (the RGB head) by its ConvTranspose2d equivalent.

    ONNX Runtime's CPU Conv runs im2col and a GEMM whose rows are the output channels, so a
    3-channel head spends its time copying the 9x larger im2col buffer; as a ConvTranspose it
    is one GEMM over the input and a col2im into the small output.
    """
    for parent in list(net.modules()):
        for name, child in list(parent.named_children()):
            if transposable(child, max_out_channels):
                setattr(parent, name, conv_as_transposed(child))
    return net


def fold_batchnorms(net: nn.Module) -> nn.Module:
    """Fold every BatchNorm2d that directly follows a conv in a Sequential, and call each ``fold_batchnorm`` hook."""
    for module in list(net.modules()):
        if isinstance(module, nn.Sequential):
            for i in range(len(module) - 1):
                conv, bn = module[i], module[i + 1]
                if isinstance(conv, (nn.Conv2d, nn.ConvTranspose2d)) and isinstance(bn, nn.BatchNorm2d):
                    module[i], module[i + 1] = fuse_conv_bn(conv, bn), nn.Identity()
        if hasattr(module, "fold_batchnorm"):
            module.fold_batchnorm()
    return net
