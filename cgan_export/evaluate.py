"""Score a generator artifact with the lab evaluator: mean and spread over noise seeds."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from .contract import make_noise
from .evaluator import Evaluator, per_object_hits
from .contract import metadata_vocabulary
from .runtime import Backend
from .vocabulary import read_condition_file


def mean_over_seeds(accuracy_of_seed: Callable[[int], float], seeds: Sequence[int]) -> dict:
    """Mean, std (ddof 0), min, max and the per-seed values of ``accuracy_of_seed(seed)`` over ``seeds``."""
    accs = np.array([accuracy_of_seed(seed) for seed in seeds])
    return {"mean": float(accs.mean()), "std": float(accs.std()), "min": float(accs.min()), "max": float(accs.max()),
            "per_seed": [round(float(a), 4) for a in accs], "seeds": len(accs)}


def evaluate_conditions(backend: Backend, evaluator: Evaluator, conditions: Sequence[Sequence[str]],
                        seeds: int, first_seed: int = 0) -> dict:
    """Lab accuracy of one image per condition for seeds first_seed..first_seed+seeds-1; per-object accuracy
    pooled over seeds."""
    vocab = metadata_vocabulary(backend.metadata)
    cond = vocab.encode_batch(conditions)  # [N, 24]
    z_dim = int(backend.metadata["z_dim"])
    hits, counts = torch.zeros(len(vocab)), torch.zeros(len(vocab))
    cond_t = torch.from_numpy(cond)

    def accuracy(seed: int) -> float:
        nonlocal hits, counts
        images = torch.from_numpy(backend.run(make_noise(len(cond), z_dim, seed), cond))  # [N, 3, H, W]
        h, c = per_object_hits(evaluator.scores(images), cond_t)  # [24] each
        hits, counts = hits + h, counts + c
        return float(h.sum() / c.sum())

    result = mean_over_seeds(accuracy, range(first_seed, first_seed + seeds))
    per_object = {vocab.names[i]: round(float(hits[i] / counts[i]), 4) for i in range(len(vocab)) if counts[i] > 0}
    return {**result, "first_seed": first_seed, "conditions": len(conditions), "objects": int(cond.sum()),
            "per_object": per_object}


def evaluate_files(backend: Backend, evaluator: Evaluator, files: Sequence[Path], seeds: int, first_seed: int = 0) -> dict:
    """``evaluate_conditions`` for each lab condition file, keyed by file name."""
    report = {}
    for path in files:
        report[Path(path).name] = evaluate_conditions(backend, evaluator, read_condition_file(path), seeds, first_seed)
    return report
