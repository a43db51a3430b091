"""Training throughput (images/s) of a preset's G+D step on CPU/GPU, variants side by side in one run.

    python benchmarks/train_speed.py --preset best --steps 6
    python benchmarks/train_speed.py --preset best --steps 30 --compile   # fp32 and bf16, eager and torch.compile
    python benchmarks/train_speed.py --preset faces --image-sizes 64,96   # the faces preset at 64 and at 96 pixels
    python benchmarks/train_speed.py --preset best --rounds 3             # variants alternate; medians over rounds

The GFLOP/s column divides one iteration's floating-point operations (torch's FlopCounterMode: convolutions and
matrix products, forward and backward) by its seconds: set beside the CPU's peak it says how much a faster
kernel could still win.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cgan_export.cpu import cpu_model  # noqa: E402
from training.models import Models  # noqa: E402
from training.steps import d_step, g_step  # noqa: E402
from training.presets import get_preset  # noqa: E402

VARIANTS = {
    "fp32": {"bf16": False, "channels_last": False},
    "fp32 + channels_last": {"bf16": False, "channels_last": True},
    "bf16 autocast": {"bf16": True, "channels_last": False},
    "bf16 autocast + channels_last": {"bf16": True, "channels_last": True},
}


def step_seconds(config, steps: int, device: torch.device, compiled: bool = False) -> tuple[float, float]:
    """Median seconds of one full training iteration (n_critic D steps, one G step, EMA), and the iteration's
    floating-point operations (counted on one more, untimed iteration; 0 when compiled); ``compiled``: G and D
    through ``torch.compile`` as a run compiles them (its first iterations compile and are not timed)."""
    torch.manual_seed(0)
    size = config.image_size
    models = Models(config, 24, size, device)
    if compiled:
        models.compile()
    b = config.batch_size
    real = torch.rand(b, 3, size, size, device=device) * 2 - 1  # [B, 3, S, S]
    if config.channels_last:
        real = real.contiguous(memory_format=torch.channels_last)
    labels = (torch.rand(b, 24, device=device) < 0.08).float()
    labels[:, 0] = 1
    autocast = {"device_type": device.type, "dtype": torch.bfloat16, "enabled": config.bf16}

    def iteration(i: int) -> None:
        for _ in range(config.n_critic):
            d_step(models, config, real, labels, labels, torch.randn(b, models.g.config.z_dim, device=device), autocast)
        g_step(models, config, labels, torch.randn(b, models.g.config.z_dim, device=device), i, autocast)
        models.update_ema(config.ema_decay, i)
        if device.type == "cuda":
            torch.cuda.synchronize()

    flops = 0.0
    if not compiled:  # the counter sees eager operators only
        with FlopCounterMode(display=False) as counter:
            iteration(0)
        flops = float(counter.get_total_flops())
    times = []
    warm = 4 if compiled else 2
    for i in range(steps + warm):
        start = time.perf_counter()
        iteration(i)
        times.append(time.perf_counter() - start)
    return statistics.median(times[warm:]), flops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="best")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=1, help="time every variant this many times, alternating "
                        "(the machine's speed drifts minute to minute); each row is the median over rounds")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--image-sizes", default=None, help="comma-separated sizes to train at, side by side "
                        "(bf16 autocast, the preset's layout); default: the preset's own, every variant")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--compile", action="store_true",
                        help="compare fp32 and bf16 autocast, eager and compiled (the preset's layout)")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    device = torch.device(args.device)
    base = get_preset(args.preset)
    if args.batch_size:
        base = replace(base, batch_size=args.batch_size)
    print(f"preset {args.preset}, batch {base.batch_size}, device {device}, {torch.get_num_threads()} threads")
    print(f"cpu: {cpu_model()}")
    print("| variant | s/iteration | images/s | GFLOP/s | x first row |\n|---|---|---|---|---|")
    first = None
    runs = [(name, flags, False) for name, flags in VARIANTS.items()]
    if args.image_sizes:
        runs = [(f"{size}x{size}", {"image_size": int(size)}, False) for size in args.image_sizes.split(",")]
    if args.compile:
        runs = [(f"{name}, {mode}", {"bf16": name == "bf16"}, mode == "compiled")
                for mode in ("eager", "compiled") for name in ("fp32", "bf16")]
    timings: dict[str, list[float]] = {name: [] for name, _, _ in runs}
    flops: dict[str, float] = {}
    for _ in range(args.rounds):
        for name, flags, compiled in runs:
            seconds, counted = step_seconds(replace(base, **flags), args.steps, device, compiled)
            timings[name].append(seconds)
            flops[name] = counted or flops.get(name, 0.0)
    for name, _, _ in runs:
        seconds = statistics.median(timings[name])
        ips = base.batch_size / seconds
        first = first or ips
        rate = f"{flops[name] / seconds / 1e9:.1f}" if flops[name] else "-"  # compiled rows are not counted
        print(f"| {name} | {seconds:.3f} | {ips:.1f} | {rate} | {ips / first:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
