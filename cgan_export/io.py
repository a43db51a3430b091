"""Atomic file writes: a temp file in the target folder, then a rename."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable, Iterator

from .errors import OutputError


def ensure_writable_dir(path: Path) -> Path:
    """Create ``path`` if needed and check that files can be written into it."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-check-"):
            pass
    except OSError as exc:
        raise OutputError(f"cannot write to output folder {path}: {exc.strerror or exc}") from None
    return path


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temp path beside ``target`` (unique per process and thread; the writer creates the file, which
    gets the usual mode through the umask); rename it onto ``target`` only on success.

    An OS error on the way (a full disk, a read-only or unwritable folder, an I/O error) leaves no file
    behind and becomes one :class:`OutputError` naming the path and the cause.
    """
    target = Path(target)
    tmp_path = _tmp_beside(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        yield tmp_path
        os.replace(tmp_path, target)
    except OSError as exc:
        tmp_path.unlink(missing_ok=True)
        raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from None
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def write_bytes_atomic(target: Path, data: bytes) -> Path:
    """Write ``data`` to ``target`` atomically, into a folder that exists (bulk output: one small file per image,
    so plain ``os`` calls: each extra system call shows in the images per second)."""
    tmp = str(_tmp_beside(Path(target)))
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from None
        raise
    return Path(target)


def _tmp_beside(target: Path) -> Path:
    """A temp name beside ``target``, unique per process and thread."""
    return target.with_name(f".{target.name}.{os.getpid()}-{threading.get_ident()}.tmp")


def atomic_write(target: Path, writer: Callable[[Path], Any]) -> Path:
    """Call ``writer(tmp_path)`` and move the result onto ``target`` atomically."""
    with atomic_path(target) as tmp:
        writer(tmp)
    return Path(target)


def write_json(target: Path, data: Any) -> Path:
    """Write ``data`` as indented JSON, atomically."""
    return atomic_write(target, lambda p: p.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n"))
