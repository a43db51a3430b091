"""Training presets: the seed reports' models by name, and our own ``best``."""

from __future__ import annotations

import json
import math
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from pathlib import Path

from cgan_export.errors import CganError
from cgan_export.networks import ARCHITECTURE_ALIASES
from cgan_export.vocabulary import GROUPS_FILE


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run, its schedule included (paths and devices excluded)."""

    preset: str
    generator: str  # architecture of G (cgan_export.networks)
    # -- schedule: how long the run trains and how it ends (a resume may change it: BUDGET_FIELDS) --
    epochs: float = 0.0  # budget in epochs over all resumes (0: a budget in minutes)
    minutes: float = 60.0  # budget in training minutes over all resumes, when epochs is 0
    anneal: float = 0.0  # learning rates fall linearly to 0 over the budget's last ANNEAL epochs (or minutes)
    gpu_batch_size: int = 0  # on CUDA: this batch, learning rates x sqrt(its ratio), EMA per image kept (0: as on the CPU)
    # -- networks and losses --
    image_size: int = 64  # the run trains at this size: its data is resized to it (the anime faces' own: 96)
    generator_config: dict = field(default_factory=dict)
    discriminator: str = "projection"
    discriminator_config: dict = field(default_factory=dict)
    loss: str = "hinge"  # bce | hinge | wgan-gp
    aux_weight_d: float = 0.0  # auxiliary BCE (summed over classes) on real images, in D
    aux_weight_g: float = 0.0  # auxiliary BCE on generated images, in G
    aux_ramp_steps: int = 0
    mode_seeking_weight: float = 0.0  # MSGAN: G pays weight / (image distance / noise distance) over paired draws
    mode_seeking_target: float = 0.0  # > 0: each pair's distance ratio counts only up to this (the real data's)
    mode_seeking_real_share: float = 0.0  # > 0: ... and up to this share of real pairs' ratio with as many objects
    mode_seeking_min_objects: int = 0  # > 0: pairs of fewer objects than this pay no mode-seeking term
    random_condition_fraction: float = 0.0  # share of generated images drawn for random conditions, not the batch's
    random_same_colour: float = 0.0  # share of those random conditions that pair two objects of one colour
    same_colour_weight: float = 1.0  # sampling weight of training images pairing two objects of one colour (1: uniform)
    guide_weight: float = 0.0  # G also pays this x the guide classifier's loss on its images (--guide, else trained in-run)
    guide_resolution: int = 0  # a guide trained in-run sees images area-downsampled to this size (0: full size)
    guide_epochs: int = 6  # epochs of a guide trained in-run
    guide_start: float = 0.0  # share of the budget (epochs or minutes) spent before the guide joins G's loss
    info_categories: int = 0  # InfoGAN: values of the categorical code (with info_continuous 0: a labelled run)
    info_continuous: int = 0  # InfoGAN: number of continuous codes (uniform on [-1, 1] in training)
    info_weight: float = 1.0  # InfoGAN: weight of the continuous codes' squared error beside the categorical CE
    d_warmup_steps: int = 0  # first iterations train D alone against a frozen G (fine-tuning a G whose D is lost)
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    batch_size: int = 64
    n_critic: int = 1
    gp_weight: float = 10.0
    lr_step_epochs: int = 0  # StepLR period in epochs (0: constant)
    lr_gamma: float = 0.5
    ema_decay: float = 0.0  # 0: no EMA copy of G
    diffaugment: str = ""  # e.g. "color,translation"
    d_resolution: int = 0  # 0: D sees full-size images; smaller: real and fake are area-downsampled first
    eval_every: int = 500
    eval_seeds: int = 10  # checkpoints are picked by the mean lab accuracy over this many noise seeds
    bf16: bool = True  # bf16 autocast on the CPU (CUDA runs fp32 with TF32: models.autocast_for)
    channels_last: bool = True
    seed: int = 0

    def to_dict(self) -> dict:
        """A JSON-friendly dict (tuples become lists)."""
        d = asdict(self)
        d["betas"] = list(self.betas)
        return d


PRESETS: dict[str, TrainConfig] = {
    # ACGAN (seed report 000): BCE + auxiliary BCE x48 (D, real) / x24 (G), ramped over 1000 iterations.
    # The reported weights multiply a mean over 24 classes; ours is summed over classes, hence /24.
    "acgan": TrainConfig(
        preset="acgan", generator="acgan", discriminator="acgan", loss="bce",
        aux_weight_d=48 / 24, aux_weight_g=24 / 24, aux_ramp_steps=1000,
        lr_g=2e-4, lr_d=2e-4, batch_size=128, epochs=400),  # the report: 400 epochs, 56,400 iterations
    # ACGAN for attribute groups (seed report 002, anime faces): the ACGAN networks with one three-layer MLP head
    # per group in D, a softmax cross-entropy per group (the loss follows the data's groups.json).  The report's
    # optimisers (Adam lr 1e-3 for G, SGD 1e-4 for D) collapsed in its own runs; seed 000's Adam 2e-4 is used.
    "group-acgan": TrainConfig(
        preset="group-acgan", generator="acgan", discriminator="acgan", discriminator_config={"group_heads": True},
        loss="bce", aux_weight_d=1.0, aux_weight_g=1.0, lr_g=2e-4, lr_d=2e-4, batch_size=32),
    # Conditional DCGAN (seed report 001): condition as a 4th channel in D, BCE, StepLR x0.5 every 50 epochs.
    "cdcgan": TrainConfig(
        preset="cdcgan", generator="dcgan", generator_config={"z_dim": 100},
        discriminator="condition-channel", discriminator_config={"norm": "batch"}, loss="bce",
        lr_g=2e-4, lr_d=1e-4, batch_size=128, lr_step_epochs=50, lr_gamma=0.5, epochs=700),  # the report: 700 epochs
    # WGAN-GP (seed report 003): InstanceNorm critic, 5 critic steps, penalty 10, Adam(0, 0.9).
    "wgan-gp": TrainConfig(
        preset="wgan-gp", generator="dcgan", generator_config={"z_dim": 100},
        discriminator="condition-channel", discriminator_config={"norm": "instance"}, loss="wgan-gp",
        lr_g=2e-4, lr_d=2e-4, betas=(0.0, 0.9), batch_size=128, n_critic=5, gp_weight=10.0, bf16=False,
        epochs=86),  # the report's figure (0.625) is its epoch 86
    # SAGAN (seed report 004): spectral norm, hinge loss, condition through Linear(24 -> 200), lr 1e-4, batch 64.
    "sagan": TrainConfig(
        preset="sagan", generator="sagan", discriminator="sagan", loss="hinge",
        lr_g=1e-4, lr_d=1e-4, betas=(0.0, 0.9), batch_size=64, epochs=300),  # the report: 300 epochs
    # Ours: conditional-BN generator, SN projection discriminator with an auxiliary multi-label head,
    # hinge loss, EMA generator (with standing BatchNorm statistics), strong auxiliary signal from the start,
    # DiffAugment translation of D's inputs (without it D memorises the 18k images after ~60 epochs;
    # no colour jitter: colour is half of every label).
    # Sized for CPU: ngf/ndf 32 at batch 32 gives several times the iterations per minute of ngf/ndf 64 at
    # batch 64 (measure with benchmarks/train_speed.py).
    # The noise must matter: G pays MSGAN's mode-seeking term over pairs of images drawn for one condition
    # with two noises, each pair's image/noise distance ratio counting only up to 0.03. Two real images of
    # one object set differ by 0.053 mean abs per pixel and two noises by E|z1 - z2| = 1.128: a real ratio
    # of 0.047. Capped there, G overshot (diversity 1.2x the real data's, with smudged backgrounds and a
    # rising Fréchet distance); at 0.03 it keeps ~0.87 of the real diversity with cleaner images
    # (docs/results.md, "Diverse generator candidates"). Single objects always sit at the centre: two real
    # ones differ by only 0.033 (a ratio of 0.029), so 0.03 makes G move them sideways (7.9 px spread of their
    # centres, real 0.1 px). So each pair is also capped at 0.67 of the real ratio of its object count
    # (0.019 for one object, 0.03 for more; training/pair_distances.py): single objects stay centred (one
    # object 1.78x its Fréchet floor, one cap 2.98x). At 200 epochs that cost scenes of two objects more than
    # it gave (1.89x over all images against one cap's 1.79x); at 300 epochs 1.57x, at 400 1.46x (docs/results.md).
    # Layouts first, then legible objects: for the budget's last 15% G also pays a frozen guide classifier's
    # loss on 32x32 area means of its images (trained on the run's data before step 0, into RUN/guide.pt).
    # From step 0, or at full size, the guide is gamed: one layout per condition, striped spheres; late and
    # coarse, it lifted a 120-minute run from 0.90 / 0.89 to 0.95 / 0.95 within 2,000 iterations while the
    # layouts stayed (docs/results.md, "One command").
    # G low-pass filters after every up-sampling ConvTranspose (blur): at equal iterations from 20,000 on, the
    # Fréchet ratio is about half the unfiltered G's (3.5x against 7.8x at 30,000) and both accuracies higher,
    # for ~10% more per step (docs/training.md, "Candidates at equal minutes").
    # The schedule: 170 epochs (95,540 iterations at batch 32: ~190 minutes on the 2-core Zen 4 machine of the
    # shipped run), the guide joining after epoch 140, the learning rates falling linearly to 0 over the last 20.
    # The shipped generator's run (no filter) took 400 epochs, the guide from 340; its best.pt (iteration
    # 212,000) came before its anneal and second cycle, which did not lower its 1.46x Fréchet ratio. From a
    # 170-epoch run's end at 2.10x, a 10-epoch anneal fell to 1.82x where the same 10 epochs at constant rates
    # wandered at 1.96-2.14x, accuracy within its spread (docs/training.md, "The preset's own command to its end").
    # The guide's 30 epochs: the shipped run first met the Fréchet target 32 epochs after its guide joined, and a
    # filtered run guided for 20 epochs ended at 1.51x, still falling (docs/training.md, "Candidates").
    # On CUDA batch 128 (4.5x the images/s of batch 32 on an H200; benchmarks/train_speed.py).
    # channels_last weights and batches: 1.18x the bf16 step on a 2-core Zen 4 (2026-12-07), 1.09x on a Xeon with
    # AMX (2026-12-02, 12-04); the faces preset at 96x96 1.05x (benchmarks/train_speed.py --rounds 3; docs/speed.md).
    "best": TrainConfig(
        preset="best", epochs=170, gpu_batch_size=128, eval_every=1000,
        generator="cbn", generator_config={"z_dim": 128, "ngf": 32, "blur": True},
        mode_seeking_weight=1.0, mode_seeking_target=0.03, mode_seeking_real_share=0.67,
        guide_weight=1.0, guide_resolution=32, guide_start=140 / 170, anneal=20,
        discriminator="projection", discriminator_config={"ndf": 32}, loss="hinge",
        aux_weight_d=1.0, aux_weight_g=1.0, aux_ramp_steps=0, diffaugment="translation",
        lr_g=2e-4, lr_d=2e-4, betas=(0.5, 0.999), batch_size=32, ema_decay=0.999, bf16=True, channels_last=True),
    # InfoGAN (seed report 002's bonus): no labels; G draws for codes (a 10-way categorical and 2 continuous),
    # D's auxiliary head is the Q head that recovers them from G's images (categorical CE + squared error, in
    # G and D); D sees no condition.  The networks are `best`'s.  Left alone, G moves all the variation into
    # the codes, which Q can read, and drops the noise (per-pixel std over noises at fixed codes 0.13 of the
    # real faces'); mode seeking over pairs with the same codes keeps it at 0.55 (docs/results.md, "InfoGAN faces").
    "infogan": TrainConfig(
        preset="infogan", generator="cbn", generator_config={"z_dim": 64, "ngf": 32},
        discriminator="projection", discriminator_config={"ndf": 32}, loss="hinge",
        info_categories=10, info_continuous=2, aux_weight_d=1.0, aux_weight_g=1.0,
        info_weight=0.5,  # half weight on the continuous codes: at 1.0 they crowd out the noise
        mode_seeking_weight=1.0, mode_seeking_target=0.15,  # mode seeking at fixed codes keeps the noise alive
        diffaugment="translation", batch_size=32, ema_decay=0.999, bf16=True,
        channels_last=False,  # 1.01x its bf16 step with channels_last on the Zen 4 of 2026-12-07: no gain
        epochs=280),  # the report: 100,000 iterations at batch 32 (280 epochs of the 11,418 faces)
}


# The anime faces (seed report 002's data; attribute groups: one hair and one eye colour per face), the preset
# `train` picks for a data folder with a groups.json: `best`'s networks and losses at the data's own 96x96 (a 6x6
# start and four doublings; D's features are summed over 6x6), with no guide: a 32x32 guide classifier read eye
# colour from blobs, and G answered with oversized eyes and a Fréchet ratio of 1.65x instead of 1.35x
# (docs/faces-and-codes.md). The budget: 100 epochs of the 11,418 faces (35,600 iterations at batch 32).
# Mode seeking without best's fixed ceiling (0.03, an i-CLEVR figure): two real faces of one hair x eyes set
# differ 14x more than that (ratio 0.43), so the ceiling switched the term off; the cap is 0.67 of the real
# ratio (0.29), the rule i-CLEVR's pairs follow (docs/faces-and-codes.md, "The faces preset").
PRESETS["faces"] = replace(PRESETS["best"], preset="faces", image_size=96, epochs=100, guide_weight=0.0,
                           mode_seeking_target=0.0, anneal=0.0)  # the shipped faces run's constant rates
GROUPS_PRESET = "faces"  # what `train` runs on a data folder of the attribute-groups kind when no preset is named


def default_preset(data_root: Path) -> str:
    """The preset ``train`` runs when none is named: ``faces`` for a folder of attribute groups, else ``best``."""
    return GROUPS_PRESET if (Path(data_root) / GROUPS_FILE).is_file() else "best"


def get_preset(name: str, **overrides) -> TrainConfig:
    """A preset by name, with field overrides (e.g. ``batch_size=8`` for tests)."""
    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r}; known: {sorted(PRESETS)}")
    return replace(PRESETS[name], **overrides)


def for_device(config: TrainConfig, device_type: str) -> TrainConfig:
    """The schedule ``config`` trains by on ``device_type``: on CUDA its ``gpu_batch_size``, with the learning
    rates scaled by the square root of the batch ratio and the EMA decay raised to the ratio (the same EMA
    horizon in images); elsewhere ``config`` itself."""
    if device_type != "cuda" or config.gpu_batch_size in (0, config.batch_size):
        return config
    ratio = config.gpu_batch_size / config.batch_size
    return replace(config, batch_size=config.gpu_batch_size, lr_g=config.lr_g * ratio ** 0.5,
                   lr_d=config.lr_d * ratio ** 0.5, ema_decay=config.ema_decay ** ratio if config.ema_decay else 0.0)


def budget_steps(config: TrainConfig, steps_per_epoch: int) -> int | None:
    """The run's budget in iterations for a budget in epochs; None for a budget in minutes."""
    if not config.epochs:
        return None
    return max(1, math.ceil(config.epochs * steps_per_epoch))


