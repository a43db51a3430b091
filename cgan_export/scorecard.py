"""The scorecard: figures that see collapse and blur, each beside its real-data reference.

- diversity: for object sets with many real images, the mean per-pixel std over generated images of
  the set (one noise each) divided by the same std over the real images of the set (real = 1.0);
- layout diversity: the same ratio on each image's colour map (per-pixel saturation, max - min over
  RGB), which is near 0 on i-CLEVR's gray floor and background: it moves with where the coloured
  objects sit, not with background shading or texture (a generator that keeps one layout and varies
  its background scores high on diversity and low here);
- fidelity: Fréchet distance to held-out real images in the evaluator's pooled features, divided by
  the distance between two real samples of the same size (real = 1.0);
- precision and recall: k-NN manifolds in the same features (Kynkäänniemi et al. 2019, k = 3).

Everything here works on arrays; building the real reference from a data folder is the caller's job.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from .contract import make_noise
from .evaluator import Evaluator

GenerateFn = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (noise [N, Z], condition [N, C]) -> images [N, 3, H, W]
GENERATE_BATCH = 256  # images per generator call: ONNX Runtime keeps its largest batch's activations (a faces
# scorecard's 2,318 images at 96x96 in one call held 11.6 GB per model)

# Checkpoint selection: accuracy counts in full only where diversity and fidelity reach their targets.
DIVERSITY_TARGET = 0.8  # diversity ratio, generated / real
FIDELITY_TARGET = 1.5  # Fréchet distance / real floor
SELECTION_RULE = (f"mean lab accuracy x min(1, min(diversity, layout diversity) / {DIVERSITY_TARGET}) "
                  f"x min(1, {FIDELITY_TARGET} / (Fréchet distance / real floor))")
# InfoGAN runs have no labels: the Q head's recovery of the categorical code takes the accuracy's place, and the
# noise must still move the image with the codes fixed (noise spread, generated / real; real = 1.0).
NOISE_SPREAD_TARGET = 0.5
INFO_SELECTION_RULE = (f"categorical code recovery x min(1, noise spread / {NOISE_SPREAD_TARGET}) "
                       f"x min(1, {FIDELITY_TARGET} / (Fréchet distance / real floor))")


def pixel_diversity(groups: list[np.ndarray]) -> float:
    """Mean over groups of the per-pixel std across a group's images (each [n, 3, H, W] in [-1, 1]); 0: all alike."""
    return float(np.mean([g.astype(np.float64).std(axis=0).mean() for g in groups]))


def colour_map(images: np.ndarray) -> np.ndarray:
    """Per-pixel saturation [n, 1, H, W] of images [n, 3, H, W]: max - min over RGB (0 wherever the image is gray)."""
    return images.max(axis=1, keepdims=True) - images.min(axis=1, keepdims=True)


def layout_diversity(groups: list[np.ndarray]) -> float:
    """:func:`pixel_diversity` of the groups' colour maps: how much the coloured objects move between images."""
    return pixel_diversity([colour_map(g) for g in groups])


@torch.no_grad()
def pooled_features(evaluator: Evaluator, images: np.ndarray | torch.Tensor, batch_size: int = 256) -> np.ndarray:
    """The evaluator's pooled 512-d features [N, 512] of images [N, 3, H, W] in [-1, 1] (float64)."""
    trunk = torch.nn.Sequential(*list(evaluator.net.children())[:-1])  # everything but fc
    images = torch.as_tensor(images)
    device = next(evaluator.net.parameters()).device
    out = []
    for chunk in images.split(batch_size):
        chunk = chunk.to(device).float()
        if chunk.shape[-1] != evaluator.image_size:
            chunk = torch.nn.functional.interpolate(chunk, size=evaluator.image_size, mode="area")
        out.append(trunk(chunk.contiguous(memory_format=torch.channels_last)).flatten(1).double().cpu())
    return torch.cat(out).numpy()


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^1/2) of two feature sets [N, D].

    Tr((S_a S_b)^1/2) is the sum of the square roots of the eigenvalues of S_a S_b (real and >= 0
    for covariance matrices, up to rounding).
    """
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    trace_root = np.sqrt(np.clip(np.linalg.eigvals(s_a @ s_b).real, 0, None)).sum()
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a) + np.trace(s_b) - 2 * trace_root)


def _pairwise(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances [len(a), len(b)]."""
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
    return np.sqrt(np.clip(sq, 0, None))


