"""The Python API: ``Generator.load()`` opens a model, ``generate`` turns conditions into uint8 images.

    from cgan_export import Generator

    g = Generator.load()                                   # the shipped ONNX model, CUDA when usable
    images = g.generate(["red cube", "blue cylinder"], n=8, seed=0)   # uint8 [8, 64, 64, 3]
    many = g.generate([["red cube"], ["green sphere", "gray cylinder"]], n=4)   # [8, 64, 64, 3]
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence, TypeVar, Union

import numpy as np

from .contract import metadata_vocabulary, noise_stream
from .errors import CganError, VocabularyError
from .precision import choose_model
from .runtime import DEFAULT_MODELS, Backend, images_uint8, open_backend, resolve_device
from .vocabulary import Vocabulary

Conditions = Union[str, Sequence[str], Sequence[Sequence[str]]]
T = TypeVar("T")


@dataclass(frozen=True)
class Batch:
    """A chunk of generated images in condition-major order: sample ``k`` is image ``n * c + i``."""

    start: int  # index of the first sample
    condition_index: np.ndarray  # [B] which condition each image was drawn for
    sample_index: np.ndarray  # [B] its number among that condition's n samples
    images: np.ndarray  # uint8 [B, H, W, 3]


@dataclass(frozen=True)
class GenerateRequest:
    """What to draw: conditions (each a list of names), images per condition and the noise seed; image ``k`` of a
    request is row ``k`` of the seed's noise stream. The CLI, the server and ``generate_to_folder`` share it."""

    conditions: tuple[tuple[str, ...], ...]  # e.g. (("red cube", "blue cylinder"),)
    n: int = 8  # images per condition
    seed: int = 0  # noise seed

    @classmethod
    def of(cls, conditions: Sequence[Sequence[str]], n: int = 8, seed: int = 0) -> "GenerateRequest":
        """A request from lists of names (kept as tuples: the request is frozen)."""
        return cls(tuple(tuple(c) for c in conditions), n, seed)


