"""benchmarks/run_trajectories.py: runs side by side from their metrics.jsonl, and the first evaluation that meets
each target of the runs' kind of data (i-CLEVR scenes or attribute groups)."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "run_trajectories.py"


def _card(frechet: float, recall: float, diversity: float = 1.0) -> dict:
    return {"diversity": diversity, "layout_diversity": 0.9, "frechet": frechet, "frechet_floor": 20.0,
            "precision": 0.85, "recall": recall}


def _write_run(folder: Path, records: list[dict]) -> Path:
    folder.mkdir()
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return folder


def _scene(step: int, acc: float, frechet: float, recall: float) -> dict:
    return {"step": step, "epoch": step / 562.8, "minutes": step / 300, "test": {"mean": acc},
            "new_test": {"mean": acc - 0.01}, "scorecard": _card(frechet, recall)}


def _run(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True, timeout=60)


def test_each_target_names_the_first_evaluation_that_meets_it(tmp_path):
    fast = _write_run(tmp_path / "fast", [_scene(1000, 0.80, 60.0, 0.6), _scene(2000, 0.97, 28.0, 0.82),
                                          _scene(3000, 0.96, 40.0, 0.85)])
    slow = _write_run(tmp_path / "slow", [_scene(1000, 0.70, 80.0, 0.5), _scene(2000, 0.90, 50.0, 0.81)])
    result = _run(fast, slow, "--every", "1000")
    assert result.returncode == 0, result.stderr
    lines = {line.split(" | ")[0].strip("| "): line for line in result.stdout.splitlines()}
    assert "| 2,000 (7 min) | not yet (last 2,000) |" in lines["test.json accuracy >= 0.95"]
    assert "| 2,000 (7 min) | 2,000 (7 min) |" in lines["recall >= 0.8"]
    assert "| 2,000 (7 min) | not yet (last 2,000) |" in lines["**every target**"]  # 28 / 20 = 1.4x the floor
    assert "| fast | 3,000 | 5.3 | 10.0 | 0.960 / 0.950 |" in result.stdout


def test_a_faces_run_is_read_against_the_faces_targets_per_group(tmp_path):
    record = {"step": 5000, "epoch": 14.0, "minutes": 30.0, "scorecard": _card(28.0, 0.85, diversity=0.85),
              "combinations": {"mean": 0.87, "per_group": {"hair": 0.93, "eyes": 0.81}}}
    result = _run(_write_run(tmp_path / "faces", [record]))
    assert result.returncode == 0, result.stderr
    assert "| hair / eyes |" in result.stdout and "| 0.930 / 0.810 |" in result.stdout
    assert "| hair accuracy >= 0.9 | 5,000 (30 min) |" in result.stdout
    assert "| diversity >= 0.9 | not yet (last 5,000) |" in result.stdout  # 0.85: the faces' bar is 0.9


def test_a_folder_without_metrics_or_of_another_kind_is_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    result = _run(tmp_path / "empty")
    assert result.returncode != 0 and result.stderr.strip() == f"error: {tmp_path / 'empty'} has no metrics.jsonl"
    scene = _write_run(tmp_path / "scene", [_scene(1000, 0.8, 60.0, 0.6)])
    faces = _write_run(tmp_path / "faces", [{**_scene(1000, 0.8, 60.0, 0.6), "combinations": {"mean": 0.8}}])
    result = _run(scene, faces)
    assert result.returncode != 0 and "different kinds of data" in result.stderr and "Traceback" not in result.stderr


def test_hold_counts_a_target_from_the_first_of_k_evaluations_in_a_row_that_meet_it(tmp_path):
    lucky = [_scene(1000, 0.96, 29.0, 0.81), _scene(2000, 0.96, 31.0, 0.81),  # one card under 1.5x, then above
             _scene(3000, 0.96, 29.5, 0.81), _scene(4000, 0.96, 29.0, 0.81), _scene(5000, 0.96, 28.0, 0.81)]
    run = _write_run(tmp_path / "lucky", lucky)
    once, held = _run(run), _run(run, "--hold", "3")
    assert once.returncode == held.returncode == 0, once.stderr + held.stderr
    assert "| Fréchet distance <= 1.5x the floor | 1,000 (3 min) |" in once.stdout
    assert "| Fréchet distance <= 1.5x the floor | 3,000 (10 min) |" in held.stdout
    assert "| recall >= 0.8 | 1,000 (3 min) |" in held.stdout  # met at every evaluation
    assert "| Fréchet distance <= 1.5x the floor | not yet (last 5,000) |" in _run(run, "--hold", "4").stdout
    bad = _run(run, "--hold", "0")
    assert bad.returncode != 0 and bad.stderr.strip() == "error: --hold must be at least 1"
