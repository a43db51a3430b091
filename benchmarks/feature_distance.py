"""Where a generator's Fréchet distance comes from: the scorecard's figure split by the number of objects.

    python benchmarks/feature_distance.py exported/generator.onnx RUN/best.pt

FID's formula on the 512-d pooled features of the lab evaluator, on the scenes the evaluator held out of
its training (as in `python cli.py evaluate`: features of images the evaluator was trained on sit closer
together, and a generator trained on all of them looks closer to them than it is).  For all images and for
the images of 1, 2 and 3 objects alone: two disjoint real halves give the floor, and the generator draws
for the second half's conditions (noise seed 1, as the scorecard).  Each row also gives the evaluator's mean
probability for the objects the condition does not name, summed per image: the confusion a generated
object leaves (a cube drawn half like a cylinder), against the real images', and the spread (std, in
pixels) of the horizontal centre of each image's coloured pixels: where the objects sit (i-CLEVR's single
objects always sit at the centre: a real spread of 0.1 px).  The per-count halves are small (300 images on
i-CLEVR), so their floors are larger than the 900-image floor; read the ratios.  ``--blur SIGMA`` blurs the
generated images (the floor stays the untouched real halves'; its column adds what the blur costs real images).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms.functional as TF

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the checkout: training/ and cli.py

from cgan_export.contract import make_noise
from cgan_export.evaluator import Evaluator, load_evaluator
from cgan_export.paths import EXPORTED_DIR
from cgan_export.runtime import Backend, open_backend
from cgan_export.scorecard import colour_map, frechet_distance, pooled_features
from training.data import ICLEVRData, load_dataset, resolve_data_root, to_float
from training.reference import FEATURE_IMAGES, held_out_images


def unnamed_probability(evaluator: Evaluator, images: torch.Tensor, labels: np.ndarray) -> float:
    """Mean over images [N, 3, H, W] of the summed sigmoid outputs for the classes ``labels`` [N, C] do not name."""
    return float((evaluator.scores(images).numpy() * (labels < 0.5)).sum(1).mean())


def centre_spread(images: torch.Tensor, threshold: float = 0.25) -> float:
    """Std over images [N, 3, H, W] of the mean column of the pixels whose saturation exceeds ``threshold``
    (images without such pixels, e.g. of one gray object, left out)."""
    coloured = torch.from_numpy(colour_map(images.numpy()))[:, 0] > threshold  # [N, H, W]
    columns = torch.arange(images.shape[-1], dtype=torch.float64)
    weight = coloured.sum((1, 2))  # [N]
    keep = weight > 0
    return float(((coloured.sum(1) * columns).sum(1)[keep] / weight[keep]).std())


def blurred(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Images [N, 3, H, W] through a 3x3 Gaussian of std ``sigma`` (0: unchanged)."""
    return images if sigma <= 0 else TF.gaussian_blur(images, [3, 3], [sigma, sigma])


def split_rows(data: ICLEVRData, held: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The two real halves of every row: all held-out images (the scorecard's 900 + 900), then per object count."""
    size = min(FEATURE_IMAGES, len(held) // 2)
    rows = {"all": (held[:size], held[size:2 * size])}
    counts = data.labels.sum(1).numpy()[held].round().astype(int)
    for n in sorted(set(counts.tolist())):
        part = held[counts == n]
        rows[f"{n} object{'s' if n > 1 else ''}"] = (part[:len(part) // 2], part[len(part) // 2:2 * (len(part) // 2)])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", type=Path, nargs="+", help="ONNX files or generator checkpoints (.pt)")
    parser.add_argument("--data", type=Path, default=resolve_data_root(), help="data folder in the lab layout")
    parser.add_argument("--evaluator", type=Path, default=EXPORTED_DIR / "evaluator.pt", help="evaluator file")
    parser.add_argument("--blur", type=float, default=0.0, help="Gaussian sigma (3x3 kernel) applied to the generated "
                        "images first (how much of the distance is fine texture); the floor column adds the blurred "
                        "real half's ratio")
    args = parser.parse_args()
    evaluator = load_evaluator(args.evaluator)
    data = load_dataset(args.data)
    backends: dict[str, Backend] = {str(m): open_backend(m, "onnx" if m.suffix == ".onnx" else "torch") for m in args.models}
    print("| images | real halves | floor | real: unnamed p | x spread | " + " | ".join(f"{m}: Fréchet (x floor) | unnamed p | x spread" for m in backends) + " |")
    print("|---" * (5 + 3 * len(backends)) + "|")
    for name, (ref, other) in split_rows(data, held_out_images(data, evaluator)).items():
        ref_features = pooled_features(evaluator, to_float(data.images[torch.as_tensor(np.sort(ref))]))
        real = to_float(data.images[torch.as_tensor(np.sort(other))])  # [M, 3, H, W]
        labels = data.labels[torch.as_tensor(np.sort(other))].numpy()  # [M, C]
        floor = frechet_distance(ref_features, pooled_features(evaluator, real))
        floor_cell = f"{floor:.1f}"
        if args.blur > 0:  # the cost of the blur itself: the blurred real half against the untouched one
            real_blurred = frechet_distance(ref_features, pooled_features(evaluator, blurred(real, args.blur)))
            floor_cell += f" (blurred: {real_blurred / floor:.2f}x)"
        cells = [name, f"{len(ref)} + {len(other)}", floor_cell, f"{unnamed_probability(evaluator, real, labels):.3f}",
                 f"{centre_spread(real):.1f}"]
        for backend in backends.values():
            fake = blurred(torch.from_numpy(backend.run(make_noise(len(labels), int(backend.metadata["z_dim"]), 1), labels)),
                           args.blur)
            distance = frechet_distance(ref_features, pooled_features(evaluator, fake))
            cells += [f"{distance:.1f} ({distance / floor:.2f}x)", f"{unnamed_probability(evaluator, fake, labels):.3f}",
                      f"{centre_spread(fake):.1f}"]
        print("| " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
