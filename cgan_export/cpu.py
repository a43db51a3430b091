"""What this CPU is and can do: the cores a process may use, its feature flags, its model for speed figures,
and whether torch runs bf16 on it.  Only the standard library at import time (torch is imported by the one
check that needs it)."""

from __future__ import annotations

import contextlib
import functools
import os
from pathlib import Path


def usable_cpus() -> list[int]:
    """The CPUs this process may run on (its affinity mask where the OS has one, e.g. under taskset)."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


SPEED_FLAGS = ("amx_bf16", "amx_int8", "avx512_bf16", "avx512_vnni", "avx512f", "avx2")  # what CPU speed figures depend on


def _cpuinfo(key: str) -> str:
    """The first value of ``key`` in /proc/cpuinfo ('' where there is none: not Linux)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            name, _, value = line.partition(":")
            if name.strip() == key:
                return value.strip()
    return ""


def cpu_flags() -> set[str]:
    """The CPU's feature flags, as ``lscpu`` shows them (empty where /proc/cpuinfo is not)."""
    return set(_cpuinfo("flags").split())


BF16_KERNEL_FLAGS = ({"avx512bw", "avx512vl", "avx512dq"}, {"amx_bf16"})  # oneDNN's bf16 kernels need one of these


@functools.lru_cache(maxsize=None)
def cpu_has_bf16_kernels() -> bool:
    """Whether torch's oneDNN runs bf16 convolutions on this CPU (AVX-512 or AMX), so that bf16 autocast pays.

    Without them autocast falls back to reference kernels: a training step of the ``best`` preset ran 17x slower
    than fp32 on an AVX2-only AMD EPYC (``benchmarks/train_speed.py``, 2026-12-07).  Needs torch.
    """
    import torch

    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)  # torch's own test of the same
    with contextlib.suppress(RuntimeError, AttributeError):
        if check is not None:
            return bool(check())
    flags = cpu_flags()
    return any(needed <= flags for needed in BF16_KERNEL_FLAGS)


def cpu_model() -> str:
    """The CPU's model name and its speed-relevant flags, as ``lscpu`` shows them (speed figures name it)."""
    name, flags = _cpuinfo("model name") or "unknown CPU", cpu_flags()
    shown = [f for f in SPEED_FLAGS if f in flags]
    return f"{name} ({len(usable_cpus())} cores{'; ' + ' '.join(shown) if shown else ''})"
