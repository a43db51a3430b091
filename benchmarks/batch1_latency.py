"""Batch-1 latency of the shipped generator, each backend in fresh processes of its own, alternating.

``cli.py bench`` times every backend inside one process, which has to import torch for the eager
baseline.  ``generate`` on CPU never imports torch, and ONNX Runtime's batch-1 latency in a process
that imported torch was bimodal here (about 0.75 ms or 1.24 ms, fixed for the life of the process).
This script runs each backend in ``--processes`` fresh processes, alternating backends, and reports
the median over processes of each process's median latency, with the range:

    python benchmarks/batch1_latency.py --processes 4
    python benchmarks/batch1_latency.py --processes 6 --also OTHER.onnx   # one more ONNX file, side by side
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SETUP = {
    "torch eager": "import torch; from cgan_export.runtime import TorchBackend; "
                   "b = TorchBackend('exported/generator.pt', 'cpu')",
    "onnxruntime cpu, torch imported": "import torch; from cgan_export.runtime import OnnxBackend; "
                                       "b = OnnxBackend('exported/generator.onnx', 'cpu')",
    "onnxruntime cpu, no torch (as generate runs)": "from cgan_export.runtime import OnnxBackend; "
                                                    "b = OnnxBackend('exported/generator.onnx', 'cpu')",
}

TIMING = """
import statistics, time
import numpy as np
noise = np.random.default_rng(0).standard_normal((1, b.metadata['z_dim']), dtype=np.float32)
condition = np.zeros((1, len(b.metadata['vocabulary'])), np.float32); condition[0, [1, 18]] = 1
for _ in range({warmup}): b.run(noise, condition)
times = []
for _ in range({runs}):
    start = time.perf_counter(); b.run(noise, condition); times.append(time.perf_counter() - start)
print(statistics.median(times))
"""


def onnx_setup(path: Path) -> str:
    """Set-up code opening another ONNX file the way ``generate`` does (no torch)."""
    return f"from cgan_export.runtime import OnnxBackend; b = OnnxBackend({str(path.resolve())!r}, 'cpu')"


def process_median(setup: str, runs: int, warmup: int) -> float:
    """Median seconds per batch-1 call in one fresh process running ``setup``'s backend ``b``."""
    code = setup + "\n" + TIMING.format(runs=runs, warmup=warmup)
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True, text=True)
    return float(result.stdout.strip().splitlines()[-1])


def main() -> None:
    """Print a table: per backend, median / min / max of the per-process medians and images/s vs eager."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=4, help="fresh processes per backend")
    parser.add_argument("--runs", type=int, default=300, help="timed batch-1 calls per process")
    parser.add_argument("--warmup", type=int, default=100, help="untimed calls first")
    parser.add_argument("--also", type=Path, action="append", default=[],
                        help="another ONNX file to time like the shipped one without torch (repeatable)")
    args = parser.parse_args()
    setups = {**SETUP, **{f"onnxruntime cpu, no torch: {path}": onnx_setup(path) for path in args.also}}
    medians: dict[str, list[float]] = {name: [] for name in setups}
    for _ in range(args.processes):
        for name, setup in setups.items():
            medians[name].append(process_median(setup, args.runs, args.warmup))
    eager = statistics.median(medians["torch eager"])
    print("| backend | ms per image (median of processes) | range over processes | images/s | x torch eager |")
    print("|---|---|---|---|---|")
    for name, values in medians.items():
        mid = statistics.median(values)
        print(f"| {name} | {mid * 1e3:.3f} | {min(values) * 1e3:.3f}-{max(values) * 1e3:.3f} | "
              f"{1 / mid:.0f} | {eager / mid:.2f}x |")


if __name__ == "__main__":
    main()