def _in_manifold(points: np.ndarray, support: np.ndarray, k: int) -> float:
    """Share of ``points`` inside the union of balls around ``support`` with radius = k-th neighbour distance."""
    within = _pairwise(support, support)
    radii = np.sort(within, axis=1)[:, k]  # column 0 is the point itself
    return float((_pairwise(points, support) <= radii[None, :]).any(axis=1).mean())


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3) -> tuple[float, float]:
    """Improved precision (fakes on the real manifold) and recall (reals on the fake manifold) of features [N, D]."""
    return _in_manifold(fake, real, k), _in_manifold(real, fake, k)


@dataclass(frozen=True)
class RealReference:
    """The real images a scorecard compares with, and their own figures.

    ``set_conditions`` [S, C] and ``set_images`` (S arrays [n_s, 3, H, W]) are object sets with many real
    images; ``held_features`` [M, 512] are real images the evaluator never saw; ``other_features`` [M, 512]
    a second such sample (the floor), drawn for ``held_conditions`` [M, C], the conditions a generator is
    asked for.
    """

    set_conditions: np.ndarray
    set_images: tuple[np.ndarray, ...]
    held_conditions: np.ndarray
    held_features: np.ndarray
    other_features: np.ndarray

    @property
    def real_diversity(self) -> float:
        """Mean per-pixel std over the real images of each set."""
        return pixel_diversity(list(self.set_images))

    @property
    def real_layout_diversity(self) -> float:
        """Mean per-pixel std of the colour maps over the real images of each set."""
        return layout_diversity(list(self.set_images))

    def real_figures(self) -> dict:
        """The real-data row: the second real sample scored like a generator."""
        precision, recall = precision_recall(self.held_features, self.other_features)
        return {"diversity": 1.0, "layout_diversity": 1.0, "fidelity": 1.0, "precision": precision, "recall": recall,
                "frechet": frechet_distance(self.held_features, self.other_features)}


def generate_in_batches(generate: GenerateFn, noise: np.ndarray, condition: np.ndarray) -> np.ndarray:
    """``generate(noise, condition)`` [N, 3, H, W], called on at most ``GENERATE_BATCH`` rows at a time."""
    batch = GENERATE_BATCH
    return np.concatenate([generate(noise[i:i + batch], condition[i:i + batch]) for i in range(0, len(noise), batch)])


def diversity_ratio(generate: GenerateFn, z_dim: int, reference: RealReference, seed: int = 0) -> dict:
    """Generated / real per-pixel std over the reference's object sets (as many images per set as real ones),
    of the images and of their colour maps."""
    sizes = [len(images) for images in reference.set_images]
    cond = np.repeat(reference.set_conditions, sizes, axis=0).astype(np.float32)  # [sum n_s, C]
    fake = generate_in_batches(generate, make_noise(len(cond), z_dim, seed), cond)
    groups = np.split(fake, np.cumsum(sizes)[:-1])
    real = reference.real_diversity
    generated = pixel_diversity(groups)
    layout_real, layout_generated = reference.real_layout_diversity, layout_diversity(groups)
    return {"diversity": generated / real, "diversity_std_generated": generated, "diversity_std_real": real,
            "diversity_sets": len(sizes), "layout_diversity": layout_generated / layout_real,
            "layout_std_generated": layout_generated, "layout_std_real": layout_real}


def score(generate: GenerateFn, z_dim: int, reference: RealReference, evaluator: Evaluator, seed: int = 0) -> dict:
    """Diversity, fidelity (Fréchet distance and its ratio to the real floor), precision and recall of a generator."""
    out = diversity_ratio(generate, z_dim, reference, seed)
    return {**out, **fidelity(generate, z_dim, reference, evaluator, reference.held_conditions.astype(np.float32), seed + 1)}


