"""The condition vocabulary: names <-> indices, and multi-hot condition encoding.

Two kinds of condition:

- ``objects`` (i-CLEVR): a set of 1..``max_objects`` distinct object names;
- ``groups`` (attribute groups, e.g. anime faces' hair and eyes): exactly one value of every group.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .errors import CganError, DatasetError, VocabularyError

DEFAULT_MAX_OBJECTS = 3
OBJECTS, GROUPS = "objects", "groups"  # the condition kinds
GROUPS_FILE = "groups.json"  # group name -> its values, beside objects.json in a data folder of the groups kind


def normalize_name(name: str) -> str:
    """Lower-case a name and collapse its white space: ``"Red  Cube"`` -> ``"red cube"``."""
    return " ".join(str(name).lower().split())


@dataclass(frozen=True)
class Vocabulary:
    """An ordered tuple of names; the index of a name is its multi-hot position.  With ``groups`` (group name,
    member indices) a condition takes exactly one value of every group."""

    names: tuple[str, ...]
    max_objects: int = DEFAULT_MAX_OBJECTS
    groups: tuple[tuple[str, tuple[int, ...]], ...] = ()

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

    def with_groups(self, groups: dict[str, list[str]]) -> "Vocabulary":
        """This vocabulary as attribute groups (``groups.json``: group name -> its value names); every name must
        belong to exactly one group.  Groups and their values are kept in index order."""
        if not isinstance(groups, dict) or not groups or not all(isinstance(v, list) and v for v in groups.values()):
            raise DatasetError(f"{GROUPS_FILE} must map group names to non-empty lists of value names")
        members = tuple(sorted(((str(g), tuple(sorted(self._known(v, g) for v in values))) for g, values in groups.items()),
                               key=lambda group: group[1][0]))  # in index order, whatever the JSON key order
        flat = sorted(i for _, idx in members for i in idx)
        if flat != list(range(len(self.names))):
            raise DatasetError(f"{GROUPS_FILE}: every name of objects.json must be in exactly one group")
        return Vocabulary(self.names, len(members), members)

    def _known(self, name: str, group: str) -> int:
        key = normalize_name(name)
        if key not in self.names:
            raise DatasetError(f"{GROUPS_FILE}: group {group!r} names {name!r}, which objects.json lacks")
        return self.names.index(key)

    @property
    def kind(self) -> str:
        """``"groups"`` (one value per group) or ``"objects"`` (a set of distinct objects)."""
        return GROUPS if self.groups else OBJECTS

    def to_fields(self) -> dict:
        """What checkpoints and artifact metadata store of the vocabulary (read back by :meth:`from_fields`)."""
        fields = {"vocabulary": self.to_mapping(), "max_objects": self.max_objects, "condition_kind": self.kind}
        if self.groups:
            fields["groups"] = {g: [self.names[i] for i in idx] for g, idx in self.groups}
        return fields

    @classmethod
    def from_fields(cls, fields: dict) -> "Vocabulary":
        """The objects or groups vocabulary stored by :meth:`to_fields` (files without a kind are of the objects
        kind; ``cgan_export.condition_kinds.vocabulary_from_fields`` reads every kind)."""
        vocab = cls.from_mapping(fields["vocabulary"], int(fields.get("max_objects", DEFAULT_MAX_OBJECTS)))
        return vocab.with_groups(fields["groups"]) if fields.get("condition_kind") == GROUPS else vocab

    def combinations(self) -> list[list[str]]:
        """Every condition of a groups vocabulary: one value of each group, in group order."""
        rows: list[list[str]] = [[]]
        for _, idx in self.groups:
            rows = [row + [self.names[i]] for row in rows for i in idx]
        return rows

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
        if self.groups:
            example = " ".join(repr(self.names[idx[0]]) for _, idx in self.groups)
            return f"unknown value {raw!r}{hint} (give one value of each of {self._group_list()}, e.g. {example})"
        return f"unknown object {raw!r}{hint} (valid: 'COLOR SHAPE', e.g. {self.names[1]!r})"

    def _group_list(self) -> str:
        return ", ".join(g for g, _ in self.groups)

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
        if self.groups:
            self._check_groups(names, indices)
        elif len(indices) > self.max_objects:
            raise VocabularyError(
                f"too many objects ({len(indices)}) in condition {names}: this model supports at most {self.max_objects}"
            )
        return sorted(indices)

    def _check_groups(self, names: list[str], indices: list[int]) -> None:
        """Exactly one value of every group (the error names the clash or the missing group, with examples)."""
        for group, idx in self.groups:
            given = [self.names[i] for i in indices if i in idx]
            if len(given) > 1:
                raise VocabularyError(f"{' and '.join(repr(g) for g in given)} are both {group} values: "
                                      f"give one {group} value, e.g. {given[0]!r}")
            if not given:
                some = ", ".join(repr(self.names[i]) for i in idx[:4])
                raise VocabularyError(f"condition {names} has no {group} value: add one of {len(idx)}, e.g. {some}")

    def canonical(self, names: Iterable[str]) -> list[str]:
        """One condition's names, validated and spelled as the vocabulary spells them, in index order."""
        return [self.names[i] for i in self.parse(names)]

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
