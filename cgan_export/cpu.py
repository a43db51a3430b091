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


NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # bf16 dot products in hardware (AMD Zen 4, Intel Xeon with AMX)


@functools.lru_cache(maxsize=None)
def cpu_has_native_bf16() -> bool:
    """Whether bf16 autocast pays on this CPU: torch's oneDNN has bf16 kernels for it and, where its flags can be
    read, the CPU multiplies bf16 in hardware (AVX512-BF16 or AMX).  Needs torch.

    There bf16 trains the ``best`` preset 1.5x faster than fp32 (Zen 4) and 2.2x (a Xeon with AMX).  Without
    oneDNN's kernels autocast falls back to reference ones: 17x slower than fp32 on an AVX2-only AMD EPYC
    (``benchmarks/train_speed.py``, 2026-12-07).  AVX-512 without BF16 has kernels that emulate it, never measured
    here, so such a CPU keeps fp32.
    """
    import torch

    flags, kernels = cpu_flags(), None
    with contextlib.suppress(RuntimeError, AttributeError, TypeError):  # torch's own test of its kernels, if any
        kernels = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    if kernels is False:
        return False
    if kernels and not flags:  # flags unknown (not Linux): torch's answer
        return True
    return bool(flags & set(NATIVE_BF16_FLAGS))


def cpu_model() -> str:
    """The CPU's model name and its speed-relevant flags, as ``lscpu`` shows them (speed figures name it)."""
    name, flags = _cpuinfo("model name") or "unknown CPU", cpu_flags()
    shown = [f for f in SPEED_FLAGS if f in flags]
    return f"{name} ({len(usable_cpus())} cores{'; ' + ' '.join(shown) if shown else ''})"
