"""The preset is the recipe: its schedule per device, and every artifact says how it was made."""

import json
import sys

import pytest
import torch
from typer.testing import CliRunner

from training.presets import PRESETS, for_device, get_preset

TINY_CLI = ["--set", 'generator_config={"z_dim": 16, "ngf": 8, "embed_dim": 16}', "--set", 'discriminator_config={"ndf": 8}',
            "--set", "eval_seeds=1", "--set", "guide_weight=0"]


def test_a_cuda_run_gets_the_presets_gpu_schedule():
    best = get_preset("best")
    gpu = for_device(best, "cuda")
    assert (gpu.batch_size, gpu.gpu_batch_size) == (128, 128)
    assert gpu.lr_g == pytest.approx(2 * best.lr_g) and gpu.lr_d == pytest.approx(2 * best.lr_d)  # x sqrt(128 / 32)
    assert gpu.ema_decay == pytest.approx(best.ema_decay ** 4)  # the same EMA horizon in images
    assert for_device(gpu, "cuda") == gpu  # applying it twice (a resume) changes nothing more
    assert gpu.epochs == best.epochs and gpu.guide_start == best.guide_start  # the schedule in epochs stays


def test_a_cpu_run_and_a_preset_without_a_gpu_batch_keep_their_own_schedule():
    assert for_device(get_preset("best"), "cpu") == get_preset("best")
    for name, config in PRESETS.items():
        if not config.gpu_batch_size:
            assert for_device(config, "cuda") == config, name


def test_a_run_on_the_cpu_trains_by_the_cpu_schedule(data_root, random_evaluator, tmp_path):
    from training.loop import Run, RunOptions

    run = Run(get_preset("best"), RunOptions(device="cpu", out=tmp_path / "run", data=data_root,
                                             evaluator=random_evaluator, show_progress=False))
    assert run.config.batch_size == 32 and run.config.lr_g == get_preset("best").lr_g


def test_every_artifact_records_the_command_device_minutes_and_images_seen(data_root, random_evaluator, tmp_path,
                                                                            monkeypatch):
    from cli import app

    run, exported = tmp_path / "run", tmp_path / "exported"
    argv = ["cli.py", "train", "--data", str(data_root), "--out", str(run), "--epochs", str(2 / 6), "--batch-size", "4",
            "--eval-every", "2", "--evaluator", str(random_evaluator), "--device", "cpu", *TINY_CLI]
    monkeypatch.setattr(sys, "argv", argv)
    runner = CliRunner()
    result = runner.invoke(app, argv[1:])
    assert result.exit_code == 0, result.output
    record = torch.load(run / "best.pt", weights_only=True)["training"]
    assert record["command"].startswith("python cli.py train --data ") and "--epochs 0.333" in record["command"]
    assert record["device"].startswith("cpu: ") and "threads" in record["device"]
    assert record["images_seen"] == 2 * 4 and record["minutes"] >= 0 and record["config"]["epochs"] == pytest.approx(1 / 3)
    assert "commands" not in record  # one command made it
    config = json.loads((run / "config.json").read_text())["config"]
    assert config["epochs"] == pytest.approx(1 / 3) and config["guide_start"] == pytest.approx(140 / 170)
    result = runner.invoke(app, ["export", "--checkpoint", str(run / "best.pt"), "--format", "all", "--out", str(exported)])
    assert result.exit_code == 0, result.output
    manifest = json.loads((exported / "manifest.json").read_text())
    assert manifest["metadata"]["training"]["command"] == record["command"]
    from cgan_export.runtime import open_backend

    for name, backend in (("generator.onnx", "onnx"), ("generator.torchscript.pt", "torchscript")):
        assert open_backend(exported / name, backend, "cpu").metadata["training"]["command"] == record["command"], name


def test_a_resumed_run_records_every_command_in_order(data_root, random_evaluator, tmp_path, monkeypatch):
    from cli import app

    run = tmp_path / "run"
    base = ["cli.py", "train", "--data", str(data_root), "--out", str(run), "--batch-size", "4", "--eval-every", "2",
            "--evaluator", str(random_evaluator), "--device", "cpu", *TINY_CLI]
    for extra in (["--epochs", str(2 / 6)], ["--epochs", str(4 / 6), "--resume"]):
        monkeypatch.setattr(sys, "argv", base + extra)
        result = CliRunner().invoke(app, base[1:] + extra)
        assert result.exit_code == 0, result.output
    record = torch.load(run / "last-generator.pt", weights_only=True)["training"]
    assert len(record["commands"]) == 2 and record["commands"][1].endswith("--resume")
    assert record["command"] == record["commands"][0] and record["step"] == 4


def test_a_resume_needs_only_the_run_folder(data_root, random_evaluator, tmp_path, monkeypatch):
    from cli import app

    run = tmp_path / "run"
    first = ["train", "--data", str(data_root), "--out", str(run), "--batch-size", "4", "--eval-every", "2",
             "--evaluator", str(random_evaluator), "--device", "cpu", "--epochs", str(2 / 6), "--set",
             "mode_seeking_weight=0.5", *TINY_CLI]
    monkeypatch.delenv("CGAN_EXPORT_DATA", raising=False)
    assert (result := CliRunner().invoke(app, first)).exit_code == 0, result.output
    resumed = CliRunner().invoke(app, ["train", "--out", str(run), "--resume", "--epochs", str(4 / 6), "--device", "cpu"])
    assert resumed.exit_code == 0, resumed.output  # the data, evaluator and --set fields come from config.json
    saved = json.loads((run / "config.json").read_text())
    assert saved["config"]["mode_seeking_weight"] == 0.5 and saved["config"]["epochs"] == pytest.approx(4 / 6)
    assert torch.load(run / "last.pt", weights_only=True)["state"]["step"] == 4

    refused = CliRunner().invoke(app, ["train", "--out", str(run), "--resume", "--preset", "cdcgan"])
    assert refused.exit_code != 0 and "holds a run of the preset 'best', not 'cdcgan'" in refused.output
    changed = CliRunner().invoke(app, ["train", "--out", str(run), "--resume", "--set", "lr_g=0.001"])
    assert changed.exit_code != 0 and "another config (lr_g" in changed.output
    (run / "config.json").write_text("{not json")
    broken = CliRunner().invoke(app, ["train", "--out", str(run), "--resume"])
    assert broken.exit_code != 0 and "config.json is not readable JSON" in broken.output
    assert "Traceback" not in refused.output + changed.output + broken.output
