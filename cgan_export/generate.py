"""``generate``: conditions in, files out: one PNG per sample (and a captioned grid), or ``.npz`` shards.

Inference, encoding and writing share the cores without more threads than cores: one worker per core
draws a batch (ONNX on CPU: on one thread), then encodes and writes its PNGs (``Generator.map_batches``;
ONNX Runtime, libdeflate and the file writes release the GIL), with at most two batches per worker in
flight, so memory stays bounded for any ``n``.  Every file is written atomically, so Ctrl-C or a full
disk leaves no half-written file.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .api import Batch, Generator
from .contract import OUTPUT_FORMATS
from .errors import CganError, VocabularyError
from .images import png_batch, save_grid, slug
from .io import atomic_path, ensure_writable_dir, write_bytes_atomic
from .runtime import usable_cpus
from .vocabulary import read_condition_file

MAX_GRID_IMAGES = 256
SHARD_IMAGES = 10_000  # images per .npz shard


def read_conditions(objects: Sequence[str] | None, conditions_file: Path | None) -> list[list[str]]:
    """Positional names form one condition; ``--conditions`` holds a lab-format list of them."""
    if objects and conditions_file:
        raise CganError("give object names or --conditions FILE, not both")
    if conditions_file:
        return read_condition_file(conditions_file)
    if not objects:
        raise VocabularyError("empty condition: give at least one object, e.g. python cli.py generate 'red cube'")
    return [list(objects)]


def _png_writer(stems: list[str], out: Path, scale: int) -> Callable[[Batch], Batch]:
    """A worker's job after drawing a batch: encode each image and write it atomically to
    ``{stem of its condition}_{sample:03d}.png``."""
    def write(batch: Batch) -> Batch:
        encoded = png_batch(batch.images, scale)
        for data, c, i in zip(encoded, batch.condition_index, batch.sample_index):
            write_bytes_atomic(out / f"{stems[c]}_{i:03d}.png", data)
        return batch
    return write


def _write_shard(shard: list[Batch], multi_hot: np.ndarray, seed: int, out: Path) -> None:
    """One ``.npz`` shard: images, their conditions, condition and sample indices, noise rows and the seed."""
    images = np.concatenate([b.images for b in shard])  # [B, H, W, 3]
    condition_index = np.concatenate([b.condition_index for b in shard])  # [B]
    first = shard[0].start
    with atomic_path(out / f"images-{first:09d}.npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, images=images, conditions=multi_hot[condition_index], condition_index=condition_index,
                     sample_index=np.concatenate([b.sample_index for b in shard]),
                     noise_row=np.arange(first, first + len(images)), seed=np.array(seed))


def generate_to_folder(conditions: list[list[str]], n: int, seed: int, out: Path, model: Path | None = None,
                       backend: str = "onnx", device: str = "auto", scale: int = 4, batch_size: int = 256,
                       grid: bool = True, file_format: str = "png", workers: int = 0) -> dict:
    """Validate everything, then write one PNG per sample (and, for small requests, a captioned grid) or
    ``.npz`` shards (``images`` uint8 [B, H, W, 3], ``conditions`` [B, C], ``condition_index``, ``sample_index``,
    ``noise_row`` and ``seed``: image k of a run is row k of the seed's noise stream)."""
    if file_format not in OUTPUT_FORMATS:
        raise CganError(f"unknown output format {file_format!r}; choose one of {', '.join(OUTPUT_FORMATS)}")
    gen = Generator.load(model, backend, device)
    canonical, multi_hot = gen.parse(conditions)  # validates every name before any write; multi-hot [C, num_classes]
    out = ensure_writable_dir(Path(out))
    stems = [slug(names) if len(conditions) == 1 else f"{c:03d}_{slug(names)}" for c, names in enumerate(canonical)]
    if file_format == "png":
        work = _png_writer(stems, out, scale)
    else:
        work, batch_size = (lambda b: b), max(batch_size, 256)
    kept, captions, count, start = [], [], 0, time.time()
    shard: list[Batch] = []  # npz: batches waiting for a full shard
    for batch in gen.map_batches(multi_hot, n, seed, batch_size, work, workers or len(usable_cpus())):
        count += len(batch.images)
        if file_format == "npz":
            shard.append(batch)
            if count - shard[0].start >= SHARD_IMAGES:
                _write_shard(shard, multi_hot, seed, out)
                shard = []
        elif grid and len(kept) < MAX_GRID_IMAGES:
            take = batch.images[:MAX_GRID_IMAGES - len(kept)]
            kept.extend(take)
            captions.extend(", ".join(canonical[c]) for c in batch.condition_index[:len(take)])
    if shard:
        _write_shard(shard, multi_hot, seed, out)
    elapsed = time.time() - start
    grid_path = None
    if grid and kept and file_format == "png":
        columns = n if 1 < n <= 16 else 8
        grid_path = save_grid(kept, captions, out / "grid.png", columns=min(columns, len(kept)), scale=max(1, scale // 2))
    return {"images": count, "grid": grid_path, "seconds": elapsed, "images_per_second": count / max(elapsed, 1e-9),
            "backend": backend, "device": gen.device}
