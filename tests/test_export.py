import json

import numpy as np
import onnx
import pytest
import torch
from onnx.reference import ReferenceEvaluator

from cgan_export.checkpoint import load_generator, weights_sha256
from cgan_export.errors import ModelFileError
from cgan_export.export import METADATA_KEY, TS_METADATA_FILE, export, parity_inputs, prepare_for_inference
from cgan_export.runtime import OnnxBackend, OnnxSession, TorchScriptBackend

FP32_ATOL = 1e-4  # ORT / TorchScript against eager PyTorch
REFERENCE_ATOL = 1e-3  # onnx.reference (numpy) accumulates in another order


@pytest.fixture(scope="module")
def exported(generator_checkpoint, tmp_path_factory):
    folder = tmp_path_factory.mktemp("export")
    manifest = export(generator_checkpoint, ["onnx", "torchscript"], folder, report=lambda _: None)
    eager, info = load_generator(generator_checkpoint)
    return folder, manifest, eager


def _eager(eager, noise, condition):
    with torch.no_grad():
        return eager(torch.from_numpy(noise), torch.from_numpy(condition)).numpy()


@pytest.mark.parametrize("batch", [1, 3, 64])
def test_onnxruntime_and_torchscript_match_eager(exported, batch):
    folder, manifest, eager = exported
    noise, condition = parity_inputs(manifest["metadata"], batch, seed=batch)
    expected = _eager(eager, noise, condition)
    onnx_out = OnnxBackend(folder / "generator.onnx", "cpu").run(noise, condition)
    ts_out = TorchScriptBackend(folder / "generator.torchscript.pt", "cpu").run(noise, condition)
    assert onnx_out.shape == expected.shape == (batch, 3, 64, 64)
    np.testing.assert_allclose(onnx_out, expected, atol=FP32_ATOL, rtol=0)
    np.testing.assert_allclose(ts_out, expected, atol=FP32_ATOL, rtol=0)


@pytest.mark.parametrize("batch", [3, 7])
def test_cpu_batch_split_across_threads_matches_one_run(exported, batch):
    folder, manifest, _ = exported
    noise, condition = parity_inputs(manifest["metadata"], batch, seed=batch)
    sliced = OnnxSession(folder / "generator.onnx", "cpu", threads=3).run(noise, condition)  # slices 1/1/1, 2/2/3
    whole = OnnxSession(folder / "generator.onnx", "cpu", threads=3, slices=False).run(noise, condition)
    np.testing.assert_allclose(sliced, whole, atol=1e-6, rtol=0)


def test_onnx_reference_evaluator_matches_eager(exported):
    """The graph by the ONNX specification's own numpy evaluator, one image (12,288 values): batches are ONNX
    Runtime's part above; the reference's pure-Python convolutions take ~80 s for three acgan images."""
    folder, manifest, eager = exported
    noise, condition = parity_inputs(manifest["metadata"], 1, seed=1)
    ref = ReferenceEvaluator(onnx.load(folder / "generator.onnx"))
    got = ref.run(None, {"noise": noise, "condition": condition})[0]
    np.testing.assert_allclose(got, _eager(eager, noise, condition), atol=REFERENCE_ATOL, rtol=0)


def test_onnx_contract_and_full_check(exported):
    folder, manifest, _ = exported
    model = onnx.load(folder / "generator.onnx")
    onnx.checker.check_model(model, full_check=True)
    inputs = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input}
    z = manifest["metadata"]["z_dim"]
    assert inputs == {"noise": ["N", z], "condition": ["N", 24]}
    out = model.graph.output[0]
    assert out.name == "image" and [d.dim_param or d.dim_value for d in out.type.tensor_type.shape.dim] == ["N", 3, 64, 64]


def test_metadata_round_trips_through_every_artifact(exported, generator_checkpoint):
    folder, manifest, _ = exported
    onnx_meta = json.loads({p.key: p.value for p in onnx.load(folder / "generator.onnx").metadata_props}[METADATA_KEY])
    extra = {TS_METADATA_FILE: ""}
    torch.jit.load(str(folder / "generator.torchscript.pt"), _extra_files=extra)
    ts_meta = json.loads(extra[TS_METADATA_FILE])
    side = json.loads((folder / "manifest.json").read_text())["metadata"]
    assert onnx_meta == ts_meta == side == manifest["metadata"]
    ckpt = torch.load(generator_checkpoint, weights_only=True)
    for key in ("architecture", "vocabulary", "z_dim", "image_size", "metrics"):
        assert onnx_meta[key] == ckpt[key]
    assert onnx_meta["value_range"] == [-1.0, 1.0] and len(onnx_meta["weights_sha256"]) == 64
    assert set(json.loads((folder / "manifest.json").read_text())["files"]) == {"generator.onnx", "generator.torchscript.pt"}


