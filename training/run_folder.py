"""A run folder that survives faults: one run at a time (a lock naming its process), ``last.pt`` written
atomically with the previous good one kept beside it, and a resume that falls back to that one."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import torch

from cgan_export.checkpoint import read_checkpoint
from cgan_export.errors import CganError, ModelFileError, OutputError
from cgan_export.io import atomic_path

LOCK_FILE = ".lock"
LAST, PREVIOUS = "last.pt", "last-previous.pt"


class RunFolderLock:
    """``out/.lock`` holding the pid of the run that uses the folder; a lock whose process is gone is taken over."""

    def __init__(self, out: Path):
        self.path = Path(out) / LOCK_FILE
        self.held = False

    def acquire(self) -> None:
        """Take the folder, or refuse with one line when a live process holds it."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create the run folder {self.path.parent}: {exc.strerror or exc}") from None
        holder = _holder(self.path)
        if holder is not None and holder != os.getpid() and _alive(holder):
            raise CganError(f"{self.path.parent} is in use by another training run (process {holder}); "
                            "wait for it to finish or choose another --out")
        with atomic_path(self.path) as tmp:
            tmp.write_text(f"{os.getpid()}\n")
        self.held = True

    def release(self) -> None:
        """Give the folder back (only a lock this process holds)."""
        if self.held and _holder(self.path) == os.getpid():
            self.path.unlink(missing_ok=True)
        self.held = False


def _holder(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError as exc:
        return exc.errno == errno.EPERM  # alive, owned by someone else
    return True


def save_last(out: Path, state: dict) -> None:
    """Write ``last.pt`` atomically; the one it replaces becomes ``last-previous.pt`` (the fallback for a resume)."""
    out = Path(out)
    with atomic_path(out / LAST) as tmp:
        torch.save(state, tmp)
        if (out / LAST).exists():
            os.replace(out / LAST, out / PREVIOUS)


def load_last(out: Path, report) -> dict:
    """The newest readable run checkpoint: ``last.pt``, else ``last-previous.pt`` (``report`` says what was lost).
    Nothing readable is one :class:`ModelFileError` naming the files."""
    out = Path(out)
    problems = []
    for name in (LAST, PREVIOUS):
        try:
            saved, _ = read_checkpoint(out / name, "run checkpoint")
            if not isinstance(saved, dict) or not {"config", "models", "rng", "state"} <= set(saved):
                raise ModelFileError(f"{out / name} is not a run checkpoint")
        except ModelFileError as exc:
            problems.append(str(exc))
            continue
        if problems:
            report(f"{problems[0]}; resuming from {name} (step {saved['state']['step']})")
        return saved
    raise ModelFileError(f"--resume: no readable checkpoint in {out}: " + "; ".join(problems))
