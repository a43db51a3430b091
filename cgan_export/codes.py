"""InfoGAN codes as a condition kind: a categorical code and continuous codes, learnt without labels.

The condition input of such a model is the one-hot categorical code [K] followed by the continuous codes
[M]: the same ``condition`` [N, C] input as every other model, so the contract, CLI and API serve it.
A condition is a list of ``NAME=VALUE`` items, e.g. ``["cat=3", "c1=-1.5"]``: ``cat`` is required,
continuous codes left out are 0 (the centre of their training prior, uniform on [-1, 1]).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

from .errors import VocabularyError
from .vocabulary import Vocabulary

CODES = "codes"  # the condition kind
CATEGORICAL = "cat"
CONTINUOUS_PRIOR = (-1.0, 1.0)  # training draws continuous codes uniformly from this range


@dataclass(frozen=True)
class CodeVocabulary(Vocabulary):
    """The codes of an InfoGAN generator: names ``cat=0 .. cat=K-1`` then ``c1 .. cM``."""

    categories: int = 10

    @classmethod
    def make(cls, categories: int, continuous: int) -> "CodeVocabulary":
        """K categorical values and M continuous codes."""
        names = tuple(f"{CATEGORICAL}={k}" for k in range(categories)) + tuple(f"c{i + 1}" for i in range(continuous))
        return cls(names, 1 + continuous, ((CATEGORICAL, tuple(range(categories))),), categories)

    @property
    def kind(self) -> str:
        """``"codes"``."""
        return CODES

    @property
    def continuous(self) -> tuple[str, ...]:
        """The continuous codes' names."""
        return self.names[self.categories:]

    def to_fields(self) -> dict:
        """What checkpoints and metadata store: the vocabulary fields plus the codes' description."""
        return {"vocabulary": self.to_mapping(), "max_objects": self.max_objects, "condition_kind": CODES,
                "codes": {"categorical": {CATEGORICAL: self.categories}, "continuous": list(self.continuous),
                          "continuous_prior": list(CONTINUOUS_PRIOR)}}

    def _values(self, items: Iterable[str]) -> dict[str, float]:
        """``["cat=3", "c1=-1.5"]`` -> ``{"cat": 3.0, "c1": -1.5}``, checked."""
        values: dict[str, float] = {}
        for item in items:
            key, sep, raw = str(item).replace(" ", "").lower().partition("=")
            if key not in (CATEGORICAL, *self.continuous) or not sep:
                raise VocabularyError(f"unknown code {item!r}: give NAME=VALUE with NAME one of "
                                      f"{CATEGORICAL} (0-{self.categories - 1}), {', '.join(self.continuous)}; e.g. cat=3 c1=-1.5")
            if key in values:
                raise VocabularyError(f"code {key} is given twice")
            try:
                values[key] = float(raw)
            except ValueError:
                raise VocabularyError(f"{item!r}: {key} takes a number") from None
            if not np.isfinite(values[key]):
                raise VocabularyError(f"{item!r}: {key} takes a finite number")
        cat = values.get(CATEGORICAL)
        if cat is None:
            raise VocabularyError(f"give the categorical code, e.g. {CATEGORICAL}=0 (0-{self.categories - 1})")
        if cat != int(cat) or not 0 <= cat < self.categories:
            raise VocabularyError(f"{CATEGORICAL}={raw_number(cat)}: {CATEGORICAL} takes a whole number 0-{self.categories - 1}")
        return values

    def parse(self, names: Iterable[str]) -> list[int]:
        """Validate one condition of codes; returns the indices of the categorical value and of the codes given."""
        values = self._values(names)
        return sorted([int(values[CATEGORICAL])] + [self.names.index(k) for k in values if k != CATEGORICAL])

    def canonical(self, names: Iterable[str]) -> list[str]:
        """Every code spelled out: ``["cat=3", "c1=-1.5", "c2=0"]``."""
        values = self._values(names)
        return [f"{CATEGORICAL}={int(values[CATEGORICAL])}"] + [f"{k}={raw_number(values.get(k, 0.0))}" for k in self.continuous]

    def encode(self, names: Iterable[str]) -> np.ndarray:
        """One condition -> float32 [K + M]: the one-hot categorical code, then the continuous values."""
        values = self._values(names)
        vector = np.zeros(len(self.names), dtype=np.float32)
        vector[int(values[CATEGORICAL])] = 1.0
        for i, name in enumerate(self.continuous):
            vector[self.categories + i] = values.get(name, 0.0)
        return vector

    def decode(self, vector) -> list[str]:
        """float [K + M] -> spelled-out codes."""
        vector = np.asarray(vector, dtype=np.float32)
        return self.canonical([f"{CATEGORICAL}={int(vector[:self.categories].argmax())}"]
                              + [f"{k}={float(v):g}" for k, v in zip(self.continuous, vector[self.categories:])])

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """float32 [n, K + M] codes from the training prior: a uniform category, continuous codes uniform on [-1, 1]."""
        vector = np.zeros((n, len(self.names)), dtype=np.float32)
        vector[np.arange(n), rng.integers(0, self.categories, n)] = 1.0
        vector[:, self.categories:] = rng.uniform(*CONTINUOUS_PRIOR, size=(n, len(self.continuous)))
        return vector


def raw_number(value: float) -> str:
    """``3.0`` -> ``"3"``, ``-1.5`` -> ``"-1.5"``."""
    return f"{value:g}"


def codes_from_fields(fields: dict) -> CodeVocabulary:
    """The code vocabulary stored by :meth:`CodeVocabulary.to_fields`."""
    codes = fields["codes"]
    return CodeVocabulary.make(int(codes["categorical"][CATEGORICAL]), len(codes["continuous"]))
