"""User-facing errors: the CLI prints their message on one line and exits non-zero."""


class CganError(Exception):
    """Base class for every error caused by bad input rather than by a bug."""

    exit_code = 1


class VocabularyError(CganError, ValueError):
    """An object name or condition that the vocabulary cannot encode."""


class DatasetError(CganError):
    """A dataset folder that does not have the i-CLEVR layout."""


class ModelFileError(CganError):
    """A missing, corrupt or foreign model / checkpoint file."""


class OutputError(CganError):
    """An output location that cannot be written."""


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (its type name when empty), at most ``limit`` characters."""
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:limit]
