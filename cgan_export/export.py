"""Export a generator checkpoint to ONNX and TorchScript with one embedded metadata dict, then check parity."""

from __future__ import annotations

import copy
import hashlib
import io
import json
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn

from . import __version__
from .checkpoint import load_generator, prepare_for_inference, save_generator, weights_sha256, with_truncation
from .condition_kinds import vocabulary_from_fields
from .contract import METADATA_KEY, TS_METADATA_FILE, build_metadata, make_noise
from .errors import CganError
from .io import atomic_path, write_json
from .folding import narrow_convs_as_transposed
from .runtime import OnnxSession, cuda_usable

OPSET = 18
# Parity with eager fp32, by precision: (statistic of the absolute difference, its limit).  int8 is judged by the
# mean: each quantized activation is rounded to 1/255 of its calibrated range, and five layers of that add up to
# a mean difference of ~0.006 (max ~0.3 on a few pixels) on the shipped generator; a wrong scale or zero point
# in any layer moves the mean past 0.05 (tests/test_int8.py).  0.02 is ~2.5 of the image's 255 levels.
TOLERANCE = {"fp32": ("max", 1e-4), "fp16": ("max", 1e-2), "int8": ("mean", 0.02)}
PARITY_BATCHES = (1, 7)
PARITY_DEVICE = {"fp32": "the CPU", "fp16": "CUDA", "int8": "the CPU"}  # where ONNX Runtime checks each precision


class ExportError(CganError):
    """An export whose artifact disagrees with eager PyTorch, or that cannot be written."""


@dataclass(frozen=True)
class ExportFormat:
    """One row of the format table."""

    name: str
    file_name: str
    export: Callable[[nn.Module, dict, Path, "ExportOptions | None"], None]
    run: Callable[[Path, np.ndarray, np.ndarray], np.ndarray]
    precision: str = "fp32"


@dataclass(frozen=True)
class ExportOptions:
    """What some formats need besides the network: what ``onnx-int8`` calibrates on (conditions [M, C]: training
    labels, or None to draw them from the vocabulary; and where they came from, in words), and the instance
    kind of a ``triton`` repository (auto: GPU when CUDA is usable here)."""

    calibration: np.ndarray | None = None
    calibration_source: str = "conditions drawn from the vocabulary (1 to max_objects objects, or one value per group)"
    triton_kind: str = "auto"