def test_torchscript_loads_in_a_process_that_never_imported_the_package(exported, tmp_path):
    import subprocess
    import sys

    folder, _, _ = exported
    code = ("import sys, torch; m = torch.jit.load(sys.argv[1]); "
            "print(tuple(m(torch.zeros(2, int(sys.argv[2])), torch.zeros(2, 24)).shape)); "
            "assert not any(k.startswith(('cgan_export', 'training')) for k in sys.modules)")
    z = json.loads((folder / "manifest.json").read_text())["metadata"]["z_dim"]
    out = subprocess.run([sys.executable, "-c", code, str(folder / "generator.torchscript.pt"), str(z)],
                         capture_output=True, text=True, cwd=tmp_path, check=True)
    assert out.stdout.strip() == "(2, 3, 64, 64)"


def test_prepared_network_has_no_batchnorm_or_parametrization(generator_checkpoint):
    eager, _ = load_generator(generator_checkpoint)
    prepared = prepare_for_inference(eager)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in prepared.modules())
    noise, condition = parity_inputs({"z_dim": eager.config.z_dim, "num_classes": 24, "max_objects": 3}, 5)
    with torch.no_grad():
        a = prepared(torch.from_numpy(noise), torch.from_numpy(condition))
        b = eager(torch.from_numpy(noise), torch.from_numpy(condition))
    assert (a - b).abs().max() < FP32_ATOL


def test_fused_condition_projections_match_the_separate_ones():
    from cgan_export.networks import build_generator

    torch.manual_seed(0)
    net = build_generator("cbn", {"z_dim": 16, "ngf": 8, "embed_dim": 16}).eval()
    for norm in net._norms():  # trained-like: the zero-initialised projections have moved
        for linear in (norm.gain, norm.bias):
            torch.nn.init.normal_(linear.weight, 0, 0.2), torch.nn.init.normal_(linear.bias, 0, 0.2)
    prepared = prepare_for_inference(net)
    assert prepared.fused_affine is not None and prepared.fused_affine.out_features == 2 * sum(
        norm.gain.out_features for norm in net._norms())
    noise, condition = (torch.from_numpy(a) for a in parity_inputs({"z_dim": 16, "num_classes": 24, "max_objects": 3}, 7))
    with torch.no_grad():
        assert (prepared(noise, condition) - net(noise, condition)).abs().max() < FP32_ATOL


@pytest.mark.parametrize("kernel, padding", [(3, 1), (3, 0), (1, 0), (5, 2), ((3, 5), (1, 2))])
def test_narrow_conv_and_its_transposed_form_compute_the_same_map(kernel, padding):
    from cgan_export.folding import conv_as_transposed

    torch.manual_seed(0)
    conv = torch.nn.Conv2d(16, 3, kernel, 1, padding)
    x = torch.randn(2, 16, 12, 10)  # [N, Cin, H, W]
    with torch.no_grad():
        assert (conv_as_transposed(conv)(x) - conv(x)).abs().max() < 1e-5


def test_onnx_export_writes_the_rgb_head_as_a_transposed_conv(exported_best):
    ops = [node.op_type for node in onnx.load(exported_best / "generator.onnx").graph.node]
    assert "Conv" not in ops and ops.count("ConvTranspose") == 5  # four up-sampling blocks + the head


def test_export_refuses_a_file_that_is_not_a_generator_checkpoint(tmp_path, random_evaluator):
    with pytest.raises(ModelFileError, match="not a generator checkpoint"):
        export(random_evaluator, ["onnx"], tmp_path, report=lambda _: None)
    (tmp_path / "junk.pt").write_bytes(b"\x00garbage")
    with pytest.raises(ModelFileError, match="cannot read"):
        export(tmp_path / "junk.pt", ["onnx"], tmp_path, report=lambda _: None)
    assert not list(tmp_path.glob("generator*"))


def test_generator_with_an_embedding_mlp_exports_with_parity(tmp_path, vocabulary):
    from cgan_export.checkpoint import save_generator
    from cgan_export.networks import build_generator

    torch.manual_seed(0)
    net = build_generator("cbn", {"z_dim": 16, "ngf": 8, "embed_dim": 16, "embed_hidden": 32}).eval()
    torch.nn.init.normal_(net.embed_mlp[2].weight, 0, 0.1)  # trained-like: the branch is no longer zero
    save_generator(tmp_path / "generator.pt", net, vocabulary, {"score": 0.5}, {"preset": "test"})
    manifest = export(tmp_path / "generator.pt", ["onnx", "torchscript"], tmp_path / "out", report=lambda _: None)
    assert max(f["parity_max_abs_diff"] for f in manifest["files"].values()) < FP32_ATOL
    rebuilt, _ = load_generator(tmp_path / "generator.pt")
    assert rebuilt.config.embed_hidden == 32
    copied, _ = load_generator(tmp_path / "out" / "generator.pt")  # the folder holds what its artifacts came from
    assert weights_sha256(prepare_for_inference(copied)) == manifest["metadata"]["weights_sha256"]


