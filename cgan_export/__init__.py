"""cgan-export: exportable conditional GAN generators for i-CLEVR.

``from cgan_export import Generator``: see :class:`cgan_export.api.Generator`.
"""

__version__ = "0.1.0"

__all__ = ["CganError", "GenerateRequest", "Generator", "__version__"]


def __getattr__(name: str):
    """``Generator``, ``GenerateRequest`` and ``CganError`` on first use, so ``import cgan_export`` itself stays light."""
    if name in ("Generator", "GenerateRequest"):
        from . import api

        return getattr(api, name)
    if name == "CganError":
        from .errors import CganError

        return CganError
    raise AttributeError(f"module 'cgan_export' has no attribute {name!r}")
