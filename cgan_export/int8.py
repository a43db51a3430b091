"""The int8 generator: stride-2 ConvTransposes rewritten as sub-pixel Convs, then static QDQ quantization.

ONNX Runtime's CPU provider has no int8 ConvTranspose (a QDQ ConvTranspose runs as dequantize, fp32
ConvTranspose, quantize), but it fuses a QDQ Conv into QLinearConv, which runs on VNNI and AMX kernels.
So each ConvTranspose(k4, s2, p1) becomes its exact sub-pixel equivalent: one 3x3 Conv whose 4C outputs are
the four output phases (2x2 taps each, zeros elsewhere), then a depth-to-space interleave.

The interleave is written channels-last (``[N, H, W, 2, 2, C] -> [N, H, 2, W, 2, C]``): ONNX Runtime runs
QLinearConv in NHWC, the Transposes around it cancel against ours, and what is left moves blocks of 2C
contiguous values. ONNX's DepthToSpace (or a channels-first reshape) moves single values and took more time
than the int8 convolutions saved (docs/speed.md, "int8 on the CPU").
"""

from __future__ import annotations

import contextlib
import copy
import io
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from .contract import make_noise

CALIBRATION_BATCHES = 8  # calibration: batches of noise with conditions from the training data
CALIBRATION_BATCH = 32
CALIBRATION_METHOD = "Percentile"  # activation ranges: the 99.999th percentile of |x| (min-max: Fréchet 1.63x the floor, fp32 1.46x, this 1.53x)
QUANTIZED_OPS = ("Conv",)  # what is quantized; Gemm (the noise/condition projections), Mul/Add (the conditional
# norms' per-image gain and bias) and the RGB head (a ConvTranspose: stride 1, 3 outputs) stay fp32


