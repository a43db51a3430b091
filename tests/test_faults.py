"""Faults: a full disk, a damaged run folder, two runs in one folder, SIGTERM: one clean line, nothing lost."""

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from cgan_export.errors import CganError, OutputError
from training.loop import RunOptions, train
from training.presets import get_preset
from training.run_folder import LOCK_FILE, RunFolderLock

ROOT = Path(__file__).resolve().parent.parent
TINY = {"generator_config": {"z_dim": 16, "ngf": 8, "embed_dim": 16}, "discriminator_config": {"ndf": 8}}


def _config(**overrides):
    return get_preset("best", batch_size=4, eval_every=2, eval_seeds=1, guide_weight=0.0, **{**TINY, **overrides})


def _options(data_root, random_evaluator, out, **kw):
    return RunOptions(device="cpu", out=out, data=data_root, evaluator=random_evaluator, show_progress=False, **kw)


def test_a_full_disk_at_the_kth_checkpoint_write_is_one_error_and_keeps_the_last_good_checkpoint(
        data_root, random_evaluator, tmp_path, monkeypatch):
    out = tmp_path / "run"
    train(_config(epochs=2 / 6), _options(data_root, random_evaluator, out))  # step 2 saved
    good = (out / "last.pt").read_bytes()
    real_save = torch.save
    calls = {"n": 0}

    def full_disk(obj, f, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] >= 1:  # the disk is full from the next checkpoint on
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OutputError, match="No space left on device") as caught:
        train(_config(epochs=4 / 6), _options(data_root, random_evaluator, out, resume=True))
    message = str(caught.value)  # names the checkpoint being written: best.pt when this evaluation ranks higher
    assert ("last.pt" in message or "best.pt" in message) and str(out) in message and "\n" not in message
    assert (out / "last.pt").read_bytes() == good  # the last good checkpoint is intact
    assert not list(out.glob(".*.tmp"))  # no half-written file


def test_a_truncated_last_pt_resumes_from_the_previous_checkpoint(data_root, random_evaluator, tmp_path, capsys):
    out = tmp_path / "run"
    train(_config(epochs=4 / 6), _options(data_root, random_evaluator, out))  # saves at steps 2 and 4
    assert (out / "last-previous.pt").is_file()
    data = (out / "last.pt").read_bytes()
    (out / "last.pt").write_bytes(data[: len(data) // 3])
    result = train(_config(epochs=6 / 6), _options(data_root, random_evaluator, out, resume=True))
    assert result["step"] == 6
    err = capsys.readouterr().err
    assert "resuming from last-previous.pt (step 2)" in err and "reached step 4" in err


def test_a_run_folder_with_nothing_readable_is_one_error_naming_the_files(data_root, random_evaluator, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "last.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CganError, match="no readable checkpoint") as caught:
        train(_config(epochs=2 / 6), _options(data_root, random_evaluator, out, resume=True))
    assert "last.pt" in str(caught.value) and "last-previous.pt" in str(caught.value)


def test_a_damaged_metrics_line_is_skipped_with_a_warning(tmp_path, capsys):
    from training.report import read_jsonl

    path = tmp_path / "metrics.jsonl"
    path.write_text(json.dumps({"step": 2}) + "\n{broken\n" + json.dumps({"step": 4}) + "\n")
    assert [r["step"] for r in read_jsonl(path)] == [2, 4]
    assert "line 2 is damaged" in capsys.readouterr().err


def test_a_second_run_in_a_held_folder_is_refused_and_a_dead_holder_is_taken_over(tmp_path):
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        out.mkdir()
        (out / LOCK_FILE).write_text(f"{holder.pid}\n")
        with pytest.raises(CganError, match=f"in use by another training run \\(process {holder.pid}\\)"):
            RunFolderLock(out).acquire()
    finally:
        holder.kill()
        holder.wait()
    lock = RunFolderLock(out)  # the holder died without cleaning up: its lock is not stuck
    lock.acquire()
    assert (out / LOCK_FILE).read_text().strip() == str(os.getpid())
    lock.release()
    assert not (out / LOCK_FILE).exists()


@pytest.mark.slow
def test_sigterm_saves_last_pt_and_resume_carries_on(data_root, random_evaluator, tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "cli.py", "train", "--data", str(data_root), "--evaluator", str(random_evaluator),
               "--out", str(out), "--device", "cpu", "--minutes", "5", "--eval-every", "1000", "--batch-size", "4",
               "--set", 'generator_config={"z_dim": 16, "ngf": 8, "embed_dim": 16}', "--set", 'discriminator_config={"ndf": 8}',
               "--set", "eval_seeds=1", "--set", "guide_weight=0"]
    run = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (out / LOCK_FILE).exists() and time.time() < deadline:  # training has started
        time.sleep(0.5)
    time.sleep(5)
    run.send_signal(signal.SIGTERM)
    stdout, stderr = run.communicate(timeout=120)
    assert run.returncode == 0, stderr[-2000:]
    assert "last.pt saved" in stdout and "Traceback" not in stderr
    saved = torch.load(out / "last.pt", weights_only=True)
    stopped_at = saved["state"]["step"]
    assert stopped_at > 0 and not (out / LOCK_FILE).exists()
    resumed = train(_config(generator_config=TINY["generator_config"], epochs=(stopped_at + 2) / 6),
                    _options(data_root, random_evaluator, out, resume=True))
    assert resumed["step"] == stopped_at + 2


def _small_tmpfs(path: Path, size: str) -> bool:
    """Mount a size-limited tmpfs at ``path`` (root only); False where this machine does not allow it."""
    path.mkdir()
    if os.geteuid() != 0:
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True).returncode == 0


def test_generate_onto_a_real_full_file_system_is_one_line_and_leaves_only_whole_files(exported_best, tmp_path):
    from typer.testing import CliRunner

    from cli import app

    disk = tmp_path / "small"
    if not _small_tmpfs(disk, "64k"):
        pytest.skip("needs root to mount a size-limited tmpfs")
    try:
        result = CliRunner().invoke(app, ["generate", "red cube", "-n", "64", "--out", str(disk / "out"), "--scale", "1",
                                          "--model", str(exported_best / "generator.onnx")])
        assert result.exit_code == 1 and "No space left on device" in result.output
        assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
        from PIL import Image

        written = list((disk / "out").iterdir())
        assert written and not [p for p in written if p.name.startswith(".")]
        for path in written:  # every file left is a whole PNG
            Image.open(path).load()
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)


def test_resume_reads_run_state_onto_the_cpu_so_rng_states_restore_on_any_device(data_root, random_evaluator, tmp_path):
    from training.run_folder import load_last, set_rng_state

    out = tmp_path / "run"
    train(_config(epochs=2 / 6), _options(data_root, random_evaluator, out))
    saved = load_last(out, report=print)
    assert saved["rng"]["torch"].device.type == "cpu" and saved["rng"]["noise"].device.type == "cpu"
    noise_gen = torch.Generator()
    set_rng_state({k: v for k, v in saved["rng"].items()}, noise_gen)
    assert torch.equal(noise_gen.get_state(), saved["rng"]["noise"])
