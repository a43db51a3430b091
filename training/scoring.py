"""How a run scores its generator: lab accuracy over noise seeds, the scorecard, and the selection rule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from cgan_export import scorecard
from cgan_export.checkpoint import load_generator
from cgan_export.contract import make_noise
from cgan_export.evaluate import mean_over_seeds
from cgan_export.evaluator import Evaluator

from .data import CONDITION_FILES, DatasetError, ICLEVRData
from .reference import MIN_SET_IMAGES, build_reference

# The scorecard a run computes at every evaluation: a smaller reference than `evaluate`'s, so figures
# compare within a run (the Fréchet floor is measured at the same size).
RUN_REFERENCE = {"per_set": 12, "max_sets": 48, "feature_images": 500, "min_set_images": MIN_SET_IMAGES}


def eval_conditions(data: ICLEVRData) -> dict[str, torch.Tensor]:
    """Multi-hot conditions of the folder's test files (or 32 training conditions when it has none)."""
    sets = {f.removesuffix(".json"): torch.from_numpy(data.vocabulary.encode_batch(data.conditions(f)))
            for f in CONDITION_FILES if (data.root / f).is_file()}
    return sets or {"train-sample": data.labels[:32].clone()}


def torch_generate(g: nn.Module, device: torch.device, batch_size: int = 256) -> scorecard.GenerateFn:
    """``(noise, condition) -> images`` as numpy arrays, through a torch generator in eval mode."""
    @torch.no_grad()
    def run(noise: np.ndarray, condition: np.ndarray) -> np.ndarray:
        g.eval()
        out = [g(torch.from_numpy(noise[i:i + batch_size]).to(device), torch.from_numpy(condition[i:i + batch_size]).to(device))
               .float().cpu() for i in range(0, len(noise), batch_size)]
        return torch.cat(out).numpy()  # [N, 3, H, W]
    return run


class RunScorer:
    """The evaluator, the condition files and the scorecard's real reference of one run."""

    def __init__(self, evaluator: Evaluator, data: ICLEVRData, seeds: int):
        self.evaluator = evaluator
        self.sets = eval_conditions(data)  # name -> [N, 24]
        self.seeds = seeds
        try:
            self.reference = build_reference(data, evaluator, **RUN_REFERENCE)
            self.note = ""
        except DatasetError as exc:  # a tiny folder: checkpoints are picked by accuracy alone
            self.reference, self.note = None, f"no scorecard ({exc}); best.pt is picked by lab accuracy alone"

    @torch.no_grad()
    def score(self, g: nn.Module, device: torch.device) -> dict:
        """Lab accuracy per condition file (over ``seeds`` noise seeds), their mean ``score``, the scorecard
        and the ``selection`` value that picks ``best.pt``."""
        generate = torch_generate(g, device)
        metrics: dict = {}
        for name, cond in self.sets.items():
            c = cond.numpy()
            metrics[name] = mean_over_seeds(
                lambda seed: self.evaluator.accuracy(torch.from_numpy(generate(make_noise(len(c), g.config.z_dim, seed), c)),
                                                     cond), range(self.seeds))
        metrics["score"] = sum(v["mean"] for v in metrics.values()) / len(self.sets)
        if self.reference is None:
            metrics["selection"] = metrics["score"]
            return metrics
        card = scorecard.score(generate, g.config.z_dim, self.reference, self.evaluator)
        metrics["scorecard"] = card
        metrics["selection"] = scorecard.selection_score(metrics["score"], card)
        return metrics

    def rescore(self, path: Path, device: torch.device) -> float:
        """The selection value of a saved ``best.pt`` under this scorer (-1 when there is none)."""
        if not path.exists():
            return -1.0
        g, _ = load_generator(path)
        return self.score(g.to(device), device)["selection"]
