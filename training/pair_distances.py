"""How far apart two real images of one object set are, by the number of objects: the mode-seeking caps.

MSGAN's term pushes each pair of images G draws for one condition apart until the pair's image/noise distance
ratio reaches a cap.  A cap above what real pairs of that kind show forces G to invent variety: i-CLEVR's
single objects always sit at the centre (two real ones differ by a median 0.033 mean abs per pixel, against
0.051 and 0.068 for two and three objects), so a cap fit for scenes of two objects made G move single objects sideways.
With ``mode_seeking_real_share`` > 0, a pair's cap is also at most that share of the median real ratio of its
object count.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .data import ICLEVRData, to_float
from .presets import TrainConfig
from .reference import object_sets

NOISE_DISTANCE = 2 / math.sqrt(math.pi)  # E|z1 - z2| for two standard normal draws: the ratio's denominator


def real_pair_distances(data: ICLEVRData, per_set: int = 8, sets_per_count: int = 64) -> dict[int, float]:
    """Median mean-abs pixel distance between two real images of one object set, per number of objects
    (label entries set); up to ``sets_per_count`` sets of at least two images each, ``per_set`` images a set."""
    by_count: dict[int, list[np.ndarray]] = {}
    for members in object_sets(data.labels, min_images=2):
        count = int(data.labels[members[0]].gt(0.5).sum())
        if len(by_count.setdefault(count, [])) < sets_per_count:
            by_count[count].append(members[:per_set])
    out = {}
    for count, sets in sorted(by_count.items()):
        distances = []
        for members in sets:
            x = to_float(data.images[torch.as_tensor(members)]).flatten(1)  # [n, 3 * H * W]
            i, j = torch.triu_indices(len(x), len(x), offset=1)
            distances.append((x[i] - x[j]).abs().mean(1))  # [n (n - 1) / 2]
        out[count] = float(torch.cat(distances).median())
    return out


def mode_seeking_caps(config: TrainConfig, data: ICLEVRData) -> torch.Tensor | None:
    """The cap of each pair's ratio by object count, [max count + 1] (a count with no real pairs keeps
    ``mode_seeking_target``, or no cap when that is 0; counts below ``mode_seeking_min_objects`` get 0: no
    term); None when every pair shares the preset's one cap."""
    by_count = config.mode_seeking_real_share > 0 or config.mode_seeking_min_objects > 0
    if config.mode_seeking_weight <= 0 or not by_count or config.info_categories:
        return None
    distances = real_pair_distances(data) if config.mode_seeking_real_share > 0 else {}
    uncapped = config.mode_seeking_target if config.mode_seeking_target > 0 else float("inf")
    caps = torch.full((int(data.labels.gt(0.5).sum(1).max()) + 1,), float(uncapped))
    for count, distance in distances.items():
        share = config.mode_seeking_real_share * distance / NOISE_DISTANCE
        caps[count] = min(share, config.mode_seeking_target) if config.mode_seeking_target > 0 else share
    caps[:config.mode_seeking_min_objects] = 0.0  # a cap of 0: those pairs pay no term (losses.mode_seeking)
    return caps
