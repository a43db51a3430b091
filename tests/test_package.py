"""The wheel: built from this checkout it fits a package index and carries the ONNX models and their cards;
installed into a temporary target it generates from another folder, and into a fresh virtualenv it installs
without torch and generates and serves."""

import json
import os
import socket
import time
import urllib.request
import venv
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


WHEEL_LIMIT = 100 * 1024 * 1024  # a package index's default per-file limit
TRAIN_LINE = 'needs the training extra (torch is not installed): pip install "cgan-export[train]"'


def test_the_wheel_fits_the_index_and_holds_one_package_with_the_onnx_models_and_their_cards(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert wheel.stat().st_size <= WHEEL_LIMIT
    assert {n.split("/")[0] for n in names} == {"cgan_export", wheel.name.split("-py3")[0] + ".dist-info"}
    for path in ("cgan_export/app/cli.py", "cgan_export/training/loop.py", "cgan_export/web/index.html"):
        assert path in names, path
    for folder in ("", "anime-faces/", "infogan-faces/"):
        for name in ("generator.onnx", "manifest.json", "README.md"):
            assert f"cgan_export/exported/{folder}{name}" in names, folder + name
    assert not [n for n in names if n.endswith(".pt")]  # checkpoints, TorchScript, evaluators stay in the checkout


def test_an_installed_wheel_generates_from_another_folder(wheel, tmp_path, data_root):
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
    for left_out in (["evaluate", "--seeds", "1", "--data", str(data_root)], ["generate", "red cube", "--backend", "torch"]):  # not in the wheel
        result = subprocess.run([sys.executable, "-m", "cgan_export", *left_out], cwd=elsewhere, env=env,
                                capture_output=True, text=True)
        assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1, result.stderr[-2000:]
        assert "carries the ONNX models only" in result.stderr, result.stderr


@pytest.mark.slow
def test_the_wheel_installs_without_torch_and_generates_and_serves_from_another_folder(wheel, tmp_path):
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python, cli = env_dir / "bin" / "python", env_dir / "bin" / "cgan-export"
    clean = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # nothing of this checkout's may leak in
    install = subprocess.run([str(python), "-m", "pip", "install", "-q", str(wheel)], capture_output=True, text=True,
                             timeout=1200, env=clean)
    assert install.returncode == 0, install.stderr[-3000:]
    assert subprocess.run([str(python), "-c", "import torch"], capture_output=True, env=clean).returncode != 0  # no torch
    work = tmp_path / "elsewhere"
    work.mkdir()
    result = subprocess.run([str(cli), "generate", "red cube", "-n", "2", "--out", "out", "--device", "cpu"], cwd=work,
                            capture_output=True, text=True, timeout=300, env=clean)
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(list((work / "out").glob("red-cube_*.png"))) == 2
    result = subprocess.run([str(cli), "train"], cwd=work, capture_output=True, text=True, timeout=300, env=clean)
    assert result.returncode == 1 and result.stderr.strip() == f"error: train {TRAIN_LINE}", result.stderr[-2000:]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([str(cli), "serve", "--port", str(port), "--device", "cpu"], cwd=work, env=clean,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        health = None
        for _ in range(150):
            try:
                health = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1).read())
                break
            except OSError:
                time.sleep(0.2)
        assert health is not None and health["status"] == "ok"
    finally:
        server.terminate()
        server.wait(timeout=30)
