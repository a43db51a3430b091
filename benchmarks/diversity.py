"""Sample diversity of generator artifacts: how much the noise changes the image for a fixed condition.

    python benchmarks/diversity.py exported/generator.onnx RUN/generator.onnx --seeds 10

For every condition of the file, draw one image per seed and take the per-pixel standard deviation
across the seeds (on the [-1, 1] scale), averaged over pixels and conditions; and the mean L1
distance between images of consecutive seeds.  0 means the noise is ignored.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import sys  # noqa: E402
from pathlib import Path as _Path  # noqa: E402

sys.path.insert(0, str(_Path(__file__).resolve().parent.parent))  # the checkout: training/ and cli.py

import numpy as np

from cgan_export.contract import make_noise
from cgan_export.contract import metadata_vocabulary
from cgan_export.runtime import open_backend
from cgan_export.vocabulary import read_condition_file
from training.data import resolve_data_root


def diversity(model: Path, conditions: list[list[str]], seeds: int) -> dict:
    """Per-pixel std across seeds and mean L1 between consecutive seeds, averaged over conditions."""
    backend = open_backend(model)
    cond = metadata_vocabulary(backend.metadata).encode_batch(conditions)  # [N, 24]
    z_dim = int(backend.metadata["z_dim"])
    images = np.stack([backend.run(make_noise(len(cond), z_dim, s), cond) for s in range(seeds)])  # [S, N, 3, H, W]
    return {"pixel_std": float(images.std(axis=0).mean()),
            "pair_l1": float(np.abs(images[1:] - images[:-1]).mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=Path, help="ONNX generator files")
    parser.add_argument("--conditions", type=Path, default=resolve_data_root() / "test.json",
                        help="lab-format condition file (default: test.json of $CGAN_EXPORT_DATA or ../shared/iclevr)")
    parser.add_argument("--seeds", type=int, default=10, help="noise seeds 0..S-1")
    args = parser.parse_args()
    conditions = read_condition_file(args.conditions)
    print(f"| model | per-pixel std across {args.seeds} seeds | mean L1 between seeds |")
    print("|---|---|---|")
    for model in args.models:
        d = diversity(model, conditions, args.seeds)
        print(f"| {model} | {d['pixel_std']:.4f} | {d['pair_l1']:.4f} |")


if __name__ == "__main__":
    main()
