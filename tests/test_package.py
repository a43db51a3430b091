"""The wheel: built from this checkout, installed into a temporary target, it generates from another folder."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out), str(ROOT)],
                   check=True, capture_output=True, cwd=out)
    return next(out.glob("cgan_export-*.whl"))


def test_the_wheel_holds_one_top_level_package_and_the_shipped_model(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"cgan_export", wheel.name.split("-py3")[0] + ".dist-info"}
    for path in ("cgan_export/exported/generator.onnx", "cgan_export/exported/manifest.json",
                 "cgan_export/app/cli.py", "cgan_export/training/loop.py", "cgan_export/web/index.html",
                 "cgan_export/exported/anime-faces/generator.onnx", "cgan_export/exported/anime-faces/evaluator.pt",
                 "cgan_export/exported/infogan-faces/generator.onnx"):
        assert path in names, path


def test_an_installed_wheel_generates_from_another_folder(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, capture_output=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target)}
    where = subprocess.run([sys.executable, "-c", "import cgan_export.paths as p; print(p.EXPORTED_DIR)"],
                           cwd=elsewhere, env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert Path(where) == target / "cgan_export" / "exported"  # the installed copy, not this checkout
    result = subprocess.run([sys.executable, "-m", "cgan_export", "generate", "red cube", "blue cylinder", "-n", "2",
                             "--out", "out"], cwd=elsewhere, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert sorted(p.name for p in (elsewhere / "out").iterdir()) == [
        "grid.png", "red-cube_blue-cylinder_000.png", "red-cube_blue-cylinder_001.png"]
    bad = subprocess.run([sys.executable, "-m", "cgan_export", "generate", "pink cube"], cwd=elsewhere, env=env,
                         capture_output=True, text=True)
    assert bad.returncode == 1 and bad.stderr.startswith("error:") and "Traceback" not in bad.stderr
