"""Discriminators of the presets.  Each returns ``(adversarial logits [N], auxiliary class logits [N, 24] or None)``."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
from torch.nn.utils.parametrizations import spectral_norm

from cgan_export.networks import SelfAttention, init_dcgan, rename_old_keys


def _sn(module: nn.Module, enabled: bool) -> nn.Module:
    return spectral_norm(module) if enabled else module


class MinibatchStd(nn.Module):
    """ProGAN's minibatch standard deviation: one more channel holding how much each group of ``group``
    images differs (the std over the group, averaged over channels and pixels), so D can tell a batch that
    lacks variety from a real one.  Groups take every (N / group)-th image, as StyleGAN2's do."""

    def __init__(self, group: int = 4):
        super().__init__()
        self.group = group

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        g = math.gcd(n, self.group)  # the largest group size up to ``group`` that divides the batch
        y = x.float().reshape(g, n // g, c, h, w)  # [G, N/G, C, H, W]
        std = (y.var(dim=0, unbiased=False) + 1e-8).sqrt().mean(dim=(1, 2, 3))  # [N/G]
        plane = std.repeat(g).view(n, 1, 1, 1).expand(n, 1, h, w).to(x.dtype)  # [N, 1, H, W]
        return torch.cat([x, plane], dim=1)  # [N, C + 1, H, W]


class ProjectionDiscriminator(nn.Module):
    """Spectral-norm convs, a projection head for the multi-hot condition, and a 24-way auxiliary head."""

    def __init__(self, num_classes: int = 24, ndf: int = 64, image_size: int = 64, sn: bool = True,
                 aux_hidden: int = 0, minibatch_std: int = 0):
        super().__init__()
        widths = [3, ndf, ndf * 2, ndf * 4, ndf * 8]
        layers: list[nn.Module] = []
        for i, (cin, cout) in enumerate(zip(widths[:-1], widths[1:])):  # 64 -> 32 -> 16 -> 8 -> 4
            std_channel = int(minibatch_std > 0 and i == len(widths) - 2)  # the last conv also sees the group std
            layers += [MinibatchStd(minibatch_std)] if std_channel else []
            layers += [_sn(nn.Conv2d(cin + std_channel, cout, 4, 2, 1), sn), nn.LeakyReLU(0.2, inplace=True)]
        self.features = nn.Sequential(*layers)
        self.adv = _sn(nn.Linear(widths[-1], 1), sn)
        self.embed = _sn(nn.Linear(num_classes, widths[-1], bias=False), sn)
        self.aux = nn.Linear(widths[-1], num_classes)
        # aux_hidden > 0: a ReLU MLP over sum- and max-pooled features joins the linear auxiliary head (objects
        # that share a colour are told apart by what the sum alone mixes); its output layer starts at zero,
        # so a fine-tune that adds it starts from exactly the trained discriminator.
        self.aux_mlp = (nn.Sequential(nn.Linear(2 * widths[-1], aux_hidden), nn.ReLU(), nn.Linear(aux_hidden, num_classes))
                        if aux_hidden else None)
        if self.aux_mlp is not None:
            nn.init.zeros_(self.aux_mlp[2].weight), nn.init.zeros_(self.aux_mlp[2].bias)

    def forward(self, image: torch.Tensor, condition: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.features(image)  # [N, 8ndf, 4, 4]
        h = features.sum(dim=(2, 3))  # [N, 8ndf]
        projection = (self.embed(condition) * h).sum(dim=1, keepdim=True)  # [N, 1]
        aux = self.aux(h)  # [N, 24]
        if self.aux_mlp is not None:
            aux = aux + self.aux_mlp(torch.cat([h, features.amax(dim=(2, 3))], dim=1))  # [N, 24]
        return (self.adv(h) + projection).squeeze(1).float(), aux.float()


class ACGANDiscriminator(nn.Module):
    """The ACGAN discriminator: six 3x3 convs with dropout, ``fc_dis`` (real/fake) and ``fc_aux`` (24 classes), no condition input."""

    def __init__(self, num_classes: int = 24, image_size: int = 64, group_heads: list[list[int]] | None = None,
                 head_hidden: int = 256):
        super().__init__()

        def block(cin: int, cout: int, stride: int, pad: int, bn: bool = True) -> nn.Sequential:
            mods = [nn.Conv2d(cin, cout, 3, stride, pad, bias=False)] + ([nn.BatchNorm2d(cout)] if bn else [])
            return nn.Sequential(*mods, nn.LeakyReLU(0.2, inplace=True), nn.Dropout(0.25))

        self.convs = nn.Sequential(block(3, 16, 2, 1, bn=False), block(16, 32, 1, 0), block(32, 64, 2, 1),
                                   block(64, 128, 1, 0), block(128, 256, 2, 1), block(256, 512, 1, 0))
        with torch.no_grad():
            flat = self.convs(torch.zeros(1, 3, image_size, image_size)).numel()  # 512 * 5 * 5 at 64x64
        self.fc_dis = nn.Linear(flat, 1)
        # group_heads (seed 002): one three-layer MLP per attribute group instead of fc_aux, each scoring that
        # group's values (the member indices of the condition vector); softmax is the loss's business
        self.group_members = [torch.tensor(m) for m in group_heads or []]
        self.fc_aux = (nn.Linear(flat, num_classes) if not group_heads else nn.ModuleList(
            nn.Sequential(nn.Linear(flat, head_hidden), nn.LeakyReLU(0.2), nn.Linear(head_hidden, head_hidden),
                          nn.LeakyReLU(0.2), nn.Linear(head_hidden, len(m))) for m in group_heads))
        self.num_classes = num_classes
        init_dcgan(self)

    def forward(self, image: torch.Tensor, condition: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.convs(image).flatten(1)  # [N, 512 * 5 * 5]
        if not self.group_members:
            return self.fc_dis(h).squeeze(1).float(), self.fc_aux(h).float()
        aux = h.new_zeros(len(h), self.num_classes, dtype=torch.float32)  # [N, C]
        for members, head in zip(self.group_members, self.fc_aux):
            aux[:, members.to(h.device)] = head(h).float()  # [N, group size]
        return self.fc_dis(h).squeeze(1).float(), aux


class ConditionChannelDiscriminator(nn.Module):
    """The conditional DCGAN / WGAN-GP critic: DCGAN convs over the image plus a 4th channel Linear(24 -> H*W); BatchNorm or InstanceNorm."""

    def __init__(self, num_classes: int = 24, ndf: int = 64, image_size: int = 64, norm: str = "batch"):
        super().__init__()
        self.image_size = image_size
        self.labels_input = nn.Linear(num_classes, image_size * image_size)
        make_norm = {"batch": nn.BatchNorm2d, "instance": lambda c: nn.InstanceNorm2d(c, affine=True)}[norm]

        def block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, 4, 2, 1, bias=False), make_norm(cout), nn.LeakyReLU(0.2, inplace=True))

        self.main = nn.Sequential(
            nn.Conv2d(4, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True),  # 32x32
            block(ndf, ndf * 2), block(ndf * 2, ndf * 4), block(ndf * 4, ndf * 8),  # 4x4
            nn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False),  # 1x1
        )
        init_dcgan(self)

    def forward(self, image: torch.Tensor, condition: torch.Tensor) -> tuple[torch.Tensor, None]:
        plane = self.labels_input(condition).view(-1, 1, self.image_size, self.image_size)  # [N, 1, H, W]
        return self.main(torch.cat([image, plane.to(image.dtype)], dim=1)).flatten().float(), None


