"""Where a training run's time goes: seconds per iteration, seconds per evaluation, and the evaluations' share of
the time per 1,000 iterations at the preset's evaluation period, on the real data, with the CPU model beside it.

    python benchmarks/train_profile.py --steps 400 --evaluations 2                  # the best preset, unguided phase
    python benchmarks/train_profile.py --steps 400 --evaluations 2 --guided         # with the guide in G's loss
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cgan_export.cpu import cpu_model  # noqa: E402
from training.loop import Run, RunOptions  # noqa: E402
from training.presets import get_preset  # noqa: E402


def timed(fn, times: list[float]):
    """``fn`` wrapped to append the seconds of each call to ``times``."""
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            times.append(time.perf_counter() - start)
    return wrapper


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="best")
    parser.add_argument("--data", type=Path, default=None, help="data folder (default: $CGAN_EXPORT_DATA or ../shared/iclevr)")
    parser.add_argument("--steps", type=int, default=400, help="iterations timed")
    parser.add_argument("--evaluations", type=int, default=2, help="evaluations timed (spread over the steps)")
    parser.add_argument("--guided", action="store_true", help="the guide joins G's loss from step 0 (trained first, untimed)")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    preset = get_preset(args.preset)
    every = max(1, args.steps // args.evaluations)
    per_epoch_guess = 18009 // preset.batch_size  # only to turn --steps into an epochs budget below
    config = replace(preset, eval_every=every, epochs=args.steps / per_epoch_guess,
                     guide_weight=preset.guide_weight if args.guided else 0.0, guide_start=0.0)
    with tempfile.TemporaryDirectory() as out:
        run = Run(config, RunOptions(out=Path(out) / "run", data=args.data, device=args.device, threads=args.threads,
                                     show_progress=False))
        config = replace(config, epochs=args.steps / run.steps_per_epoch)
        run.config = config
        steps, evaluations = [], []
        run.step = timed(run.step, steps)
        run.evaluate_and_save = timed(run.evaluate_and_save, evaluations)
        try:
            run.open()
            run.train()
        finally:
            run.close()
    step_s, eval_s = statistics.median(steps[5:] or steps), statistics.median(evaluations)
    period = preset.eval_every
    per_1000 = 1000 * step_s + 1000 / period * eval_s
    print(f"{cpu_model()}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"preset {args.preset}{' (guided)' if args.guided else ''}, batch {config.batch_size}, "
          f"{len(steps)} iterations, {len(evaluations)} evaluations")
    print("| part | seconds | per 1,000 iterations (min) | share |\n|---|---|---|---|")
    print(f"| one iteration (median) | {step_s:.3f} | {1000 * step_s / 60:.2f} | {1000 * step_s / per_1000:.0%} |")
    print(f"| one evaluation (median; every {period} iterations) | {eval_s:.1f} | {1000 / period * eval_s / 60:.2f} | "
          f"{1000 / period * eval_s / per_1000:.0%} |")
    print(f"| total | | {per_1000 / 60:.2f} | 100% |")


if __name__ == "__main__":
    main()
