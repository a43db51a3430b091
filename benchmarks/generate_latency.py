"""Wall time of one ``python cli.py generate`` call (a fresh process), with and without importing torch.

The ONNX path on CPU never imports torch; the second variant imports it first, as the CLI did when it
asked torch whether a GPU was there.  Both run alternately in one run; medians and their ratio:

    python benchmarks/generate_latency.py --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = {"generate (onnx, cpu)": "", "same, torch imported first": "import torch; "}


def one_call(prefix: str, names: list[str], out: Path) -> float:
    """Seconds for a fresh Python process to run ``generate`` on ``names`` (8 images, the shipped model)."""
    code = f"{prefix}from cli import app; app(['generate', *{names!r}, '--out', {str(out)!r}], standalone_mode=False)"
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    """Print the median wall time of each variant and the ratio to the first."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="calls per variant (after one warm-up each)")
    parser.add_argument("names", nargs="*", default=["red cube", "blue cylinder"], help="one condition")
    args = parser.parse_args()
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.repeats + 1):
            for name, prefix in VARIANTS.items():
                seconds = one_call(prefix, args.names, Path(tmp) / "out")
                if round_:  # the first round warms the file cache
                    times[name].append(seconds)
    base = statistics.median(times[next(iter(VARIANTS))])
    print("| variant | median wall time (s) | x the first |")
    print("|---|---|---|")
    for name, values in times.items():
        print(f"| {name} | {statistics.median(values):.2f} | {statistics.median(values) / base:.2f}x |")


if __name__ == "__main__":
    main()
