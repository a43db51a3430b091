"""How far generated images are from real ones: Fréchet distance in the evaluator's feature space.

    python benchmarks/feature_distance.py exported/generator.onnx RUN/best.pt --images 2000

FID's formula on the 512-d pooled features of the lab evaluator (not Inception: no download, and
the features the accuracy is read from).  Generated images are drawn for the conditions of randomly
chosen training images (seed 0 noise) and compared with those real images; a second, disjoint draw
of real images gives the distance between two real samples of the same size (the floor).  Lower is
closer.  A generator that raises its lab accuracy by drawing caricatures rather than scenes moves
away from the real images here.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import sys  # noqa: E402
from pathlib import Path as _Path  # noqa: E402

sys.path.insert(0, str(_Path(__file__).resolve().parent.parent))  # the checkout: training/ and cli.py

import numpy as np
import torch

from cgan_export.paths import EXPORTED_DIR
from cgan_export.contract import make_noise
from cgan_export.evaluator import Evaluator, load_evaluator
from cgan_export.runtime import open_backend
from training.data import load_dataset, resolve_data_root, to_float

ROOT = Path(__file__).resolve().parent.parent


@torch.no_grad()
def features(evaluator: Evaluator, images: torch.Tensor, batch_size: int = 256) -> np.ndarray:
    """Pooled ResNet features [N, 512] of images [N, 3, 64, 64] in [-1, 1]."""
    trunk = torch.nn.Sequential(*list(evaluator.net.children())[:-1])  # everything but fc
    out = [trunk(chunk.contiguous(memory_format=torch.channels_last)).flatten(1) for chunk in images.split(batch_size)]
    return torch.cat(out).double().numpy()


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^1/2) of two feature sets [N, D].

    Tr((S_a S_b)^1/2) is the sum of the square roots of the eigenvalues of S_a S_b (real, >= 0 for
    covariance matrices up to rounding).
    """
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    trace_root = np.sqrt(np.clip(np.linalg.eigvals(s_a @ s_b).real, 0, None)).sum()
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a) + np.trace(s_b) - 2 * trace_root)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", type=Path, nargs="+", help="ONNX files or generator checkpoints (.pt)")
    parser.add_argument("--data", type=Path, default=resolve_data_root(), help="i-CLEVR folder")
    parser.add_argument("--evaluator", type=Path, default=EXPORTED_DIR / "evaluator.pt", help="evaluator file")
    parser.add_argument("--images", type=int, default=2000, help="images per set")
    args = parser.parse_args()
    evaluator = load_evaluator(args.evaluator)
    data = load_dataset(args.data)
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))
    picked, other = order[:args.images], order[args.images:2 * args.images]
    real = features(evaluator, to_float(data.images[picked]))
    print("| images | Fréchet distance to the real images (evaluator features) |")
    print("|---|---|")
    print(f"| {args.images} other real images (floor) | {frechet_distance(real, features(evaluator, to_float(data.images[other]))):.2f} |")
    cond = data.labels[picked].numpy()  # [N, 24]
    for model in args.models:
        backend = open_backend(model, "onnx" if model.suffix == ".onnx" else "torch")
        z_dim = int(backend.metadata["z_dim"])
        fake = torch.from_numpy(backend.run(make_noise(len(cond), z_dim, 0), cond))  # [N, 3, 64, 64]
        print(f"| {model} | {frechet_distance(real, features(evaluator, fake)):.2f} |")


if __name__ == "__main__":
    main()
