"""One training iteration's parts: the learning-rate schedule, the epoch order, D's and G's updates."""

from __future__ import annotations

import torch
import torch.nn as nn

from . import losses
from .augment import diff_augment
from .models import Models
from .presets import TrainConfig, budget_steps


def lr_factor(config: TrainConfig, step: int, steps_per_epoch: int, elapsed: float) -> float:
    """The learning-rate multiplier at ``step``: the preset's step decay times the end-of-budget anneal.

    Step decay: ``lr_gamma`` every ``lr_step_epochs`` completed epochs.  Anneal: linear to 0 over the
    budget's last ``config.anneal`` epochs (a budget in epochs) or minutes (a budget in minutes).
    """
    factor = config.lr_gamma ** (step // steps_per_epoch // config.lr_step_epochs) if config.lr_step_epochs else 1.0
    if config.anneal <= 0:
        return factor
    budget_end = budget_steps(config, steps_per_epoch)
    if budget_end is not None:
        return factor * min(1.0, max(0.0, (budget_end - step) / (config.anneal * steps_per_epoch)))
    return factor * min(1.0, max(0.0, (config.minutes * 60 - elapsed) / (config.anneal * 60)))


def d_input(x: torch.Tensor, config: TrainConfig) -> torch.Tensor:
    """What D sees: DiffAugment, after an area downsample to ``config.d_resolution`` when set."""
    if config.d_resolution and x.shape[-1] > config.d_resolution:
        x = nn.functional.adaptive_avg_pool2d(x, config.d_resolution)
    return diff_augment(x, config.diffaugment)


def d_condition(labels: torch.Tensor, config: TrainConfig) -> torch.Tensor:
    """The condition D is shown: the labels, or zeros for InfoGAN (real images have no codes; D must not see G's)."""
    return torch.zeros_like(labels) if config.info_categories else labels


def d_step(models: Models, config: TrainConfig, real: torch.Tensor, labels: torch.Tensor, fake_labels: torch.Tensor,
           noise: torch.Tensor, autocast: dict) -> dict:
    """One discriminator update on a real batch and a generated one (drawn for ``fake_labels``); returns the loss
    terms as detached tensors (no device sync per step).  InfoGAN: the Q head learns the codes of the fakes."""
    d_loss_fn = losses.ADVERSARIAL[config.loss][0]
    with torch.autocast(**autocast):
        with torch.no_grad():
            fake = models.g(noise, fake_labels)  # [B, 3, H, W]
        real_adv, real_aux = models.d(d_input(real, config), d_condition(labels, config))
        fake_adv, fake_q = models.d(d_input(losses.widened(fake), config), d_condition(fake_labels, config))
    loss = d_loss_fn(real_adv, fake_adv)
    out = {"d_adv": loss.detach()}
    if config.info_categories:
        q = models.aux_loss(fake_q, fake_labels)
        loss = loss + config.aux_weight_d * q
        out["d_info"] = q.detach()
    elif real_aux is not None and config.aux_weight_d > 0:
        aux = models.aux_loss(real_aux, labels)
        loss = loss + config.aux_weight_d * aux
        out["d_aux"] = aux.detach()
    if config.loss == "wgan-gp":
        gp = losses.gradient_penalty(lambda x: models.d(x, d_condition(labels, config))[0], d_input(real, config),
                                     d_input(losses.widened(fake), config))
        loss = loss + config.gp_weight * gp
        out["gp"] = gp.detach()
    models.optimize(loss, models.d, models.opt_d)
    return out


def g_step(models: Models, config: TrainConfig, labels: torch.Tensor, noise: torch.Tensor, step: int, autocast: dict,
           guide: nn.Module | None = None, ms_caps: torch.Tensor | None = None) -> dict:
    """One generator update: adversarial loss plus the (ramped) auxiliary classification loss, plus the frozen
    guide classifier's loss on the same (augmented) images when one is given (the loop gives it once the
    guide's share of the budget has come).

    With a mode-seeking weight the batch's second half repeats the first half's conditions, so each
    condition is drawn twice with different noise; ``ms_caps`` [max objects + 1] caps each pair's ratio by
    its number of objects (``training/pair_distances.py``), else ``mode_seeking_target`` caps them all.
    """
    g_loss_fn = losses.ADVERSARIAL[config.loss][1]
    half = len(labels) // 2
    if config.mode_seeking_weight > 0 and half:
        labels = torch.cat([labels[:half], labels[:half], labels[2 * half:]])  # [B, 24]
    models.d.requires_grad_(False)  # D's weight gradients are not needed here: only the path to G
    with torch.autocast(**autocast):
        fake = models.g(noise, labels)
        seen = d_input(losses.widened(fake), config)  # [B, 3, H, W]
        fake_adv, fake_aux = models.d(seen, d_condition(labels, config))
        guide_logits = guide(seen) if guide is not None and config.guide_weight > 0 else None  # [B, 24]
    loss = g_loss_fn(fake_adv)
    out = {"g_adv": loss.detach()}
    if guide_logits is not None:
        guided = models.aux_loss(guide_logits, labels)  # the vocabulary's classification loss (BCE, or CE per group)
        loss = loss + config.guide_weight * guided
        out["g_guide"] = guided.detach()
    weight = losses.ramp(step, config.aux_weight_g, config.aux_ramp_steps)
    if fake_aux is not None and weight > 0:
        aux = models.aux_loss(fake_aux, labels)
        loss = loss + weight * aux
        out["g_aux"] = aux.detach()
    if config.mode_seeking_weight > 0 and half:
        target = (config.mode_seeking_target if ms_caps is None else  # [half] caps by object count
                  ms_caps[labels[:half].gt(0.5).sum(1).clamp(max=len(ms_caps) - 1)])
        ms = losses.mode_seeking(fake, noise, target)
        loss = loss + config.mode_seeking_weight * ms
        out["g_ms"] = ms.detach()
    models.optimize(loss, models.g, models.opt_g)
    models.d.requires_grad_(True)
    return out


def epoch_order(seed: int, epoch: int, n: int, weights: torch.Tensor | None = None) -> torch.Tensor:
    """The image order of one epoch (a pure function of its arguments, so resume replays it): a shuffle,
    or ``n`` draws with replacement in proportion to ``weights`` [n]."""
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    if weights is None:
        return torch.randperm(n, generator=gen)
    return torch.multinomial(weights, n, replacement=True, generator=gen)
