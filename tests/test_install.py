"""The light install: generating and serving need no torch, and a command that needs an extra says which in one
line (the wheel itself: test_package.py)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# A process in which torch (and what comes with the training extra) cannot be imported, as in a base install.
WITHOUT_TRAIN = ("import sys\nfor m in ('torch', 'torchvision', 'onnx', 'onnxscript', 'matplotlib'): sys.modules[m] = None\n"
                 "sys.argv[0] = 'cli.py'\nfrom cli import app\napp()")
TRAIN_LINE = 'needs the training extra (torch is not installed): pip install "cgan-export[train]"'


def _without_train(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", WITHOUT_TRAIN, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})


@pytest.mark.parametrize("command", [["train", "--epochs", "1"], ["export", "--checkpoint", "exported/generator.pt"],
                                     ["evaluate"], ["bench"], ["evaluator", "train"], ["evaluator", "score"],
                                     ["guide", "train"], ["generate", "red cube", "--backend", "torch"],
                                     ["generate", "red cube", "--backend", "torchscript"]],
                         ids=lambda c: " ".join(c[:2]))
def test_a_command_that_needs_the_training_extra_says_so_in_one_line(command, tmp_path):
    result = _without_train(*command, cwd=tmp_path)
    name = " ".join(command[:2]) if command[0] in ("evaluator", "guide") else command[0]
    assert result.returncode == 1, result.stderr[-2000:]
    assert result.stderr.strip().splitlines() == [f"error: {name} {TRAIN_LINE}"], result.stderr[-2000:]
    assert not list(tmp_path.iterdir())  # nothing written


def test_generating_and_the_server_app_never_import_torch(tmp_path):
    out = tmp_path / "out"
    result = _without_train("generate", "red cube", "blue cylinder", "-n", "2", "--out", str(out), "--device", "cpu")
    assert result.returncode == 0, result.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == ["grid.png", "red-cube_blue-cylinder_000.png",
                                                     "red-cube_blue-cylinder_001.png"]
    code = ("import sys\nsys.modules['torch'] = None\nfrom cgan_export import Generator\nfrom cgan_export.server import "
            "create_app\ncreate_app(Generator.load(device='cpu'))\nprint('ok')")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.stdout.strip() == "ok", result.stderr[-2000:]
