"""The object vocabulary: names <-> indices, and multi-hot condition encoding."""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .errors import CganError, DatasetError, VocabularyError

DEFAULT_MAX_OBJECTS = 3


def normalize_name(name: str) -> str:
    """Lower-case a name and collapse its white space: ``"Red  Cube"`` -> ``"red cube"``."""
    return " ".join(str(name).lower().split())


@dataclass(frozen=True)
class Vocabulary:
    """An ordered tuple of object names; the index of a name is its multi-hot position."""

    names: tuple[str, ...]
    max_objects: int = DEFAULT_MAX_OBJECTS

    @classmethod
    def from_mapping(cls, mapping: dict[str, int], max_objects: int = DEFAULT_MAX_OBJECTS) -> "Vocabulary":
        """Build from a ``name -> index`` mapping (the layout of ``objects.json``)."""
        indices = sorted(mapping.values())
        if indices != list(range(len(mapping))):
            raise DatasetError("objects.json indices must be 0..N-1 without gaps or repeats")
        names = [""] * len(mapping)
        for name, index in mapping.items():
            names[index] = normalize_name(name)
        return cls(tuple(names), max_objects)

    @classmethod
    def from_objects_json(cls, path: Path, max_objects: int = DEFAULT_MAX_OBJECTS) -> "Vocabulary":
        """Read ``objects.json`` (name -> index)."""
        try:
            mapping = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise DatasetError(f"missing {path}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DatasetError(f"{path} is not valid JSON: {exc}") from None
        if not isinstance(mapping, dict):
            raise DatasetError(f"{path} must map object names to indices")
        return cls.from_mapping(mapping, max_objects)

    def to_mapping(self) -> dict[str, int]:
        """The ``name -> index`` mapping, as stored in metadata."""
        return {name: i for i, name in enumerate(self.names)}

    def __len__(self) -> int:
        return len(self.names)

    def index(self, name: str) -> int:
        """Index of one object name; unknown names raise with the closest valid names."""
        key = normalize_name(name)
        try:
            return self.names.index(key)
        except ValueError:
            raise VocabularyError(self._unknown_message(name, key)) from None

    def _unknown_message(self, raw: str, key: str) -> str:
        suggestions = []
        swapped = " ".join(reversed(key.split()))
        if swapped in self.names:
            suggestions.append(swapped)
        singular = " ".join(w[:-1] if w.endswith("s") and w[:-1] in self._words else w for w in key.split())
        if singular in self.names and singular not in suggestions:
            suggestions.append(singular)
        for match in difflib.get_close_matches(key, self.names, n=3, cutoff=0.5):
            if match not in suggestions:
                suggestions.append(match)
        hint = f"; did you mean {', '.join(repr(s) for s in suggestions[:3])}?" if suggestions else ""
        return f"unknown object {raw!r}{hint} (valid: 'COLOR SHAPE', e.g. {self.names[1]!r})"

    @property
    def _words(self) -> set[str]:
        return {w for name in self.names for w in name.split()}

    def parse(self, names: Iterable[str]) -> list[int]:
        """Validate one condition (a list of names) and return its sorted indices."""
        names = list(names)
        if not names:
            raise VocabularyError("empty condition: give at least one object, e.g. 'red cube'")
        indices = [self.index(n) for n in names]
        seen: set[int] = set()
        for raw, i in zip(names, indices):
            if i in seen:
                raise VocabularyError(f"duplicate object {self.names[i]!r} in condition {names}")
            seen.add(i)
        if len(indices) > self.max_objects:
            raise VocabularyError(
                f"too many objects ({len(indices)}) in condition {names}: this model supports at most {self.max_objects}"
            )
        return sorted(indices)

    def encode(self, names: Iterable[str]) -> np.ndarray:
        """One condition -> float32 multi-hot ``[len(vocabulary)]``."""
        hot = np.zeros(len(self.names), dtype=np.float32)
        hot[self.parse(names)] = 1.0
        return hot

    def encode_batch(self, conditions: Sequence[Iterable[str]]) -> np.ndarray:
        """A list of conditions -> float32 multi-hot ``[N, len(vocabulary)]``."""
        if not conditions:
            raise VocabularyError("no conditions given")
        return np.stack([self.encode(c) for c in conditions])  # [N, 24]

    def decode(self, multi_hot: Sequence[float]) -> list[str]:
        """Multi-hot vector -> list of names (positions > 0.5)."""
        return [self.names[i] for i, v in enumerate(multi_hot) if float(v) > 0.5]


def read_condition_file(path: Path) -> list[list[str]]:
    """Read a lab condition file: a non-empty JSON list of conditions (lists of object names)."""
    path = Path(path)
    if not path.is_file():
        raise CganError(f"condition file {path} does not exist")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CganError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(data, list) or not data or not all(isinstance(c, list) for c in data):
        raise CganError(f"{path} must be a non-empty JSON list of conditions (lists of object names)")
    return [[str(n) for n in c] for c in data]
