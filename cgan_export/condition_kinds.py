"""Every condition kind a model file can hold, read back from its stored fields: objects and attribute groups
(``vocabulary``), InfoGAN codes (``codes``). The one module that knows them all, so neither imports the other."""

from __future__ import annotations

from .codes import CODES, codes_from_fields
from .vocabulary import Vocabulary


def vocabulary_from_fields(fields: dict) -> Vocabulary:
    """The vocabulary a checkpoint or an artifact's metadata stores (``Vocabulary.to_fields``), of its kind."""
    if fields.get("condition_kind") == CODES:
        return codes_from_fields(fields)
    return Vocabulary.from_fields(fields)
