"""Writing generated images: one PNG per sample and a captioned grid."""

from __future__ import annotations

import re
import struct
import zlib
from pathlib import Path
from typing import Sequence

import deflate
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .io import atomic_path

# Per-sample PNGs: each row stored as its difference from the row above (PNG filter 2, "Up"; one numpy
# operation for a whole batch), deflated by libdeflate at level 1.  On 64x64 renders that is ~4x faster to
# encode than Pillow at level 1 (which tries filters per row, then runs zlib) and no larger (README, "Bulk
# generation"; benchmarks/bulk_generate.py).
PNG_COMPRESS_LEVEL = 1
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def slug(condition: Sequence[str]) -> str:
    """``["red cube", "blue cylinder"]`` -> ``red-cube_blue-cylinder``."""
    return "_".join(re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") for name in condition)


def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def png_batch(images: np.ndarray, scale: int = 1) -> list[bytes]:
    """uint8 [N, H, W, 3] encoded as 8-bit RGB PNGs (nearest-neighbour upscaled by ``scale``), losslessly."""
    images = np.asarray(images, dtype=np.uint8)
    if images.ndim != 4 or images.shape[3] != 3:
        raise ValueError(f"expected uint8 [N, H, W, 3] images, got shape {images.shape}")
    if scale > 1:
        images = images.repeat(scale, axis=1).repeat(scale, axis=2)  # [N, H*s, W*s, 3]
    n, h, w, _ = images.shape
    flat = images.reshape(n, h, w * 3)  # [N, H, 3W]
    rows = np.empty((n, h, w * 3 + 1), dtype=np.uint8)  # each row: filter byte 2, then the difference to the row above
    rows[:, :, 0] = 2
    rows[:, 0, 1:] = flat[:, 0]
    np.subtract(flat[:, 1:], flat[:, :-1], out=rows[:, 1:, 1:])  # uint8 arithmetic wraps modulo 256, as PNG's Up filter
    head = PNG_SIGNATURE + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))  # 8-bit RGB, no interlace
    tail = _chunk(b"IEND", b"")
    return [head + _chunk(b"IDAT", deflate.zlib_compress(memoryview(image_rows).cast("B"), PNG_COMPRESS_LEVEL)) + tail
            for image_rows in rows]


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
