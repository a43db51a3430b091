"""`export --format triton`: a model repository whose config.pbtxt Triton's own schema parses, and whose every
field agrees with the ONNX file beside it."""

import json
import subprocess
import sys
from pathlib import Path

import onnx
import pytest

from cgan_export.contract import METADATA_KEY
from cgan_export.export import ExportOptions, export

model_config_pb2 = pytest.importorskip(
    "tritonclient.grpc.model_config_pb2", reason="needs the [scale] extra (tritonclient[grpc]: Triton's ModelConfig schema)")
text_format = pytest.importorskip("google.protobuf.text_format")

ROOT = Path(__file__).resolve().parent.parent
ONNX_TYPES = {onnx.TensorProto.FLOAT: "TYPE_FP32"}


@pytest.fixture(scope="module")
def repository(exported_best, tmp_path_factory):
    repo = tmp_path_factory.mktemp("triton")
    export(exported_best / "generator.pt", ["triton"], repo, report=lambda _: None, options=ExportOptions(triton_kind="cpu"))
    return repo


def _config(repo: Path):
    return text_format.Parse((repo / "generator" / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())


def test_the_repository_has_the_layout_triton_loads(repository):
    assert (repository / "generator" / "config.pbtxt").is_file()
    assert (repository / "generator" / "1" / "model.onnx").is_file()


def test_every_config_field_agrees_with_the_onnx_file(repository):
    config = _config(repository)
    model = onnx.load(str(repository / "generator" / "1" / "model.onnx"))
    assert config.name == "generator" and config.backend == "onnxruntime" and config.max_batch_size > 0
    for tensors, declared in ((model.graph.input, config.input), (model.graph.output, config.output)):
        assert [t.name for t in tensors] == [d.name for d in declared]
        for tensor, field in zip(tensors, declared):
            dims = [d.dim_param or d.dim_value for d in tensor.type.tensor_type.shape.dim]
            assert dims[0] == "N" and list(field.dims) == dims[1:]  # the batch dimension is Triton's
            assert model_config_pb2.DataType.Name(field.data_type) == ONNX_TYPES[tensor.type.tensor_type.elem_type]
    meta = json.loads((repository / "manifest.json").read_text())["metadata"]
    assert [list(d.dims) for d in config.input] == [[meta["z_dim"]], [24]] and list(config.output[0].dims) == [3, 64, 64]
    assert config.dynamic_batching.max_queue_delay_microseconds > 0
    assert list(config.dynamic_batching.preferred_batch_size) and all(
        b <= config.max_batch_size for b in config.dynamic_batching.preferred_batch_size)
    assert [model_config_pb2.ModelInstanceGroup.Kind.Name(g.kind) for g in config.instance_group] == ["KIND_CPU"]
    embedded = json.loads({p.key: p.value for p in model.metadata_props}[METADATA_KEY])
    assert json.loads(config.parameters[METADATA_KEY].string_value) == embedded


def test_a_repository_for_cuda_asks_for_gpu_instances(exported_best, tmp_path):
    export(exported_best / "generator.pt", ["triton"], tmp_path, report=lambda _: None, options=ExportOptions(triton_kind="gpu"))
    kinds = [model_config_pb2.ModelInstanceGroup.Kind.Name(g.kind) for g in _config(tmp_path).instance_group]
    assert kinds == ["KIND_GPU"]


def test_the_cli_writes_a_repository_and_refuses_an_unknown_kind(exported_best, tmp_path):
    cli = [sys.executable, str(ROOT / "cli.py"), "export", "--checkpoint", str(exported_best / "generator.pt"),
           "--format", "triton", "--out", str(tmp_path / "repo")]
    result = subprocess.run(cli, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert _config(tmp_path / "repo").name == "generator"
    result = subprocess.run(cli + ["--triton-kind", "tpu"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "Traceback" not in result.stderr
