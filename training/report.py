"""Run artifacts: metrics.jsonl, sample grids and curves.png."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torchvision.utils as vutils

from cgan_export.errors import OutputError
from cgan_export.io import atomic_path


def append_jsonl(path: Path, record: dict) -> None:
    """Append one JSON line (a crash leaves at most one partial last line, which readers skip)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as fh:
            fh.write(json.dumps(record) + "\n")
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None


def read_jsonl(path: Path) -> list[dict]:
    """All readable records of a JSON-lines file; a damaged line is skipped with a warning on stderr."""
    records = []
    for number, line in enumerate(Path(path).read_text(errors="replace").splitlines(), start=1):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            print(f"warning: {path} line {number} is damaged; skipped", file=sys.stderr)
    return records


def save_sample_grid(images: torch.Tensor, path: Path, nrow: int = 8) -> None:
    """Save images [N, 3, H, W] in [-1, 1] as one PNG grid, atomically."""
    with atomic_path(path) as tmp:
        vutils.save_image(images * 0.5 + 0.5, tmp, nrow=nrow, format="png")


def plot_curves(metrics_path: Path, out: Path) -> None:
    """Losses; lab accuracy with the selection value; the scorecard (diversity, fidelity, precision, recall)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_jsonl(metrics_path)
    if not records:
        return
    steps = [r["step"] for r in records]
    fig, (ax_loss, ax_acc, ax_card) = plt.subplots(1, 3, figsize=(16, 4))
    for key in dict.fromkeys(k for r in records for k in r["losses"]):  # a re-scored finished run logs no losses
        ax_loss.plot(steps, [r["losses"].get(key, float("nan")) for r in records], label=key)
    ax_loss.set_xlabel("step"), ax_loss.set_title("losses (running mean)"), ax_loss.legend()
    for key, value in records[-1].items():
        if isinstance(value, dict) and "mean" in value:
            ax_acc.plot(steps, [r[key]["mean"] for r in records], label=key)
    ax_acc.plot(steps, [r.get("selection", float("nan")) for r in records], "k--", label="selection value")
    ax_acc.set_xlabel("step"), ax_acc.set_title("lab accuracy (mean over seeds); selection"), ax_acc.legend()
    card = [r.get("scorecard") or {} for r in records]
    for key, label in (("diversity", "diversity (real 1)"), ("layout_diversity", "layout diversity"),
                       ("precision", "precision"), ("recall", "recall"),
                       ("fidelity", "Fréchet / real floor")):
        ax_card.plot(steps, [c.get(key, float("nan")) for c in card], label=label)
    ax_card.set_yscale("log"), ax_card.set_xlabel("step"), ax_card.set_title("scorecard"), ax_card.legend()
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    plt.close(fig)
