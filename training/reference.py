"""The real-data side of the scorecard, built from a data folder (see ``cgan_export/scorecard.py``)."""

from __future__ import annotations

import numpy as np
import torch

from cgan_export.evaluator import Evaluator
from cgan_export.scorecard import RealReference, pooled_features

from .data import DatasetError, ICLEVRData, to_float
from .evaluator_training import holdout_indices

MIN_SET_IMAGES = 12  # an object set joins the diversity figure when it has at least this many real images
FEATURE_IMAGES = 900  # real images per feature sample (Fréchet distance, precision, recall), in runs and `evaluate`
MIN_FEATURE_IMAGES = 8  # the fewest images per feature sample (k-NN with k = 3 and a covariance need a few)


def object_sets(labels: torch.Tensor, min_images: int = MIN_SET_IMAGES) -> list[np.ndarray]:
    """Indices of the images of every object set (identical multi-hot label) with at least ``min_images`` images,
    in a fixed order (by label)."""
    keys = labels.gt(0.5).numpy().astype(np.uint8)  # [N, C]
    unique, inverse = np.unique(keys, axis=0, return_inverse=True)
    groups = [np.flatnonzero(inverse.ravel() == i) for i in range(len(unique))]
    return [g for g in groups if len(g) >= min_images]


def _spread(items: list, limit: int | None) -> list:
    """At most ``limit`` items, evenly spaced over the list (all of them when ``limit`` is None)."""
    if limit is None or len(items) <= limit:
        return items
    return [items[i] for i in np.linspace(0, len(items) - 1, limit).round().astype(int)]


def held_out_images(data: ICLEVRData, evaluator: Evaluator, seed: int = 0) -> np.ndarray:
    """Indices of the images of the scenes the evaluator held out of its training, shuffled by ``seed`` (a folder
    too small for that split: all its images, which the evaluator may have seen)."""
    held = holdout_indices(evaluator, data.files)
    if len(held) < 2 * MIN_FEATURE_IMAGES:
        held = np.arange(len(data))
    return np.random.default_rng(seed).permutation(held)


def build_reference(data: ICLEVRData, evaluator: Evaluator, per_set: int = 24, max_sets: int | None = None,
                    feature_images: int = FEATURE_IMAGES, min_set_images: int = MIN_SET_IMAGES, seed: int = 0) -> RealReference:
    """The real reference of ``data``: object sets with at least ``min_set_images`` images (at most ``per_set``
    of them each, ``max_sets`` sets spread over all) and two disjoint samples of ``feature_images`` images from
    the evaluator's own held-out scenes: the reference, and the real sample whose conditions the generator draws
    (the floor).  A folder too small for either is a :class:`DatasetError`."""
    sets = _spread(object_sets(data.labels, min_set_images), max_sets)
    if not sets:
        raise DatasetError(f"no object set has {min_set_images} images in {data.root}: too few for the diversity figure")
    set_images = tuple(to_float(data.images[torch.as_tensor(g[:per_set])]).numpy() for g in sets)  # [n_s, 3, H, W] each
    set_conditions = np.stack([data.labels[g[0]].numpy() for g in sets])  # [S, C]
    held = held_out_images(data, evaluator, seed)
    size = min(feature_images, len(held) // 2)
    if size < MIN_FEATURE_IMAGES:
        raise DatasetError(f"{data.root} holds {len(data)} images: too few for the Fréchet distance")
    reference, other = torch.as_tensor(np.sort(held[:size])), torch.as_tensor(np.sort(held[size:2 * size]))
    return RealReference(set_conditions, set_images, data.labels[other].numpy(),
                         pooled_features(evaluator, to_float(data.images[reference])),
                         pooled_features(evaluator, to_float(data.images[other])))

