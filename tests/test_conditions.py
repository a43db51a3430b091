import pytest
import torch

from cgan_export.vocabulary import Vocabulary
from training.conditions import (colour_groups, image_weights, mix_conditions, random_conditions,
                                 random_group_conditions)

COLOURS = ["gray", "red", "blue", "green", "brown", "purple", "cyan", "yellow"]
VOCAB = Vocabulary(tuple(f"{c} {s}" for s in ("cube", "sphere", "cylinder") for c in COLOURS))


def test_colour_groups_follow_the_first_word_of_each_name():
    groups = colour_groups(VOCAB)
    assert groups.tolist() == list(range(8)) * 3


def test_random_conditions_have_the_asked_number_of_distinct_objects():
    counts = torch.tensor([1, 2, 3] * 200)
    cond = random_conditions(counts, colour_groups(VOCAB), 0.0, torch.Generator().manual_seed(0))  # [600, 24]
    assert cond.shape == (600, 24)
    assert torch.equal(cond.sum(dim=1).long(), counts)
    assert set(cond.unique().tolist()) == {0.0, 1.0}
    assert (cond.sum(dim=0) > 0).all()  # every object gets drawn


@pytest.mark.parametrize("same_colour, expected", [(1.0, 1.0), (0.0, 2 / 23)])
def test_same_colour_share_pairs_two_objects_of_one_colour(same_colour, expected):
    groups = colour_groups(VOCAB)
    counts = torch.full((4000,), 2)
    cond = random_conditions(counts, groups, same_colour, torch.Generator().manual_seed(0))
    colours = [groups[row.nonzero().flatten()] for row in cond]
    share = sum(int(c[0] == c[1]) for c in colours) / len(colours)
    assert share == pytest.approx(expected, abs=0.02)
    assert torch.equal(cond.sum(dim=1).long(), counts)


def test_mix_conditions_replaces_the_asked_share_of_rows_and_keeps_object_counts():
    gen = torch.Generator().manual_seed(0)
    labels = random_conditions(torch.tensor([1, 2, 3] * 300), colour_groups(VOCAB), 0.0, gen)
    assert mix_conditions(labels, 0.0, colour_groups(VOCAB), 0.5, gen) is labels
    mixed = mix_conditions(labels, 0.5, colour_groups(VOCAB), 0.5, gen)
    assert torch.equal(mixed.sum(dim=1), labels.sum(dim=1))
    changed = (mixed != labels).any(dim=1).float().mean().item()
    assert 0.35 < changed < 0.5  # half replaced, a few by the same condition again


FACES = Vocabulary(("aqua hair", "black hair", "blond hair", "blue eyes", "green eyes", "red eyes")).with_groups(
    {"hair": ["aqua hair", "black hair", "blond hair"], "eyes": ["blue eyes", "green eyes", "red eyes"]})


def test_random_group_conditions_take_one_value_per_group_every_combination_as_often():
    cond = random_group_conditions(9000, len(FACES), FACES.groups, torch.Generator().manual_seed(0))  # [9000, 6]
    assert torch.equal(cond[:, :3].sum(dim=1), torch.ones(9000)) and torch.equal(cond[:, 3:].sum(dim=1), torch.ones(9000))
    combos = torch.bincount(cond[:, :3].argmax(1) * 3 + cond[:, 3:].argmax(1), minlength=9) / 9000
    assert torch.allclose(combos, torch.full((9,), 1 / 9), atol=0.02)  # 1000 expected per combination; std ~0.003


def test_mix_conditions_for_attribute_groups_draw_uniform_combinations_not_the_data_s():
    labels = torch.zeros(8000, 6)
    labels[:, [0, 3]] = 1  # every real face: aqua hair, blue eyes
    mixed = mix_conditions(labels, 0.5, colour_groups(FACES), 0.0, torch.Generator().manual_seed(0), FACES.groups)
    assert torch.equal(mixed[:, :3].sum(dim=1), torch.ones(8000)) and torch.equal(mixed[:, 3:].sum(dim=1), torch.ones(8000))
    changed = (mixed != labels).any(dim=1).float().mean().item()
    assert abs(changed - 0.5 * 8 / 9) < 0.03  # half redrawn, 1 in 9 of those to the same combination
    assert mixed[:, 2].mean().item() == pytest.approx(0.5 / 3, abs=0.02)  # blond hair, never in the data


def test_image_weights_favour_images_that_pair_two_objects_of_one_colour():
    groups = colour_groups(VOCAB)
    labels = torch.zeros(3, 24)
    labels[0, [1, 9]] = 1  # red cube + red sphere
    labels[1, [1, 10]] = 1  # red cube + blue sphere
    labels[2, [2, 3, 18]] = 1  # blue cube, green cube, blue cylinder
    assert image_weights(labels, groups, 1.0) is None
    assert image_weights(labels, groups, 4.0).tolist() == [4.0, 1.0, 4.0]


def test_weighted_epoch_order_draws_in_proportion_and_replays():
    from training.steps import epoch_order

    weights = torch.tensor([3.0, 1.0])
    order = epoch_order(0, 5, 4000, weights.repeat(2000))
    assert torch.equal(order, epoch_order(0, 5, 4000, weights.repeat(2000)))
    assert (order % 2 == 0).float().mean().item() == pytest.approx(0.75, abs=0.03)
