"""Writing generated images: one PNG per sample and a captioned grid."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .errors import OutputError
from .io import atomic_path, write_bytes_atomic

PNG_COMPRESS_LEVEL = 1  # zlib level of per-sample PNGs: much faster to encode than the default 6, files a little larger (README, bulk generation)


def slug(condition: Sequence[str]) -> str:
    """``["red cube", "blue cylinder"]`` -> ``red-cube_blue-cylinder``."""
    return "_".join(re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") for name in condition)


def png_bytes(image: np.ndarray, scale: int = 1) -> bytes:
    """uint8 [H, W, 3] encoded as PNG (nearest-neighbour upscaled by ``scale``)."""
    im = Image.fromarray(image)
    if scale > 1:
        im = im.resize((im.width * scale, im.height * scale), Image.NEAREST)
    buffer = io.BytesIO()
    im.save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


def save_png(image: np.ndarray, path: Path, scale: int = 1) -> Path:
    """Write uint8 [H, W, 3] as PNG (nearest-neighbour upscaled by ``scale``), atomically."""
    try:
        data = png_bytes(image, scale)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    return write_bytes_atomic(Path(path), data)


def captioned_grid(images: Sequence[np.ndarray], captions: Sequence[str], columns: int, scale: int = 1) -> Image.Image:
    """Tile uint8 [H, W, 3] images into rows of ``columns`` with a caption under each."""
    h, w = images[0].shape[0] * scale, images[0].shape[1] * scale
    font_size = max(8, min(14, w // 12))
    font = ImageFont.load_default(size=font_size)
    wrapped = [_wrap(c, font, w) for c in captions]
    caption_h = (font_size + 2) * max(len(lines) for lines in wrapped) + 4
    rows = (len(images) + columns - 1) // columns
    grid = Image.new("RGB", (columns * w, rows * (h + caption_h)), "white")
    draw = ImageDraw.Draw(grid)
    for i, (image, lines) in enumerate(zip(images, wrapped)):
        x, y = (i % columns) * w, (i // columns) * (h + caption_h)
        tile = Image.fromarray(image)
        grid.paste(tile.resize((w, h), Image.NEAREST) if scale > 1 else tile, (x, y))
        for j, line in enumerate(lines):
            draw.text((x + 2, y + h + 2 + j * (font_size + 2)), line, fill="black", font=font)
    return grid


def _wrap(caption: str, font: ImageFont.ImageFont, width: int) -> list[str]:
    lines: list[str] = []
    for part in caption.split(", "):
        if lines and font.getlength(f"{lines[-1]}, {part}") <= width - 4:
            lines[-1] = f"{lines[-1]}, {part}"
        else:
            lines.append(part)
    return lines


def save_grid(images: Sequence[np.ndarray], captions: Sequence[str], path: Path, columns: int, scale: int = 1) -> Path:
    """Write a captioned grid PNG atomically."""
    grid = captioned_grid(images, captions, columns, scale)
    with atomic_path(Path(path)) as tmp:
        grid.save(tmp, format="PNG")
    return Path(path)
