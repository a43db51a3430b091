"""Random conditions for the generator: combinations the training images may never show.

The training images fix which object combinations the generator practises on; a share of each
generated batch can instead be drawn for random conditions (the same number of objects as the row
it replaces, distinct objects; for attribute groups one uniform value of each group), judged by
the discriminator's projection and auxiliary heads like any other fake.  ``same_colour`` is the share of those random conditions (with two objects or more)
that pair two objects of one colour: scenes the training set holds few of (8% of its two-object
images) and the generator confuses most.  :func:`image_weights` instead draws the real training
images that show such scenes more often.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cgan_export.codes import CONTINUOUS_PRIOR
from cgan_export.vocabulary import Vocabulary


def colour_groups(vocabulary: Vocabulary) -> torch.Tensor:
    """Group index of each object, by the first word of its name (its colour): long [C]."""
    colours = [name.split()[0] for name in vocabulary.names]
    order = {c: i for i, c in enumerate(dict.fromkeys(colours))}
    return torch.tensor([order[c] for c in colours])


def random_conditions(counts: torch.Tensor, groups: torch.Tensor, same_colour: float,
                      generator: torch.Generator) -> torch.Tensor:
    """Multi-hot [B, C] of ``counts[i]`` distinct objects per row, uniformly drawn; with probability
    ``same_colour`` a row of two or more objects first takes two distinct objects of one random colour."""
    batch, classes = len(counts), len(groups)
    scores = torch.rand(batch, classes, generator=generator)  # [B, C] a random order of the objects
    sizes = torch.bincount(groups)
    pairable = torch.nonzero(sizes >= 2).flatten()  # colours with at least two objects
    pair = (torch.rand(batch, generator=generator) < same_colour) & (counts >= 2)  # [B]
    if len(pairable) and pair.any():
        colour = pairable[torch.randint(len(pairable), (batch,), generator=generator)]  # [B]
        member = groups[None, :] == colour[:, None]  # [B, C]
        two = torch.where(member, scores, torch.full_like(scores, -1.0)).topk(2, dim=1).indices  # [B, 2]
        scores = scores + torch.zeros_like(scores).scatter_(1, two, 2.0) * pair[:, None]  # paired ones rank first
    rank = scores.argsort(dim=1, descending=True).argsort(dim=1)  # [B, C] rank of each object in its row
    return (rank < counts[:, None]).float()


def random_group_conditions(batch: int, classes: int, value_groups: tuple[tuple[str, tuple[int, ...]], ...],
                            generator: torch.Generator) -> torch.Tensor:
    """Multi-hot [B, C] of one uniformly drawn value from every attribute group (``Vocabulary.groups``): each
    combination as often as any other, whatever the data's frequencies."""
    out = torch.zeros(batch, classes)
    for _, members in value_groups:
        members = torch.tensor(members)  # [V] this group's class indices
        pick = members[torch.randint(len(members), (batch,), generator=generator)]  # [B]
        out[torch.arange(batch), pick] = 1.0
    return out


def mix_conditions(labels: torch.Tensor, fraction: float, groups: torch.Tensor, same_colour: float,
                   generator: torch.Generator, value_groups: tuple = ()) -> torch.Tensor:
    """``labels`` [B, C] with a ``fraction`` of rows replaced by random conditions: for attribute groups
    (``value_groups``, a groups vocabulary's) one uniform value per group, else as many distinct objects."""
    if fraction <= 0:
        return labels
    replace = torch.rand(len(labels), generator=generator) < fraction  # [B]
    if value_groups:
        fresh = random_group_conditions(len(labels), labels.shape[1], value_groups, generator)  # [B, C]
    else:
        counts = labels.sum(dim=1).round().long()  # [B]
        fresh = random_conditions(counts, groups, same_colour, generator)  # [B, C]
    return torch.where(replace[:, None], fresh, labels)


def pairs_one_colour(labels: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """bool [N]: the condition holds two (or more) objects of one colour."""
    per_colour = labels @ torch.nn.functional.one_hot(groups).float()  # [N, colours] objects of each colour
    return (per_colour >= 2).any(dim=1)


def image_weights(labels: torch.Tensor, groups: torch.Tensor, same_colour_weight: float) -> torch.Tensor | None:
    """Sampling weight [N] of each training image: ``same_colour_weight`` for the images that pair two
    objects of one colour, 1 for the rest; ``None`` (uniform) when the weight is 1."""
    if same_colour_weight == 1.0:
        return None
    return 1.0 + (same_colour_weight - 1.0) * pairs_one_colour(labels, groups).float()


def sample_codes(batch: int, categories: int, continuous: int, generator: torch.Generator) -> torch.Tensor:
    """InfoGAN codes [B, K + M] from the training prior: a uniform one-hot category, then continuous codes uniform
    on ``CONTINUOUS_PRIOR``."""
    category = torch.randint(categories, (batch,), generator=generator)  # [B]
    low, high = CONTINUOUS_PRIOR
    values = torch.rand(batch, continuous, generator=generator) * (high - low) + low  # [B, M]
    return torch.cat([F.one_hot(category, categories).float(), values], dim=1)