@pytest.mark.parametrize("asked", ["auto", "cuda"])
def test_a_cuda_provider_that_did_not_load_is_an_error_or_a_cpu_fallback(exported_best, monkeypatch, capsys, asked):
    from cgan_export import runtime
    from cgan_export.errors import CganError

    monkeypatch.setattr(runtime, "resolve_device", lambda device: "cuda")  # the driver answers...
    monkeypatch.setattr(runtime, "_load_cuda_libraries", lambda: None)
    opened = []
    real_open = runtime.OnnxSession._open
    monkeypatch.setattr(runtime.OnnxSession, "_open",  # ...but ONNX Runtime builds a CPU-only session
                        lambda self, providers, threads: opened.append(providers) or real_open(self, ["CPUExecutionProvider"], threads))
    if asked == "cuda":
        with pytest.raises(CganError, match="CUDA provider did not load"):
            runtime.OnnxSession(exported_best / "generator.onnx", asked)
        return
    session = runtime.OnnxSession(exported_best / "generator.onnx", asked)
    assert session.device == "cpu" and "running on the CPU" in capsys.readouterr().err
    assert opened[0][0][0] == "CUDAExecutionProvider" and opened[-1] == ["CPUExecutionProvider"]
    noise, condition = parity_inputs(session.metadata, 3)
    assert session.run(noise, condition).shape == (3, 3, 64, 64)


def test_a_partial_re_export_of_other_weights_drops_the_older_files_from_the_manifest(tmp_path, vocabulary):
    from cgan_export.checkpoint import save_generator
    from tests.conftest import small_generator

    save_generator(tmp_path / "a.pt", small_generator("cbn", seed=0), vocabulary)
    save_generator(tmp_path / "b.pt", small_generator("cbn", seed=1), vocabulary)
    export(tmp_path / "a.pt", ["onnx", "torchscript"], tmp_path / "out", report=lambda _: None)
    manifest = export(tmp_path / "b.pt", ["onnx"], tmp_path / "out", report=lambda _: None)
    assert set(manifest["files"]) == {"generator.onnx"}  # the TorchScript file came from other weights
    again = export(tmp_path / "b.pt", ["torchscript"], tmp_path / "out", report=lambda _: None)
    assert set(again["files"]) == {"generator.onnx", "generator.torchscript.pt"}  # same weights: both kept


def test_the_torch_backend_reports_the_weights_hash_the_exported_files_carry(exported_best):
    from cgan_export.runtime import TorchBackend

    onnx_meta = OnnxBackend(exported_best / "generator.onnx", "cpu").metadata
    assert TorchBackend(exported_best / "generator.pt", "cpu").metadata["weights_sha256"] == onnx_meta["weights_sha256"]


def test_cuda_graph_ids_are_one_per_batch_size_and_reused(exported_best, monkeypatch):
    from cgan_export import runtime

    session = OnnxSession(exported_best / "generator.onnx", "cpu")
    session.device, session.cuda_graph = "cuda", True  # bookkeeping only: the bindings are recorded, not run
    created = []

    class FakeBinding:
        def __init__(self, n, graph_id):
            self.n, self.graph_id = n, graph_id

        def run(self, _session, feeds):
            return np.zeros((self.n, 3, 64, 64), np.float32)

    monkeypatch.setattr(runtime.Binding, "create",
                        classmethod(lambda cls, s, feeds, graph_id: created.append(graph_id) or FakeBinding(len(feeds["noise"]), graph_id)))
    for n in (32, 32, 7, 32, 1, 7):
        noise, condition = parity_inputs(session.metadata, n)
        assert session.run(noise, condition).shape[0] == n
    assert created == [1, 2, 3]  # a graph per shape, never one shape's graph for another
    assert {n: b.graph_id for n, b in session._bindings.items()} == {32: 1, 7: 2, 1: 3}


