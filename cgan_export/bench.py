"""Side-by-side inference benchmark: torch eager (fp32, bf16), TorchScript and ONNX Runtime (fp32, int8), with a
matmul roofline."""

from __future__ import annotations

import functools
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch

from .export import export, parity_inputs
from .cpu import cpu_has_native_bf16, cpu_model
from .runtime import OnnxBackend, TorchBackend, TorchScriptBackend, cuda_usable


def median_seconds(fn: Callable[[], object], repeats: int, warmup: int = 3) -> float:
    """Median wall time of ``fn`` over ``repeats`` runs after ``warmup`` runs."""
    return statistics.median(interleaved_times({"fn": fn}, repeats, warmup, settle_s=0.0)["fn"])


def interleaved_times(fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 3,
                      settle_s: float = 0.3) -> dict[str, list[float]]:
    """Wall time of each function in each of ``repeats`` rounds, timed round-robin (one run of each per round).

    Interleaving makes the ratios robust to a machine whose speed drifts during the run (shared
    cores, frequency changes): a slow spell slows every backend alike instead of one of them.  In each
    round a function first runs untimed for ``settle_s`` (at least once), so its timed run does not pay
    for the previous backend's leftovers (ONNX Runtime's pool threads spin for a while after a run).
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            settle_until = time.perf_counter() + settle_s
            fn()
            while time.perf_counter() < settle_until:
                fn()
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def ratio_quartiles(base: list[float], other: list[float]) -> tuple[float, float]:
    """25th and 75th percentile over rounds of ``base[i] / other[i]`` (the speed-up within each round)."""
    q1, _, q3 = statistics.quantiles([b / o for b, o in zip(base, other)], n=4)
    return q1, q3


def matmul_gflops(size: int = 2048, repeats: int = 5, device: str = "cpu") -> float:
    """fp32 matmul throughput on ``device`` (torch; all CPU threads, or the GPU with TF32 off): the roofline."""
    a, b = torch.randn(size, size, device=device), torch.randn(size, size, device=device)
    if device == "cpu":
        return 2 * size ** 3 / median_seconds(lambda: a @ b, repeats, warmup=2) / 1e9
    previous = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        seconds = median_seconds(lambda: (a @ b, torch.cuda.synchronize()), repeats, warmup=2)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = previous
    return 2 * size ** 3 / seconds / 1e9


def flops_per_image(net: torch.nn.Module, z_dim: int, num_classes: int) -> float:
    """FLOPs of one forward pass at batch 1 (torch's FLOP counter: 2 per multiply-add)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        net(torch.zeros(1, z_dim), torch.zeros(1, num_classes))
    return float(counter.get_total_flops())


class TorchBf16Backend(TorchBackend):
    """Eager PyTorch under ``torch.autocast("cpu", dtype=torch.bfloat16)``: what a plain torch user runs on a CPU
    with bf16 instructions (AMX, AVX512-BF16), the strongest CPU peer of the int8 file."""

    def run(self, noise, condition):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return super().run(noise, condition)


def backends_for(checkpoint: Path, folder: Path) -> dict[str, object]:
    """Export ``checkpoint`` into ``folder`` and open every backend on it (CUDA ones when usable)."""
    formats = ["onnx", "torchscript", "onnx-int8"] + (["onnx-fp16"] if cuda_usable() else [])
    export(checkpoint, formats, folder, report=lambda _: None)
    runners: dict[str, object] = {"torch eager": TorchBackend(checkpoint, "cpu")}
    if cpu_has_native_bf16():  # elsewhere autocast runs slower kernels: no peer worth timing
        runners["torch eager bf16"] = TorchBf16Backend(checkpoint, "cpu")
    runners |= {"torchscript": TorchScriptBackend(folder / "generator.torchscript.pt", "cpu"),
                "onnxruntime cpu": OnnxBackend(folder / "generator.onnx", "cpu"),
                "onnxruntime cpu unsliced": OnnxBackend(folder / "generator.onnx", "cpu", slices=False),
                "onnxruntime cpu int8": OnnxBackend(folder / "generator.int8.onnx", "cpu")}
    if cuda_usable():
        runners["torch eager cuda"] = TorchBackend(checkpoint, "cuda")
        runners["onnxruntime cuda"] = OnnxBackend(folder / "generator.onnx", "cuda")
        runners["onnxruntime cuda fp16"] = OnnxBackend(folder / "generator.fp16.onnx", "cuda")
    return runners


def run_bench(checkpoint: Path, batch_sizes: list[int], repeats: int = 10, echo: Callable[[str], None] = print,
              markdown: bool = True) -> list[dict]:
    """Time every backend at every batch size in one run; print images/s and ratios to eager."""
    with tempfile.TemporaryDirectory() as tmp:
        runners = backends_for(checkpoint, Path(tmp))
        eager = runners["torch eager"]
        meta = eager.metadata
        flops = flops_per_image(eager.net, meta["z_dim"], meta["num_classes"])
        roofs = {"cpu": matmul_gflops()}
        echo(f"cpu: {cpu_model()}")
        if "torch eager bf16" not in runners:
            echo("torch eager bf16: left out (this CPU has no native bf16: autocast would run emulated or reference kernels)")
        echo(f"model {meta['architecture']} {flops / 1e6:.0f} MFLOP/image; matmul roofline {roofs['cpu']:.0f} GFLOP/s "
             f"(fp32, {torch.get_num_threads()} threads)")
        if any("cuda" in name for name in runners):
            roofs["cuda"] = matmul_gflops(8192, device="cuda")
            echo(f"CUDA rows: matmul roofline {roofs['cuda']:.0f} GFLOP/s (fp32 on the GPU, TF32 off)")
        rows = []
        for batch in batch_sizes:
            noise, condition = parity_inputs(meta, batch)
            times = interleaved_times({name: functools.partial(runner.run, noise, condition)
                                       for name, runner in runners.items()}, repeats)
            base = None
            for name, seconds in times.items():
                ips = batch / statistics.median(seconds)
                base = base or ips
                rows.append({"batch": batch, "backend": name, "images_per_second": ips, "vs_eager": ips / base,
                             "vs_eager_quartiles": ratio_quartiles(times["torch eager"], seconds),
                             "gflops": ips * flops / 1e9,
                             "roofline_pct": 100 * ips * flops / 1e9 / roofs["cuda" if "cuda" in name else "cpu"]})
    _print_table(rows, echo, markdown)
    return rows


def _print_table(rows: list[dict], echo: Callable[[str], None], markdown: bool) -> None:
    head = ["batch", "backend", "images/s", "x torch eager", "x eager per round (quartiles)", "GFLOP/s",
            "% of matmul roofline"]
    lines = [[str(r["batch"]), r["backend"], f"{r['images_per_second']:.1f}", f"{r['vs_eager']:.2f}x",
              "{:.2f}-{:.2f}x".format(*r["vs_eager_quartiles"]), f"{r['gflops']:.1f}", f"{r['roofline_pct']:.1f}"]
             for r in rows]
    if markdown:
        echo("| " + " | ".join(head) + " |")
        echo("|" + "---|" * len(head))
        for line in lines:
            echo("| " + " | ".join(line) + " |")
    else:
        for line in [head] + lines:
            echo("  ".join(f"{c:>14s}" for c in line))
