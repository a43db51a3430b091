"""A figure of an attribute-groups model: every value of the first group (rows) x a few values of the second
(columns), the same noises for every cell; with ``--real DATA``, beside it the data's own faces of each cell (the
first ones in train.json; a cell the data holds fewer of is left part blank).

    python benchmarks/group_grid.py exported/anime-faces/generator.onnx --out docs/faces-grid.png
    python benchmarks/group_grid.py exported/anime-faces/generator.onnx --real ../shared/anime-faces --out docs/faces-real-grid.png
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the checkout

from cgan_export import Generator  # noqa: E402
from cgan_export.images import save_grid  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--out", type=Path, default=Path("group-grid.png"))
    parser.add_argument("--columns", default="blue eyes,red eyes,green eyes", help="values of the second group")
    parser.add_argument("-n", type=int, default=4, help="noises per cell")
    parser.add_argument("--real", type=Path, help="a data folder of the model's groups: draw its faces instead")
    args = parser.parse_args()
    g = Generator.load(args.model)
    if g.vocabulary.kind != "groups" or len(g.vocabulary.groups) != 2:
        raise SystemExit(f"error: {args.model} is not a model of two attribute groups")
    rows = [g.vocabulary.names[i] for i in g.vocabulary.groups[0][1]]
    columns = [c.strip() for c in args.columns.split(",")]
    labels = json.loads((args.real / "train.json").read_text()) if args.real else {}  # image name -> its tags
    images, captions = [], []
    for row in rows:
        for column in columns:
            images += (real_faces(args.real, labels, {row, column}, args.n, int(g.metadata["image_size"])) if args.real else
                       list(g.generate([row, column], n=args.n, seed=0)))  # uint8 [n, H, W, 3]
            captions += [f"{row}, {column}"] + [""] * (args.n - 1)
    save_grid(images, captions, args.out, columns=len(columns) * args.n)
    print(f"{args.out}: {len(rows)} rows x {len(columns)} columns x {args.n} noises")


def real_faces(root: Path, labels: dict[str, list[str]], condition: set[str], n: int, size: int) -> list[np.ndarray]:
    """The first ``n`` faces of ``labels`` (``root``'s train.json) tagged exactly ``condition``, uint8
    [size, size, 3] each (blank ones where it holds fewer)."""
    names = [name for name, tags in labels.items() if set(tags) == condition][:n]
    faces = [np.asarray(Image.open(root / "images" / name).convert("RGB").resize((size, size), Image.BICUBIC))
             for name in names]
    return faces + [np.full((size, size, 3), 255, np.uint8)] * (n - len(faces))


if __name__ == "__main__":
    main()
