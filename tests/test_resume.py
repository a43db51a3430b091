"""Resuming a run: what must match, what may change (scoring seeds, evaluator) and re-scores best.pt, a run killed
mid-way, a finished run scored again, and a run branched from another's snapshot."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from cgan_export.checkpoint import load_generator
from cgan_export.errors import CganError, ModelFileError
from cgan_export.evaluator import build_classifier, evaluator_checkpoint
from training.loop import RunOptions, train
from training.presets import get_preset

from .test_training import TINY

ROOT = Path(__file__).resolve().parent.parent


def test_resuming_a_finished_run_scores_its_end_again_without_training(data_root, random_evaluator, tmp_path):
    config = get_preset("best", batch_size=4, eval_every=3, eval_seeds=1, epochs=4 / 6, **TINY["best"])
    options = RunOptions(device="cpu", out=tmp_path / "run", data=data_root, evaluator=random_evaluator, show_progress=False)
    train(config, options)
    (tmp_path / "run" / "last-generator.pt").unlink()  # as in a run from before runs kept it
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the curves of a record without losses draw without a matplotlib warning
        result = train(config, replace(options, resume=True))
    assert result["step"] == 4
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [3, 4, 4] and records[-1]["losses"] == {}
    assert load_generator(tmp_path / "run" / "last-generator.pt")[1]["training"]["step"] == 4


def test_resume_refuses_a_different_config(data_root, random_evaluator, tmp_path):
    options = RunOptions(device="cpu", out=tmp_path / "run", data=data_root, evaluator=random_evaluator, show_progress=False)
    train(get_preset("best", batch_size=4, eval_every=2, eval_seeds=1, epochs=2 / 6, **TINY["best"]), options)
    with pytest.raises(CganError, match="lr_g"):
        train(get_preset("best", batch_size=4, eval_every=2, eval_seeds=1, epochs=4 / 6, lr_g=1e-3, **TINY["best"]),
              replace(options, resume=True))
    with pytest.raises(CganError, match="already holds a run"):
        train(get_preset("best", batch_size=4, eval_every=2, eval_seeds=1, epochs=2 / 6, **TINY["best"]), options)


def test_resume_may_change_how_the_run_is_scored_and_rescores_its_best_checkpoint(data_root, random_evaluator, tmp_path,
                                                                                   capsys):
    options = RunOptions(device="cpu", out=tmp_path / "run", data=data_root, evaluator=random_evaluator, show_progress=False)
    train(get_preset("best", batch_size=4, eval_every=2, eval_seeds=1, epochs=2 / 6, **TINY["best"]), options)
    result = train(get_preset("best", batch_size=4, eval_every=1, eval_seeds=2, epochs=3 / 6, **TINY["best"]),
                   replace(options, resume=True))  # the budget may change too
    assert result["step"] == 3
    record = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()][-1]
    assert record["test"]["seeds"] == 2
    assert "the number of scoring seeds changed" in capsys.readouterr().err


def test_resume_under_another_evaluator_rescores_the_best_checkpoint(data_root, random_evaluator, vocabulary, tmp_path,
                                                                      capsys):
    config = get_preset("best", batch_size=4, eval_every=2, eval_seeds=1, epochs=2 / 6, **TINY["best"])
    options = RunOptions(device="cpu", out=tmp_path / "run", data=data_root, evaluator=random_evaluator, show_progress=False)
    train(config, options)
    torch.manual_seed(1)
    other = tmp_path / "other-evaluator.pt"
    torch.save(evaluator_checkpoint(build_classifier(), vocabulary, 64, {"holdout_lab_accuracy": 0.0}, {}), other)
    capsys.readouterr()
    train(replace(config, epochs=4 / 6), replace(options, evaluator=other, resume=True))
    assert "the evaluator changed" in capsys.readouterr().err
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=True)["state"]
    assert state["evaluator"] == hashlib.sha256(other.read_bytes()).hexdigest()[:16] != \
        hashlib.sha256(random_evaluator.read_bytes()).hexdigest()[:16]


def test_resuming_a_guided_run_replays_the_uninterrupted_run(data_root, random_evaluator, tmp_path):
    # opening the guide builds a network (torch's RNG): the saved RNG states must be restored after it; no
    # anneal, whose rates follow the budget the first part is stopped by
    config = get_preset("best", batch_size=4, eval_every=2, eval_seeds=1, epochs=5 / 6, anneal=0, **TINY["best"])
    straight = RunOptions(device="cpu", out=tmp_path / "straight", data=data_root, evaluator=random_evaluator,
                          show_progress=False)
    train(config, straight)
    parts = replace(straight, out=tmp_path / "parts")
    train(replace(config, epochs=2 / 6), parts)
    train(config, replace(parts, resume=True))
    a, b = _last_weights(tmp_path / "straight"), _last_weights(tmp_path / "parts")
    for key, value in a.items():
        assert torch.equal(value, b[key]) if key != "step" else value == b[key] == 5, key


def test_a_branch_from_a_snapshot_replays_the_run_it_came_from(data_root, random_evaluator, tmp_path):
    config = get_preset("best", batch_size=4, eval_every=2, eval_seeds=1, epochs=5 / 6, **TINY["best"])
    straight = RunOptions(device="cpu", out=tmp_path / "straight", data=data_root, evaluator=random_evaluator,
                          snapshot_every=2, show_progress=False)
    train(config, straight)
    snapshots = sorted(p.name for p in (tmp_path / "straight" / "snapshots").iterdir())
    assert snapshots == ["step0000002.pt", "step0000004.pt"]
    branch = replace(straight, out=tmp_path / "branch", snapshot_every=0,
                     branch_from=tmp_path / "straight" / "snapshots" / "step0000002.pt")
    assert train(config, branch)["step"] == 5
    a, b = _last_weights(tmp_path / "straight"), _last_weights(tmp_path / "branch")
    for key, value in a.items():  # the same steps 3-5 from the same state: the same weights, bit for bit
        assert key == "step" or torch.equal(value, b[key]), key
    steps = [json.loads(line)["step"] for line in (tmp_path / "branch" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [2, 4, 5]  # the source's records up to the snapshot, then its own
    record = load_generator(tmp_path / "branch" / "best.pt")[1]["training"]
    assert record["branched_from"]["step"] == 2 and record["step"] in (4, 5)  # best.pt is picked among its own steps
    assert not (tmp_path / "branch" / "snapshots").exists()


def test_a_branch_refuses_a_used_folder_a_foreign_file_and_another_config(data_root, random_evaluator, tmp_path):
    config = get_preset("best", batch_size=4, eval_every=2, eval_seeds=1, guide_weight=0.0, epochs=2 / 6, **TINY["best"])
    options = RunOptions(device="cpu", out=tmp_path / "run", data=data_root, evaluator=random_evaluator,
                         snapshot_every=2, show_progress=False)
    train(config, options)
    snapshot = tmp_path / "run" / "snapshots" / "step0000002.pt"
    with pytest.raises(CganError, match="already holds a run"):
        train(config, replace(options, branch_from=snapshot))
    with pytest.raises(ModelFileError, match="not a run checkpoint"):
        train(config, replace(options, out=tmp_path / "b1", branch_from=tmp_path / "run" / "best.pt"))
    with pytest.raises(CganError, match="--branch-from: .* another config .*lr_g"):
        train(replace(config, lr_g=1e-3), replace(options, out=tmp_path / "b2", branch_from=snapshot))
    assert not (tmp_path / "b1").exists() and not (tmp_path / "b2").exists()  # refused before the folder was made


def _train_cmd(out: Path, data_root: Path, evaluator: Path, epochs: float, resume: bool = False) -> list[str]:
    cmd = [sys.executable, str(ROOT / "cli.py"), "train", "--preset", "cdcgan", "--data", str(data_root), "--out", str(out),
           "--batch-size", "4", "--eval-every", "2", "--epochs", str(epochs), "--evaluator", str(evaluator),
           "--threads", "1"]
    return cmd + (["--resume"] if resume else [])


def _last_weights(out: Path) -> dict:
    state = torch.load(out / "last.pt", weights_only=True)
    return {"step": state["state"]["step"], **{f"g.{k}": v for k, v in state["models"]["g"].items()},
            **{f"d.{k}": v for k, v in state["models"]["d"].items()}}


@pytest.mark.slow
def test_resume_after_sigkill_reproduces_the_uninterrupted_run(data_root, random_evaluator, tmp_path):
    env = {**os.environ, "CGAN_EXPORT_CACHE": str(tmp_path / "cache")}
    subprocess.run(_train_cmd(tmp_path / "straight", data_root, random_evaluator, 2), check=True, env=env, capture_output=True)
    killed = tmp_path / "killed"
    proc = subprocess.Popen(_train_cmd(killed, data_root, random_evaluator, 100), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:
        lines = (killed / "metrics.jsonl").read_text().splitlines() if (killed / "metrics.jsonl").exists() else []
        if len(lines) >= 2:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 2 <= _last_weights(killed)["step"] < 12
    subprocess.run(_train_cmd(killed, data_root, random_evaluator, 2, resume=True), check=True, env=env, capture_output=True)
    straight, resumed = _last_weights(tmp_path / "straight"), _last_weights(killed)
    assert straight["step"] == resumed["step"] == 12
    for key, value in straight.items():
        if key != "step":
            assert torch.equal(value, resumed[key]), key