def over_seeds(card_of_seed: Callable[[int], dict], seeds: Sequence[int]) -> dict:
    """The card ``card_of_seed(seed)`` for each noise seed in ``seeds``, summed up: every figure's mean, its std
    (ddof 0) under ``std``, the cards under ``per_seed``; counts (ints) as the first card has them. One seed's
    figure is one draw: the shipped i-CLEVR generator's Fréchet ratio spans 1.46-1.57x over seeds 0-9."""
    per_seed = [card_of_seed(seed) for seed in seeds]
    figures = [key for key, value in per_seed[0].items() if isinstance(value, float)]
    card = {**per_seed[0], **{key: float(np.mean([c[key] for c in per_seed])) for key in figures}}
    card["std"] = {key: float(np.std([c[key] for c in per_seed])) for key in figures}
    return {**card, "seeds": list(seeds), "per_seed": per_seed}


def score_over_seeds(generate: GenerateFn, z_dim: int, reference: RealReference, evaluator: Evaluator,
                     seeds: Sequence[int]) -> dict:
    """:func:`score` over noise ``seeds`` (:func:`over_seeds`): what ``evaluate`` prints and reports."""
    return over_seeds(lambda seed: score(generate, z_dim, reference, evaluator, seed), seeds)


def fidelity(generate: GenerateFn, z_dim: int, reference: RealReference, evaluator: Evaluator, conditions: np.ndarray,
             seed: int) -> dict:
    """Fréchet distance (and its ratio to the real floor), precision and recall of images drawn for ``conditions``
    [M, C] (the held-out images' labels, or InfoGAN codes) against the reference's held-out features."""
    fake = pooled_features(evaluator, generate_in_batches(generate, make_noise(len(conditions), z_dim, seed), conditions))
    floor = frechet_distance(reference.held_features, reference.other_features)
    frechet = frechet_distance(reference.held_features, fake)
    precision, recall = precision_recall(reference.held_features, fake)
    return {"frechet": frechet, "frechet_floor": floor, "fidelity": frechet / floor,
            "precision": precision, "recall": recall, "feature_images": len(conditions)}


def noise_spread(generate: GenerateFn, z_dim: int, codes: np.ndarray, real_images: np.ndarray, noises: int = 16,
                 seed: int = 2) -> dict:
    """How much the noise moves the image with the codes fixed: the mean per-pixel std over ``noises`` draws for
    each row of ``codes`` [R, C], divided by the per-pixel std over ``real_images`` [M, 3, H, W] (random real
    images: what varies between any two). 0: the codes carry all the variation; 1: as varied as the data."""
    cond = np.repeat(codes.astype(np.float32), noises, axis=0)  # [R * noises, C]
    fake = generate_in_batches(generate, make_noise(len(cond), z_dim, seed), cond)
    generated = pixel_diversity(np.split(fake, len(codes)))
    real = pixel_diversity([real_images])
    return {"noise_spread": generated / real, "noise_spread_std_generated": generated, "noise_spread_std_real": real,
            "noise_spread_codes": len(codes), "noise_spread_noises": noises}


def codes_card(generate: GenerateFn, z_dim: int, reference: RealReference, evaluator: Evaluator, vocabulary,
               seed: int) -> dict:
    """An InfoGAN generator's scorecard for one noise ``seed``: fidelity, precision and recall of images drawn
    for codes from ``vocabulary``'s prior (a CodeVocabulary), and the noise spread at 32 fixed codes against
    256 random real images (the same sample for every seed)."""
    codes = vocabulary.sample(len(reference.held_conditions), np.random.default_rng(seed))  # [M, K + 2]
    pool = np.concatenate(reference.set_images)  # [sum n_s, 3, H, W]
    real = pool[np.random.default_rng(0).permutation(len(pool))[:256]]
    card = fidelity(generate, z_dim, reference, evaluator, codes, seed=seed)
    card.update(noise_spread(generate, z_dim, codes[:32], real, seed=seed + 1))
    return card


