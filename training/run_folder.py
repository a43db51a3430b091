"""A run folder that survives faults: one run at a time (a lock naming its process), ``last.pt`` written
atomically with the previous good one kept beside it, and a resume that falls back to that one."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import torch

from cgan_export.checkpoint import read_checkpoint
from cgan_export.errors import CganError, ModelFileError, OutputError
from cgan_export.io import atomic_path

LOCK_FILE = ".lock"
LAST, PREVIOUS = "last.pt", "last-previous.pt"
CONFIG = "config.json"  # what a run trains by and with which options, written when it starts or resumes
SNAPSHOTS = "snapshots"  # resumable copies of the run, one per --snapshot-every iterations: snapshots/step0095000.pt


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


def save_snapshot(out: Path, state: dict) -> Path:
    """Write the run's state as ``snapshots/stepNNNNNNN.pt`` (atomically) and return its path."""
    path = Path(out) / SNAPSHOTS / f"step{state['state']['step']:07d}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_atomic(path, state)
    return path


def read_run_config(out: Path) -> dict | None:
    """``out/config.json`` (``{"config": {...}, "options": {...}, ...}``) of the run in ``out``; None when ``out``
    holds no run. A malformed file is one :class:`CganError`."""
    path = Path(out) / CONFIG
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CganError(f"{path} is not readable JSON ({exc})") from None
    if not isinstance(record, dict) or not isinstance(record.get("config"), dict):
        raise CganError(f"{path} is not a run's config.json (no config object)")
    return record


def read_run_checkpoint(path: Path) -> dict:
    """A run checkpoint (``last.pt`` or a snapshot): config, models, RNG and state; anything else is one
    :class:`ModelFileError`."""
    saved, _ = read_checkpoint(path, "run checkpoint")
    if not isinstance(saved, dict) or not {"config", "models", "rng", "state"} <= set(saved):
        raise ModelFileError(f"{path} is not a run checkpoint")
    return saved


def load_last(out: Path, report) -> dict:
    """The newest readable run checkpoint: ``last.pt``, else ``last-previous.pt`` (``report`` says what was lost).
    Nothing readable is one :class:`ModelFileError` naming the files."""
    out = Path(out)
    problems = []
    for name in (LAST, PREVIOUS):
        try:
            saved = read_run_checkpoint(out / name)
        except ModelFileError as exc:
            problems.append(str(exc))
            continue
        if problems:
            report(f"{problems[0]}; resuming from {name} (step {saved['state']['step']})")
        return saved
    raise ModelFileError(f"--resume: no readable checkpoint in {out}: " + "; ".join(problems))


def rng_state(noise_gen: torch.Generator) -> dict:
    """The RNG states a resume restores: torch's global one (CUDA's too, where present) and the noise generator's."""
    state = {"torch": torch.get_rng_state(), "noise": noise_gen.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict, noise_gen: torch.Generator) -> None:
    """Restore RNG states (CPU ByteTensors: a checkpoint read onto the GPU would break these calls)."""
    torch.set_rng_state(state["torch"].cpu())
    noise_gen.set_state(state["noise"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def save_atomic(path: Path, obj: dict) -> None:
    """``torch.save`` through a temporary file and a rename: a reader never sees half a file."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
