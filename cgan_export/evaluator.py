"""The lab evaluator: a ResNet-18 multi-label classifier and the lab accuracy.

The lab accuracy is total hits / total labels.  Objects (i-CLEVR): an image's hits are its condition's
objects among the top-k outputs, k = the number of objects.  Attribute groups (anime faces): a group is a
hit when its top-1 value is the condition's value.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
import torchvision

from .checkpoint import read_file_of_kind
from .condition_kinds import vocabulary_from_fields
from .contract import STEMS
from .errors import CganError, ModelFileError
from .paths import EXPORTED_DIR, missing_shipped_hint
from .vocabulary import Vocabulary

EVALUATOR_KIND = "cgan-export/evaluator"
Groups = tuple[tuple[str, tuple[int, ...]], ...]  # Vocabulary.groups: (group name, member indices)


def build_classifier(num_classes: int = 24, stem: str = "imagenet") -> nn.Module:
    """torchvision ResNet-18 with ``fc = Linear(512, num_classes)``; outputs logits (sigmoid applied by callers).

    ``stem="no-maxpool"`` drops the stem's max-pool, so the residual stages see 32x32 instead of
    16x16 feature maps of a 64x64 image (4x the compute; it tells cubes from cylinders better).
    ``stem="conv3x3"`` replaces the 7x7 stride-2 first conv by a 3x3 stride-1 one and keeps the max-pool:
    the same 32x32 stages, but the first conv sees every pixel of the 64x64 image.
    """
    if stem not in STEMS:
        raise ValueError(f"unknown ResNet-18 stem {stem!r}; expected one of {STEMS}")
    net = torchvision.models.resnet18(weights=None)
    if stem == "no-maxpool":
        net.maxpool = nn.Identity()
    if stem == "conv3x3":
        net.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    net.fc = nn.Linear(512, num_classes)
    return net


def lab_accuracy(scores: torch.Tensor, conditions: torch.Tensor, groups: Groups = ()) -> float:
    """Total hits / total labels (see the module's docstring).  ``scores``, ``conditions``: [N, C]."""
    hits, counts = per_object_hits(scores, conditions, groups)
    return float(hits.sum() / counts.sum().clamp(min=1))


def per_object_hits(scores: torch.Tensor, conditions: torch.Tensor, groups: Groups = ()) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class (hits [C], counts [C]) of the lab rule: top-k over all classes, or top-1 within each group."""
    counts = conditions.gt(0.5).sum(dim=0).float()
    if groups:
        chosen = torch.zeros_like(scores)  # [N, C]
        rows = torch.arange(len(scores))
        for _, members in groups:
            idx = torch.tensor(members)
            chosen[rows, idx[scores[:, idx].argmax(dim=1)]] = 1.0
        return (chosen * conditions.gt(0.5).float()).sum(dim=0), counts
    hits = torch.zeros(conditions.shape[1])
    ks = conditions.sum(dim=1).round().long()
    for row, cond, k in zip(scores, conditions, ks.tolist()):
        chosen = torch.zeros_like(cond)
        chosen[row.topk(k).indices] = 1.0
        hits += chosen * cond.gt(0.5).float()
    return hits, counts


def group_accuracy(hits: torch.Tensor, counts: torch.Tensor, vocabulary: Vocabulary) -> dict[str, float]:
    """Accuracy of every attribute group (hits / labels over its values); empty for the objects kind."""
    return {name: round(float(hits[list(idx)].sum() / counts[list(idx)].sum().clamp(min=1)), 4)
            for name, idx in vocabulary.groups}


class Evaluator:
    """A loaded evaluator: scores images in [-1, 1] (any size; resized to its input size)."""

    def __init__(self, net: nn.Module, vocabulary: Vocabulary, image_size: int, info: dict):
        self.net = net.eval()
        self.vocabulary = vocabulary
        self.image_size = image_size
        self.info = info

    @torch.no_grad()
    def scores(self, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """Sigmoid outputs [N, 24] for float images [N, 3, H, W] in [-1, 1]."""
        out = []
        device = next(self.net.parameters()).device
        for chunk in images.split(batch_size):
            chunk = chunk.to(device).float()
            if chunk.shape[-1] != self.image_size:
                chunk = nn.functional.interpolate(chunk, size=self.image_size, mode="area")
            out.append(torch.sigmoid(self.net(chunk.contiguous(memory_format=torch.channels_last)).float()).cpu())
        return torch.cat(out)

    def accuracy(self, images: torch.Tensor, conditions: torch.Tensor) -> float:
        """The lab accuracy of ``images`` [N, 3, H, W] against multi-hot ``conditions`` [N, 24]."""
        return lab_accuracy(self.scores(images), conditions, self.vocabulary.groups)


def evaluator_checkpoint(net: nn.Module, vocabulary: Vocabulary, image_size: int, metrics: dict, config: dict) -> dict:
    """The self-describing evaluator file content (fp16 weights; the stem read off ``net``)."""
    stem = ("no-maxpool" if isinstance(net.maxpool, nn.Identity)
            else "conv3x3" if net.conv1.kernel_size == (3, 3) else "imagenet")
    state = {k: (v.half() if v.is_floating_point() else v) for k, v in net.state_dict().items()}
    return {
        "kind": EVALUATOR_KIND,
        "architecture": "resnet18",
        "stem": stem,
        "state_dict": state,
        **vocabulary.to_fields(),  # vocabulary, max_objects, condition_kind (and groups)
        "image_size": image_size,
        "normalization": "x / 127.5 - 1 (RGB, values in [-1, 1])",
        "output": "sigmoid over logits, one per object (groups: the top-1 value of each group counts)",
        "metrics": metrics,
        "config": config,
    }


def load_evaluator(path: Path) -> Evaluator:
    """Load an evaluator file written by ``cli.py evaluator train`` (weights only)."""
    ckpt, sha256 = read_file_of_kind(path, EVALUATOR_KIND, "evaluator", "train one with: python cli.py evaluator train")
    vocabulary = vocabulary_from_fields(ckpt)
    net = build_classifier(len(vocabulary), ckpt.get("stem", "imagenet"))
    net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in ckpt["state_dict"].items()})
    net = net.to(memory_format=torch.channels_last)
    info = {k: ckpt[k] for k in ("metrics", "config", "normalization", "stem") if k in ckpt}
    info["sha256"] = sha256  # identifies the scorer behind a run's scores
    return Evaluator(net, vocabulary, int(ckpt["image_size"]), info)


def shipped_evaluator(vocabulary: Vocabulary) -> Path:
    """The shipped evaluator (``exported/evaluator.pt``, ``exported/*/evaluator.pt``) that scores ``vocabulary``."""
    for path in sorted(EXPORTED_DIR.glob("evaluator.pt")) + sorted(EXPORTED_DIR.glob("*/evaluator.pt")):
        ckpt, _ = read_file_of_kind(path, EVALUATOR_KIND, "evaluator", "")
        if vocabulary_from_fields(ckpt).names == vocabulary.names:
            return path
    where = missing_shipped_hint(EXPORTED_DIR / "evaluator.pt")
    raise CganError(f"no shipped evaluator scores this vocabulary{f' ({where})' if where else ''}: train one with "
                    "`python cli.py evaluator train --data FOLDER --out FILE` and pass --evaluator FILE")


def check_scores(evaluator: Evaluator, vocabulary: Vocabulary, what: str) -> None:
    """Refuse an evaluator whose classes are not ``vocabulary``'s (``what``: the model or data it should score)."""
    if evaluator.vocabulary.names != vocabulary.names:
        raise ModelFileError(f"the evaluator scores another vocabulary than {what} ({len(evaluator.vocabulary)} "
                             f"classes vs {len(vocabulary)}): give the matching data folder with --data, or its "
                             f"evaluator with --evaluator")
