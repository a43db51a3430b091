"""The mode-seeking caps by object count, read off hand-made real images."""

from types import SimpleNamespace

import pytest
import torch

from training.pair_distances import (
    NOISE_DISTANCE,
    mode_seeking_caps,
    real_pair_distances,
)
from training.presets import get_preset


def _set(label: list[int], levels: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat gray images [n, 3, 4, 4] (uint8 ``levels``) with one multi-hot label [n, 6]."""
    images = torch.tensor(levels, dtype=torch.uint8).view(-1, 1, 1, 1).expand(-1, 3, 4, 4)
    labels = torch.zeros(len(levels), 6)
    labels[:, label] = 1
    return images, labels


@pytest.fixture()
def hand_made():
    """One-object sets whose images differ by 2 or 4 levels, a two-object set by 20 or 40."""
    parts = [_set([0], [100, 102, 104]), _set([1], [50, 52]), _set([2, 3], [100, 120, 140])]
    return SimpleNamespace(images=torch.cat([p[0] for p in parts]), labels=torch.cat([p[1] for p in parts]))


def test_real_pair_distances_are_medians_per_object_count(hand_made):
    distances = real_pair_distances(hand_made)
    # one object: pairs differ by 2, 4, 2 (set 1) and 2 (set 2) levels; two objects: 20, 40, 20
    assert distances == {1: pytest.approx(2 / 127.5), 2: pytest.approx(20 / 127.5)}


def test_caps_follow_the_real_share_up_to_the_preset_target(hand_made):
    config = get_preset("best", mode_seeking_target=0.1, mode_seeking_real_share=0.5)
    caps = mode_seeking_caps(config, hand_made)
    assert caps.tolist() == pytest.approx([0.1, 0.5 * (2 / 127.5) / NOISE_DISTANCE, 0.5 * (20 / 127.5) / NOISE_DISTANCE])
    tight = mode_seeking_caps(get_preset("best", mode_seeking_target=0.01, mode_seeking_real_share=0.5), hand_made)
    assert tight.tolist() == pytest.approx([0.01, 0.5 * (2 / 127.5) / NOISE_DISTANCE, 0.01])  # the target caps the share
    free = mode_seeking_caps(get_preset("best", mode_seeking_target=0.0, mode_seeking_real_share=0.5), hand_made)
    assert free[0] == float("inf") and free[1] == pytest.approx(0.5 * (2 / 127.5) / NOISE_DISTANCE)  # no target: no cap


def test_without_a_real_share_every_pair_keeps_the_one_target(hand_made):
    assert mode_seeking_caps(get_preset("best", mode_seeking_real_share=0.0), hand_made) is None
    assert mode_seeking_caps(get_preset("best", mode_seeking_weight=0.0), hand_made) is None


def test_pairs_of_fewer_objects_than_the_minimum_get_a_cap_of_zero(hand_made):
    caps = mode_seeking_caps(get_preset("best", mode_seeking_min_objects=2), hand_made)
    assert caps[0] == caps[1] == 0 and caps[2] == pytest.approx(0.03)  # single objects: no term; pairs keep theirs
    alone = mode_seeking_caps(get_preset("best", mode_seeking_real_share=0.0, mode_seeking_min_objects=2), hand_made)
    assert alone.tolist() == pytest.approx([0.0, 0.0, 0.03])  # without a real share: the one target, singles out
