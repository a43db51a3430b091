"""Writing generated images: one PNG per sample and a captioned grid."""

from __future__ import annotations

import re
import struct
import zlib
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .errors import OutputError
from .io import atomic_path, write_bytes_atomic

# Per-sample PNGs: each row stored as its difference from the row above (PNG filter 2, "Up"), deflated at
# zlib level 1.  On 64x64 renders that is ~2x faster to encode than Pillow at level 1 (which tries
# filters per row) and no larger (README, "Bulk generation"; benchmarks/bulk_generate.py).
PNG_COMPRESS_LEVEL = 1
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def slug(condition: Sequence[str]) -> str:
    """``["red cube", "blue cylinder"]`` -> ``red-cube_blue-cylinder``."""
    return "_".join(re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") for name in condition)


def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def png_bytes(image: np.ndarray, scale: int = 1) -> bytes:
    """uint8 [H, W, 3] encoded as an 8-bit RGB PNG (nearest-neighbour upscaled by ``scale``), losslessly."""
    image = np.asarray(image, dtype=np.uint8)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected a uint8 [H, W, 3] image, got shape {image.shape}")
    if scale > 1:
        image = image.repeat(scale, axis=0).repeat(scale, axis=1)  # [H*s, W*s, 3]
    h, w, _ = image.shape
    flat = image.reshape(h, w * 3)  # [H, 3W]
    rows = np.empty((h, w * 3 + 1), dtype=np.uint8)  # each row: filter byte 2, then the difference to the row above
    rows[:, 0] = 2
    rows[0, 1:] = flat[0]
    np.subtract(flat[1:], flat[:-1], out=rows[1:, 1:])  # uint8 arithmetic wraps modulo 256, as PNG's Up filter does
    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)  # 8-bit RGB, deflate, adaptive filtering, no interlace
    return (PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(rows.tobytes(), PNG_COMPRESS_LEVEL))
            + _chunk(b"IEND", b""))


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
