"""Bulk generation on Ray Data against the local engine, in one run: images/s, start-up and peak memory.

    python benchmarks/scale_out.py -n 5000 --format npz --dir /dev/shm

One machine shows Ray's overhead (start-up, serialising tasks, an actor pool that leaves a CPU to Ray), not
its gain: that needs more machines (docs/scaling.md).
"""

from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
from pathlib import Path

from cgan_export.api import GenerateRequest, Generator
from cgan_export.generate import FolderOutput, generate_to_folder
from cgan_export.ray_engine import RayOptions, start_ray
from cgan_export.runtime import cpu_model, usable_cpus


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=5000, help="images per engine (one condition)")
    parser.add_argument("--format", default="npz", choices=("npz", "png"))
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    args = parser.parse_args()
    gen = Generator.load(precision="fp32")
    request = GenerateRequest.of([["red cube", "blue cylinder"]], n=args.n, seed=0)
    print(f"cpu: {cpu_model()}; {args.n} images as {args.format} into {args.dir}")
    print("| engine | wall s (start-up included) | images/s | x local |\n|---|---|---|---|")
    base = None
    for engine in ("local", "ray"):
        out = Path(tempfile.mkdtemp(dir=args.dir))
        try:
            start = time.time()
            result = generate_to_folder(gen, request, FolderOutput(out=out, file_format=args.format, grid=False,
                                                                   engine=engine))
            wall = time.time() - start
        finally:
            shutil.rmtree(out, ignore_errors=True)
        ips = result["images"] / wall
        base = base or ips
        print(f"| {engine} | {wall:.1f} | {ips:.0f} | {ips / base:.2f}x |")
    start = time.time()
    start_ray(RayOptions()).shutdown()
    print(f"start-up alone (ray.init + shutdown, local, {len(usable_cpus())} CPUs): {time.time() - start:.1f} s")
    print(f"peak RSS of the driver: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
