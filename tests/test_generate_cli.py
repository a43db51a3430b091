import os
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cgan_export import Generator
from cli import app

runner = CliRunner()


def _cli(*args):
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


def test_generate_writes_the_files_it_reports(exported_best, tmp_path):
    out = tmp_path / "out"
    code, text = _cli("generate", "red cube", "blue cylinder", "-n", 3, "--out", out, "--model", exported_best / "generator.onnx")
    assert code == 0, text
    files = sorted(p.name for p in out.iterdir())
    assert files == ["grid.png", "red-cube_blue-cylinder_000.png", "red-cube_blue-cylinder_001.png", "red-cube_blue-cylinder_002.png"]
    assert "3 images" in text and str(out) in text


def test_conditions_file_gives_one_image_per_condition(exported_best, tmp_path):
    cond = tmp_path / "c.json"
    cond.write_text('[["red cube"], ["gray sphere", "cyan cylinder"]]')
    code, text = _cli("generate", "--conditions", cond, "-n", 1, "--out", tmp_path / "o", "--model", exported_best / "generator.onnx")
    assert code == 0, text
    assert {p.name for p in (tmp_path / "o").iterdir()} == {"grid.png", "000_red-cube_000.png", "001_gray-sphere_cyan-cylinder_000.png"}


def test_same_seed_same_images_on_every_backend(exported_best):
    models = {"onnx": "generator.onnx", "torchscript": "generator.torchscript.pt", "torch": "generator.pt"}
    images = {}
    for backend, file_name in models.items():
        gen = Generator.load(exported_best / file_name, backend, "cpu")
        images[backend] = gen.generate([["red cube"], ["blue sphere", "gray cube"]], n=5, seed=7, batch_size=3)
    for backend in ("torchscript", "torch"):
        assert np.abs(images[backend].astype(int) - images["onnx"].astype(int)).max() <= 1


def test_onnx_generation_on_cpu_never_imports_torch(exported_best, tmp_path):
    """Importing torch costs seconds; the ONNX path on CPU (and `auto` without a GPU driver) does without it."""
    import subprocess
    import sys

    from cgan_export.runtime import cuda_driver_devices

    devices = ["cpu"] + (["auto"] if cuda_driver_devices() == 0 else [])
    for device in devices:
        code = ("import sys; from cli import app; "
                f"app(['generate', 'red cube', '-n', '2', '--model', {str(exported_best / 'generator.onnx')!r}, "
                f"'--out', {str(tmp_path / device)!r}, '--device', {device!r}], standalone_mode=False); "
                "print('torch imported' if 'torch' in sys.modules else 'torch not imported')")
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                cwd=Path(__file__).resolve().parents[1])
        assert "torch not imported" in result.stdout, (device, result.stdout, result.stderr[-500:])
        assert (tmp_path / device / "grid.png").is_file()


def test_chunking_does_not_change_the_images(exported_best):
    gen = Generator.load(exported_best / "generator.onnx", "onnx", "cpu")
    one = gen.generate([["red cube"]], n=10, seed=3, batch_size=10)
    chunked = gen.generate([["red cube"]], n=10, seed=3, batch_size=4)
    np.testing.assert_array_equal(one, chunked)


def _assert_clean_failure(code, text, must_contain):
    assert code != 0
    assert "Traceback" not in text
    assert len(text.strip().splitlines()) == 1, text
    assert must_contain in text


@pytest.mark.parametrize("names, message", [
    (["pink cube"], "did you mean"),
    (["red cubes"], "red cube"),
    (["red cube", "blue cube", "gray cube", "green cube"], "at most 3"),
    (["red cube", "red cube"], "duplicate"),
    ([], "empty condition"),
])
def test_bad_conditions_fail_cleanly_and_write_nothing(exported_best, tmp_path, names, message):
    out = tmp_path / "out"
    code, text = _cli("generate", *names, "--out", out, "--model", exported_best / "generator.onnx")
    _assert_clean_failure(code, text, message)
    assert not out.exists()


def test_missing_model_fails_cleanly(tmp_path):
    code, text = _cli("generate", "red cube", "--model", tmp_path / "none.onnx", "--out", tmp_path / "o")
    _assert_clean_failure(code, text, "does not exist")


def test_corrupt_model_fails_cleanly(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"this is not onnx")
    code, text = _cli("generate", "red cube", "--model", bad, "--out", tmp_path / "o")
    _assert_clean_failure(code, text, "cannot load ONNX model")
    bad_ts = tmp_path / "bad.pt"
    bad_ts.write_bytes(b"nope")
    code, text = _cli("generate", "red cube", "--model", bad_ts, "--backend", "torchscript", "--out", tmp_path / "o")
    _assert_clean_failure(code, text, "cannot load TorchScript")


