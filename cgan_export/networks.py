"""Generator networks, one registry by architecture name (shared by training and export).

Every generator maps ``noise [N, Z]`` and ``condition [N, C]`` (multi-hot) to
``image [N, 3, H, W]`` in [-1, 1]; ``forward`` draws no random numbers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from .folding import fuse_conv_bn

GENERATORS: dict[str, type[nn.Module]] = {}
ARCHITECTURE_ALIASES = {"best": "cbn"}  # names older checkpoints and artifacts carry


def register(name: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator adding a generator to the registry under ``name``."""
    def wrap(cls: type[nn.Module]) -> type[nn.Module]:
        cls.architecture = name
        GENERATORS[name] = cls
        return cls
    return wrap


def build_generator(architecture: str, config: dict | None = None) -> nn.Module:
    """Instantiate a registered generator from its config dict (unknown keys rejected)."""
    architecture = ARCHITECTURE_ALIASES.get(architecture, architecture)
    if architecture not in GENERATORS:
        raise KeyError(f"unknown generator architecture {architecture!r}; known: {sorted(GENERATORS)}")
    cls = GENERATORS[architecture]
    known = {f.name for f in fields(cls.Config)}
    extra = set(config or {}) - known
    if extra:
        raise KeyError(f"config keys {sorted(extra)} are not part of {architecture}'s config")
    return cls(cls.Config(**(config or {})))


def generator_config(net: nn.Module) -> dict:
    """The config dict that rebuilds ``net`` with :func:`build_generator`."""
    return asdict(net.config)


def init_dcgan(module: nn.Module) -> None:
    """DCGAN initialisation: N(0, 0.02) conv weights, N(1, 0.02) norm scales."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d) and m.affine:
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def up_block(cin: int, cout: int, kernel: int = 4, stride: int = 2, padding: int = 1) -> nn.Sequential:
    """ConvTranspose2d -> BatchNorm2d -> ReLU (BatchNorm folds into the conv at export)."""
    return nn.Sequential(nn.ConvTranspose2d(cin, cout, kernel, stride, padding, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class ConditionalBatchNorm2d(nn.Module):
    """BatchNorm without affine, then a per-sample scale and shift projected from the condition embedding."""

    def __init__(self, channels: int, embed_dim: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, affine=False)
        self.gain = nn.Linear(embed_dim, channels)
        self.bias = nn.Linear(embed_dim, channels)
        nn.init.zeros_(self.gain.weight), nn.init.zeros_(self.gain.bias)
        nn.init.zeros_(self.bias.weight), nn.init.zeros_(self.bias.bias)

    def forward(self, x: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        return self.modulate(x, *self.affine(embedding))

    def affine(self, embedding: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The per-sample ``(gain, bias)``, each [N, C, 1, 1], for ``embedding`` [N, E]."""
        return (1.0 + self.gain(embedding))[:, :, None, None], self.bias(embedding)[:, :, None, None]

    def modulate(self, x: torch.Tensor, gain: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """Normalise ``x`` [N, C, H, W], then scale and shift it per sample."""
        return self.bn(x) * gain + bias


class Blur(nn.Module):
    """A fixed binomial low-pass filter ([1, 2, 1] x [1, 2, 1] / 16) per channel, edges replicated.

    After a stride-2 ConvTranspose it removes the Nyquist-frequency checkerboard that the kernel's uneven
    overlap leaves (StyleGAN2's filtered upsampling).  It keeps constants, so a BatchNorm after it folds
    into the conv before it exactly."""

    def __init__(self):
        super().__init__()
        taps = torch.tensor([1.0, 2.0, 1.0])
        self.register_buffer("kernel", (taps[:, None] * taps[None, :] / 16)[None, None], persistent=False)  # [1, 1, 3, 3]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels = x.shape[1]
        padded = F.pad(x, (1, 1, 1, 1), mode="replicate")  # [N, C, H + 2, W + 2]
        return F.conv2d(padded, self.kernel.to(x.dtype).expand(channels, 1, 3, 3), groups=channels)  # [N, C, H, W]


def up_stages(size: int) -> tuple[int, int]:
    """``(doublings, base)`` that draw a ``size`` x ``size`` image from a ``base`` x ``base`` start: the most
    doublings that leave a whole base of at least 4 pixels (64 -> (4, 4), 96 -> (4, 6), 128 -> (5, 4))."""
    doublings = 0
    while size % 2 ** (doublings + 1) == 0 and size // 2 ** (doublings + 1) >= 4:
        doublings += 1
    if doublings == 0:
        raise ValueError(f"image size {size} cannot be drawn by stride-2 up-sampling from a 4x4 or larger start")
    return doublings, size // 2 ** doublings


class CBNUpBlock(nn.Module):
    """ConvTranspose2d(k4, s2) -> (a low-pass Blur) -> conditional BatchNorm -> ReLU; doubles the resolution."""

    def __init__(self, cin: int, cout: int, embed_dim: int, blur: bool = False):
        super().__init__()
        self.conv = nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False)
        self.blur = Blur() if blur else None
        self.norm = ConditionalBatchNorm2d(cout, embed_dim)

    def forward(self, x: torch.Tensor, gain: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)  # [N, Cout, 2H, 2W]
        if self.blur is not None:
            x = self.blur(x)
        return F.relu(self.norm.modulate(x, gain, bias))

    def fold_batchnorm(self) -> None:
        """Fold the running statistics into ``conv`` (eval mode only)."""
        self.conv = fuse_conv_bn(self.conv, self.norm.bn)
        self.norm.bn = nn.Identity()


