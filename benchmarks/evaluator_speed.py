"""Evaluator training throughput (images/s) per ResNet-18 stem and precision, side by side in one run.

    python benchmarks/evaluator_speed.py --steps 4
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cgan_export.evaluator import STEMS, build_classifier  # noqa: E402

VARIANTS = {
    "fp32": {"bf16": False, "channels_last": False},
    "fp32 + channels_last": {"bf16": False, "channels_last": True},
    "bf16 autocast + channels_last": {"bf16": True, "channels_last": True},
}


def step_seconds(stem: str, bf16: bool, channels_last: bool, batch: int, steps: int) -> float:
    """Median seconds of one AdamW training step of the evaluator on random 64x64 images."""
    torch.manual_seed(0)
    net = build_classifier(24, stem)
    x = torch.rand(batch, 3, 64, 64) * 2 - 1  # [B, 3, 64, 64]
    if channels_last:
        net, x = net.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    y = (torch.rand(batch, 24) < 0.08).float()  # [B, 24]
    opt = torch.optim.AdamW(net.parameters(), 1e-3)
    times = []
    for _ in range(steps + 2):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = net(x)
        loss = F.binary_cross_entropy_with_logits(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - start)
    return statistics.median(times[2:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()
    print(f"evaluator training step, batch {args.batch_size}, {torch.get_num_threads()} threads")
    print("| stem | variant | images/s | x fp32 (same stem) |\n|---|---|---|---|")
    for stem in STEMS:
        first = None
        for name, flags in VARIANTS.items():
            ips = args.batch_size / step_seconds(stem, batch=args.batch_size, steps=args.steps, **flags)
            first = first or ips
            print(f"| {stem} | {name} | {ips:.1f} | {ips / first:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
