"""How far one training iteration's gradients and Adam updates stand from an fp64 reference, per variant of
`train_speed.py` (fp32, channels_last, bf16 autocast), from one saved run state or a preset's fresh weights.

    python benchmarks/step_precision.py --checkpoint RUN/snapshots/step0016000.pt   # a run's weights and moments
    python benchmarks/step_precision.py --preset best                                # fresh weights

Every variant starts from the same state, draws the same real batch, noise and augmentations, and takes one D
step and one G step. Each figure is a relative error ||x - x_fp64|| / ||x_fp64|| per parameter tensor, the
median and the worst over the tensors: a layout that only reorders rounding stays at its precision's level.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from train_speed import VARIANTS  # noqa: E402
from cgan_export.cpu import cpu_model  # noqa: E402
from training.data import load_dataset, to_float  # noqa: E402
from training.models import Models  # noqa: E402
from training.presets import TrainConfig, get_preset  # noqa: E402
from training.steps import d_step, g_step  # noqa: E402

REFERENCE = "fp64 (reference)"


def saved_run(path: Path) -> tuple[TrainConfig, dict]:
    """The config and the weights + optimizer moments of a run's ``last.pt`` or snapshot."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    saved = {**state["config"], "betas": tuple(state["config"]["betas"])}
    return TrainConfig(**saved), state["models"]


def one_iteration(config: TrainConfig, weights: dict | None, batch: tuple, dtype: torch.dtype, num_classes: int
                  ) -> dict[str, dict[str, torch.Tensor]]:
    """D's and G's gradients and updates of one iteration of ``config`` from ``weights`` (fp64 as they came)."""
    torch.manual_seed(0)
    models = Models(config, num_classes, config.image_size, torch.device("cpu"))
    if weights is not None:  # a copy: the optimizers take the saved moments as they are and step them in place
        models.load(copy.deepcopy(weights))
    layout = torch.channels_last if config.channels_last else torch.contiguous_format
    for net in (models.g, models.d):
        net.to(dtype=dtype, memory_format=layout)
    for opt in (models.opt_g, models.opt_d):
        for moments in opt.state.values():
            moments.update({k: v.to(dtype) for k, v in moments.items() if k != "step"})
    real, labels, noise = (t.to(dtype) for t in batch)
    real = real.contiguous(memory_format=layout)  # [B, 3, H, W]
    seen: dict[str, dict[str, torch.Tensor]] = {}

    def optimize(loss: torch.Tensor, net: torch.nn.Module, opt: torch.optim.Optimizer) -> None:
        opt.zero_grad(set_to_none=True)
        loss.backward()
        name = "G" if net is models.g else "D"
        seen[f"{name} gradients"] = {k: p.grad.double().clone() for k, p in net.named_parameters() if p.grad is not None}
        opt.step()

    models.optimize = optimize
    autocast = {"device_type": "cpu", "dtype": torch.bfloat16, "enabled": config.bf16}
    for name, net, step in (("D", models.d, lambda: d_step(models, config, real, labels, labels, noise, autocast)),
                            ("G", models.g, lambda: g_step(models, config, labels, noise, 10_000, autocast))):
        before = {k: p.detach().double().clone() for k, p in net.named_parameters()}
        torch.manual_seed(1)  # the same augmentations in every variant
        step()
        seen[f"{name} update"] = {k: p.detach().double() - before[k] for k, p in net.named_parameters()}
    return {k: seen[k] for k in ("D gradients", "D update", "G gradients", "G update")}


def relative_errors(result: dict[str, torch.Tensor], reference: dict[str, torch.Tensor]) -> list[float]:
    """||x - ref|| / ||ref|| for every tensor whose reference is not all zeros."""
    return [((result[k] - ref).norm() / ref.norm()).item() for k, ref in reference.items() if ref.norm() > 0]


def variant_errors(config: TrainConfig, weights: dict | None, batch: tuple, classes: int
                   ) -> dict[str, dict[str, tuple[float, float]]]:
    """variant -> part (D gradients, D update, G gradients, G update) -> (median, worst) relative error to fp64."""
    reference = one_iteration(replace(config, bf16=False, channels_last=False), weights, batch, torch.float64, classes)
    table = {}
    for name, flags in VARIANTS.items():
        result = one_iteration(replace(config, **flags), weights, batch, torch.float32, classes)
        table[name] = {part: (statistics.median(errors), max(errors)) for part in reference
                       for errors in [relative_errors(result[part], reference[part])]}
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, default=None, help="a run's last.pt or snapshot (its config and state)")
    parser.add_argument("--preset", default="best", help="without --checkpoint: this preset's fresh weights")
    parser.add_argument("--data", type=Path, default=None, help="the data folder (default: $CGAN_EXPORT_DATA or ../shared/iclevr)")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    if args.checkpoint is not None and not args.checkpoint.is_file():
        parser.error(f"no checkpoint at {args.checkpoint}")
    config, weights = saved_run(args.checkpoint) if args.checkpoint else (get_preset(args.preset), None)
    data = load_dataset(args.data, config.image_size)
    pick = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))[:args.batch_size]
    noise = torch.randn(args.batch_size, config.generator_config.get("z_dim", 128), generator=torch.Generator().manual_seed(0))
    batch = (to_float(data.images[pick]), data.labels[pick].float(), noise)  # [B, 3, H, W], [B, C], [B, Z]
    print(f"{args.checkpoint or 'preset ' + args.preset}, batch {args.batch_size}, {torch.get_num_threads()} threads")
    print(f"cpu: {cpu_model()}")
    table = variant_errors(config, weights, batch, data.labels.shape[1])
    parts = list(next(iter(table.values())))
    print("| variant | " + " | ".join(f"{part}: median / worst" for part in parts) + " |")
    print("|---" * (len(parts) + 1) + "|")
    for name, row in table.items():
        print(f"| {name} | " + " | ".join(f"{row[part][0]:.1e} / {row[part][1]:.1e}" for part in parts) + " |")


if __name__ == "__main__":
    main()