class _Float16IO(nn.Module):
    """Run ``net`` in fp16 while its inputs and output stay float32."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = copy.deepcopy(net).half()

    def forward(self, noise: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        return self.net(noise.half(), condition.half()).float()


def _export_onnx(net: nn.Module, metadata: dict, path: Path, options: ExportOptions | None = None) -> None:
    """fp32 ONNX; the RGB head becomes a ConvTranspose, 10-15% faster in ONNX Runtime on CPU (exact up to rounding)."""
    _write_onnx(narrow_convs_as_transposed(copy.deepcopy(net)), metadata, path)


def _write_onnx(net: nn.Module, metadata: dict, path: Path) -> None:
    with atomic_path(path) as tmp:
        _save_onnx(_trace_onnx(net, metadata), metadata, tmp)


def _trace_onnx(net: nn.Module, metadata: dict):
    """The ONNX model of ``net`` (dynamo exporter), its batch dimension named N."""
    import onnx

    z, c = metadata["z_dim"], metadata["num_classes"]
    batch = torch.export.Dim("batch", min=1, max=1 << 20)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            net, (torch.zeros(2, z), torch.zeros(2, c)), None, input_names=["noise", "condition"],
            output_names=["image"], dynamic_shapes={"noise": {0: batch}, "condition": {0: batch}},
            opset_version=OPSET, dynamo=True, verbose=False, optimize=True)
    program.save(buffer)  # weights inline; our models are far below the 2 GB protobuf limit
    model = onnx.load_from_string(buffer.getvalue())
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "N"
    model.graph.input[1].type.tensor_type.shape.dim[0].dim_param = "N"
    model.graph.output[0].type.tensor_type.shape.dim[0].dim_param = "N"
    return model


def _save_onnx(model, metadata: dict, path: Path) -> None:
    """Stamp ``metadata`` into ``model``, check it, save it to ``path``."""
    import onnx

    model.producer_name, model.producer_version = "cgan-export", __version__
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, {METADATA_KEY: json.dumps(metadata, sort_keys=True)})
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, path)


def _export_onnx_fp16(net: nn.Module, metadata: dict, path: Path, options: ExportOptions | None = None) -> None:
    _write_onnx(_Float16IO(net), {**metadata, "precision": "fp16"}, path)


def _export_onnx_int8(net: nn.Module, metadata: dict, path: Path, options: ExportOptions | None = None) -> None:
    """Sub-pixel rewrite (checked against ``net`` at fp32), then static QDQ quantization (``cgan_export.int8``)."""
    import onnx

    from . import int8

    options = options or ExportOptions()
    rewritten, count = int8.subpixel_rewrite(net)
    noise, condition = parity_inputs(metadata, 7, seed=7)
    with torch.no_grad():
        gap = float((rewritten(torch.from_numpy(noise), torch.from_numpy(condition))
                     - net(torch.from_numpy(noise), torch.from_numpy(condition))).abs().max())
    if gap > 1e-5:
        raise ExportError(f"onnx-int8: the sub-pixel rewrite differs from the network by {gap:.3g} (> 1e-5)")
    conditions = options.calibration
    if conditions is None:
        conditions = int8.random_conditions(metadata, vocabulary_from_fields(metadata))
    with tempfile.TemporaryDirectory() as tmp:
        fp32_path, int8_path = Path(tmp) / "subpixel.onnx", Path(tmp) / "int8.onnx"
        _save_onnx(_trace_onnx(narrow_convs_as_transposed(rewritten), metadata), metadata, fp32_path)
        kept = int8.quantize_onnx(fp32_path, int8_path, int8.calibration_feeds(metadata, conditions))
        record = int8.quantization_record(count, kept, f"{options.calibration_source}; {int8.CALIBRATION_BATCHES} batches "
                                          f"of {int8.CALIBRATION_BATCH} noises (seeds 1000+)")
        record["subpixel_max_abs_diff"] = gap
        with atomic_path(path) as out:
            _save_onnx(onnx.load(str(int8_path)), {**metadata, "precision": "int8", "quantization": record}, out)


def _export_triton(net: nn.Module, metadata: dict, path: Path, options: ExportOptions | None = None) -> None:
    """A Triton model repository around ``path`` (REPO/generator/1/model.onnx): the fp32 ONNX file, and
    REPO/generator/config.pbtxt, the contract for Triton's onnxruntime backend (``cgan_export.triton``)."""
    from . import triton

    kind = triton.instance_kind((options or ExportOptions()).triton_kind, cuda_usable())
    path.parent.mkdir(parents=True, exist_ok=True)
    _export_onnx(net, metadata, path)
    with atomic_path(path.parent.parent / "config.pbtxt") as tmp:
        tmp.write_text(triton.config_pbtxt(metadata, kind))


