"""How and where a run trains (not part of the model's config), and the device it trains on."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from cgan_export.cpu import cpu_model
from cgan_export.runtime import torch_device as runtime_torch_device


@dataclass(frozen=True)
class RunOptions:
    """Where and how long to train (not part of the model's config)."""

    out: Path  # the run folder: config.json, metrics.jsonl, curves.png, samples/, best.pt, last.pt
    data: Path | None = None  # data folder (None: $CGAN_EXPORT_DATA or ../shared/iclevr)
    evaluator: Path | None = None  # the scorer that picks best.pt (never a training signal); None: the shipped one of the data
    resume: bool = False  # continue the run in ``out`` from its last.pt
    init_from: Path | None = None  # another run's last.pt: start from its weights and optimizer moments
    snapshot_every: int = 0  # every this many iterations, a resumable copy of the run in OUT/snapshots/ (0: none)
    branch_from: Path | None = None  # a snapshot of another run: carry on from it (step, weights, RNG) in ``out``
    guide: Path | None = None  # a guide classifier file (training/guide.py), used when config.guide_weight > 0
    device: str = "auto"  # auto | cpu | cuda
    compile: bool | None = None  # torch.compile G and D; None: on CUDA only
    threads: int = 0  # CPU threads (0: torch's default)
    show_progress: bool = True  # a progress bar on stderr
    command: str | None = None  # the command line that asked for this run (recorded in every checkpoint)


def torch_device(name: str) -> torch.device:
    """``auto`` -> CUDA when torch sees a GPU, else CPU; ``cuda`` without one is an error (one rule for every
    torch path: ``cgan_export.runtime.torch_device``)."""
    return torch.device(runtime_torch_device(name))


def describe_device(device: torch.device) -> str:
    """What a run trains on, for its records: ``cuda: NVIDIA H200`` or ``cpu: MODEL (N cores; flags), T threads``."""
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    return f"cpu: {cpu_model()}, {torch.get_num_threads()} threads"
