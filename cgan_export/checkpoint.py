"""Self-describing generator checkpoints: architecture, config, weights, vocabulary, metrics."""

from __future__ import annotations

import copy
import hashlib
import io
from pathlib import Path
from typing import TypedDict

import torch
import torch.nn as nn
from torch.nn.utils import parametrize

from .contract import FORMAT_VERSION
from .errors import ModelFileError, first_line
from .io import atomic_path
from .folding import fold_batchnorms
from .networks import ARCHITECTURE_ALIASES, GENERATORS, build_generator, generator_config
from .paths import missing_shipped_hint
from .vocabulary import DEFAULT_MAX_OBJECTS, Vocabulary

GENERATOR_KIND = "cgan-export/generator"


class Truncated(nn.Module):
    """A generator whose noise is scaled by ``truncation`` < 1 before use (BigGAN's truncation trick: images
    nearer the prior's mode, less variety).  Callers still feed standard-normal noise; the artifact carries the
    scaling, so every backend draws the same images."""

    def __init__(self, net: nn.Module, truncation: float):
        super().__init__()
        self.net, self.truncation = net, float(truncation)

    @property
    def config(self):
        """The wrapped generator's config (``z_dim``, ``image_size``, ...)."""
        return self.net.config

    @property
    def architecture(self) -> str:
        """The wrapped generator's architecture name."""
        return self.net.architecture

    def forward(self, noise: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        return self.net(noise * self.truncation, condition)


def with_truncation(net: nn.Module, truncation: float) -> nn.Module:
    """``net`` (unwrapped first) with its noise scaled by ``truncation``; 1 gives the bare generator."""
    net = net.net if isinstance(net, Truncated) else net
    if not 0 < truncation <= 1:
        raise ValueError(f"truncation must be in (0, 1], got {truncation}")
    return net if truncation == 1 else Truncated(net, truncation)


def generator_checkpoint(net: nn.Module, vocabulary: Vocabulary, metrics: dict | None = None,
                         training: dict | None = None) -> dict:
    """The content of a generator checkpoint (what ``export`` accepts); a :class:`Truncated` net stores its
    truncation beside the bare generator's weights."""
    truncation = net.truncation if isinstance(net, Truncated) else 1.0
    net = net.net if isinstance(net, Truncated) else net
    return {
        "kind": GENERATOR_KIND,
        "format_version": FORMAT_VERSION,
        "architecture": net.architecture,
        "config": generator_config(net),
        "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
        **vocabulary.to_fields(),  # vocabulary, max_objects, condition_kind (and groups)
        "z_dim": net.config.z_dim,
        "image_size": net.config.image_size,
        "truncation": truncation,  # noise scale applied inside the model (1: none)
        "metrics": metrics or {},
        "training": training or {},
    }


def save_generator(path: Path, net: nn.Module, vocabulary: Vocabulary, metrics: dict | None = None,
                   training: dict | None = None) -> Path:
    """Write a generator checkpoint atomically."""
    with atomic_path(Path(path)) as tmp:
        torch.save(generator_checkpoint(net, vocabulary, metrics, training), tmp)
    return Path(path)


def require_file(path: Path, what: str = "checkpoint", hint: str = "") -> Path:
    """``path`` when it is a file; else a :class:`ModelFileError` naming ``what`` it should be and ``hint``."""
    path = Path(path)
    if not path.is_file():
        hint = missing_shipped_hint(path) or hint
        raise ModelFileError(f"{what} {path} does not exist" + (f" ({hint})" if hint else ""))
    return path


def read_checkpoint(path: Path, what: str = "checkpoint", hint: str = "") -> tuple[object, bytes]:
    """Load a file with ``weights_only=True``, reading its bytes once; returns ``(content, bytes)``.  A missing or
    corrupt file is a :class:`ModelFileError` naming ``what`` it should be and ``hint`` (how to make one)."""
    path = require_file(path, what, hint)
    raw = path.read_bytes()
    try:
        return torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True), raw
    except Exception as exc:
        raise ModelFileError(f"cannot read {what} {path}: {first_line(exc)}") from None


def read_file_of_kind(path: Path, kind: str, what: str, hint: str) -> tuple[dict, str]:
    """A weights-only file of one ``kind`` (evaluator, guide classifier) and the sha256 of its bytes; a foreign
    file is a :class:`ModelFileError` too."""
    ckpt, raw = read_checkpoint(path, f"{what} file", hint)
    if not isinstance(ckpt, dict) or ckpt.get("kind") != kind:
        raise ModelFileError(f"{path} is not {'an' if what[0] in 'aeiou' else 'a'} {what} file")
    return ckpt, hashlib.sha256(raw).hexdigest()


class CheckpointInfo(TypedDict, total=False):
    """What a generator checkpoint says about itself (everything but the weights)."""

    kind: str
    format_version: int
    architecture: str
    config: dict  # rebuilds the network with build_generator
    vocabulary: dict[str, int]
    max_objects: int
    condition_kind: str  # objects | groups
    groups: dict[str, list[str]]  # groups kind: group name -> its values
    z_dim: int
    image_size: int
    truncation: float  # the noise is scaled by this inside the model (1: none)
    metrics: dict  # the scores it was picked by
    training: dict  # preset, config, step, minutes, lineage


def load_generator(path: Path) -> tuple[nn.Module, CheckpointInfo]:
    """Rebuild the generator from a checkpoint file alone; returns ``(net in eval mode, checkpoint info)``."""
    ckpt, _ = read_checkpoint(path)
    if not isinstance(ckpt, dict) or ckpt.get("kind") != GENERATOR_KIND:
        raise ModelFileError(f"{path} is not a generator checkpoint (train one with: python cli.py train)")
    if ARCHITECTURE_ALIASES.get(ckpt["architecture"], ckpt["architecture"]) not in GENERATORS:
        raise ModelFileError(f"{path}: unknown generator architecture {ckpt['architecture']!r}")
    try:
        net = build_generator(ckpt["architecture"], ckpt["config"])
    except (KeyError, TypeError) as exc:  # a config key this version does not know
        raise ModelFileError(f"{path}: cannot rebuild its generator: {first_line(exc)}") from None
    try:
        net.load_state_dict(ckpt["state_dict"])
    except RuntimeError as exc:
        raise ModelFileError(f"{path}: weights do not match the architecture: {first_line(exc)}") from None
    info = {k: v for k, v in ckpt.items() if k != "state_dict"}
    info.setdefault("max_objects", DEFAULT_MAX_OBJECTS)
    info.setdefault("truncation", 1.0)
    try:
        return with_truncation(net, float(info["truncation"])).eval(), info
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"{path}: {first_line(exc)}") from None


def weights_sha256(net: nn.Module) -> str:
    """sha256 over the state_dict's names and raw bytes."""
    digest = hashlib.sha256()
    for name, tensor in sorted(net.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def prepare_for_inference(net: nn.Module) -> nn.Module:
    """A copy in eval mode with parametrizations (spectral norm, ...) removed, BatchNorm folded and the
    conditional norms' projections fused into one matmul where the network offers it: the weights every
    artifact carries (and hashes in its metadata)."""
    net = copy.deepcopy(net).cpu().float().eval()
    for module in list(net.modules()):
        if parametrize.is_parametrized(module):
            for name in list(module.parametrizations):
                parametrize.remove_parametrizations(module, name)
        if hasattr(module, "fuse_affines"):
            module.fuse_affines()
    return fold_batchnorms(net).requires_grad_(False)
