"""``python -m cgan_export`` and the ``cgan-export`` command: the command line of ``cli.py``."""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path


def main() -> None:
    """Run the command line: ``cgan_export.app.cli`` in an installed wheel, the checkout's ``cli.py`` otherwise
    (a plain checkout or an editable install)."""
    try:
        cli = importlib.import_module("cgan_export.app.cli")
    except ModuleNotFoundError:
        spec = importlib.util.spec_from_file_location("cli", Path(__file__).resolve().parent.parent / "cli.py")
        cli = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(cli)
    cli.app()


if __name__ == "__main__":
    main()