class SubPixelConvTranspose(nn.Module):
    """``ConvTranspose2d(k=4, s=2, p=1)`` as a 3x3 Conv with the four output phases as channels, interleaved
    channels-last.  Output phase (a, b) at (m, n) is sum over u, v in {0, 1} of x[m - 1 + a + u, n - 1 + b + v]
    times the transposed kernel's tap (3 - a - 2u, 3 - b - 2v): the same sums as the ConvTranspose."""

    def __init__(self, transposed: nn.ConvTranspose2d):
        super().__init__()
        w = transposed.weight.detach()  # [Cin, Cout, 4, 4]
        cin, cout = w.shape[:2]
        phases = torch.zeros(2, 2, cout, cin, 3, 3)  # [a, b, Cout, Cin, 3, 3]
        for a in (0, 1):
            for b in (0, 1):
                for u in (0, 1):
                    for v in (0, 1):
                        phases[a, b, :, :, a + u, b + v] = w[:, :, 3 - a - 2 * u, 3 - b - 2 * v].t()
        self.conv = nn.Conv2d(cin, 4 * cout, 3, padding=1, bias=transposed.bias is not None)
        self.conv.weight.data = phases.reshape(4 * cout, cin, 3, 3)  # channel (a * 2 + b) * Cout + c
        if transposed.bias is not None:
            self.conv.bias.data = transposed.bias.detach().repeat(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x).permute(0, 2, 3, 1)  # [N, H, W, 4C]
        n, h, w, c4 = y.shape
        y = y.reshape(n, h, w, 2, 2, c4 // 4).permute(0, 1, 3, 2, 4, 5)  # [N, H, 2, W, 2, C]
        return y.reshape(n, 2 * h, 2 * w, c4 // 4).permute(0, 3, 1, 2)  # [N, C, 2H, 2W]


def rewritable(module: nn.Module) -> bool:
    """A plain ConvTranspose2d with kernel 4, stride 2, padding 1 (every up-sampling layer of our generators)."""
    return (type(module) is nn.ConvTranspose2d and module.kernel_size == (4, 4) and module.stride == (2, 2)
            and module.padding == (1, 1) and module.output_padding == (0, 0) and module.groups == 1
            and module.dilation == (1, 1))


def subpixel_rewrite(net: nn.Module) -> tuple[nn.Module, int]:
    """A copy of ``net`` with every rewritable ConvTranspose2d replaced by :class:`SubPixelConvTranspose`; and how
    many were replaced."""
    net = copy.deepcopy(net)
    count = 0
    for parent in list(net.modules()):
        for name, child in list(parent.named_children()):
            if rewritable(child):
                setattr(parent, name, SubPixelConvTranspose(child))
                count += 1
    return net, count


def calibration_feeds(metadata: dict, conditions: np.ndarray) -> list[dict[str, np.ndarray]]:
    """Calibration batches: noise of seed 1000 + i with ``conditions`` [M, C] taken in turn."""
    feeds = []
    for i in range(CALIBRATION_BATCHES):
        rows = np.arange(i * CALIBRATION_BATCH, (i + 1) * CALIBRATION_BATCH) % len(conditions)
        feeds.append({"noise": make_noise(CALIBRATION_BATCH, metadata["z_dim"], 1000 + i),
                      "condition": conditions[rows].astype(np.float32)})
    return feeds


def quantize_onnx(fp32_path: Path, out_path: Path, feeds: list[dict[str, np.ndarray]]) -> list[str]:
    """Static QDQ quantization of ``fp32_path`` into ``out_path``: per-channel int8 weights, uint8 activations
    calibrated (``CALIBRATION_METHOD``) on ``feeds``; only :data:`QUANTIZED_OPS`.  Returns the nodes left fp32."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter(feeds)

        def get_next(self):
            return next(self.items, None)

    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        with contextlib.redirect_stdout(io.StringIO()):  # the calibrator prints its histogram steps
            quantize_static(str(prepared), str(out_path), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            op_types_to_quantize=list(QUANTIZED_OPS),
                            calibrate_method=getattr(CalibrationMethod, CALIBRATION_METHOD))
    graph = onnx.load(str(out_path)).graph
    quantized = {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear"}
    return [n.name for n in graph.node if n.op_type in ("Conv", "ConvTranspose", "Gemm", "MatMul")
            and not any(i in quantized for i in n.input)]


def optimised_op_counts(path: Path) -> Counter:
    """The operators ONNX Runtime's CPU provider really runs for ``path`` (its optimised graph, all levels)."""
    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.optimized_model_filepath = str(Path(tmp) / "optimised.onnx")
        options.log_severity_level = 3
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return Counter(node.op_type for node in onnx.load(options.optimized_model_filepath).graph.node)


def quantization_record(rewritten: int, kept_fp32: list[str], calibration: str) -> dict:
    """The ``quantization`` entry of the int8 file's metadata."""
    return {"method": "onnxruntime static QDQ, per-channel int8 weights (symmetric), uint8 activations ("
                      f"{CALIBRATION_METHOD.lower()} calibration); {rewritten} stride-2 ConvTransposes rewritten as sub-pixel Convs first",
            "quantized_ops": list(QUANTIZED_OPS),
            "calibration": calibration,
            "kept_fp32": kept_fp32}


def random_conditions(metadata: dict, vocabulary, n: int = CALIBRATION_BATCHES * CALIBRATION_BATCH,
                      seed: int = 0) -> np.ndarray:
    """Conditions [n, C] drawn from the vocabulary alone, when no training data is at hand: 1 to max_objects
    distinct objects, one value per attribute group, or codes from their prior."""
    rng = np.random.default_rng(seed)
    if vocabulary.kind == "codes":
        return vocabulary.sample(n, rng)
    if vocabulary.kind == "groups":
        combinations = vocabulary.combinations()
        return vocabulary.encode_batch([combinations[i] for i in rng.integers(len(combinations), size=n)])
    out = np.zeros((n, metadata["num_classes"]), np.float32)
    for row in out:
        row[rng.choice(len(row), size=rng.integers(1, metadata["max_objects"] + 1), replace=False)] = 1
    return out
