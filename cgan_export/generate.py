"""``generate``: conditions in, files out: one PNG per sample (and a captioned grid), or ``.npz`` shards.

Inference, encoding and writing share the cores without more threads than cores: one worker per core
draws a batch (ONNX on CPU: on one thread), then encodes and writes its PNGs (``Generator.map_batches``;
ONNX Runtime, libdeflate and the file writes release the GIL), with at most two batches per worker in
flight, so memory stays bounded for any ``n``.  Every file is written atomically, so Ctrl-C or a full
disk leaves no half-written file.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .api import Batch, GenerateRequest, Generator
from .contract import ENGINES, OUTPUT_FORMATS
from .errors import CganError, VocabularyError
from .images import png_batch, save_grid, slug
from .io import atomic_path, ensure_writable_dir, write_bytes_atomic
from .cpu import usable_cpus
from .vocabulary import read_condition_file

MAX_GRID_IMAGES = 256
SHARD_IMAGES = 10_000  # images per .npz shard


@dataclass(frozen=True)
class FolderOutput:
    """Where and how ``generate_to_folder`` writes a request's images."""

    out: Path = Path("outputs")  # the folder (made if missing)
    file_format: str = "png"  # png: one file per image (and grid.png); npz: shards of SHARD_IMAGES images
    scale: int = 4  # upscale factor of the written PNGs
    grid: bool = True  # a captioned grid.png for small requests
    batch_size: int = 256  # images per inference batch
    workers: int = 0  # threads that each draw, encode and write a batch (0: one per usable CPU)
    engine: str = "local"  # local: threads in this process; ray: Ray Data actors (cgan_export.ray_engine)
    ray_address: str | None = None  # ray: a cluster to join (None: a local Ray on this machine's CPUs)


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


def generate_to_folder(gen: Generator, request: GenerateRequest, output: FolderOutput = FolderOutput()) -> dict:
    """Validate everything, then write one PNG per sample (and, for small requests, a captioned grid) or
    ``.npz`` shards (``images`` uint8 [B, H, W, 3], ``conditions`` [B, C], ``condition_index``, ``sample_index``,
    ``noise_row`` and ``seed``: image k of a run is row k of the seed's noise stream)."""
    if output.file_format not in OUTPUT_FORMATS:
        raise CganError(f"unknown output format {output.file_format!r}; choose one of {', '.join(OUTPUT_FORMATS)}")
    if output.engine not in ENGINES:
        raise CganError(f"unknown engine {output.engine!r}; choose one of {', '.join(ENGINES)}")
    if output.engine == "ray" and not hasattr(gen.backend, "session"):
        raise CganError("--engine ray runs the ONNX backend (its actors open the .onnx file)")
    conditions, n, seed = [list(c) for c in request.conditions], request.n, request.seed
    canonical, multi_hot = gen.parse(conditions)  # validates every name before any write; multi-hot [C, num_classes]
    out = ensure_writable_dir(Path(output.out))
    stems = [slug(names) if len(conditions) == 1 else f"{c:03d}_{slug(names)}" for c, names in enumerate(canonical)]
    npz = output.file_format == "npz"
    if output.engine == "ray":
        return _generate_on_ray(gen, request, output, multi_hot, canonical, stems, out)
    work, batch_size = ((lambda b: b), max(output.batch_size, 256)) if npz else \
        (_png_writer(stems, out, output.scale), output.batch_size)
    kept, captions, count, start = [], [], 0, time.time()
    shard: list[Batch] = []  # npz: batches waiting for a full shard
    for batch in gen.map_batches(multi_hot, n, seed, batch_size, work, output.workers or len(usable_cpus())):
        count += len(batch.images)
        if npz:
            shard.append(batch)
            if count - shard[0].start >= SHARD_IMAGES:
                _write_shard(shard, multi_hot, seed, out)
                shard = []
        elif output.grid and len(kept) < MAX_GRID_IMAGES:
            take = batch.images[:MAX_GRID_IMAGES - len(kept)]
            kept.extend(take)
            captions.extend(", ".join(canonical[c]) for c in batch.condition_index[:len(take)])
    if shard:
        _write_shard(shard, multi_hot, seed, out)
    return _summary(gen, output, n, count, kept, captions, start, out)


def _summary(gen: Generator, output: FolderOutput, n: int, count: int, kept: list, captions: list[str], start: float,
             out: Path) -> dict:
    """The grid (for PNG requests with images kept) and the figures ``generate_to_folder`` returns."""
    elapsed = time.time() - start
    grid_path = None
    if output.grid and kept and output.file_format == "png":
        columns = n if 1 < n <= 16 else 8
        grid_path = save_grid(kept, captions, out / "grid.png", columns=min(columns, len(kept)),
                              scale=max(1, output.scale // 2))
    return {"images": count, "grid": grid_path, "seconds": elapsed, "images_per_second": count / max(elapsed, 1e-9),
            "device": gen.device, "engine": output.engine}


def _generate_on_ray(gen: Generator, request: GenerateRequest, output: FolderOutput, multi_hot: np.ndarray,
                     canonical: list[list[str]], stems: list[str], out: Path) -> dict:
    """``generate_to_folder`` on Ray Data: the same files, each task a PNG batch or one ``.npz`` shard."""
    from .ray_engine import RayOptions, run_tasks

    start = time.time()
    if output.file_format == "npz":
        writer, task_images = functools.partial(_write_one_shard, multi_hot=multi_hot, seed=request.seed, out=out), SHARD_IMAGES
    else:
        writer, task_images = _png_writer(stems, out, output.scale), output.batch_size
    count, first = run_tasks(gen, Path(gen.backend.session.path), request, multi_hot, writer, task_images,
                             RayOptions(address=output.ray_address))
    kept = [image for images in first for image in images][:MAX_GRID_IMAGES] if output.grid else []
    captions = [", ".join(canonical[k // request.n]) for k in range(len(kept))]
    return _summary(gen, output, request.n, count, kept, captions, start, out)


def _write_one_shard(batch: Batch, multi_hot: np.ndarray, seed: int, out: Path) -> None:
    _write_shard([batch], multi_hot, seed, out)
