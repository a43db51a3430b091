"""Score a generator artifact with the lab evaluator: mean and spread over noise seeds."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .checkpoint import make_noise
from .evaluator import Evaluator, per_object_hits
from .runtime import Backend, metadata_vocabulary
from .vocabulary import read_condition_file


def evaluate_conditions(backend: Backend, evaluator: Evaluator, conditions: Sequence[Sequence[str]],
                        seeds: int, first_seed: int = 0) -> dict:
    """Lab accuracy of one image per condition for seeds first_seed..first_seed+seeds-1; per-object accuracy
    pooled over seeds."""
    vocab = metadata_vocabulary(backend.metadata)
    cond = vocab.encode_batch(conditions)  # [N, 24]
    z_dim = int(backend.metadata["z_dim"])
    accs, hits, counts = [], torch.zeros(len(vocab)), torch.zeros(len(vocab))
    cond_t = torch.from_numpy(cond)
    for seed in range(first_seed, first_seed + seeds):
        images = torch.from_numpy(backend.run(make_noise(len(cond), z_dim, seed), cond))  # [N, 3, H, W]
        scores = evaluator.scores(images)  # [N, 24]
        h, c = per_object_hits(scores, cond_t)
        accs.append(float(h.sum() / c.sum()))
        hits, counts = hits + h, counts + c
    per_object = {vocab.names[i]: round(float(hits[i] / counts[i]), 4) for i in range(len(vocab)) if counts[i] > 0}
    return {"mean": float(np.mean(accs)), "std": float(np.std(accs)), "min": float(np.min(accs)),
            "max": float(np.max(accs)), "per_seed": [round(a, 4) for a in accs], "seeds": seeds, "first_seed": first_seed,
            "conditions": len(conditions), "objects": int(cond.sum()), "per_object": per_object}


def evaluate_files(backend: Backend, evaluator: Evaluator, files: Sequence[Path], seeds: int, first_seed: int = 0) -> dict:
    """``evaluate_conditions`` for each lab condition file, keyed by file name."""
    report = {}
    for path in files:
        report[Path(path).name] = evaluate_conditions(backend, evaluator, read_condition_file(path), seeds, first_seed)
    return report
