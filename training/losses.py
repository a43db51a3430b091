"""GAN losses on logits: BCE, hinge, WGAN-GP, and the multi-label auxiliary classification loss."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F


def widened(x: torch.Tensor) -> torch.Tensor:
    """Half-precision autocast outputs as fp32 (what losses, DiffAugment and D take); fp32 and fp64 as they are."""
    return x.float() if x.dtype in (torch.bfloat16, torch.float16) else x


def bce_d(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Discriminator BCE: real -> 1, fake -> 0 (on logits)."""
    return (F.binary_cross_entropy_with_logits(real, torch.ones_like(real))
            + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake)))


def bce_g(fake: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator BCE: fake -> 1."""
    return F.binary_cross_entropy_with_logits(fake, torch.ones_like(fake))


def hinge_d(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Hinge: E[max(0, 1 - D(x))] + E[max(0, 1 + D(G(z)))]."""
    return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()


def hinge_g(fake: torch.Tensor) -> torch.Tensor:
    """Hinge generator loss: -E[D(G(z))]."""
    return -fake.mean()


def wgan_d(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Critic loss: E[D(G(z))] - E[D(x)] (the gradient penalty is added separately)."""
    return fake.mean() - real.mean()


def wgan_g(fake: torch.Tensor) -> torch.Tensor:
    """WGAN generator loss: -E[D(G(z))]."""
    return -fake.mean()


ADVERSARIAL: dict[str, tuple[Callable, Callable]] = {
    "bce": (bce_d, bce_g),
    "hinge": (hinge_d, hinge_g),
    "wgan-gp": (wgan_d, wgan_g),
}


def gradient_penalty(critic: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor, fake: torch.Tensor,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """WGAN-GP: E[(||grad_x D(x_hat)||_2 - 1)^2] on random interpolates of real and fake."""
    alpha = torch.rand(real.shape[0], 1, 1, 1, generator=generator, device=real.device)  # [B, 1, 1, 1]
    mixed = (alpha * real + (1 - alpha) * fake.detach()).requires_grad_(True)
    scores = critic(mixed)
    grad, = torch.autograd.grad(scores.sum(), mixed, create_graph=True)
    return (grad.flatten(1).norm(2, dim=1) - 1.0).pow(2).mean()


def aux_bce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Multi-label BCE summed over the classes and averaged over the batch ([B, 24] each)."""
    return F.binary_cross_entropy_with_logits(widened(logits), labels, reduction="sum") / logits.shape[0]


def aux_group_ce(logits: torch.Tensor, labels: torch.Tensor, groups: tuple) -> torch.Tensor:
    """Attribute groups (seed 002): a softmax cross-entropy over each group's values, summed over the groups and
    averaged over the batch.  ``logits``, ``labels`` [B, C]; ``groups``: (name, member indices) pairs."""
    logits = widened(logits)
    total = logits.new_zeros(())
    for _, members in groups:
        idx = torch.tensor(members, device=logits.device)
        total = total + F.cross_entropy(logits[:, idx], labels[:, idx].argmax(dim=1))
    return total


def info_loss(q: torch.Tensor, codes: torch.Tensor, categories: int, weight: float) -> torch.Tensor:
    """InfoGAN's mutual-information term: the categorical code's cross-entropy plus ``weight`` x the squared error
    of the continuous codes (a fixed-variance Gaussian Q).  ``q``, ``codes`` [B, K + M]."""
    q = widened(q)
    ce = F.cross_entropy(q[:, :categories], codes[:, :categories].argmax(dim=1))
    return ce + weight * (q[:, categories:] - codes[:, categories:]).pow(2).sum(dim=1).mean()


def auxiliary_loss(groups: tuple = (), categories: int = 0, info_weight: float = 1.0
                   ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The auxiliary loss of a vocabulary: multi-label BCE for objects, a cross-entropy per group for attribute
    groups (``Vocabulary.groups``), the InfoGAN term for codes (``categories`` > 0)."""
    if categories:
        return lambda q, codes: info_loss(q, codes, categories, info_weight)
    if not groups:
        return aux_bce
    return lambda logits, labels: aux_group_ce(logits, labels, groups)


def mode_seeking(images: torch.Tensor, noise: torch.Tensor, target: float | torch.Tensor = 0.0,
                 eps: float = 1e-5) -> torch.Tensor:
    """MSGAN's mode-seeking term, to minimise: mean over pairs of 1 / (|G(z1) - G(z2)| / |z1 - z2|) (mean abs
    distances), each pair's ratio capped at ``target`` when it is > 0 (a tensor [h]: one cap per pair, where a
    cap of 0 leaves that pair out).

    The batch's two halves pair images drawn for the same conditions ([2h, ...] each); collapsed pairs (same
    image for different noise) make it large.  With the cap, a pair already as far apart as two real images
    of one object set gets no push to differ more (G would buy the excess with lighting and blur).
    """
    h = images.shape[0] // 2
    ratio = (widened((images[:h] - images[h:2 * h]).abs()).flatten(1).mean(1)
             / (noise[:h] - noise[h:2 * h]).abs().mean(1))  # [h]
    if isinstance(target, torch.Tensor):
        target = target.to(ratio)
        kept = target.gt(0).to(ratio)  # [h] 1: the pair pays the term
        ratio = torch.minimum(ratio, target)
        return (kept / (ratio + eps)).sum() / kept.sum().clamp(min=1.0)
    if target > 0:
        ratio = ratio.clamp(max=target)
    return (1.0 / (ratio + eps)).mean()


def ramp(step: int, weight: float, ramp_steps: int) -> float:
    """``weight`` ramped linearly from 0 over the first ``ramp_steps`` steps (the ACGAN recipe)."""
    if ramp_steps <= 0:
        return weight
    return weight * min(1.0, step / ramp_steps)
