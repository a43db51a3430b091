"""Starting a run from another: another run's weights (``--init-from``), and the frozen guide classifier."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.distributed
import torch.nn as nn
from rich.console import Console

from cgan_export.checkpoint import GENERATOR_KIND
from cgan_export.errors import CganError, first_line
from cgan_export.networks import ARCHITECTURE_ALIASES, build_generator, generator_config

from .data import ICLEVRData
from .distributed import Distributed
from .guide import GuideConfig, fit_guide, load_guide
from .models import Models
from .options import RunOptions
from .presets import TrainConfig

if TYPE_CHECKING:
    from .carry_on import RunState

GUIDE_FILE = "guide.pt"  # a guide trained in-run, in the run folder


def init_from(models: Models, config: TrainConfig, path: Path, device: torch.device, console: Console) -> dict:
    """Load another run's ``last.pt`` into ``models`` (same networks, any other settings), or only G and its
    EMA copy from a generator checkpoint (``best.pt``, ``exported/generator.pt``: D starts fresh);
    returns where it came from."""
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(saved, dict) and saved.get("kind") == GENERATOR_KIND:
            return _init_from_generator(models, saved, path, console)
        fresh = models.load_for_finetuning(saved["models"], config)
    except FileNotFoundError:
        raise CganError(f"--init-from: {path} does not exist") from None
    except (KeyError, TypeError, RuntimeError, ValueError, OSError) as exc:
        first = first_line(exc)
        raise CganError(f"--init-from: {path} is not a run's last.pt with the same networks as this preset ({first})") from None
    source = {"path": str(path), "step": saved["state"]["step"], "images_seen": saved["state"]["images_seen"],
              "minutes": round(saved["state"]["elapsed"] / 60, 2), "config": saved["config"]}
    if saved["state"].get("init_from"):  # a fine-tune of a fine-tune: keep the whole lineage
        source["init_from"] = saved["state"]["init_from"]
    console.print(f"starting from {path} (step {source['step']}, {source['minutes']:.1f} min trained)")
    if fresh:
        console.print(f"new parameters, not in the source, start from their initial values: {', '.join(fresh)}")
    return source


def _init_from_generator(models: Models, saved: dict, path: Path, console: Console) -> dict:
    """G and its EMA copy from a generator checkpoint; D and both optimizers keep their fresh state."""
    architecture = ARCHITECTURE_ALIASES.get(saved["architecture"], saved["architecture"])
    if architecture != models.g.architecture or generator_config(build_generator(architecture, saved["config"])) != generator_config(models.g):
        raise CganError(f"--init-from: {path} holds a {saved['architecture']} generator with config {saved['config']}, "
                        f"not this run's {models.g.architecture} {generator_config(models.g)}")
    for net in (models.g, models.g_ema):
        if net is not None:
            net.load_state_dict(saved["state_dict"])
    training = saved.get("training", {})
    source = {"path": str(path), "step": training.get("step", 0), "images_seen": training.get("images_seen", 0),
              "minutes": training.get("minutes", 0.0), "config": training.get("config", {}), "generator_only": True}
    if "init_from" in training:
        source["init_from"] = training["init_from"]
    console.print(f"starting G from the generator checkpoint {path} (step {source['step']}); D starts fresh")
    return source


def train_run_guide(config: TrainConfig, options: RunOptions, data: ICLEVRData, console: Console) -> Path:
    """Phase 0 of a guided run given no ``--guide``: train the guide on the run's data into ``OUT/guide.pt``
    (its own scene-level split; ``guide_resolution``, ``guide_epochs``). Resumes reopen that file."""
    path = Path(options.out) / GUIDE_FILE
    if not path.exists():
        console.print(f"training the guide classifier into {path} ({config.guide_epochs} epochs, "
                      f"resolution {config.guide_resolution or 'full'})")
        guide_config = GuideConfig(epochs=config.guide_epochs, resolution=config.guide_resolution)
        metrics = fit_guide(data, path, guide_config, show_progress=options.show_progress)
        console.print(f"guide: held-out lab accuracy {metrics['holdout_lab_accuracy']:.4f}")
    return path


def open_guide(config: TrainConfig, options: RunOptions, state: "RunState", data: ICLEVRData,
               device: torch.device, console: Console, parallel: Distributed = Distributed()) -> nn.Module | None:
    """The frozen guide classifier when ``config.guide_weight`` > 0: ``--guide``, else the file the run started
    with, else one trained now into the run folder (by rank 0 of a data-parallel job, the others waiting); its
    path, hash and held-out accuracy go into ``state`` and from there into every checkpoint."""
    if config.guide_weight > 0 and config.info_categories:
        raise CganError("an InfoGAN run has no labels for a guide classifier: leave guide_weight at 0")
    if config.guide_weight <= 0:
        return None
    path = options.guide or (Path(state.guide["path"]) if state.guide else None)
    if path is None:
        if parallel.main:
            train_run_guide(config, options, data, console)
        if parallel.world > 1:
            torch.distributed.barrier()  # the other ranks read the guide rank 0 has written
        path = Path(options.out) / GUIDE_FILE
    net, info = load_guide(path, device)
    if info["vocabulary"] != data.vocabulary.to_mapping():
        raise CganError(f"--guide {path} was trained on another vocabulary than this data folder's objects.json")
    if state.guide and state.guide["sha256"] != info["sha256"]:
        raise CganError(f"--guide {path} is not the guide classifier this run was trained with")
    state.guide = {"path": str(path), "sha256": info["sha256"],
                      "holdout_lab_accuracy": info["metrics"]["holdout_lab_accuracy"], "config": info["config"]}
    return net