def test_model_without_metadata_fails_cleanly(exported_best, tmp_path):
    import onnx

    model = onnx.load(exported_best / "generator.onnx")
    del model.metadata_props[:]
    onnx.save(model, tmp_path / "bare.onnx")
    code, text = _cli("generate", "red cube", "--model", tmp_path / "bare.onnx", "--out", tmp_path / "o")
    _assert_clean_failure(code, text, "no cgan-export metadata")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere; covered by the unwritable-path test below")
def test_read_only_output_folder_fails_cleanly(exported_best, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    code, text = _cli("generate", "red cube", "--model", exported_best / "generator.onnx", "--out", ro / "x")
    _assert_clean_failure(code, text, "cannot write")


def test_unwritable_output_path_fails_cleanly(exported_best, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")
    code, text = _cli("generate", "red cube", "--model", exported_best / "generator.onnx", "--out", blocker / "sub")
    _assert_clean_failure(code, text, "cannot write")
    assert blocker.read_text().startswith("a file")


def test_help_lists_every_command():
    code, text = _cli("--help")
    assert code == 0
    for command in ("train", "export", "generate", "evaluate", "bench", "evaluator"):
        assert command in text


def test_two_budgets_fail_cleanly_before_training(tmp_path):
    code, text = _cli("train", "--minutes", 1, "--epochs", 3, "--out", tmp_path / "run")
    _assert_clean_failure(code, text, "give one")
    assert not (tmp_path / "run").exists()


def test_train_help_shows_each_presets_own_schedule_as_the_preset_defines_it():
    from training.presets import PRESETS, describe_schedule
    from cgan_export.help_text import PRESET_SCHEDULES

    assert PRESET_SCHEDULES == {name: describe_schedule(config) for name, config in PRESETS.items()}
    code, text = _cli("train", "--help")
    words = " ".join(text.replace("│", " ").split())  # the help's panels wrap lines inside borders
    assert code == 0 and "best: 170 epochs, anneal over the last 20, guide from 140" in words and "Examples" in words


@pytest.mark.parametrize("command", ["train", "export", "generate", "evaluate", "serve", "bench", "evaluator train",
                                     "evaluator score", "guide train"])
def test_each_commands_help_ends_with_an_example(command):
    code, text = _cli(*command.split(), "--help")
    assert code == 0 and "Examples:" in text and "python cli.py " + command in text


def test_branch_from_together_with_init_from_fails_cleanly_before_training(tmp_path):
    code, text = _cli("train", "--epochs", 1, "--branch-from", tmp_path / "a.pt", "--init-from", tmp_path / "b.pt",
                      "--out", tmp_path / "run")
    _assert_clean_failure(code, text, "give one")
    code, text = _cli("train", "--epochs", 1, "--branch-from", tmp_path / "missing.pt", "--out", tmp_path / "run2",
                      "--set", "guide_weight=0")
    _assert_clean_failure(code, text, "does not exist")


def test_export_command_reports_each_format(exported_best, tmp_path):
    code, text = _cli("export", "--checkpoint", exported_best / "generator.pt", "--format", "onnx", "--out", tmp_path)
    assert code == 0, text
    assert "parity ok" in text and (tmp_path / "generator.onnx").is_file() and (tmp_path / "manifest.json").is_file()


def test_export_of_a_missing_checkpoint_fails_cleanly(tmp_path):
    code, text = _cli("export", "--checkpoint", tmp_path / "none.pt", "--out", tmp_path)
    _assert_clean_failure(code, text, "does not exist")


def test_evaluate_reports_mean_and_std(exported_best, random_evaluator, data_root, tmp_path):
    report = tmp_path / "r.json"
    code, text = _cli("evaluate", "--model", exported_best / "generator.onnx", "--data", data_root, "--seeds", 2,
                      "--evaluator", random_evaluator, "--report", report)
    assert code == 0, text
    assert "test.json" in text and "new_test.json" in text and "±" in text
    import json

    result = json.loads(report.read_text())["models"][str(exported_best / "generator.onnx")]["accuracy"]["test.json"]
    assert len(result["per_seed"]) == 2 and 0 <= result["mean"] <= 1 and result["per_object"]


def test_bench_prints_ratios_to_eager_side_by_side(exported_best):
    code, text = _cli("bench", "--checkpoint", exported_best / "generator.pt", "--batch-sizes", "1,2", "--repeats", 3)
    assert code == 0, text
    assert "matmul roofline" in text and "x eager per round (quartiles)" in text
    for backend in ("torch eager", "torchscript", "onnxruntime cpu", "onnxruntime cpu int8"):
        assert text.count(f"| {backend} |") == 2
    from cgan_export.cpu import cpu_has_native_bf16

    bf16_rows = 2 if cpu_has_native_bf16() else 0  # an AVX2-only CPU says why the row is left out
    assert text.count("| torch eager bf16 |") == bf16_rows and ("left out" in text) == (bf16_rows == 0)
    assert "1.00x" in text and "cpu: " in text  # the CPU model and flags beside the figures


def test_evaluate_first_seed_scores_the_seeds_it_names(exported_best, random_evaluator, data_root, tmp_path):
    import json

    reports = {}
    for first in (0, 1):
        reports[first] = tmp_path / f"r{first}.json"
        code, text = _cli("evaluate", "--model", exported_best / "generator.onnx", "--data", data_root, "--seeds", 2,
                          "--first-seed", first, "--evaluator", random_evaluator, "--report", reports[first])
        assert code == 0, text
        assert f"over seeds {first}-{first + 1}" in text
    seeds_01 = json.loads(reports[0].read_text())["models"][str(exported_best / "generator.onnx")]["accuracy"]["test.json"]["per_seed"]
    seeds_12 = json.loads(reports[1].read_text())["models"][str(exported_best / "generator.onnx")]["accuracy"]["test.json"]["per_seed"]
    assert seeds_01[1] == seeds_12[0]  # seed 1 scores the same in both runs


def test_python_api_generates_uint8_images_in_condition_major_order(exported_best):
    g = Generator.load(exported_best / "generator.onnx", device="cpu")
    one = g.generate(["red cube", "blue cylinder"], n=3, seed=0)
    assert one.dtype == np.uint8 and one.shape == (3, 64, 64, 3)
    many = g.generate([["red cube", "blue cylinder"], ["green sphere"]], n=3, seed=0)
    np.testing.assert_array_equal(many[:3], one)  # the first condition's images, then the second's
    assert g.generate("green sphere", n=1).shape == (1, 64, 64, 3)
    assert "red cube" in g.vocabulary.names and g.metadata["z_dim"] == 16 and g.device == "cpu"


@pytest.mark.parametrize("bad, message", [(["pink cube"], "did you mean"), (["red cube", "red cube"], "duplicate"),
                                          ([], "no condition")])
def test_python_api_raises_the_cli_errors(exported_best, bad, message):
    from cgan_export import CganError

    with pytest.raises(CganError, match=message):
        Generator.load(exported_best / "generator.onnx", device="cpu").generate(bad, n=1)


def test_a_missing_model_is_a_model_file_error_in_the_api(tmp_path):
    from cgan_export.errors import ModelFileError

    with pytest.raises(ModelFileError, match="does not exist"):
        Generator.load(tmp_path / "none.onnx")


def test_npz_output_holds_images_conditions_and_noise_rows_matching_the_api(exported_best, tmp_path):
    out = tmp_path / "npz"
    code, text = _cli("generate", "red cube", "-n", 5, "--format", "npz", "--out", out, "--model", exported_best / "generator.onnx")
    assert code == 0, text
    shards = sorted(out.glob("*.npz"))
    assert [p.name for p in shards] == ["images-000000000.npz"]
    data = np.load(shards[0])
    np.testing.assert_array_equal(data["images"], Generator.load(exported_best / "generator.onnx", device="cpu").generate("red cube", n=5))
    assert data["conditions"].shape == (5, 24) and list(data["noise_row"]) == [0, 1, 2, 3, 4] and int(data["seed"]) == 0


def test_bulk_png_files_match_the_api_images(exported_best, tmp_path):
    from PIL import Image

    out = tmp_path / "bulk"
    code, text = _cli("generate", "gray cube", "-n", 40, "--scale", 1, "--batch-size", 7, "--workers", 3, "--out", out,
                      "--model", exported_best / "generator.onnx", "--no-grid")
    assert code == 0, text
    expected = Generator.load(exported_best / "generator.onnx", device="cpu").generate("gray cube", n=40)
    for i in (0, 6, 7, 39):
        np.testing.assert_array_equal(np.asarray(Image.open(out / f"gray-cube_{i:03d}.png")), expected[i])
    assert len(list(out.iterdir())) == 40


def test_a_full_disk_during_generate_is_one_error_line_and_no_partial_file(exported_best, tmp_path, monkeypatch):
    import errno
    import os

    calls = {"n": 0}
    real_write = os.write

    def failing_write(fd, data):  # the disk fills while the fifth PNG is written
        if bytes(data[:4]) == b"\x89PNG":
            calls["n"] += 1
            if calls["n"] >= 5:
                raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", failing_write)
    out = tmp_path / "full"
    code, text = _cli("generate", "red cube", "-n", 64, "--out", out, "--model", exported_best / "generator.onnx", "--workers", 1)
    _assert_clean_failure(code, text, "No space left on device")
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp") or p.name.startswith(".")]
    assert len(list(out.iterdir())) == 4  # the files written before the disk filled are whole


def test_evaluate_prints_the_scorecard_beside_the_real_data(exported_best, random_evaluator, tmp_path, monkeypatch):
    import json

    from tests.conftest import write_fixture

    monkeypatch.setenv("CGAN_EXPORT_CACHE", str(tmp_path / "cache"))
    data = write_fixture(tmp_path / "repeats", scenes=48, names=["red cube", "blue sphere", "green cylinder"])
    report = tmp_path / "r.json"
    code, text = _cli("evaluate", "--model", exported_best / "generator.onnx", "--data", data, "--seeds", 2,
                      "--evaluator", random_evaluator, "--report", report)
    assert code == 0, text
    real_row = next(line for line in text.splitlines() if line.startswith("| real data |"))
    held_out = real_row.split(" | ")[1]  # the evaluator's accuracy on real held-out scenes, bare: no spread over seeds
    assert real_row.split(" | ")[2] == held_out and " ± " not in held_out and 0 <= float(held_out) <= 1
    assert " | 1.000 | 1.000 | " in real_row and "diversity (real 1.0)" in text
    saved = json.loads(report.read_text())
    assert saved["real data"]["accuracy"]["test.json"]["mean"] == pytest.approx(float(held_out), abs=5e-4)
    card = saved["models"][str(exported_best / "generator.onnx")]["scorecard"]
    assert card["diversity_sets"] == 7 and 0 <= card["precision"] <= 1 and card["frechet_floor"] > 0
    assert card["seeds"] == [0, 1] and len(card["per_seed"]) == 2  # one scorecard per noise seed, as the accuracy
    model_row = next(line for line in text.splitlines() if line.startswith(f"| {exported_best / 'generator.onnx'} |"))
    assert model_row.count(" ± ") == 2 + 5  # the two files' accuracy, then the five figures' spread over seeds
    assert saved["real data"]["diversity"] == 1.0 and "selection_rule" in saved


def test_map_batches_gives_the_batches_in_order_whatever_the_workers(exported_best):
    gen = Generator.load(exported_best / "generator.onnx", device="cpu")
    _, multi_hot = gen.parse([["red cube"], ["green sphere", "gray cylinder"]])
    plain = list(gen.batches(multi_hot, n=9, seed=3, batch_size=5))
    mapped = list(gen.map_batches(multi_hot, n=9, seed=3, batch_size=5, work=lambda b: b, workers=3))
    assert [b.start for b in mapped] == [b.start for b in plain] == list(range(0, 18, 5))
    for a, b in zip(plain, mapped):
        np.testing.assert_array_equal(a.images, b.images)  # one-thread runs draw the same pixels as sliced ones
        np.testing.assert_array_equal(a.sample_index, b.sample_index)


def test_map_batches_stopped_early_drops_the_batches_not_started(exported_best):
    gen = Generator.load(exported_best / "generator.onnx", device="cpu")
    _, multi_hot = gen.parse([["red cube"]])
    done: list[int] = []
    results = gen.map_batches(multi_hot, n=400, seed=0, batch_size=4, work=lambda b: done.append(b.start) or b.start,
                              workers=2)
    assert next(results) == 0
    results.close()  # what an error or Ctrl-C in the caller does
    assert len(done) <= 1 + 2 * 2  # the one taken and at most the ones in flight, not all 100


def test_png_batch_decodes_to_the_upscaled_images_for_incompressible_pixels():
    import io

    from PIL import Image

    from cgan_export.images import png_batch

    images = np.random.default_rng(0).integers(0, 256, (3, 16, 24, 3), dtype=np.uint8)  # noise: deflate cannot shrink it
    for data, image in zip(png_batch(images, scale=3), images):
        np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(data))), image.repeat(3, axis=0).repeat(3, axis=1))


def test_map_batches_splits_a_small_request_so_every_worker_gets_a_batch(exported_best):
    gen = Generator.load(exported_best / "generator.onnx", device="cpu")
    _, multi_hot = gen.parse([["red cube"]])
    sizes = list(gen.map_batches(multi_hot, n=10, seed=0, batch_size=256, work=lambda b: len(b.images), workers=3))
    assert sizes == [4, 4, 2]
