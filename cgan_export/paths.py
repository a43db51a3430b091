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
# The wheel carries only the ONNX generators, manifests and model cards (pyproject.toml); the torch files
# (checkpoints, TorchScript, evaluators) live in a checkout's exported/.
IN_WHEEL = not (EXPORTED_DIR / "generator.pt").is_file() and (EXPORTED_DIR / "generator.onnx").is_file()
NOT_IN_WHEEL = ("the installed package carries the ONNX models only: pass the file's path, or run from a checkout "
                "of cgan-export (its exported/ folder)")


def missing_shipped_hint(path: Path) -> str:
    """Why a shipped file is missing, when it is one the wheel leaves out; else ''."""
    return NOT_IN_WHEEL if IN_WHEEL and Path(path).parent.resolve().is_relative_to(EXPORTED_DIR.resolve()) else ""
