"""Train the lab evaluator (ResNet-18, sigmoid over 24 objects) on the real images."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from cgan_export.evaluator import build_classifier, evaluator_checkpoint, group_accuracy, lab_accuracy, per_object_hits
from cgan_export.io import atomic_path
from cgan_export.cpu import cpu_has_native_bf16

from .data import ICLEVRData, load_dataset, scene_key, scene_split, to_float
from .losses import aux_group_ce
from .models import precision_name
from .progress import make_progress


@dataclass(frozen=True)
class FitConfig:
    """What :func:`fit_classifier` reads: the training schedule of a multi-label classifier and its split."""

    epochs: int = 10
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-4
    holdout_fraction: float = 0.1
    seed: int = 0
    bf16: bool = True
    channels_last: bool = True


@dataclass(frozen=True)
class EvaluatorConfig(FitConfig):
    """Hyper-parameters of evaluator training."""

    stem: str = "conv3x3"  # see cgan_export.evaluator.build_classifier
    threads: int = 0  # 0: torch's default


def augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random horizontal flips and shifts of up to 4 pixels (object identity is unchanged)."""
    flip = torch.rand(images.shape[0], generator=generator) < 0.5
    images = torch.where(flip[:, None, None, None], images.flip(-1), images)
    dx, dy = torch.randint(-4, 5, (2,), generator=generator).tolist()
    padded = F.pad(images, (4, 4, 4, 4), mode="replicate")
    h, w = images.shape[-2:]
    return padded[..., 4 + dy:4 + dy + h, 4 + dx:4 + dx + w]


@torch.no_grad()
def holdout_scores(net: torch.nn.Module, data: ICLEVRData, channels_last: bool, batch_size: int = 256) -> torch.Tensor:
    """Sigmoid outputs [N, C] of ``net`` on every image of ``data``."""
    net.eval()
    scores = []
    for start in range(0, len(data), batch_size):
        x = to_float(data.images[start:start + batch_size])
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        scores.append(torch.sigmoid(net(x).float()))
    net.train()
    return torch.cat(scores)


def holdout_accuracy(net: torch.nn.Module, data: ICLEVRData, channels_last: bool) -> float:
    """Lab accuracy of ``net`` on every image of ``data`` (labels as conditions)."""
    return lab_accuracy(holdout_scores(net, data, channels_last), data.labels, data.vocabulary.groups)


def fit_classifier(net: torch.nn.Module, train: ICLEVRData, hold: ICLEVRData, config: FitConfig, name: str,
                   show_progress: bool = True) -> dict:
    """Train a classifier in place (AdamW + OneCycle, flips and shifts; BCE per class, or a cross-entropy per
    attribute group) and return its metrics on ``hold``."""
    groups = train.vocabulary.groups
    bf16 = config.bf16 and cpu_has_native_bf16()  # an AVX2-only CPU would run bf16 on reference kernels
    opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    batch_size = min(config.batch_size, len(train))  # a tiny data folder still gets one step per epoch
    steps_per_epoch = len(train) // batch_size
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, config.lr, total_steps=config.epochs * steps_per_epoch)
    gen = torch.Generator().manual_seed(config.seed)
    start, seen, acc = time.time(), 0, 0.0
    with make_progress(disable=not show_progress) as progress:
        task = progress.add_task(name, total=config.epochs * steps_per_epoch, info="")
        for epoch in range(config.epochs):
            order = torch.randperm(len(train), generator=gen)
            for step in range(steps_per_epoch):
                idx = order[step * batch_size:(step + 1) * batch_size]
                x = augment(to_float(train.images[idx]), gen)  # [B, 3, 64, 64]
                if config.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    logits = net(x)
                loss = (aux_group_ce(logits, train.labels[idx], groups) if groups
                        else F.binary_cross_entropy_with_logits(logits.float(), train.labels[idx]))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                seen += len(idx)
                progress.update(task, advance=1, info=f"epoch {epoch + 1} loss {loss.item():.4f} held-out acc {acc:.4f}")
            acc = holdout_accuracy(net, hold, config.channels_last)
            progress.update(task, info=f"epoch {epoch + 1} loss {loss.item():.4f} held-out acc {acc:.4f}")
            progress.console.print(f"epoch {epoch + 1}/{config.epochs}: loss {loss.item():.4f}, "
                                   f"held-out lab accuracy {acc:.4f} ({time.time() - start:.0f} s)")
    elapsed = time.time() - start
    per_group = group_accuracy(*per_object_hits(holdout_scores(net, hold, config.channels_last), hold.labels, groups),
                               hold.vocabulary) if groups else {}
    return {"holdout_lab_accuracy": acc, **({"holdout_group_accuracy": per_group} if groups else {}),
            "precision": precision_name(bf16),  # the arithmetic it trained in (bf16 only where the CPU has it)
            "holdout_images": len(hold),
            "holdout_scenes": int(len({scene_key(f) for f in hold.files})),
            "train_images": len(train), "train_seconds": round(elapsed, 1), "images_per_second": round(seen / elapsed, 1)}


