"""``generate``: conditions in, PNG files and a captioned grid out."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Sequence

from .errors import CganError, VocabularyError
from .images import save_grid, save_png, slug
from .io import ensure_writable_dir
from .runtime import generate, metadata_vocabulary, open_backend

MAX_GRID_IMAGES = 256


def read_conditions(objects: Sequence[str] | None, conditions_file: Path | None) -> list[list[str]]:
    """Positional names form one condition; ``--conditions`` holds a lab-format list of them."""
    if objects and conditions_file:
        raise CganError("give object names or --conditions FILE, not both")
    if conditions_file:
        if not Path(conditions_file).is_file():
            raise CganError(f"condition file {conditions_file} does not exist")
        try:
            data = json.loads(Path(conditions_file).read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CganError(f"{conditions_file} is not valid JSON: {exc}") from None
        if not isinstance(data, list) or not data or not all(isinstance(c, list) for c in data):
            raise CganError(f"{conditions_file} must be a non-empty JSON list of conditions (lists of names)")
        return [[str(n) for n in c] for c in data]
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
