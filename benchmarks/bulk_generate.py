"""End-to-end bulk generation against the model's own batch throughput, side by side in one run.

    python benchmarks/bulk_generate.py --conditions ../shared/iclevr/test.json -n 300 --rounds 3

Each round times, in turn: the model alone (``Generator.batches``, images kept in memory and dropped),
``generate`` writing one PNG per image (``--scale 1``), and ``generate --format npz``.  Prints images/s
and the ratio of each end-to-end path to the model alone (median over rounds), then the cost of one
image's parts on one thread: PNG encoding (ours against Pillow's at zlib level 1) and the atomic write.

Where the files go matters as much as the code: creating a file costs ~0.005 ms in a RAM-backed folder
and, on this machine's disk once a burst of a few hundred files is spent, ~0.9 ms.  ``--dir`` picks the
folder (repeat it to compare; default: the system's temporary folder); the per-image table shows what a
file costs in each.
"""

from __future__ import annotations

import argparse
import io
import shutil
import tempfile
import time
from pathlib import Path

import sys  # noqa: E402
from pathlib import Path as _Path  # noqa: E402

sys.path.insert(0, str(_Path(__file__).resolve().parent.parent))  # the checkout: training/ and cli.py

import numpy as np

from PIL import Image

from cgan_export import Generator
from cgan_export.api import GenerateRequest
from cgan_export.generate import FolderOutput, generate_to_folder
from cgan_export.images import png_batch
from cgan_export.io import write_bytes_atomic
from cgan_export.vocabulary import read_condition_file
from training.data import resolve_data_root


def model_alone(gen: Generator, conditions: list[list[str]], n: int, batch_size: int) -> float:
    """Seconds for the model to draw every image (uint8 conversion included, nothing written)."""
    multi_hot = gen.encode(conditions)
    start = time.perf_counter()
    for _ in gen.batches(multi_hot, n, seed=0, batch_size=batch_size):
        pass
    return time.perf_counter() - start


def per_image_costs(images: np.ndarray, parent: Path, rounds: int) -> dict[str, tuple[float, float]]:
    """Milliseconds (median over ``rounds``, the paths alternating) and kilobytes per image, on one thread:
    each PNG encoder, and the atomic write of a file."""
    def pillow(image: np.ndarray) -> bytes:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="PNG", compress_level=1)
        return buffer.getvalue()

    folder = Path(tempfile.mkdtemp(prefix=".bulk-", dir=parent))
    data = png_batch(images[:1])[0]
    paths = {"PNG encoding (ours: Up filter, libdeflate 1)": lambda: png_batch(images),
             "PNG encoding (Pillow, zlib 1)": lambda: [pillow(image) for image in images],
             "atomic file write (temp file + rename)": lambda: [write_bytes_atomic(folder / f"{i}.png", data)
                                                              for i in range(len(images))]}
    times: dict[str, list[float]] = {name: [] for name in paths}
    sizes = {name: len(data) / 1024 for name in paths}  # the write path writes one encoded image each time
    try:
        for _ in range(rounds):
            for name, path in paths.items():
                start = time.perf_counter()
                out = path()
                times[name].append((time.perf_counter() - start) / len(images) * 1e3)
                if name.startswith("PNG encoding"):
                    sizes[name] = np.mean([len(encoded) for encoded in out]) / 1024
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return {name: (float(np.median(times[name])), sizes[name]) for name in paths}


def end_to_end(conditions: list[list[str]], n: int, batch_size: int, file_format: str, model: Path | None,
               parent: Path, workers: int, device: str) -> float:
    """Seconds for ``generate`` to write every image into a fresh temporary folder under ``parent``."""
    folder = Path(tempfile.mkdtemp(prefix=".bulk-", dir=parent))
    try:
        start = time.perf_counter()
        generate_to_folder(Generator.load(model, "onnx", device), GenerateRequest.of(conditions, n=n, seed=0),
                           FolderOutput(out=folder, file_format=file_format, scale=1, grid=False, batch_size=batch_size,
                                        workers=workers))
        return time.perf_counter() - start
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conditions", type=Path, default=resolve_data_root() / "test.json", help="lab-format condition file")
    parser.add_argument("-n", type=int, default=300, help="images per condition")
    parser.add_argument("--batch-size", type=int, default=256, help="images per inference batch")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (median reported)")
    parser.add_argument("--model", type=Path, default=None, help="ONNX model (default: the shipped one)")
    parser.add_argument("--dir", type=Path, action="append", help="a folder for the temporary output folders; "
                        "repeat to compare file systems (default: the system's temporary folder)")
    parser.add_argument("--workers", type=int, default=0, help="threads that each draw, encode and write a batch (0: one per usable CPU, as generate)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when usable, as generate), cuda or cpu: for every path")
    args = parser.parse_args()
    dirs = args.dir or [Path(tempfile.gettempdir())]
    conditions = read_condition_file(args.conditions)
    total = len(conditions) * args.n
    gen = Generator.load(args.model, device=args.device)
    paths = [(f"generate, PNG files in {d}", "png", d) for d in dirs] + [(f"generate, npz shards in {dirs[0]}", "npz", dirs[0])]
    times: dict[str, list[float]] = {"model alone": [], **{name: [] for name, _, _ in paths}}
    model_alone(gen, conditions[:1], 64, args.batch_size)  # warm-up
    for _ in range(args.rounds):
        times["model alone"].append(model_alone(gen, conditions, args.n, args.batch_size))
        for name, file_format, folder in paths:
            times[name].append(end_to_end(conditions, args.n, args.batch_size, file_format, args.model, folder, args.workers,
                                          gen.device))
    base = float(np.median(times["model alone"]))
    print(f"{total} images ({len(conditions)} conditions x {args.n}) on {gen.device}, batch {args.batch_size}, "
          f"median of {args.rounds} rounds, paths alternating within each round")
    print("| path | images/s | x model alone |")
    print("|---|---|---|")
    for name, values in times.items():
        t = float(np.median(values))
        print(f"| {name} | {total / t:.0f} | {base / t:.2f} |")
    sample = gen.generate(conditions[:4], n=128, seed=1)  # [512, H, W, 3]
    for folder in dirs:
        print(f"\n| one image, one thread, files in {folder} | ms | KB |")
        print("|---|---|---|")
        for name, (ms, kb) in per_image_costs(sample, folder, args.rounds).items():
            print(f"| {name} | {ms:.3f} | {kb:.1f} |")


if __name__ == "__main__":
    main()
