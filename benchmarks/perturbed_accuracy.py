"""Lab accuracy of generated images before and after mild perturbations, for several generators side by side.

    python benchmarks/perturbed_accuracy.py exported/generator.onnx RUN/best.pt --seeds 5

A check for generators fine-tuned against a frozen classifier (``guide_weight``): a gain that rests on
pixel patterns the evaluator happens to share with the guide, rather than on visible shapes, shrinks
under a 2-pixel shift, a slight blur or a half-resolution round trip much more than the gain of a
generator trained without one.  Each row: lab accuracy (mean of both condition files and all seeds).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable

import sys  # noqa: E402
from pathlib import Path as _Path  # noqa: E402

sys.path.insert(0, str(_Path(__file__).resolve().parent.parent))  # the checkout: training/ and cli.py

import torch
import torch.nn.functional as F

from cgan_export.paths import EXPORTED_DIR
from cgan_export.contract import make_noise
from cgan_export.evaluator import load_evaluator
from cgan_export.contract import metadata_vocabulary
from cgan_export.runtime import open_backend
from cgan_export.vocabulary import read_condition_file
from training.data import load_dataset, resolve_data_root, scene_split, to_float

ROOT = Path(__file__).resolve().parent.parent


def _shift(x: torch.Tensor) -> torch.Tensor:
    return F.pad(x, (2, 0, 2, 0), mode="replicate")[..., :-2, :-2]  # 2 pixels right and down


def _blur(x: torch.Tensor) -> torch.Tensor:
    k = torch.tensor([1.0, 2.0, 1.0])
    k = (k[:, None] * k[None, :] / 16).expand(3, 1, 3, 3)  # [3, 1, 3, 3] binomial 3x3
    return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), k, groups=3)


def _half_resolution(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(F.avg_pool2d(x, 2), scale_factor=2, mode="bilinear", align_corners=False)


PERTURBATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "none": lambda x: x,
    "shift 2 px": _shift,
    "blur 3x3": _blur,
    "half resolution": _half_resolution,
}


def perturbed_accuracy(model: Path, evaluator, conditions: list[list[list[str]]], seeds: int) -> dict[str, float]:
    """Perturbation name -> lab accuracy over every condition file and seed."""
    backend = open_backend(model, "onnx" if model.suffix == ".onnx" else "torch")
    vocab = metadata_vocabulary(backend.metadata)
    z_dim = int(backend.metadata["z_dim"])
    hits = {name: 0.0 for name in PERTURBATIONS}
    total = 0
    for names in conditions:
        cond = vocab.encode_batch(names)  # [N, 24]
        for seed in range(seeds):
            images = torch.from_numpy(backend.run(make_noise(len(cond), z_dim, seed), cond))  # [N, 3, 64, 64]
            for name, perturb in PERTURBATIONS.items():
                hits[name] += evaluator.accuracy(perturb(images), torch.from_numpy(cond)) * cond.sum()
            total += cond.sum()
    return {name: float(h / total) for name, h in hits.items()}


def real_accuracy(data_root: Path, evaluator) -> dict[str, float]:
    """Perturbation name -> lab accuracy on the real images of the evaluator's held-out scenes (a reference row)."""
    config = evaluator.info.get("config", {})
    data = load_dataset(data_root)
    _, hold = scene_split(data.files, config.get("holdout_fraction", 0.1), config.get("seed", 0))
    images, labels = to_float(data.images[hold]), data.labels[hold]  # [M, 3, 64, 64], [M, 24]
    return {name: evaluator.accuracy(perturb(images), labels) for name, perturb in PERTURBATIONS.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", type=Path, nargs="+", help="ONNX files or generator checkpoints (.pt)")
    parser.add_argument("--data", type=Path, default=resolve_data_root(), help="i-CLEVR folder with test.json, new_test.json")
    parser.add_argument("--evaluator", type=Path, default=EXPORTED_DIR / "evaluator.pt", help="evaluator file")
    parser.add_argument("--seeds", type=int, default=5, help="noise seeds 0..S-1")
    args = parser.parse_args()
    evaluator = load_evaluator(args.evaluator)
    conditions = [read_condition_file(args.data / name) for name in ("test.json", "new_test.json")]
    print("| model | " + " | ".join(PERTURBATIONS) + " |")
    print("|---|" + "---|" * len(PERTURBATIONS))
    acc = real_accuracy(args.data, evaluator)
    print("| real held-out images | " + " | ".join(f"{acc[name]:.3f}" for name in PERTURBATIONS) + " |")
    for model in args.models:
        acc = perturbed_accuracy(model, evaluator, conditions, args.seeds)
        print(f"| {model} | " + " | ".join(f"{acc[name]:.3f}" for name in PERTURBATIONS) + " |")


if __name__ == "__main__":
    main()
