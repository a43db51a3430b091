"""The guide: a small frozen multi-label classifier whose loss on generated images joins G's objective.

It is not the lab evaluator and never scores anything: another architecture (a plain VGG-style
convnet, no residual stages), trained here on the real training images only.  D's auxiliary head is
a weak judge of hard conditions (it co-adapts with G and memorises the images); a classifier trained
once to convergence and then frozen gives G a steady signal about shape and colour.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from cgan_export.checkpoint import read_file_of_kind
from cgan_export.io import atomic_path

from .data import ICLEVRData, load_dataset, scene_split
from .evaluator_training import FitConfig, fit_classifier

GUIDE_KIND = "cgan-export/guide-classifier"


@dataclass(frozen=True)
class GuideConfig(FitConfig):
    """Hyper-parameters of guide training: the evaluator's schedule, 12 epochs, more weight decay, its own split."""

    epochs: int = 12
    weight_decay: float = 5e-4
    seed: int = 1
    width: int = 32
    resolution: int = 0  # > 0: the guide sees images area-downsampled to this size (detail finer than that is averaged out)


class GuideClassifier(nn.Module):
    """Two 3x3 conv + BatchNorm + ReLU per stage at 64, 32, 16 and 8 pixels (width w, 2w, 4w, 8w), 2x2 max-pool
    between stages, average- and max-pooled features into one linear layer: logits [N, num_classes]. With a
    ``resolution``, images are first area-downsampled to it (in training and in G's loss alike)."""

    def __init__(self, num_classes: int = 24, width: int = 32, resolution: int = 0):
        super().__init__()
        self.resolution = resolution
        widths = [3, width, 2 * width, 4 * width, 8 * width]
        layers: list[nn.Module] = []
        for cin, cout in zip(widths[:-1], widths[1:]):  # 64 -> 32 -> 16 -> 8 -> 4
            for c in (cin, cout):
                layers += [nn.Conv2d(c, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(2 * widths[-1], num_classes)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if self.resolution and image.shape[-1] > self.resolution:
            image = F.adaptive_avg_pool2d(image, self.resolution)  # [N, 3, r, r]
        h = self.features(image)  # [N, 8w, 4, 4] (2x2 at resolution 32)
        return self.head(torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1))  # [N, 24]


def train_guide(data_root: Path | None, out: Path, config: GuideConfig = GuideConfig(), show_progress: bool = True) -> dict:
    """Train the guide on a scene-level split of the real images, write it atomically, return its metrics."""
    return fit_guide(load_dataset(data_root), out, config, show_progress)


def fit_guide(data: ICLEVRData, out: Path, config: GuideConfig = GuideConfig(), show_progress: bool = True) -> dict:
    """:func:`train_guide` on a data set already loaded (a run that trains its own guide)."""
    torch.manual_seed(config.seed)
    train_idx, hold_idx = scene_split(data.files, config.holdout_fraction, config.seed)
    net = GuideClassifier(len(data.vocabulary), config.width, config.resolution)
    if config.channels_last:
        net = net.to(memory_format=torch.channels_last)
    metrics = fit_classifier(net, data.subset(train_idx), data.subset(hold_idx), config, "guide", show_progress)
    state = {k: v.contiguous() for k, v in net.state_dict().items()}
    ckpt = {"kind": GUIDE_KIND, "config": asdict(config), "state_dict": state,
            "vocabulary": data.vocabulary.to_mapping(), "image_size": int(data.images.shape[-1]), "metrics": metrics}
    with atomic_path(Path(out)) as tmp:
        torch.save(ckpt, tmp)
    return metrics


def load_guide(path: Path, device: torch.device | str = "cpu") -> tuple[nn.Module, dict]:
    """A frozen guide in eval mode and its file's description (config, metrics, vocabulary, sha256)."""
    ckpt, sha256 = read_file_of_kind(path, GUIDE_KIND, "guide classifier", "train one with: python cli.py guide train")
    net = GuideClassifier(len(ckpt["vocabulary"]), ckpt["config"]["width"], ckpt["config"].get("resolution", 0))
    net.load_state_dict(ckpt["state_dict"])
    net = net.to(device).eval().requires_grad_(False)
    info = {k: ckpt[k] for k in ("config", "metrics", "vocabulary")}
    info["sha256"] = sha256
    return net, info
