"""Which ONNX file a CPU runs: fp32, or the int8 file beside it where this CPU runs it faster.

``auto`` picks int8 only on the CPU, only when the int8 file exists beside the fp32 one, and only on a CPU
with int8 dot-product instructions (VNNI or AMX).  There it times both files once (batch 64, interleaved
rounds) and records the answer per CPU model, flags and pair of files, so later runs read it back.
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np

from .contract import make_noise
from .errors import CganError
from .io import write_json
from .cpu import cpu_flags, cpu_model
from .runtime import OnnxSession

PRECISIONS = ("auto", "fp32", "int8")
INT8_FLAGS = ("amx_int8", "avx512_vnni", "avx_vnni")  # CPU flags with int8 dot products (lscpu / /proc/cpuinfo)
MIN_SPEEDUP = 1.1  # int8 must beat fp32 by this much to be picked (below it, fp32's exactness wins)
CACHE_ENV = "CGAN_EXPORT_CACHE"


def int8_sibling(path: Path) -> Path:
    """``generator.int8.onnx`` beside ``generator.onnx`` (the name ``export --format onnx-int8`` writes)."""
    return Path(path).with_name(Path(path).name.removesuffix(".onnx") + ".int8.onnx")


def choose_model(path: Path, precision: str = "auto", device: str = "cpu") -> Path:
    """The file to run for ``path`` (an fp32 ONNX file) at ``precision`` on ``device`` (resolved: cpu or cuda)."""
    if precision not in PRECISIONS:
        raise CganError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    sibling = int8_sibling(path)
    if precision == "fp32" or path.name.endswith(".int8.onnx") or not path.is_file():  # (a missing file: the backend says so)
        return path
    if precision == "int8":
        if device == "cuda":
            raise CganError("--precision int8 runs on the CPU (ONNX Runtime's int8 kernels); use --device cpu")
        if not sibling.is_file():
            raise CganError(f"--precision int8: no {sibling} (write one with: python cli.py export "
                            f"--checkpoint CHECKPOINT --format onnx-int8 --out {path.parent})")
        return sibling
    if device == "cuda" or not sibling.is_file() or not cpu_flags() & set(INT8_FLAGS):
        return path
    return sibling if recorded_speedup(path, sibling) >= MIN_SPEEDUP else path


def recorded_speedup(fp32: Path, int8: Path) -> float:
    """int8 images/s over fp32's on this CPU: read from the record, else measured once and recorded."""
    key = hashlib.sha256("|".join([cpu_model(), str(os.cpu_count())] + [_file_id(p) for p in (fp32, int8)])
                         .encode()).hexdigest()[:16]
    record_path = Path(os.environ.get(CACHE_ENV, Path.home() / ".cache" / "cgan-export")) / "precision.json"
    try:
        records = json.loads(record_path.read_text())
    except (OSError, json.JSONDecodeError):
        records = {}
    if key not in records:
        records[key] = {"cpu": cpu_model(), "fp32": str(fp32), "int8": str(int8), "speedup": measure_speedup(fp32, int8)}
        try:
            write_json(record_path, records)
        except OSError:
            pass  # an unwritable cache only means measuring again next time
    return float(records[key]["speedup"])


def _file_id(path: Path) -> str:
    stat = path.stat()
    return f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"


def measure_speedup(fp32: Path, int8: Path, batch: int = 64, rounds: int = 5) -> float:
    """Median over interleaved rounds of fp32's time over int8's, at ``batch`` through the product's CPU runtime."""
    sessions = {"fp32": OnnxSession(fp32, "cpu"), "int8": OnnxSession(int8, "cpu")}
    meta = sessions["fp32"].metadata
    noise = make_noise(batch, meta["z_dim"], 0)
    condition = np.zeros((batch, meta["num_classes"]), np.float32)
    condition[:, 0] = 1
    times: dict[str, list[float]] = {name: [] for name in sessions}
    for round_ in range(rounds + 1):  # round 0 warms up (no torch here: bench's timer lives with torch)
        for name, session in sessions.items():
            start = time.perf_counter()
            session.run(noise, condition)
            if round_:
                times[name].append(time.perf_counter() - start)
    return statistics.median(f / i for f, i in zip(times["fp32"], times["int8"]))
