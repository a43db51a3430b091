"""How a run scores its generator: lab accuracy over noise seeds, the scorecard, and the selection rule; for
InfoGAN runs, how well D's Q head recovers the codes, and the scorecard's fidelity figures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from cgan_export import scorecard
from cgan_export.checkpoint import load_generator
from cgan_export.contract import make_noise
from cgan_export.evaluate import evaluate_conditions
from cgan_export.codes import CodeVocabulary
from cgan_export.evaluator import Evaluator

from .data import DatasetError, ICLEVRData
from .presets import TrainConfig
from .reference import FEATURE_IMAGES, MIN_SET_IMAGES, build_reference

# The scorecard a run computes at every evaluation: fewer object sets than `evaluate`'s (diversity compares
# within a run), but the same 900 feature images, so its Fréchet distance, precision and recall are the ones
# `evaluate` reports (500 images made the Fréchet ratio too noisy to rank the end of a run).
RUN_REFERENCE = {"per_set": 12, "max_sets": 48, "feature_images": FEATURE_IMAGES, "min_set_images": MIN_SET_IMAGES}


def selection_rule(config: TrainConfig) -> str:
    """The rule ``best.pt`` of a run of ``config`` is picked by, with the reference it reads (a run resumed under
    another rule or reference re-scores its ``best.pt``)."""
    rule = scorecard.INFO_SELECTION_RULE if config.info_categories else scorecard.SELECTION_RULE
    return f"{rule}; scored on {RUN_REFERENCE['feature_images']} feature images"


def eval_conditions(data: ICLEVRData) -> dict[str, list[list[str]]]:
    """The folder's condition sets (test files; every group combination), or 32 training conditions."""
    return data.evaluation_conditions() or {"train-sample": [data.vocabulary.decode(row) for row in data.labels[:32]]}


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
        self.sets = eval_conditions(data)  # name -> conditions
        self.seeds = seeds
        self.reference, self.note = _reference(data, evaluator)

    @torch.no_grad()
    def score(self, g: nn.Module, device: torch.device) -> dict:
        """Lab accuracy per condition file (over ``seeds`` noise seeds), their mean ``score``, the scorecard
        and the ``selection`` value that picks ``best.pt``."""
        generate = torch_generate(g, device)
        metrics: dict = {name: evaluate_conditions(generate, g.config.z_dim, self.evaluator.vocabulary, self.evaluator,
                                                   conditions, self.seeds) for name, conditions in self.sets.items()}
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


class InfoScorer(RunScorer):
    """An InfoGAN run's scorer: code recovery by D's Q head on images drawn from the code prior, and fidelity,
    precision and recall of such images (no labels: no lab accuracy, no per-set diversity)."""

    def __init__(self, evaluator: Evaluator, data: ICLEVRData, vocabulary: CodeVocabulary, d: nn.Module,
                 images: int = 512):
        self.evaluator, self.vocabulary, self.d = evaluator, vocabulary, d
        self.codes = vocabulary.sample(images, np.random.default_rng(0))  # [M, K + 2] fixed over the run
        self.sets = {"codes": [vocabulary.decode(row) for row in np.eye(len(vocabulary), dtype=np.float32)[:vocabulary.categories]]}
        self.reference, self.note = _reference(data, evaluator)

    @torch.no_grad()
    def score(self, g: nn.Module, device: torch.device) -> dict:
        """``info`` (code recovery), ``scorecard`` (fidelity figures and the noise spread at fixed codes) and the
        ``selection`` value."""
        generate = torch_generate(g, device)
        metrics: dict = {"info": code_recovery(generate, self.d, self.codes, self.vocabulary, g.config.z_dim, device)}
        metrics["score"] = metrics["info"]["categorical_accuracy"]
        metrics["selection"] = metrics["score"]
        if self.reference is not None:
            card = scorecard.codes_card(generate, g.config.z_dim, self.reference, self.evaluator, self.vocabulary, seed=1)
            metrics["scorecard"] = card
            metrics["selection"] = scorecard.info_selection_score(metrics["score"], card)
        return metrics


@torch.no_grad()
def code_recovery(generate: scorecard.GenerateFn, d: nn.Module, codes: np.ndarray, vocabulary: CodeVocabulary,
                  z_dim: int, device: torch.device) -> dict:
    """How well D's Q head reads ``codes`` [M, K + C] back from the images drawn for them: the categorical code's
    accuracy, and per continuous code the RMSE and the correlation of the estimate with the truth."""
    k = vocabulary.categories
    images = torch.from_numpy(generate(make_noise(len(codes), z_dim, 0), codes)).to(device)  # [M, 3, H, W]
    was_training = d.training
    q = d.eval()(images, torch.zeros(len(codes), len(vocabulary), device=device))[1].float().cpu().numpy()  # [M, K + C]
    d.train(was_training)
    out = {"categorical_accuracy": float((q[:, :k].argmax(1) == codes[:, :k].argmax(1)).mean()), "images": len(codes)}
    for i, name in enumerate(vocabulary.continuous):
        est, true = q[:, k + i], codes[:, k + i]
        out[f"{name}_rmse"] = float(np.sqrt(((est - true) ** 2).mean()))
        out[f"{name}_correlation"] = float(np.corrcoef(est, true)[0, 1])
    return out


def _reference(data: ICLEVRData, evaluator: Evaluator):
    """The run-size real reference and a note (a tiny folder has none: selection by accuracy alone)."""
    try:
        return build_reference(data, evaluator, **RUN_REFERENCE), ""
    except DatasetError as exc:
        return None, f"no scorecard ({exc}); best.pt is picked by lab accuracy alone"
