"""What an int8 export calibrates on: the training conditions of a data folder whose vocabulary is the model's."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cgan_export.checkpoint import load_generator
from cgan_export.condition_kinds import vocabulary_from_fields
from cgan_export.errors import DatasetError
from cgan_export.export import ExportOptions
from cgan_export.int8 import CALIBRATION_BATCH, CALIBRATION_BATCHES

from .data import read_annotations, resolve_data_root, load_vocabulary


def int8_calibration(checkpoint: Path, data: Path | None = None) -> ExportOptions:
    """Conditions of ``CALIBRATION_BATCHES x CALIBRATION_BATCH`` training images (a fixed draw) of ``data`` (default:
    ``$CGAN_EXPORT_DATA`` or ../shared/iclevr).  An InfoGAN model calibrates on its codes' prior; a default folder
    that is missing or of another vocabulary gives way to conditions drawn from the model's vocabulary; a folder
    given by name must fit (else a :class:`DatasetError`)."""
    _, info = load_generator(checkpoint)
    vocabulary = vocabulary_from_fields(info)
    if vocabulary.kind == "codes":
        return ExportOptions(None, "codes drawn from their prior")
    root = resolve_data_root(data)
    try:
        folder_vocabulary = load_vocabulary(root)
        if folder_vocabulary.to_mapping() != vocabulary.to_mapping():
            raise DatasetError(f"--data {root}: its objects.json is not the model's vocabulary")
        annotations = read_annotations(root, folder_vocabulary)
    except DatasetError:
        if data is not None:
            raise
        return ExportOptions()
    names = sorted(annotations)
    rows = np.random.default_rng(0).permutation(len(names))[:CALIBRATION_BATCHES * CALIBRATION_BATCH]
    conditions = vocabulary.encode_batch([annotations[names[i]] for i in rows])  # [M, C]
    return ExportOptions(conditions, f"conditions of {len(rows)} training images of {root.name}/train.json")
