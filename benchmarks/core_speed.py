"""Speed of each CPU core over time: a fixed single-thread loop, pinned to one core after another.

On a shared virtual machine a core can run at a fraction of its speed for seconds at a time (another
tenant on the same physical core); steal time does not always show it.  ONNX Runtime at batch 1 needs
both cores of the 2-core machine, so such a spell slows it more than torch eager, whose batch-1 time is
mostly one thread dispatching operators.  This prints, per round, the loop's milliseconds on each core:

    python benchmarks/core_speed.py --seconds 30
"""

from __future__ import annotations

import argparse
import os
import statistics
import time


def loop_ms(iterations: int = 200_000) -> float:
    """Milliseconds of a fixed pure-Python loop on the current core."""
    start = time.perf_counter()
    total = 0.0
    for i in range(iterations):
        total += i * 0.5
    return (time.perf_counter() - start) * 1e3


def main() -> None:
    """Alternate the pinned core for ``--seconds``; print each round and, per core, the share of slow rounds."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="how long to sample")
    args = parser.parse_args()
    cores = sorted(os.sched_getaffinity(0))
    rounds: list[list[float]] = []
    end = time.time() + args.seconds
    while time.time() < end:
        row = []
        for core in cores:
            os.sched_setaffinity(0, {core})
            loop_ms()  # settle on the core
            row.append(loop_ms())
        rounds.append(row)
    os.sched_setaffinity(0, set(cores))
    fastest = min(min(row) for row in rounds)
    print("ms per loop, one column per core:", " ".join("/".join(f"{v:.0f}" for v in row) for row in rounds))
    for i, core in enumerate(cores):
        values = [row[i] for row in rounds]
        slow = sum(v > 1.5 * fastest for v in values) / len(values)
        print(f"core {core}: median {statistics.median(values):.1f} ms, fastest {min(values):.1f} ms, "
              f"{100 * slow:.0f}% of rounds over 1.5x the fastest")


if __name__ == "__main__":
    main()
