"""``generate --engine ray``: bulk generation on Ray Data, on this machine or a cluster.

The driver validates the request and walks the seed's noise stream once, keeping the generator state at the
start of each task (a batch of PNGs, or one ``.npz`` shard), so image ``k`` is row ``k`` of the stream however
Ray places the tasks.  An actor pool (``map_batches`` with one model session per actor) draws and writes the
files with the local engine's names and writers; every file is written atomically.  Without an address Ray
starts locally with this machine's CPUs and leaves one free for its own read and write tasks (an actor pool
that takes every CPU starves them: ray-project/ray#44687).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .api import Batch, GenerateRequest, Generator
from .cpu import usable_cpus
from .runtime import images_uint8, open_backend

DRAW_BATCH = 256  # images per model call inside a task (an .npz task holds a whole shard)
GRID_IMAGES = 256  # the first images come back to the driver for grid.png (as the local engine's MAX_GRID_IMAGES)


@dataclass(frozen=True)
class RayOptions:
    """Where Ray runs and how wide: a cluster ``address`` (None: a local Ray), and actors (0: CPUs - 1)."""

    address: str | None = None
    actors: int = 0


def _tasks(gen: Generator, total: int, seed: int, size: int) -> list[dict]:
    """One task per ``size`` images: its first image and count, and the noise generator's state there."""
    rng = np.random.default_rng(seed)
    z_dim, tasks = int(gen.metadata["z_dim"]), []
    for start in range(0, total, size):
        count = min(size, total - start)
        tasks.append({"start": start, "count": count, "state": json.dumps(rng.bit_generator.state)})
        rng.standard_normal((count, z_dim), dtype=np.float32)  # advance past this task's rows
    return tasks


class _Drawer:
    """A Ray Data actor: one model session (one thread) and the writers; a batch of tasks in, their counts out."""

    def __init__(self, model: Path, multi_hot: np.ndarray, n: int, seed: int, writer):
        self.backend = open_backend(model, "onnx", "cpu")
        self.multi_hot, self.n, self.seed, self.write = multi_hot, n, seed, writer
        self.z_dim = int(self.backend.metadata["z_dim"])

    def __call__(self, tasks: dict) -> dict:
        out = {"start": [], "count": [], "grid": []}
        for start, count, state in zip(tasks["start"], tasks["count"], tasks["state"]):
            rng = np.random.default_rng()
            rng.bit_generator.state = json.loads(state)
            rows = np.arange(start, start + count)
            images = []
            for first in range(0, count, DRAW_BATCH):  # the stream's rows start.., drawn in order
                noise = rng.standard_normal((min(DRAW_BATCH, count - first), self.z_dim), dtype=np.float32)  # [B, Z]
                conditions = self.multi_hot[rows[first:first + len(noise)] // self.n]
                images.append(images_uint8(self.backend, noise, conditions, one_thread=True))
            batch = Batch(int(start), rows // self.n, rows % self.n, np.concatenate(images))
            self.write(batch)
            out["start"].append(int(start))
            out["count"].append(int(count))
            out["grid"].append(batch.images[:max(0, GRID_IMAGES - int(start))].tobytes())  # raw uint8; b"" past them
        return {k: np.asarray(v, dtype=object) if k == "grid" else np.asarray(v) for k, v in out.items()}


def start_ray(options: RayOptions):
    """``ray.init``: join ``options.address``, else a local Ray with this machine's CPUs (no dashboard)."""
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a fresh local Ray starts without a token prompt
    if options.address:
        ray.init(address=options.address, log_to_driver=False, logging_level=logging.WARNING)
    else:
        ray.init(num_cpus=len(usable_cpus()), include_dashboard=False, log_to_driver=False,
                 logging_level=logging.WARNING)
    return ray


def run_tasks(gen: Generator, model: Path, request: GenerateRequest, multi_hot: np.ndarray, writer, task_images: int,
              options: RayOptions) -> tuple[int, list[np.ndarray]]:
    """Draw and write every image of ``request`` on Ray Data; the image count and the first images (for a grid)."""
    ray = start_ray(options)
    try:
        context = ray.data.DataContext.get_current()  # (ray.data sets up its loggers when first imported)
        context.enable_progress_bars = sys.stderr.isatty()  # progress on a terminal; quiet in logs and pipes
        context.enable_rich_progress_bars, context.use_ray_tqdm = True, False  # rich (a base dependency), not tqdm
        logging.getLogger("ray.data").setLevel(logging.INFO if sys.stderr.isatty() else logging.ERROR)
        cpus = int(ray.cluster_resources().get("CPU", 1))
        actors = options.actors or max(1, cpus - 1)
        tasks = _tasks(gen, len(multi_hot) * request.n, request.seed, task_images)
        ds = ray.data.from_items(tasks, override_num_blocks=min(len(tasks), 4 * actors))
        with warnings.catch_warnings():  # max_restarts: still only spelt through ray_remote_args in Ray 2.60
            warnings.filterwarnings("ignore", message=".*ray_remote_args.*")
            done = ds.map_batches(_Drawer, fn_constructor_args=(model, multi_hot, request.n, request.seed, writer),
                                  batch_size=1, compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=1,
                                  max_restarts=0)  # a failed actor fails the run (its files so far are whole)
        count, grid, size = 0, [], int(gen.metadata["image_size"])
        for row in sorted(done.iter_rows(), key=lambda r: r["start"]):
            count += int(row["count"])
            if len(row["grid"]):  # one column type for every task: bytes (b"" for tasks past the grid's images)
                grid.append(np.frombuffer(row["grid"], np.uint8).reshape(-1, size, size, 3))  # [B, H, W, 3]
        return count, grid
    finally:
        ray.shutdown()