@register("cbn")
class CBNGenerator(nn.Module):
    """Conditional-BatchNorm generator (the ``best`` preset's): a learned projection of the multi-hot condition
    sets every BatchNorm's per-sample gain and bias, at every scale."""

    @dataclass(frozen=True)
    class Config:
        z_dim: int = 128
        num_classes: int = 24
        embed_dim: int = 128
        ngf: int = 64
        image_size: int = 64
        render_size: int = 0  # 0: render at image_size; smaller: render there, upsample bilinearly
        embed_hidden: int = 0  # >0: add a ReLU MLP of this width to the linear embedding (objects interact)
        noise_in_norms: bool = False  # every conditional norm's gain and bias also see the noise (BigGAN-style)
        blur: bool = False  # a fixed low-pass filter after every up-sampling ConvTranspose (no checkerboard)

    def __init__(self, config: Config):
        super().__init__()
        self.config = c = config
        self.render_size = c.render_size or c.image_size
        stages, self.base = up_stages(self.render_size)  # 64: 4 doublings of 4x4; 96: 4 of 6x6
        widths = [c.ngf * min(8, 2 ** (stages - 1 - i)) for i in range(stages)] + [max(c.ngf // 2, 16)]
        self.embed = nn.Linear(c.num_classes, c.embed_dim, bias=False)
        self.fc = nn.Linear(c.z_dim + c.embed_dim, widths[0] * self.base ** 2)
        self.norm_input = c.embed_dim + (c.z_dim if c.noise_in_norms else 0)  # what the norms' projections read
        self.fc_norm = ConditionalBatchNorm2d(widths[0], self.norm_input)
        self.blocks = nn.ModuleList(CBNUpBlock(widths[i], widths[i + 1], self.norm_input, c.blur) for i in range(stages))
        self.to_rgb = nn.Conv2d(widths[-1], 3, 3, 1, 1)
        self.embed_mlp = (nn.Sequential(nn.Linear(c.num_classes, c.embed_hidden), nn.ReLU(),
                                        nn.Linear(c.embed_hidden, c.embed_dim, bias=False))
                          if c.embed_hidden else None)
        init_dcgan(self)
        if self.embed_mlp is not None:  # the residual branch starts at zero: the linear embedding's network, exactly
            nn.init.zeros_(self.embed_mlp[2].weight)
        self.fused_affine: nn.Linear | None = None  # set by fuse_affines() for inference

    def forward(self, noise: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        e = self.embed(condition)  # [N, E]
        if self.embed_mlp is not None:
            e = e + self.embed_mlp(condition)  # [N, E]: the multi-hot's sum plus what the objects do together
        styles = torch.cat([e, noise], dim=1) if self.config.noise_in_norms else e  # [N, norm_input]
        affines = self.norm_affines(styles)  # (gain, bias) [N, C, 1, 1] per conditional norm
        x = self.fc(torch.cat([noise, e], dim=1)).view(noise.shape[0], -1, self.base, self.base)  # [N, 8ngf, B, B]
        x = F.relu(self.fc_norm.modulate(x, *affines[0]))
        for block, (gain, bias) in zip(self.blocks, affines[1:]):
            x = block(x, gain, bias)  # [N, C, 2H, 2W]
        x = torch.tanh(self.to_rgb(x))  # [N, 3, R, R]
        if self.render_size != self.config.image_size:
            x = F.interpolate(x, size=(self.config.image_size, self.config.image_size), mode="bilinear", align_corners=False)
        return x  # [N, 3, H, W]

    def _norms(self) -> list[ConditionalBatchNorm2d]:
        return [self.fc_norm] + [block.norm for block in self.blocks]

    def norm_affines(self, e: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """``(gain, bias)``, each [N, C, 1, 1], of every conditional norm (``fc_norm`` first) for ``e``
        [N, norm_input] (the condition embedding, followed by the noise when ``noise_in_norms``)."""
        if self.fused_affine is None:
            return [norm.affine(e) for norm in self._norms()]
        sizes = [norm.gain.out_features for norm in self._norms() for _ in range(2)]
        parts = self.fused_affine(e)[:, :, None, None].split(sizes, dim=1)  # [N, 2 * sum C, 1, 1] -> gain, bias, ...
        return list(zip(parts[0::2], parts[1::2]))

    def fuse_affines(self) -> None:
        """One Linear for every conditional norm's gain and bias (inference: one matmul instead of ten)."""
        linears = [linear for norm in self._norms() for linear in (norm.gain, norm.bias)]
        fused = nn.Linear(self.norm_input, sum(linear.out_features for linear in linears))
        fused.weight.data = torch.cat([linear.weight.detach() for linear in linears])
        fused.bias.data = torch.cat([linear.bias.detach() + (1.0 if i % 2 == 0 else 0.0)  # gains are 1 + Linear
                                     for i, linear in enumerate(linears)])
        self.fused_affine = fused

    def fold_batchnorm(self) -> None:
        """Fold the first BatchNorm's running statistics into ``fc`` (eval mode only)."""
        bn = self.fc_norm.bn
        scale = (bn.running_var + bn.eps).rsqrt()  # [C]
        shift = -bn.running_mean * scale
        per_feature = scale.repeat_interleave(self.base ** 2)  # fc features are laid out [C, B, B]
        fc = nn.Linear(self.fc.in_features, self.fc.out_features)
        fc.weight.data = self.fc.weight.data * per_feature[:, None]
        fc.bias.data = self.fc.bias.data * per_feature + shift.repeat_interleave(self.base ** 2)
        self.fc, self.fc_norm.bn = fc, nn.Identity()


@register("dcgan")
class DCGANGenerator(nn.Module):
    """Conditional DCGAN: the condition concatenated to the noise."""

    @dataclass(frozen=True)
    class Config:
        z_dim: int = 100
        num_classes: int = 24
        ngf: int = 64
        image_size: int = 64

    def __init__(self, config: Config):
        super().__init__()
        self.config = c = config
        g = c.ngf
        self.main = nn.Sequential(
            up_block(c.z_dim + c.num_classes, g * 8, 4, 1, 0),  # [N, 8g, 4, 4]
            up_block(g * 8, g * 4), up_block(g * 4, g * 2), up_block(g * 2, g),  # [N, g, 32, 32]
            nn.ConvTranspose2d(g, 3, 4, 2, 1, bias=False), nn.Tanh(),  # [N, 3, 64, 64]
        )
        init_dcgan(self)

    def forward(self, noise: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        x = torch.cat([noise, condition], dim=1)[:, :, None, None]  # [N, Z + 24, 1, 1]
        return self.main(x)


@register("acgan")
class ACGANGenerator(nn.Module):
    """The ACGAN generator: Linear(Z + 24 -> 768), five stride-2 ConvTranspose2d to 128x128, area-resized to 64x64."""

    @dataclass(frozen=True)
    class Config:
        z_dim: int = 104
        num_classes: int = 24
        image_size: int = 64  # the 128x128 canvas is average-pooled to this size

    def __init__(self, config: Config):
        super().__init__()
        self.config = c = config
        self.fc1 = nn.Linear(c.z_dim + c.num_classes, 768)
        self.main = nn.Sequential(
            up_block(768, 384, 5, 2, 0), up_block(384, 256, 5, 2, 0),  # 1 -> 5 -> 13
            up_block(256, 192, 5, 2, 0), up_block(192, 64, 5, 2, 0),  # -> 29 -> 61
            nn.ConvTranspose2d(64, 3, 8, 2, 0, bias=False), nn.Tanh(),  # -> 128
        )
        init_dcgan(self)

    def forward(self, noise: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        x = self.fc1(torch.cat([noise, condition], dim=1))[:, :, None, None]  # [N, 768, 1, 1]
        x = self.main(x)  # [N, 3, 128, 128]
        factor = x.shape[-1] // self.config.image_size
        return F.avg_pool2d(x, factor) if factor > 1 else x  # [N, 3, 64, 64]


class SelfAttention(nn.Module):
    """SAGAN self-attention: query/key at C/8 channels, value at C, learned residual gate."""

    def __init__(self, channels: int):
        super().__init__()
        self.query_conv = nn.Conv2d(channels, channels // 8, 1)
        self.key_conv = nn.Conv2d(channels, channels // 8, 1)
        self.value_conv = nn.Conv2d(channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        q = self.query_conv(x).flatten(2).transpose(1, 2)  # [N, HW, C/8]
        k = self.key_conv(x).flatten(2)  # [N, C/8, HW]
        attn = torch.softmax(torch.bmm(q, k), dim=-1)  # [N, HW, HW]
        v = self.value_conv(x).flatten(2)  # [N, C, HW]
        out = torch.bmm(v, attn.transpose(1, 2)).view(n, c, h, w)
        return x + self.gamma * out


@register("sagan")
class SAGANGenerator(nn.Module):
    """The SAGAN generator: condition expanded by Linear(24 -> 200), self-attention at 16x16 and 32x32."""

    @dataclass(frozen=True)
    class Config:
        z_dim: int = 100
        num_classes: int = 24
        condition_dim: int = 200
        ngf: int = 64
        image_size: int = 64

    def __init__(self, config: Config):
        super().__init__()
        self.config = c = config
        g = c.ngf
        self.condition_expand = nn.Sequential(nn.Linear(c.num_classes, c.condition_dim), nn.ReLU())
        self.up4 = up_block(c.z_dim + c.condition_dim, g * 8, 4, 1, 0)  # [N, 8g, 4, 4]
        self.up8 = up_block(g * 8, g * 4)  # 8x8
        self.up16 = up_block(g * 4, g * 2)  # 16x16
        self.attn1 = SelfAttention(g * 2)
        self.up32 = up_block(g * 2, g)  # 32x32
        self.attn2 = SelfAttention(g)
        self.to_rgb = nn.ConvTranspose2d(g, 3, 4, 2, 1)  # 64x64
        init_dcgan(self)
        self._register_load_state_dict_pre_hook(rename_old_keys(SAGAN_GENERATOR_NAMES))

    def forward(self, noise: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        x = torch.cat([noise, self.condition_expand(condition)], dim=1)[:, :, None, None]  # [N, Z + 200, 1, 1]
        x = self.up16(self.up8(self.up4(x)))
        x = self.up32(self.attn1(x))
        return torch.tanh(self.to_rgb(self.attn2(x)))  # [N, 3, 64, 64]


SAGAN_GENERATOR_NAMES = {"conditionExpand.": "condition_expand.", "l1.": "up4.", "l2.": "up8.", "l3.": "up16.",
                         "l4.": "up32.", "l5.": "to_rgb."}  # checkpoints written before the rename


def rename_old_keys(names: dict[str, str]) -> Callable:
    """A ``load_state_dict`` pre-hook that reads weights saved under older submodule names."""
    def hook(state_dict, prefix, *args):
        for key in [k for k in state_dict if k.startswith(prefix)]:
            for old, new in names.items():
                if key[len(prefix):].startswith(old):
                    state_dict[prefix + new + key[len(prefix) + len(old):]] = state_dict.pop(key)
                    break
    return hook