def codes_table(cards: dict[str, dict]) -> str:
    """InfoGAN scorecards as a Markdown table, one row per name: a card over seeds (:func:`over_seeds`) as
    mean ± std, the real row's bare figures."""
    keys = [("fidelity", "Fréchet (x real floor)", 2), ("precision", "precision", 3), ("recall", "recall", 3),
            ("noise_spread", f"noise spread (real 1.0, target >= {NOISE_SPREAD_TARGET})", 3)]
    lines = ["| model | " + " | ".join(label for _, label, _ in keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for name, card in cards.items():
        lines.append(f"| {name} | " + " | ".join(_figure(card, key, digits) if key in card else "-"
                                                 for key, _, digits in keys) + " |")
    return "\n".join(lines)


def info_selection_score(recovery: float, card: dict) -> float:
    """The number an InfoGAN run's ``best.pt`` is picked by (``INFO_SELECTION_RULE``)."""
    spread = card.get("noise_spread", NOISE_SPREAD_TARGET)  # older records: no spread figure
    return (recovery * min(1.0, spread / NOISE_SPREAD_TARGET)
            * min(1.0, FIDELITY_TARGET / max(card["fidelity"], 1e-9)))


def selection_score(accuracy: float, card: dict) -> float:
    """The number ``best.pt`` is picked by (see ``SELECTION_RULE``): collapse or blur cannot win on accuracy alone."""
    diversity = min(card["diversity"], card.get("layout_diversity", card["diversity"]))  # older records: pixels only
    return (accuracy * min(1.0, diversity / DIVERSITY_TARGET)
            * min(1.0, FIDELITY_TARGET / max(card["fidelity"], 1e-9)))


def markdown_table(cards: dict[str, dict], accuracy: dict[str, dict]) -> str:
    """The scorecard as a Markdown table, one row per name (``accuracy``: name -> condition file -> result, with
    ``per_group`` for attribute groups); the condition files keep the order they were evaluated in (test.json
    before new_test.json).  A row whose result has no ``std`` (real images: the evaluator's held-out accuracy
    of them, under every file; a card without ``std``, such as a run's own) shows the bare figure."""
    files = list(dict.fromkeys(f for result in accuracy.values() for f in result))
    groups = list(dict.fromkeys(g for result in accuracy.values() for r in result.values() for g in r.get("per_group", {})))
    lines = ["| model | " + " | ".join(files + groups) + " | diversity (real 1.0) | layout diversity | Fréchet distance "
             "(x real floor) | precision | recall |", "|---" * (len(files) + len(groups) + 6) + "|"]
    for name, card in cards.items():
        results = accuracy.get(name, {})
        accs = [_accuracy_cell(results.get(f)) for f in files]
        per_group = next((r["per_group"] for r in results.values() if "per_group" in r), {})
        accs += [f"{per_group[g]:.3f}" if g in per_group else "-" for g in groups]
        figures = [_figure(card, "diversity", 3), _figure(card, "layout_diversity", 3),
                   f"{card['frechet']:.1f} ({_figure(card, 'fidelity', 2)}x)", _figure(card, "precision", 3),
                   _figure(card, "recall", 3)]
        lines.append(f"| {name} | " + " | ".join(accs + figures) + " |")
    return "\n".join(lines)


def _figure(card: dict, key: str, digits: int) -> str:
    """A scorecard figure: ``mean ± std`` over noise seeds (:func:`over_seeds`), else the bare figure."""
    spread = card.get("std", {})
    return f"{card[key]:.{digits}f} ± {spread[key]:.{digits}f}" if key in spread else f"{card[key]:.{digits}f}"


def _accuracy_cell(result: dict | None) -> str:
    """``mean ± std`` over seeds, the bare mean for real images, ``-`` for none."""
    if result is None:
        return "-"
    return f"{result['mean']:.3f} ± {result['std']:.3f}" if "std" in result else f"{result['mean']:.3f}"