def describe_schedule(config: TrainConfig) -> str:
    """One line: the budget, the anneal and the guide's start of ``config`` (for ``train --help``)."""
    unit = "epochs" if config.epochs else "minutes"
    budget = config.epochs or config.minutes
    parts = [f"{budget:g} {unit}"] + ([f"{config.image_size}x{config.image_size}"] if config.image_size != TrainConfig.image_size else [])
    if config.anneal:
        parts.append(f"anneal over the last {config.anneal:g}")
    if config.guide_weight and config.guide_start:
        parts.append(f"guide from {config.guide_start * budget:g}")
    if config.gpu_batch_size:
        parts.append(f"batch {config.batch_size} (CUDA {config.gpu_batch_size})")
    return ", ".join(parts)


def parse_overrides(items: list[str]) -> dict:
    """``["ema_decay=0", "diffaugment=color,translation"]`` -> config field overrides (values read as JSON,
    else kept as text); unknown fields and malformed items are a :class:`CganError`."""
    known = {f.name for f in fields(TrainConfig)} - {"preset"}
    overrides = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in known:
            raise CganError(f"--set {item!r}: expected KEY=VALUE with KEY one of {', '.join(sorted(known))}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        overrides[key] = tuple(value) if key == "betas" and isinstance(value, list) else value
    return overrides


SCORING_FIELDS = ("eval_every", "eval_seeds")  # how a run is scored, not how it trains: a resume may change them
BUDGET_FIELDS = ("epochs", "minutes", "anneal", "guide_start")  # how long it trains, how it ends and when its
# guide joins: a resume may lengthen (or shorten) the run, end it with an anneal and move the guide with it
DEVICE_FIELDS = ("gpu_batch_size",)  # what for_device reads: its effect (batch, learning rates, EMA) is compared
LAYOUT_FIELDS = ("channels_last",)  # the weights' memory layout: it changes the rounding order, not the run
RETIRED_FIELDS = {"guide_start_step": 0}  # fields older runs saved; at these values they changed nothing


def _as_saved_now(saved: dict) -> dict:
    """A run's saved config in today's names: retired fields at their inert values dropped, renamed
    architectures mapped."""
    saved = {k: v for k, v in saved.items() if not (k in RETIRED_FIELDS and v == RETIRED_FIELDS[k])}
    if "generator" in saved:  # runs started before an architecture was renamed
        saved["generator"] = ARCHITECTURE_ALIASES.get(saved["generator"], saved["generator"])
    return saved


def saved_config(saved: dict, source: str) -> TrainConfig:
    """The :class:`TrainConfig` a run saved (``config.json``'s ``config``), as a resume continues it; fields this
    version does not know, or lacks, are a :class:`CganError` naming ``source``."""
    saved = _as_saved_now(saved)
    if "betas" in saved:
        saved["betas"] = tuple(saved["betas"])
    try:
        return TrainConfig(**saved)
    except TypeError as exc:
        raise CganError(f"{source} is not a run config this version can continue ({exc})") from None


def check_resume_config(saved: dict, config: TrainConfig, out: Path, source: str = "--resume: {out}/last.pt") -> None:
    """Refuse to resume a run (or branch from its snapshot: ``source`` names it) under another config than the one
    it was trained with (scoring fields aside)."""
    free = SCORING_FIELDS + BUDGET_FIELDS + DEVICE_FIELDS + LAYOUT_FIELDS
    wanted = {k: v for k, v in config.to_dict().items() if k not in free}
    saved = {k: v for k, v in _as_saved_now(saved).items() if k not in free}
    defaults = {f.name: f.default for f in fields(TrainConfig) if f.default is not MISSING}
    saved = {**{k: defaults[k] for k in wanted if k not in saved and k in defaults}, **saved}
    diff = sorted(k for k in set(saved) | set(wanted) if saved.get(k) != wanted.get(k))
    if diff:
        details = ", ".join(f"{k}: run has {saved.get(k)!r}, asked {wanted.get(k)!r}" for k in diff)
        raise CganError(f"{source.format(out=out)} was trained with another config ({details})")