class SAGANDiscriminator(nn.Module):
    """The SAGAN discriminator: spectral-norm convs with self-attention at 16x16 and 8x8, projection head."""

    def __init__(self, num_classes: int = 24, ndf: int = 64, image_size: int = 64):
        super().__init__()
        self.down32 = nn.Sequential(spectral_norm(nn.Conv2d(3, ndf, 4, 2, 1)), nn.LeakyReLU(0.1))  # 32
        self.down16 = nn.Sequential(spectral_norm(nn.Conv2d(ndf, ndf * 2, 4, 2, 1)), nn.LeakyReLU(0.1))  # 16
        self.attn1 = SelfAttention(ndf * 2)
        self.down8 = nn.Sequential(spectral_norm(nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1)), nn.LeakyReLU(0.1))  # 8
        self.attn2 = SelfAttention(ndf * 4)
        self.down4 = nn.Sequential(spectral_norm(nn.Conv2d(ndf * 4, ndf * 8, 4, 2, 1)), nn.LeakyReLU(0.1))  # 4
        self.adv = spectral_norm(nn.Linear(ndf * 8, 1))
        self.embed = spectral_norm(nn.Linear(num_classes, ndf * 8, bias=False))
        self._register_load_state_dict_pre_hook(rename_old_keys({"l1.": "down32.", "l2.": "down16.", "l3.": "down8.",
                                                                 "l4.": "down4."}))

    def forward(self, image: torch.Tensor, condition: torch.Tensor) -> tuple[torch.Tensor, None]:
        x = self.attn1(self.down16(self.down32(image)))
        h = self.down4(self.attn2(self.down8(x))).sum(dim=(2, 3))  # [N, 8ndf]
        return (self.adv(h).squeeze(1) + (self.embed(condition) * h).sum(1)).float(), None


DISCRIMINATORS = {
    "projection": ProjectionDiscriminator,
    "acgan": ACGANDiscriminator,
    "condition-channel": ConditionChannelDiscriminator,
    "sagan": SAGANDiscriminator,
}


def build_discriminator(name: str, config: dict) -> nn.Module:
    """Instantiate a discriminator by name with keyword config."""
    return DISCRIMINATORS[name](**config)
