"""The int8 generator: the sub-pixel rewrite is exact, the quantized file keeps the contract, runs QLinearConv,
passes its stated tolerance (and a broken one fails it), and `--precision` picks files as documented."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
import torch
import torch.nn as nn

from cgan_export import precision
from cgan_export.checkpoint import load_generator, save_generator
from cgan_export.contract import METADATA_KEY
from cgan_export.errors import CganError
from cgan_export.export import FORMATS, TOLERANCE, ExportError, check_parity, export
from cgan_export.int8 import SubPixelConvTranspose, optimised_op_counts, subpixel_rewrite

from .conftest import small_generator

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "exported"
SUBPIXEL_ATOL = 1e-5  # the rewrite is exact: the same products, summed in another order


@pytest.mark.parametrize("cin,cout,size,bias", [(8, 5, 4, True), (32, 16, 7, False), (3, 64, 1, True)])
def test_the_subpixel_convolution_equals_the_transposed_convolution(cin, cout, size, bias):
    torch.manual_seed(cin)
    transposed = nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=bias)
    x = torch.randn(3, cin, size, size + 1)
    with torch.no_grad():
        expected, got = transposed(x), SubPixelConvTranspose(transposed)(x)
    assert got.shape == expected.shape == (3, cout, 2 * size, 2 * size + 2)
    assert (got - expected).abs().max() < SUBPIXEL_ATOL


def test_the_rewritten_generator_draws_the_same_images():
    net = small_generator("cbn")
    rewritten, count = subpixel_rewrite(net)
    assert count == sum(isinstance(m, nn.ConvTranspose2d) and m.stride == (2, 2) for m in net.modules()) > 0
    noise, condition = torch.randn(6, net.config.z_dim), (torch.rand(6, 24) < 0.1).float()
    with torch.no_grad():
        assert (rewritten(noise, condition) - net(noise, condition)).abs().max() < SUBPIXEL_ATOL


@pytest.fixture(scope="module")
def int8_folder(tmp_path_factory, vocabulary):
    """A small cbn generator (the shipped architecture) exported to fp32 and int8."""
    folder = tmp_path_factory.mktemp("int8")
    save_generator(folder / "generator.pt", small_generator("cbn"), vocabulary, {"score": 0.5})
    export(folder / "generator.pt", ["onnx", "onnx-int8"], folder, report=lambda _: None)
    return folder


def test_the_int8_file_keeps_the_contract_and_records_its_quantization(int8_folder):
    fp32, int8 = (onnx.load(str(int8_folder / name)) for name in ("generator.onnx", "generator.int8.onnx"))
    shapes = [[(i.name, [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim]) for i in m.graph.input]
              + [(o.name, [d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim]) for o in m.graph.output]
              for m in (fp32, int8)]
    assert shapes[0] == shapes[1]
    meta = json.loads({p.key: p.value for p in int8.metadata_props}[METADATA_KEY])
    assert meta["precision"] == "int8"
    record = meta["quantization"]
    assert record["quantized_ops"] == ["Conv"] and record["subpixel_max_abs_diff"] < SUBPIXEL_ATOL
    assert "vocabulary" in record["calibration"] and record["kept_fp32"]  # Gemms and the RGB head stay fp32
    manifest = json.loads((int8_folder / "manifest.json").read_text())
    entry = manifest["files"]["generator.int8.onnx"]
    assert entry["precision"] == "int8" and entry["parity_mean_abs_diff"] <= TOLERANCE["int8"][1]


def test_onnx_runtime_runs_the_int8_convolutions_as_qlinearconv():
    ops = optimised_op_counts(SHIPPED / "generator.int8.onnx")
    assert ops["QLinearConv"] == 4  # the four up-sampling layers
    assert ops["ConvTranspose"] == 1  # only the fp32 RGB head
    assert ops.get("DepthToSpace", 0) == 0  # the interleave is channels-last Transposes (the fast one)


def test_the_shipped_int8_file_is_within_its_tolerance():
    eager, _ = load_generator(SHIPPED / "generator.pt")
    diffs = check_parity(FORMATS["onnx-int8"], SHIPPED / "generator.int8.onnx", eager,
                         json.loads((SHIPPED / "manifest.json").read_text())["metadata"])
    assert diffs["mean"] <= TOLERANCE["int8"][1] and diffs["max"] < 0.5


def test_a_wrong_scale_fails_the_int8_tolerance(tmp_path):
    model = onnx.load(str(SHIPPED / "generator.int8.onnx"))
    inits = {i.name: i for i in model.graph.initializer}
    weights = [n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0].endswith("weight_quantized")]
    assert len(weights) == 4  # the int8 weights of the four up-sampling layers
    scale = inits[weights[1].input[1]]  # the per-channel scales of the second up-sampling layer, doubled
    scale.CopyFrom(onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(scale) * 2, scale.name))
    broken = tmp_path / "generator.int8.onnx"
    onnx.save(model, str(broken))
    eager, _ = load_generator(SHIPPED / "generator.pt")
    with pytest.raises(ExportError, match="mean abs difference"):
        check_parity(FORMATS["onnx-int8"], broken, eager, json.loads((SHIPPED / "manifest.json").read_text())["metadata"])


def test_precision_picks_the_file(tmp_path, monkeypatch):
    fp32 = tmp_path / "generator.onnx"
    shutil.copy(SHIPPED / "generator.onnx", fp32)
    with pytest.raises(CganError, match="no .*generator.int8.onnx"):
        precision.choose_model(fp32, "int8", "cpu")
    assert precision.choose_model(fp32, "auto", "cpu") == fp32  # no int8 file beside it
    shutil.copy(SHIPPED / "generator.int8.onnx", tmp_path / "generator.int8.onnx")
    int8 = tmp_path / "generator.int8.onnx"
    assert precision.choose_model(fp32, "fp32", "cpu") == fp32 and precision.choose_model(fp32, "int8", "cpu") == int8
    assert precision.choose_model(fp32, "auto", "cuda") == fp32
    monkeypatch.setattr(precision, "cpu_flags", lambda: {"avx2"})
    assert precision.choose_model(fp32, "auto", "cpu") == fp32  # no int8 dot products: not even measured
    monkeypatch.setattr(precision, "cpu_flags", lambda: {"avx512_vnni"})
    monkeypatch.setenv(precision.CACHE_ENV, str(tmp_path / "cache"))
    calls = []
    monkeypatch.setattr(precision, "measure_speedup", lambda a, b: calls.append(1) or 1.8)
    assert precision.choose_model(fp32, "auto", "cpu") == int8
    assert precision.choose_model(fp32, "auto", "cpu") == int8 and len(calls) == 1  # measured once, then read back
    record = json.loads((tmp_path / "cache" / "precision.json").read_text())
    assert [r["speedup"] for r in record.values()] == [1.8]
    (tmp_path / "cache" / "precision.json").unlink()
    monkeypatch.setattr(precision, "measure_speedup", lambda a, b: 1.02)
    assert precision.choose_model(fp32, "auto", "cpu") == fp32  # not faster enough: fp32's exactness wins


def test_the_speedup_measure_runs_both_files():
    assert precision.measure_speedup(SHIPPED / "generator.onnx", SHIPPED / "generator.int8.onnx", batch=4, rounds=1) > 0


def _cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, str(ROOT / "cli.py"), *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_generate_runs_the_int8_file_by_name(tmp_path):
    result = _cli("generate", "red cube", "-n", "4", "--precision", "int8", "--device", "cpu", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "onnx int8 on cpu" in result.stdout and len(list(tmp_path.glob("*.png"))) >= 4


def test_bad_precision_and_calibration_folders_are_one_line_errors(tmp_path):
    result = _cli("generate", "red cube", "--precision", "int4", "--out", str(tmp_path))
    assert result.returncode != 0 and "Traceback" not in result.stderr
    result = _cli("export", "--checkpoint", str(SHIPPED / "generator.pt"), "--format", "onnx-int8",
                  "--out", str(tmp_path / "x"), "--data", str(tmp_path / "missing"))
    assert result.returncode == 1 and result.stderr.strip().count("\n") == 0 and "does not exist" in result.stderr
    assert not (tmp_path / "x" / "generator.int8.onnx").exists()
    model = tmp_path / "generator.onnx"
    shutil.copy(SHIPPED / "generator.onnx", model)
    result = _cli("generate", "red cube", "--model", str(model), "--precision", "int8", "--out", str(tmp_path / "o"))
    assert result.returncode == 1 and "export --checkpoint" in result.stderr and "Traceback" not in result.stderr
