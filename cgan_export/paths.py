"""Where the shipped artifacts live: inside the installed package, or in the checkout's ``exported/``."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def shipped_dir() -> Path:
    """The folder of the shipped model files: ``cgan_export/exported`` in an installed wheel (package data),
    else ``exported/`` beside the package in a checkout or an editable install."""
    installed = Path(str(resources.files("cgan_export"))) / "exported"
    if (installed / "manifest.json").is_file():
        return installed
    return Path(__file__).resolve().parent.parent / "exported"


EXPORTED_DIR = shipped_dir()