@dataclass(frozen=True)
class Generator:
    """A loaded generator model (ONNX, TorchScript or a checkpoint) and its vocabulary."""

    backend: Backend
    vocabulary: Vocabulary
    metadata: dict

    @classmethod
    def load(cls, path: str | Path | None = None, backend: str = "onnx", device: str = "auto",
             precision: str = "auto") -> "Generator":
        """Open ``path`` (default: the shipped model for ``backend``: onnx, torchscript or torch) on ``device``
        (auto, cuda or cpu).  ONNX on the CPU: ``precision`` auto runs the int8 file beside ``path`` where this
        CPU runs it faster (measured once), fp32 never, int8 always.  A missing or corrupt file is a
        :class:`~cgan_export.errors.ModelFileError`."""
        path = Path(path) if path is not None else None
        if backend == "onnx":  # the int8 file beside it, where asked for or faster here
            path = choose_model(path or DEFAULT_MODELS["onnx"], precision, resolve_device(device))
        runner = open_backend(path, backend, device)
        return cls(runner, metadata_vocabulary(runner.metadata), runner.metadata)

    @property
    def device(self) -> str:
        """Where the model runs: ``cuda`` or ``cpu``."""
        return getattr(self.backend, "device", "cpu")

    def parse(self, conditions: Conditions) -> tuple[list[list[str]], np.ndarray]:
        """Canonical names per condition and their condition vectors float32 [C, num_classes] (multi-hot; for
        InfoGAN codes, the one-hot category then the continuous values); one name or a list of names is one
        condition.  Unknown names, repeats and too many objects are a :class:`~cgan_export.errors.VocabularyError`."""
        if isinstance(conditions, str):
            conditions = [conditions]
        conditions = list(conditions)
        if not conditions:
            raise VocabularyError("no condition given: e.g. generate(['red cube', 'blue cylinder'])")
        if all(isinstance(c, str) for c in conditions):
            conditions = [conditions]
        names = [self.vocabulary.canonical(c) for c in conditions]
        return names, np.stack([self.vocabulary.encode(c) for c in names])  # [C, num_classes]

    def conditions(self, conditions: Conditions) -> list[list[str]]:
        """Canonical object names per condition (see :meth:`parse`)."""
        return self.parse(conditions)[0]

    def encode(self, conditions: Conditions) -> np.ndarray:
        """Multi-hot float32 [C, num_classes] of ``conditions`` (see :meth:`parse`)."""
        return self.parse(conditions)[1]

    def batches(self, multi_hot: np.ndarray, n: int = 8, seed: int = 0, batch_size: int = 256) -> Iterator[Batch]:
        """``n`` images per row of ``multi_hot`` [C, num_classes], in chunks of ``batch_size`` (bounded memory).

        Sample ``k`` always gets row ``k`` of the noise stream of ``seed``, so every backend and every batch
        size draws the same images.
        """
        for start, rows, noise in self._chunks(multi_hot, n, seed, batch_size):
            yield _draw(self.backend, False, multi_hot, n, start, rows, noise)

    def map_batches(self, multi_hot: np.ndarray, n: int, seed: int, batch_size: int, work: Callable[[Batch], T],
                    workers: int) -> Iterator[T]:
        """``work(batch)`` for every batch that :meth:`batches` gives, on ``workers`` threads; results in order.

        Each worker draws its batch (ONNX on CPU: on one thread) and then runs ``work`` on it, so with one
        worker per core inference and, say, PNG encoding and writing share the cores without more threads
        than cores.  Batches hold at most ``batch_size`` images and fewer when that gives every worker one
        (a request of 200 images on 2 cores: 2 batches of 100).  At most ``2 * workers`` batches are in
        flight, so memory stays bounded for any ``n``.  Stopped early (an error, Ctrl-C), batches not started
        are dropped and running ones finish.
        """
        batch_size = max(1, min(batch_size, -(-len(multi_hot) * n // workers)))  # ceil(total / workers)

        def job(start: int, rows: np.ndarray, noise: np.ndarray) -> T:
            return work(_draw(self.backend, True, multi_hot, n, start, rows, noise))

        pending: deque[Future] = deque()
        with ThreadPoolExecutor(max_workers=workers) as pool:
            try:
                for chunk in self._chunks(multi_hot, n, seed, batch_size):
                    if len(pending) >= 2 * workers:
                        yield pending.popleft().result()
                    pending.append(pool.submit(job, *chunk))
                while pending:
                    yield pending.popleft().result()
            finally:
                for future in pending:
                    future.cancel()

    def _chunks(self, multi_hot: np.ndarray, n: int, seed: int, batch_size: int) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """(first sample, sample rows [B], noise [B, Z]) per batch, the noise drawn in order from ``seed``'s stream."""
        if n < 1 or batch_size < 1:
            raise CganError(f"n and batch_size must be positive (got n={n}, batch_size={batch_size})")
        total = len(multi_hot) * n
        noise = noise_stream(seed, int(self.metadata["z_dim"]))
        for start in range(0, total, batch_size):
            rows = np.arange(start, min(start + batch_size, total))
            yield start, rows, noise(len(rows))

    def generate(self, conditions: Conditions, n: int = 8, seed: int = 0, batch_size: int = 256) -> np.ndarray:
        """uint8 images [len(conditions) * n, H, W, 3], condition-major, for one condition (a name or a list of
        names) or a list of conditions."""
        multi_hot = self.encode(conditions)
        return np.concatenate([b.images for b in self.batches(multi_hot, n, seed, batch_size)])


def _draw(backend: Backend, one_thread: bool, multi_hot: np.ndarray, n: int, start: int, rows: np.ndarray,
          noise: np.ndarray) -> Batch:
    """The batch of sample ``rows`` [B]: the model on their noise [B, Z] and condition vectors, as uint8 images
    (``one_thread``: ONNX on CPU runs it on one thread)."""
    return Batch(start, rows // n, rows % n, images_uint8(backend, noise, multi_hot[rows // n], one_thread))
