"""``generate``: conditions in, PNG files and a captioned grid out."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

from .errors import CganError, VocabularyError
from .images import save_grid, save_png, slug
from .io import ensure_writable_dir
from .runtime import generate, metadata_vocabulary, open_backend
from .vocabulary import read_condition_file

MAX_GRID_IMAGES = 256


def read_conditions(objects: Sequence[str] | None, conditions_file: Path | None) -> list[list[str]]:
    """Positional names form one condition; ``--conditions`` holds a lab-format list of them."""
    if objects and conditions_file:
        raise CganError("give object names or --conditions FILE, not both")
    if conditions_file:
        return read_condition_file(conditions_file)
    if not objects:
        raise VocabularyError("empty condition: give at least one object, e.g. python cli.py generate 'red cube'")
    return [list(objects)]


def generate_to_folder(conditions: list[list[str]], n: int, seed: int, out: Path, model: Path | None = None,
                       backend: str = "onnx", device: str = "auto", scale: int = 4, batch_size: int = 256,
                       grid: bool = True) -> dict:
    """Validate everything, then write one PNG per sample and (for small requests) a captioned grid."""
    runner = open_backend(model, backend, device)
    vocab = metadata_vocabulary(runner.metadata)
    canonical = [[vocab.names[i] for i in vocab.parse(c)] for c in conditions]  # validates before any write
    out = ensure_writable_dir(Path(out))
    kept, captions = [], []
    start = time.time()
    count = 0
    for sample in generate(runner, canonical, n=n, seed=seed, batch_size=batch_size):
        name = f"{slug(canonical[sample.condition_index])}_{sample.sample_index:03d}.png"
        if len(conditions) > 1:
            name = f"{sample.condition_index:03d}_{name}"
        save_png(sample.image, out / name, scale)
        count += 1
        if grid and len(kept) < MAX_GRID_IMAGES:
            kept.append(sample.image)
            captions.append(", ".join(canonical[sample.condition_index]))
    elapsed = time.time() - start
    grid_path = None
    if grid and kept:
        columns = n if 1 < n <= 16 else 8
        grid_path = save_grid(kept, captions, out / "grid.png", columns=min(columns, len(kept)), scale=max(1, scale // 2))
    return {"images": count, "grid": grid_path, "seconds": elapsed, "images_per_second": count / max(elapsed, 1e-9),
            "backend": backend, "device": getattr(runner, "device", "cpu")}
