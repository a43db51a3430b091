"""benchmarks/step_precision.py: one training iteration per variant against an fp64 reference, from one state."""

import importlib.util
from dataclasses import replace
from pathlib import Path

import torch

from training.data import load_dataset, to_float
from training.models import Models
from training.presets import get_preset
from training.steps import d_step, g_step

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "step_precision.py"
FP32_LEVEL = 1e-3  # fp32 against fp64: rounding alone (measured here: <= 3e-4 median on every part)
LAYOUT_LEVEL = 1e-2  # channels_last only reorders fp32 rounding (measured: <= 1e-3); a wrong state is off by > 0.2


def load_script():
    spec = importlib.util.spec_from_file_location("step_precision", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_channels_last_stays_at_fp32_rounding_and_bf16_is_coarser_from_a_saved_state(data_root):
    torch.manual_seed(0)
    config = replace(get_preset("best"), batch_size=8)
    data = load_dataset(data_root, 64)
    real, labels = to_float(data.images[:8]), data.labels[:8].float()  # [8, 3, 64, 64], [8, 24]
    models = Models(replace(config, bf16=False, channels_last=False), 24, 64, torch.device("cpu"))
    off = {"device_type": "cpu", "dtype": torch.bfloat16, "enabled": False}
    d_step(models, config, real, labels, labels, torch.randn(8, 128), off)  # Adam moments, as a saved run has
    g_step(models, config, labels, torch.randn(8, 128), 1, off)
    state = models.state()
    saved = {k: v.clone() for k, v in state["opt_d"]["state"][0].items()}

    table = load_script().variant_errors(config, state, (real, labels, torch.randn(8, 128)), 24)

    assert list(table) == ["fp32", "fp32 + channels_last", "bf16 autocast", "bf16 autocast + channels_last"]
    for part, (median, _) in table["fp32"].items():
        assert median < FP32_LEVEL, part
    for part, (median, _) in table["fp32 + channels_last"].items():  # every variant started from the same moments
        assert median < LAYOUT_LEVEL, part
    assert table["bf16 autocast"]["D gradients"][0] > 10 * table["fp32"]["D gradients"][0]
    assert all(torch.equal(saved[k], state["opt_d"]["state"][0][k]) for k in saved)  # the saved state is left as it was
