"""How large and how sharp the coloured objects of generator artifacts are, beside real training images.

    python benchmarks/object_statistics.py exported/generator.onnx OLD/generator.onnx --images 600

For scenes of 1, 2 and 3 objects: the first IMAGES training images of that size, and one generated image
per image's condition (noise seed = batch index). Coloured area: share of pixels whose saturation (max - min
over RGB, on [0, 1]) is above 0.15 (the gray floor and background stay near 0). Gradient: mean absolute
difference of neighbouring gray values, over the background (saturation < 0.05) and over the rest.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the checkout: training/ and cli.py

import numpy as np
import torch

from cgan_export.contract import make_noise
from cgan_export.runtime import open_backend
from cgan_export.scorecard import colour_map
from training.data import load_dataset, resolve_data_root, to_float

OBJECT_SATURATION = 0.15  # a pixel of a coloured object
BACKGROUND_SATURATION = 0.05  # the gray floor and background


def statistics(images: np.ndarray) -> dict[str, float]:
    """Coloured area and gradients of images [N, 3, H, W] in [-1, 1]."""
    x = (images.astype(np.float64) + 1) / 2  # [N, 3, H, W] on [0, 1]
    saturation = colour_map(x)[:, 0]  # [N, H, W]
    gray = x.mean(axis=1)  # [N, H, W]
    grad = np.abs(np.diff(gray, axis=1))[:, :, :-1] + np.abs(np.diff(gray, axis=2))[:, :-1, :]  # [N, H-1, W-1]
    background = saturation[:, :-1, :-1] < BACKGROUND_SATURATION
    return {"coloured area": float((saturation > OBJECT_SATURATION).mean()),
            "gradient, background": float(grad[background].mean()),
            "gradient, objects": float(grad[~background].mean())}


def generated(model: Path, conditions: np.ndarray, batch: int = 100) -> np.ndarray:
    """One image per condition [N, C], noise seed = batch index."""
    backend = open_backend(model, "onnx" if model.suffix == ".onnx" else "torch", "cpu")
    z_dim = int(backend.metadata["z_dim"])
    return np.concatenate([backend.run(make_noise(len(conditions[i:i + batch]), z_dim, i // batch), conditions[i:i + batch])
                           for i in range(0, len(conditions), batch)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=Path, help="generator.onnx (or generator.pt) files")
    parser.add_argument("--images", type=int, default=600, help="images per scene size")
    parser.add_argument("--data", type=Path, default=None, help="data folder (default: $CGAN_EXPORT_DATA or ../shared/iclevr)")
    args = parser.parse_args()
    data = load_dataset(resolve_data_root(args.data))
    print("| objects | images | coloured area | gradient, background | gradient, objects |")
    print("|---|---|---|---|---|")
    for count in (1, 2, 3):
        idx = torch.nonzero(data.labels.sum(dim=1).round() == count).flatten()[:args.images]
        rows = {"real": to_float(data.images[idx]).numpy()}
        rows.update({str(m): generated(m, data.labels[idx].numpy()) for m in args.models})
        for name, images in rows.items():
            stats = statistics(images)
            print(f"| {count} | {name} | " + " | ".join(f"{v:.4f}" for v in stats.values()) + " |")


if __name__ == "__main__":
    main()