def _export_torchscript(net: nn.Module, metadata: dict, path: Path, options: ExportOptions | None = None) -> None:
    z, c = metadata["z_dim"], metadata["num_classes"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(net, (torch.zeros(2, z), torch.zeros(2, c)), check_trace=False)
        frozen = torch.jit.freeze(traced.eval())
        with atomic_path(path) as tmp:
            torch.jit.save(frozen, str(tmp), _extra_files={TS_METADATA_FILE: json.dumps(metadata, sort_keys=True)})


def _run_onnx(path: Path, noise: np.ndarray, condition: np.ndarray) -> np.ndarray:
    """fp32 parity runs on ONNX Runtime's CPU provider: its CUDA provider computes convolutions and Gemm in TF32
    by default on Ampere and newer (differences of ~1e-3, over the fp32 tolerance)."""
    return OnnxSession(path, device="cpu").run(noise, condition)


def _run_onnx_cuda(path: Path, noise: np.ndarray, condition: np.ndarray) -> np.ndarray:
    """fp16 parity runs where fp16 is meant to run: the CUDA provider (fp16 tolerance)."""
    return OnnxSession(path, device="cuda").run(noise, condition)


def _run_torchscript(path: Path, noise: np.ndarray, condition: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = torch.jit.load(str(path), map_location="cpu")
        with torch.no_grad():
            return module(torch.from_numpy(noise), torch.from_numpy(condition)).numpy()


FORMATS: dict[str, ExportFormat] = {
    "onnx": ExportFormat("onnx", "generator.onnx", _export_onnx, _run_onnx),
    "torchscript": ExportFormat("torchscript", "generator.torchscript.pt", _export_torchscript, _run_torchscript),
    "onnx-fp16": ExportFormat("onnx-fp16", "generator.fp16.onnx", _export_onnx_fp16, _run_onnx_cuda, "fp16"),
    "onnx-int8": ExportFormat("onnx-int8", "generator.int8.onnx", _export_onnx_int8, _run_onnx, "int8"),
    "triton": ExportFormat("triton", "generator/1/model.onnx", _export_triton, _run_onnx),
}


def parity_inputs(metadata: dict, batch: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Noise [B, Z] (the noise stream of ``seed``) and random multi-hot conditions [B, C] with 1-3 objects each."""
    noise = make_noise(batch, metadata["z_dim"], seed)
    rng = np.random.default_rng([seed, 1])
    condition = np.zeros((batch, metadata["num_classes"]), np.float32)
    for row in condition:
        row[rng.choice(metadata["num_classes"], size=rng.integers(1, metadata["max_objects"] + 1), replace=False)] = 1
    return noise, condition


def check_parity(fmt: ExportFormat, path: Path, eager: nn.Module, metadata: dict) -> dict:
    """Max and mean abs difference between the artifact and eager PyTorch; raises when the precision's statistic
    (``TOLERANCE``) is over its limit."""
    worst, total, count = 0.0, 0.0, 0
    for batch in PARITY_BATCHES + ((64,) if fmt.precision == "int8" else ()):
        noise, condition = parity_inputs(metadata, batch, seed=batch)
        with torch.no_grad():
            expected = eager(torch.from_numpy(noise), torch.from_numpy(condition)).numpy()
        got = fmt.run(path, noise, condition)
        if got.shape != expected.shape:
            raise ExportError(f"{fmt.name} parity: output shape {got.shape} != eager {expected.shape} at batch {batch}")
        gap = np.abs(got - expected)
        worst, total, count = max(worst, float(gap.max())), total + float(gap.sum()), count + gap.size
    diffs = {"max": worst, "mean": total / count}
    statistic, limit = TOLERANCE[fmt.precision]
    if diffs[statistic] > limit:
        raise ExportError(f"{fmt.name} parity failed: {statistic} abs difference {diffs[statistic]:.3g} > {limit:g}")
    return diffs


def export(checkpoint: Path, formats: list[str], out: Path, report: Callable[[str], None] = print,
           truncation: float | None = None, options: ExportOptions | None = None) -> dict:
    """Export ``checkpoint`` to each format in ``formats``, check parity, write ``manifest.json``; return it.

    ``truncation`` (0 < t <= 1) replaces the checkpoint's own noise scale in every artifact.  ``generator.pt``
    (the checkpoint, with that noise scale recorded) is written beside them, so the folder holds what its
    artifacts came from and the torch backend draws the same images.  ``options``: what ``onnx-int8``
    calibrates on and the kind of a ``triton`` repository's instances (:class:`ExportOptions`)."""
    eager, info = load_generator(checkpoint)
    if truncation is not None:
        try:
            eager = with_truncation(eager, truncation)
        except ValueError as exc:
            raise ExportError(str(exc)) from None
        info["truncation"] = truncation
    prepared = prepare_for_inference(eager)
    metadata = build_metadata(info, weights_sha256(prepared))
    out = Path(out)
    manifest = {"metadata": metadata, "files": {}}
    manifest_path = out / "manifest.json"
    if manifest_path.is_file():  # keep entries of formats exported earlier from the same weights
        try:
            earlier = json.loads(manifest_path.read_text())
        except (json.JSONDecodeError, OSError):
            earlier = {}
        if earlier.get("metadata", {}).get("weights_sha256") == metadata["weights_sha256"]:
            manifest["files"] = earlier.get("files", {})
    for name in formats:
        fmt = FORMATS[name]
        path = out / fmt.file_name
        start = time.time()
        fmt.export(prepared, metadata, path, options)
        diffs = {"max": None}
        if fmt.precision == "fp16" and not cuda_usable():
            note = "parity not checked: needs a CUDA GPU"
        else:
            try:
                diffs, note = check_parity(fmt, path, eager, metadata), f"parity ok on {PARITY_DEVICE[fmt.precision]}"
            except ExportError:
                path.unlink(missing_ok=True)  # no artifact that disagrees with its source is left behind
                raise
        size = path.stat().st_size
        manifest["files"][fmt.file_name] = {
            "format": fmt.name, "precision": fmt.precision, "bytes": size,
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "parity_max_abs_diff": diffs["max"],
            **({"parity_mean_abs_diff": diffs["mean"]} if fmt.precision == "int8" else {})}
        shown = f" (max abs diff {diffs['max']:.2e}" if diffs["max"] is not None else ""
        shown += f", mean {diffs['mean']:.2e})" if fmt.precision == "int8" else (")" if shown else "")
        report(f"{fmt.name:12s} {path}  {size / 1e6:.1f} MB  {time.time() - start:.1f} s  {note}{shown}")
    if Path(checkpoint).resolve() != (out / "generator.pt").resolve():  # only once every artifact passed parity
        save_generator(out / "generator.pt", eager, vocabulary_from_fields(info), info.get("metrics"), info.get("training"))
    write_json(manifest_path, manifest)
    return manifest
