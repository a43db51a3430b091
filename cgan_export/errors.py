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


class MissingExtraError(CganError):
    """A command whose optional dependencies are not installed."""


# The modules each optional extra brings (pyproject.toml's [project.optional-dependencies]) and what it is for.
EXTRAS = {"torch": "train", "torchvision": "train", "onnx": "train", "onnxscript": "train", "matplotlib": "train",
          "ray": "scale", "tritonclient": "scale"}
EXTRA_NAMES = {"train": "training", "scale": "scale-out"}


def missing_extra(exc: ModuleNotFoundError, what: str) -> MissingExtraError | None:
    """The one-line error for ``what`` (a command) failing on a module an extra brings; None for other modules."""
    extra = EXTRAS.get((exc.name or "").split(".")[0])
    if extra is None:
        return None
    return MissingExtraError(f'{what} needs the {EXTRA_NAMES[extra]} extra ({exc.name} is not installed): '
                             f'pip install "cgan-export[{extra}]"')


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (its type name when empty), at most ``limit`` characters."""
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:limit]