def train_evaluator(data_root: Path | None, out: Path, config: EvaluatorConfig = EvaluatorConfig(),
                    show_progress: bool = True) -> dict:
    """Train on a scene-level split, write the evaluator file atomically, return its metrics."""
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    data = load_dataset(data_root)
    train_idx, hold_idx = scene_split(data.files, config.holdout_fraction, config.seed)
    train, hold = data.subset(train_idx), data.subset(hold_idx)
    net = build_classifier(len(data.vocabulary), config.stem)
    if config.channels_last:
        net = net.to(memory_format=torch.channels_last)
    metrics = fit_classifier(net, train, hold, config, "evaluator", show_progress)
    ckpt = evaluator_checkpoint(net, data.vocabulary, int(data.images.shape[-1]), metrics, asdict(config))
    with atomic_path(Path(out)) as tmp:
        torch.save(ckpt, tmp)
    return metrics


def holdout_indices(evaluator, files: list[str]) -> np.ndarray:
    """Indices of the images of the scenes ``evaluator`` held out of its training (the split its config names)."""
    config = {**asdict(EvaluatorConfig()), **evaluator.info.get("config", {})}
    return scene_split(files, config["holdout_fraction"], config["seed"])[1]


def real_accuracy(evaluator, data: ICLEVRData) -> dict:
    """The lab accuracy real images earn: ``evaluator``'s on the scenes it held out, with their own labels (the
    ceiling a generator's accuracy is read against), and per attribute group for the groups kind."""
    hold = data.subset(holdout_indices(evaluator, data.files))
    hits, counts = per_object_hits(evaluator.scores(to_float(hold.images)), hold.labels, hold.vocabulary.groups)
    result = {"mean": float(hits.sum() / counts.sum().clamp(min=1)), "images": len(hold),
              "hits": hits.tolist(), "counts": counts.tolist()}  # [C] each: per class, for real_accuracy_for
    if hold.vocabulary.groups:
        result["per_group"] = group_accuracy(hits, counts, hold.vocabulary)
    return result


def real_accuracy_for(real: dict, conditions: np.ndarray, vocabulary) -> dict:
    """What real images earn on a condition set: each class's held-out accuracy (``real``, from
    :func:`real_accuracy`) weighted by how often ``conditions`` [M, C] ask for that class, overall and per
    attribute group. A set that asks for every hair x eyes pair once weighs a rare eye colour as much as a
    common one, where the held-out faces' own mix hardly counts it. Classes no held-out image shows are left out."""
    hits, counts = torch.tensor(real["hits"]), torch.tensor(real["counts"])  # [C]
    asked = torch.from_numpy(np.asarray(conditions) > 0.5).sum(dim=0).float() * (counts > 0)  # [C]
    weighted = asked * hits / counts.clamp(min=1)  # [C] asked x accuracy
    result = {"mean": float(weighted.sum() / asked.sum().clamp(min=1)), "held_out_mean": real["mean"],
              "images": real["images"]}
    if vocabulary.groups:
        result["per_group"] = group_accuracy(weighted, asked, vocabulary)
    return result


def real_per_class(real: dict, vocabulary) -> dict[str, float]:
    """Each class's held-out accuracy (``real``, from :func:`real_accuracy`) by name: what the evaluator reads
    off real images of that class, the reference a generator's per-class accuracy is read against. Classes no
    held-out image shows are left out."""
    return {name: hits / count for name, hits, count in zip(vocabulary.names, real["hits"], real["counts"]) if count}


def score_holdout(evaluator, data_root: Path | None) -> float:
    """Lab accuracy of a loaded evaluator on the held-out scenes of the split it was trained with."""
    return real_accuracy(evaluator, load_dataset(data_root))["mean"]
