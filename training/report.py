"""Run artifacts: metrics.jsonl, sample grids and curves.png."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torchvision.utils as vutils

from cgan_export.io import atomic_path


def append_jsonl(path: Path, record: dict) -> None:
    """Append one JSON line (a crash leaves at most one partial last line)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fh.write(json.dumps(record) + "\n")


def read_jsonl(path: Path) -> list[dict]:
    """All complete records of a JSON-lines file."""
    records = []
    for line in Path(path).read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def save_grid(images: torch.Tensor, path: Path, nrow: int = 8) -> None:
    """Save images [N, 3, H, W] in [-1, 1] as one PNG grid, atomically."""
    with atomic_path(path) as tmp:
        vutils.save_image(images * 0.5 + 0.5, tmp, nrow=nrow, format="png")


def plot_curves(metrics_path: Path, out: Path) -> None:
    """Losses and lab accuracy against steps, one PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_jsonl(metrics_path)
    if not records:
        return
    steps = [r["step"] for r in records]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    for key in records[-1]["losses"]:
        ax_loss.plot(steps, [r["losses"].get(key, float("nan")) for r in records], label=key)
    ax_loss.set_xlabel("step"), ax_loss.set_title("losses (running mean)"), ax_loss.legend()
    for key, value in records[-1].items():
        if isinstance(value, dict) and "mean" in value:
            ax_acc.plot(steps, [r[key]["mean"] for r in records], label=key)
    ax_acc.set_xlabel("step"), ax_acc.set_title("lab accuracy (mean over seeds)"), ax_acc.legend()
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    plt.close(fig)
