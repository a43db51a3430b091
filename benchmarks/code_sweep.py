"""A figure of what each InfoGAN code controls: every continuous code swept from -2 to 2 along a row, one row
per noise, for each category shown; or, with --noise-grid, what the noise does with the codes fixed (one row per
category, 8 noises along it, c1 = c2 = 0).

    python benchmarks/code_sweep.py exported/infogan-faces/generator.onnx --out docs/infogan-sweep.png
    python benchmarks/code_sweep.py exported/infogan-faces/generator.onnx --noise-grid --categories 0,1,2,3 \
        --out docs/infogan-noise.png

Training draws continuous codes from [-1, 1]: the outer columns (-2, 2) extrapolate.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the checkout

import numpy as np  # noqa: E402

from cgan_export import Generator  # noqa: E402
from cgan_export.contract import make_noise  # noqa: E402
from cgan_export.images import save_grid  # noqa: E402
from cgan_export.runtime import to_uint8  # noqa: E402

VALUES = np.linspace(-2, 2, 5)


def sweep(g: Generator, categories: list[int], noises: int) -> tuple[list[np.ndarray], list[str]]:
    """Images and captions, row-major: for each continuous code, each category and each noise, one row of VALUES
    (the other continuous codes at 0)."""
    vocab = g.vocabulary
    noise = make_noise(noises, int(g.metadata["z_dim"]), seed=0)  # [noises, Z]
    images, captions = [], []
    for code in vocab.continuous:
        for cat in categories:
            for row in range(noises):
                conds = np.stack([vocab.encode([f"cat={cat}", f"{code}={v:g}"]) for v in VALUES])  # [7, K + M]
                images += list(to_uint8(g.backend.run(np.repeat(noise[row:row + 1], len(VALUES), 0), conds)))
                captions += [f"cat={cat} {code}={v:g} z{row}" for v in VALUES]
    return images, captions


def noise_grid(g: Generator, categories: list[int], noises: int = 8) -> tuple[list[np.ndarray], list[str]]:
    """Images and captions, row-major: for each category, ``noises`` noises at c1 = c2 = 0."""
    noise = make_noise(noises, int(g.metadata["z_dim"]), seed=0)  # [noises, Z]
    images, captions = [], []
    for cat in categories:
        conds = np.repeat(g.vocabulary.encode([f"cat={cat}"])[None], noises, 0)  # [noises, K + M]
        images += list(to_uint8(g.backend.run(noise, conds)))
        captions += [f"cat={cat} z{row}" for row in range(noises)]
    return images, captions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--out", type=Path, default=Path("code-sweep.png"))
    parser.add_argument("--categories", default="0", help="comma-separated categories to show")
    parser.add_argument("--noises", type=int, default=4)
    parser.add_argument("--noise-grid", action="store_true", help="8 noises per category at fixed codes instead")
    args = parser.parse_args()
    g = Generator.load(args.model)
    if g.vocabulary.kind != "codes":
        raise SystemExit(f"error: {args.model} is not an InfoGAN model (its condition kind is {g.vocabulary.kind})")
    categories = [int(c) for c in args.categories.split(",")]
    if args.noise_grid:
        images, captions = noise_grid(g, categories)
        save_grid(images, captions, args.out, columns=8, scale=2)
        print(f"{args.out}: rows = categories {args.categories} (c1 = c2 = 0), columns = 8 noises")
        return
    images, captions = sweep(g, categories, args.noises)
    save_grid(images, captions, args.out, columns=len(VALUES), scale=2)
    print(f"{args.out}: rows = code x category x noise, columns = {', '.join(f'{v:g}' for v in VALUES)}")


if __name__ == "__main__":
    main()
