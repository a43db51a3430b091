"""Which arithmetic a run trains in: bf16 autocast on CPUs that multiply bf16 natively, fp32 elsewhere."""

from dataclasses import replace

import torch

from tests.test_training import TINY
from training.loop import RunOptions
from training.models import autocast_for
from training.presets import get_preset


def test_bf16_autocast_runs_on_a_cpu_with_native_bf16_only(monkeypatch):
    import training.models as models_module

    config = get_preset("best")
    assert config.bf16
    monkeypatch.setattr(models_module, "cpu_has_native_bf16", lambda: True)
    assert autocast_for(config, torch.device("cpu"))["enabled"]
    assert not autocast_for(config, torch.device("cuda"))["enabled"]  # CUDA trains fp32 (faster there)
    assert not autocast_for(replace(config, bf16=False), torch.device("cpu"))["enabled"]
    monkeypatch.setattr(models_module, "cpu_has_native_bf16", lambda: False)  # AVX2 only: reference kernels, 17x slower
    assert not autocast_for(config, torch.device("cpu"))["enabled"]


def test_bf16_needs_both_torch_kernels_and_bf16_in_hardware(monkeypatch):
    from cgan_export import cpu

    avx512 = {"avx2", "avx512f", "avx512bw", "avx512vl", "avx512dq"}
    cases = [  # (torch's kernel check: None where torch cannot say, CPU flags, bf16 autocast pays)
        (False, {"avx2", "fma"}, False),  # AVX2 only: reference kernels, 17x slower
        (True, avx512, False),  # AVX-512 without BF16: emulated, never measured faster
        (True, avx512 | {"avx512_bf16"}, True),  # Zen 4
        (True, avx512 | {"amx_bf16", "avx512_bf16"}, True),  # Xeon with AMX
        (False, avx512 | {"avx512_bf16"}, False),  # torch lacks the kernels
        (True, set(), True),  # flags unreadable (not Linux): torch's answer
        (None, avx512 | {"avx512_bf16"}, True),
        (None, {"avx2"}, False),
    ]
    for kernels, flags, expected in cases:
        check = None if kernels is None else (lambda kernels=kernels: kernels)
        monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", check, raising=False)
        monkeypatch.setattr(cpu, "cpu_flags", lambda flags=flags: flags)
        cpu.cpu_has_native_bf16.cache_clear()
        assert cpu.cpu_has_native_bf16() is expected, (kernels, flags)
    cpu.cpu_has_native_bf16.cache_clear()


def test_a_run_records_whether_it_trained_in_bf16(monkeypatch, tmp_path, data_root, random_evaluator):
    import training.models as models_module
    from training.loop import Run

    monkeypatch.setattr(models_module, "cpu_has_native_bf16", lambda: False)
    config = get_preset("acgan", batch_size=4, **TINY["acgan"])
    assert config.bf16
    run = Run(config, RunOptions(device="cpu", out=tmp_path / "run", data=data_root, evaluator=random_evaluator,
                                 show_progress=False))
    run.open()
    try:
        assert run.state.devices[-1].startswith("cpu: ") and run.state.devices[-1].endswith(", fp32")
    finally:
        run.close()
