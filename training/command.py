"""What ``python cli.py train`` asks for, resolved into a run: the preset, the run folder, the data and the config.

A new run takes the named preset (or the one the data's kind picks) with the command's overrides; a resume takes
the data, the evaluator, the preset and every field from the run's own ``config.json``, and the command's
overrides on top (the loop refuses those a resume may not change).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from cgan_export.errors import CganError

from .data import default_cache_dir, resolve_data_root
from .presets import PRESETS, TrainConfig, default_preset, get_preset, parse_overrides, saved_config
from .run_folder import CONFIG, read_run_config


@dataclass(frozen=True)
class TrainRequest:
    """The options of ``train`` that decide what trains (paths and devices stay with the command)."""

    preset: str | None = None  # None: the saved run's on --resume, else the data's kind picks
    out: Path | None = None  # None: ~/.cache/cgan-export/runs/PRESET
    data: Path | None = None
    evaluator: Path | None = None
    resume: bool = False
    seed: int | None = None
    batch_size: int | None = None  # an explicit batch holds on every device
    eval_every: int | None = None
    epochs: float | None = None  # replaces the preset's budget
    minutes: float | None = None  # ... or this, in training minutes
    sets: tuple[str, ...] = ()  # KEY=VALUE field overrides (--set)


@dataclass(frozen=True)
class ResolvedRun:
    """Where a run trains, on what, by which config."""

    out: Path
    data: Path | None
    evaluator: Path | None
    config: TrainConfig


def resolve_run(request: TrainRequest) -> ResolvedRun:
    """The run ``request`` asks for; a resume continues the run in ``out`` as it began."""
    r = request
    preset, out, data, evaluator = r.preset, r.out, r.data, r.evaluator
    if out is None:  # the default run folder is named after the preset, which the data's kind picks
        preset = preset or default_preset(resolve_data_root(data))
        out = default_cache_dir() / "runs" / preset
    saved = read_run_config(out) if r.resume else None
    if saved is not None:
        began = {k: Path(v) for k, v in (saved.get("options") or {}).items() if k in ("data", "evaluator") and v}
        data, evaluator = data or began.get("data"), evaluator or began.get("evaluator")
        if r.preset is not None and r.preset != saved["config"].get("preset"):
            raise CganError(f"--resume: {out} holds a run of the preset {saved['config'].get('preset')!r}, not {r.preset!r}")
        preset = saved["config"].get("preset")
    preset = preset or default_preset(resolve_data_root(data))
    if preset not in PRESETS:
        raise CganError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    base = get_preset(preset) if saved is None else saved_config(saved["config"], str(out / CONFIG))
    return ResolvedRun(out=out, data=data, evaluator=evaluator, config=replace(base, **_overrides(r)))


def _overrides(r: TrainRequest) -> dict:
    """The config fields the command sets: seed, batch, evaluation period, budget, then each --set."""
    if r.epochs is not None and r.minutes is not None:
        raise CganError("--epochs and --minutes both set the budget: give one")
    fields = {k: v for k, v in {"seed": r.seed, "batch_size": r.batch_size, "eval_every": r.eval_every}.items()
              if v is not None}
    if r.batch_size is not None:
        fields["gpu_batch_size"] = 0
    if r.epochs is not None:
        fields["epochs"] = r.epochs
    elif r.minutes is not None:
        fields.update(epochs=0.0, minutes=r.minutes)
    return fields | parse_overrides(list(r.sets))
