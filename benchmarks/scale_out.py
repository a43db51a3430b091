"""Ray against the local engines, in one run: bulk generation (Ray Data against ``generate``) and serving
(Ray Serve against ``serve``, under ``serve_load.py``'s load): images/s, start-up and memory.

    python benchmarks/scale_out.py -n 20000 --format npz --dir /dev/shm --clients 1,32 --seconds 10

One machine shows Ray's overhead (start-up, serialising tasks and requests, an actor pool that leaves a CPU to
Ray), not its gain: that needs more machines (docs/scaling.md).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the checkout: benchmarks.serve_load

from cgan_export.api import GenerateRequest, Generator
from cgan_export.generate import FolderOutput, generate_to_folder
from cgan_export.ray_engine import RayOptions, start_ray
from cgan_export.cpu import cpu_model, usable_cpus
from benchmarks.serve_load import ROOT, free_port, load, wait_until_up  # noqa: E402


def tree_rss_mb(pid: int) -> float:
    """Resident memory of process ``pid`` and all its descendants (a local Ray's raylet, GCS and workers), MB."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    tree, grew = {pid}, True
    while grew:
        more = {p for p, parent in parents.items() if parent in tree} - tree
        tree, grew = tree | more, bool(more)
    total = 0
    for p in tree:
        try:
            total += int(Path(f"/proc/{p}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            pass
    return total / 2 ** 20


def serving(clients: list[int], seconds: float, n: int) -> None:
    """``serve`` and ``serve --engine ray`` under the same load, one after the other."""
    print(f"\nserving: {n} image(s) per request, {seconds:.0f} s per row, Python client threads")
    print("| engine | clients | images/s | x local | p50 ms | p99 ms | errors | start-up s | RSS MB (all processes) |")
    print("|---|---|---|---|---|---|---|---|---|")
    local: dict[int, float] = {}
    for engine in ("local", "ray"):
        port = free_port()
        url, start = f"http://127.0.0.1:{port}", time.time()
        server = subprocess.Popen([sys.executable, "cli.py", "serve", "--engine", engine, "--port", str(port),
                                   "--precision", "fp32"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_until_up(url, timeout=180)
            up = time.time() - start
            for count in clients:
                r = load(url, count, seconds, n)
                local.setdefault(count, r["images_per_second"])
                print(f"| {engine} | {count} | {r['images_per_second']:.0f} | {r['images_per_second'] / local[count]:.2f}x | "
                      f"{r['p50_ms']:.0f} | {r['p99_ms']:.0f} | {r['errors']} | {up:.1f} | {tree_rss_mb(server.pid):.0f} |")
        finally:
            server.terminate()
            server.wait(timeout=120)


def bulk(n: int, file_format: str, folder: Path) -> None:
    """``generate`` with the local engine and on Ray Data, one after the other."""
    gen = Generator.load(precision="fp32")
    request = GenerateRequest.of([["red cube", "blue cylinder"]], n=n, seed=0)
    print(f"bulk: {n} images as {file_format} into {folder}")
    print("| engine | wall s (start-up included) | images/s | x local |\n|---|---|---|---|")
    base = None
    for engine in ("local", "ray"):
        out = Path(tempfile.mkdtemp(dir=folder))
        try:
            start = time.time()
            result = generate_to_folder(gen, request, FolderOutput(out=out, file_format=file_format, grid=False,
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=5000, help="bulk: images per engine (one condition)")
    parser.add_argument("--format", default="npz", choices=("npz", "png"))
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--clients", default="1,32", help="serving: comma-separated concurrent client counts")
    parser.add_argument("--seconds", type=float, default=10.0, help="serving: seconds per client count")
    parser.add_argument("--images", type=int, default=1, help="serving: images per request")
    parser.add_argument("--part", choices=("all", "bulk", "serve"), default="all")
    args = parser.parse_args()
    print(f"cpu: {cpu_model()}")
    if args.part in ("all", "bulk"):
        bulk(args.n, args.format, args.dir)
    if args.part in ("all", "serve"):
        serving([int(c) for c in args.clients.split(",")], args.seconds, args.images)


if __name__ == "__main__":
    main()