def test_the_gpu_uint8_graph_converts_exactly_as_the_host_does():
    """The graph that converts images to uint8 on CUDA, run here on the CPU provider: bit-equal to ``to_uint8``
    on random values, values outside [-1, 1], and values whose scaled form lies on a half (round half to even)."""
    import onnxruntime as ort

    from cgan_export.cuda_binding import uint8_graph
    from cgan_export.runtime import to_uint8

    rng = np.random.default_rng(0)
    images = rng.uniform(-1.2, 1.2, (5, 3, 64, 64)).astype(np.float32)  # [5, 3, 64, 64]
    halves = (np.arange(256, dtype=np.float32) + 0.5) / np.float32(127.5) - np.float32(1.0)  # (x + 1) * 127.5 ~ k + 0.5
    images.reshape(-1)[:256] = halves
    session = ort.InferenceSession(uint8_graph(), providers=["CPUExecutionProvider"])
    pixels = session.run(["pixels"], {"image": images})[0]
    assert pixels.dtype == np.uint8 and pixels.shape == (5, 64, 64, 3)
    np.testing.assert_array_equal(pixels, to_uint8(images))
    assert 0 in pixels and 255 in pixels


def test_fp32_parity_runs_on_the_cpu_provider(exported_best, monkeypatch):
    from cgan_export import export as export_module

    devices = []
    real = export_module.OnnxSession
    monkeypatch.setattr(export_module, "OnnxSession", lambda path, device="auto", **kw: devices.append(device) or real(path, device, **kw))
    export(exported_best / "generator.pt", ["onnx"], exported_best.parent / "parity-cpu", report=lambda _: None)
    assert devices and set(devices) == {"cpu"}


def test_a_checkpoint_with_an_unknown_config_key_is_one_clean_error(tmp_path, vocabulary):
    from cgan_export.checkpoint import generator_checkpoint
    from tests.conftest import small_generator

    ckpt = generator_checkpoint(small_generator("cbn"), vocabulary)
    ckpt["config"]["from_the_future"] = 1
    torch.save(ckpt, tmp_path / "g.pt")
    with pytest.raises(ModelFileError, match="cannot rebuild its generator"):
        load_generator(tmp_path / "g.pt")


def test_the_format_table_and_the_cli_choices_come_from_one_list():
    from cgan_export.contract import EXPORT_FORMATS
    from cgan_export.export import FORMATS
    from cgan_export.runtime import BACKENDS, DEVICES
    from cli import Backend, Device

    assert tuple(FORMATS) == EXPORT_FORMATS
    assert [b.value for b in Backend] == list(BACKENDS) and [d.value for d in Device] == list(DEVICES)


def test_sagan_weights_saved_under_the_old_layer_names_still_load():
    from cgan_export.networks import SAGAN_GENERATOR_NAMES, build_generator

    config = {"z_dim": 16, "ngf": 8, "condition_dim": 16}
    net = build_generator("sagan", config)
    renamed = {new: old for old, new in SAGAN_GENERATOR_NAMES.items()}
    old_state = {next((renamed[p] + k[len(p):] for p in renamed if k.startswith(p)), k): v for k, v in net.state_dict().items()}
    assert any(k.startswith("l1.") for k in old_state) and any(k.startswith("conditionExpand.") for k in old_state)
    again = build_generator("sagan", config)
    again.load_state_dict(old_state)  # strict: every old name maps onto a new one
    for a, b in zip(net.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)


def test_truncation_scales_the_noise_inside_every_artifact_and_the_written_checkpoint(exported_best, tmp_path):
    from cgan_export.contract import make_noise
    from cgan_export.runtime import open_backend

    out = tmp_path / "truncated"
    manifest = export(exported_best / "generator.pt", ["onnx", "torchscript"], out, report=lambda _: None, truncation=0.5)
    assert manifest["metadata"]["truncation"] == 0.5 and (out / "generator.pt").is_file()
    noise, cond = make_noise(4, 16, seed=3), np.zeros((4, 24), np.float32)
    cond[:, 0] = 1
    plain = open_backend(exported_best / "generator.onnx", "onnx", "cpu").run(noise, cond)
    halved = open_backend(exported_best / "generator.onnx", "onnx", "cpu").run(noise * 0.5, cond)  # [4, 3, 64, 64]
    # the small fixture's outputs are ~1e-3 and the noise moves them by ~5e-6; exports agree to ~3e-9, so a
    # tolerance of 1e-7 tells a truncated artifact from an untruncated one
    assert np.abs(plain - halved).max() > 1e-6
    for path, backend in ((out / "generator.onnx", "onnx"), (out / "generator.torchscript.pt", "torchscript"),
                          (out / "generator.pt", "torch")):
        np.testing.assert_allclose(open_backend(path, backend, "cpu").run(noise, cond), halved, rtol=0, atol=1e-7)


def test_a_truncation_outside_zero_to_one_is_a_clear_error(exported_best, tmp_path):
    from cgan_export.errors import CganError

    with pytest.raises(CganError, match=r"truncation must be in \(0, 1\]"):
        export(exported_best / "generator.pt", ["onnx"], tmp_path / "bad", report=lambda _: None, truncation=0.0)
    assert not (tmp_path / "bad" / "generator.pt").exists()
