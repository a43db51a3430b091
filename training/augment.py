"""DiffAugment (Zhao et al. 2020): differentiable augmentations applied to every image D sees."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _color(x: torch.Tensor) -> torch.Tensor:
    n = x.shape[0]
    x = x + (torch.rand(n, 1, 1, 1, device=x.device, dtype=x.dtype) - 0.5)  # brightness
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * (torch.rand(n, 1, 1, 1, device=x.device, dtype=x.dtype) * 2) + mean  # saturation
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (torch.rand(n, 1, 1, 1, device=x.device, dtype=x.dtype) + 0.5) + mean  # contrast


def _translation(x: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    n, _, h, w = x.shape
    sx, sy = int(w * ratio + 0.5), int(h * ratio + 0.5)
    padded = F.pad(x, (sx, sx, sy, sy))
    dx = torch.randint(0, 2 * sx + 1, (n,), device=x.device)
    dy = torch.randint(0, 2 * sy + 1, (n,), device=x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device)[None])  # [N, H]
    cols = (dx[:, None] + torch.arange(w, device=x.device)[None])  # [N, W]
    idx = torch.arange(n, device=x.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[idx, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def _cutout(x: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    n, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    cy = torch.randint(0, h + 1 - ch % 2, (n, 1, 1), device=x.device) - ch // 2
    cx = torch.randint(0, w + 1 - cw % 2, (n, 1, 1), device=x.device) - cw // 2
    ys = torch.arange(h, device=x.device)[None, :, None]
    xs = torch.arange(w, device=x.device)[None, None, :]
    keep = ~(((ys - cy) >= 0) & ((ys - cy) < ch) & ((xs - cx) >= 0) & ((xs - cx) < cw))  # [N, H, W]
    return x * keep[:, None].to(x.dtype)


POLICIES = {"color": _color, "translation": _translation, "cutout": _cutout}


def diff_augment(x: torch.Tensor, policy: str) -> torch.Tensor:
    """Apply the comma-separated ``policy`` (e.g. ``"color,translation"``); empty policy: identity."""
    for name in filter(None, policy.split(",")):
        x = POLICIES[name](x)
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x
