"""`generate --engine ray`: Ray Data writes the local engine's files, to the last bit; bad input fails before Ray."""

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("ray", reason="needs the [scale] extra (ray[data]): pip install -e '.[scale]'")

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow  # each run starts a local Ray (num_cpus = this machine's, ~10 s)


def _generate(out: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "cli.py"), "generate", "red cube", "blue cylinder", "--precision",
                           "fp32", "--device", "cpu", "--out", str(out), *args], capture_output=True, text=True, timeout=600)


def test_ray_writes_the_same_pngs_as_the_local_engine(tmp_path):
    for engine in ("local", "ray"):  # 1100 images in batches of 256: five tasks in four blocks, one holding both a
        # task with grid.png's images and one past them (one column type for both)
        result = _generate(tmp_path / engine, "-n", "1100", "--batch-size", "256", "--engine", engine)
        assert result.returncode == 0, result.stderr
    names = sorted(p.name for p in (tmp_path / "local").glob("*.png"))
    assert len(names) == 1101 and names == sorted(p.name for p in (tmp_path / "ray").glob("*.png"))  # with grid.png
    for name in names:
        local, ray = (np.asarray(Image.open(tmp_path / e / name)) for e in ("local", "ray"))
        assert np.array_equal(local, ray), name


def test_ray_writes_the_same_npz_shards(tmp_path):
    for engine in ("local", "ray"):
        assert _generate(tmp_path / engine, "-n", "40", "--format", "npz", "--engine", engine).returncode == 0
    shards = sorted(p.name for p in (tmp_path / "local").glob("*.npz"))
    assert shards and shards == sorted(p.name for p in (tmp_path / "ray").glob("*.npz"))
    for name in shards:
        local, ray = (np.load(tmp_path / e / name) for e in ("local", "ray"))
        for key in ("images", "conditions", "condition_index", "sample_index", "noise_row", "seed"):
            assert np.array_equal(local[key], ray[key]), key


def test_bad_input_fails_in_one_line_before_ray_starts(tmp_path):
    start = time.time()
    result = subprocess.run([sys.executable, str(ROOT / "cli.py"), "generate", "red cubee", "--engine", "ray",
                             "--out", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and result.stderr.count("\n") == 1 and "red cubee" in result.stderr
    assert time.time() - start < 8 and not list(tmp_path.iterdir())  # no Ray started, nothing written
