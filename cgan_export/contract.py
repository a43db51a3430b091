"""The artifact contract, torch-free: the metadata every artifact embeds, and the noise every backend draws.

Inputs ``noise`` [N, Z] and ``condition`` [N, C]; output ``image`` [N, 3, H, W] in [-1, 1].
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Callable

import numpy as np

from . import __version__
from .condition_kinds import vocabulary_from_fields
from .errors import ModelFileError
from .vocabulary import Vocabulary

EXPORT_FORMATS = ("onnx", "torchscript", "onnx-fp16", "onnx-int8", "triton")  # what `export` writes (cgan_export.export.FORMATS)
ALL_FORMATS = ("onnx", "torchscript")  # what `export --format all` writes (fp16, int8 and triton are asked for by name)
OUTPUT_FORMATS = ("png", "npz")  # what `generate` writes
ENGINES = ("local", "ray")  # where generate and serve run: this process, or Ray (Data / Serve)
STEMS = ("imagenet", "no-maxpool", "conv3x3")  # the evaluator's ResNet-18 stems (cgan_export.evaluator)
FORMAT_VERSION = 1  # of the metadata and of generator checkpoints
METADATA_KEY = "cgan_export"  # the ONNX metadata_props key of the artifact's metadata JSON
TS_METADATA_FILE = "metadata.json"  # the TorchScript _extra_files name of the same JSON


def build_metadata(info: dict, weights_sha256: str) -> dict:
    """The one metadata dict embedded in every artifact, from a checkpoint's info and its inference weights' hash."""
    vocabulary = vocabulary_from_fields(info)
    num_classes = len(vocabulary)
    z_dim, size = int(info["z_dim"]), int(info["image_size"])
    return {
        "format_version": FORMAT_VERSION,
        "package_version": __version__,
        "architecture": info["architecture"],
        "config": info["config"],
        **vocabulary.to_fields(),  # vocabulary, max_objects, condition_kind (and groups)
        "z_dim": z_dim,
        "num_classes": num_classes,
        "image_size": size,
        "inputs": {"noise": ["N", z_dim], "condition": ["N", num_classes]},
        "outputs": {"image": ["N", 3, size, size]},
        "value_range": [-1.0, 1.0],
        "truncation": float(info.get("truncation", 1.0)),  # noise scale applied inside the model (1: none)
        "metrics": info.get("metrics", {}),
        "training": {k: v for k, v in info.get("training", {}).items() if k != "config"},
        "weights_sha256": weights_sha256,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


def parse_metadata(raw: str | bytes | None, path: Path) -> dict:
    """The metadata JSON embedded in an artifact; missing or malformed metadata is a :class:`ModelFileError`."""
    if not raw:
        raise ModelFileError(f"{path} carries no cgan-export metadata (re-export it with: python cli.py export)")
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError:
        raise ModelFileError(f"{path}: its metadata is not valid JSON") from None
    missing = {"vocabulary", "z_dim", "image_size"} - set(meta)
    if missing:
        raise ModelFileError(f"{path}: metadata lacks {sorted(missing)}")
    return meta


def metadata_vocabulary(metadata: dict) -> Vocabulary:
    """The vocabulary embedded in an artifact's metadata."""
    return vocabulary_from_fields(metadata)


def noise_stream(seed: int, z_dim: int) -> Callable[[int], np.ndarray]:
    """Draw the next rows of the noise stream of ``seed``: ``draw(k)`` -> float32 standard normal [k, z_dim].

    Drawing in chunks gives the same rows as one draw, so any batch size sees the same noise.
    """
    rng = np.random.default_rng(seed)
    return lambda rows: rng.standard_normal((rows, z_dim), dtype=np.float32)


def make_noise(n: int, z_dim: int, seed: int) -> np.ndarray:
    """The first ``n`` rows of the noise stream of ``seed``: float32 [n, z_dim]."""
    return noise_stream(seed, z_dim)(n)
