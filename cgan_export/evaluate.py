"""Score a generator with the lab evaluator: mean and spread over noise seeds, per object and per group."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from .contract import make_noise, metadata_vocabulary
from .evaluator import Evaluator, check_scores, group_accuracy, per_object_hits
from .runtime import Backend
from .scorecard import GenerateFn
from .vocabulary import Vocabulary, read_condition_file


def mean_over_seeds(accuracy_of_seed: Callable[[int], float], seeds: Sequence[int]) -> dict:
    """Mean, std (ddof 0), min, max and the per-seed values of ``accuracy_of_seed(seed)`` over ``seeds``."""
    accs = np.array([accuracy_of_seed(seed) for seed in seeds])
    return {"mean": float(accs.mean()), "std": float(accs.std()), "min": float(accs.min()), "max": float(accs.max()),
            "per_seed": [round(float(a), 4) for a in accs], "seeds": len(accs)}


def evaluate_conditions(generate: GenerateFn, z_dim: int, vocab: Vocabulary, evaluator: Evaluator,
                        conditions: Sequence[Sequence[str]], seeds: int, first_seed: int = 0) -> dict:
    """Lab accuracy of one image per condition for seeds first_seed..first_seed+seeds-1; accuracy per object (and
    per attribute group) pooled over seeds."""
    cond = vocab.encode_batch(conditions)  # [N, C]
    hits, counts = torch.zeros(len(vocab)), torch.zeros(len(vocab))
    cond_t = torch.from_numpy(cond)

    def accuracy(seed: int) -> float:
        nonlocal hits, counts
        images = torch.from_numpy(generate(make_noise(len(cond), z_dim, seed), cond))  # [N, 3, H, W]
        h, c = per_object_hits(evaluator.scores(images), cond_t, vocab.groups)  # [C] each
        hits, counts = hits + h, counts + c
        return float(h.sum() / c.sum())

    result = mean_over_seeds(accuracy, range(first_seed, first_seed + seeds))
    per_object = {vocab.names[i]: round(float(hits[i] / counts[i]), 4) for i in range(len(vocab)) if counts[i] > 0}
    report = {**result, "first_seed": first_seed, "conditions": len(conditions), "objects": int(cond.sum()),
              "per_object": per_object}
    if vocab.groups:
        report["per_group"] = group_accuracy(hits, counts, vocab)
    return report


def evaluate_sets(backend: Backend, evaluator: Evaluator, sets: dict[str, Sequence[Sequence[str]]], seeds: int,
                  first_seed: int = 0) -> dict:
    """:func:`evaluate_conditions` of an artifact for each named condition set; an evaluator of another
    vocabulary is a :class:`ModelFileError`."""
    vocab = metadata_vocabulary(backend.metadata)
    check_scores(evaluator, vocab, "the model's")
    z_dim = int(backend.metadata["z_dim"])
    return {name: evaluate_conditions(backend.run, z_dim, vocab, evaluator, conditions, seeds, first_seed)
            for name, conditions in sets.items()}


def evaluate_files(backend: Backend, evaluator: Evaluator, files: Sequence[Path], seeds: int, first_seed: int = 0) -> dict:
    """:func:`evaluate_sets` for lab condition files, keyed by file name."""
    return evaluate_sets(backend, evaluator, {Path(p).name: read_condition_file(p) for p in files}, seeds, first_seed)
