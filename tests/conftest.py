"""Shared fixtures: a tiny i-CLEVR-layout folder, small generators, and a random evaluator."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cgan_export.checkpoint import save_generator
from cgan_export.evaluator import build_classifier, evaluator_checkpoint
from cgan_export.networks import GENERATORS, build_generator
from cgan_export.vocabulary import Vocabulary

COLORS = ["gray", "red", "blue", "green", "brown", "purple", "cyan", "yellow"]
SHAPES = ["cube", "sphere", "cylinder"]
OBJECTS = {f"{c} {s}": i * 8 + j for i, s in enumerate(SHAPES) for j, c in enumerate(COLORS)}
REAL_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "iclevr"
SMALL_CONFIGS = {
    "cbn": {"z_dim": 16, "ngf": 8, "embed_dim": 16},
    "dcgan": {"z_dim": 16, "ngf": 8},
    "acgan": {"z_dim": 16},
    "sagan": {"z_dim": 16, "ngf": 8, "condition_dim": 16},
}


ROOT = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def live_server(command: list[str], start_s: float = 30.0, **popen):
    """Start ``python COMMAND`` from the checkout (``{port}`` in it becomes a free port), wait up to ``start_s``
    until its /health answers; yield ``(process, port)``; stop it after."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    popen = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, **popen}
    proc = subprocess.Popen([sys.executable, *(a.format(port=port) for a in command)], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, **popen)
    try:
        for _ in range(int(start_s / 0.2)):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=30)


@pytest.fixture(scope="session")
def vocabulary() -> Vocabulary:
    return Vocabulary.from_mapping(OBJECTS)


def write_fixture(root: Path, scenes: int = 8, size: int = 64, seed: int = 0, names: list[str] | None = None) -> Path:
    """An i-CLEVR-layout folder: ``scenes`` scenes x 3 steps of coloured squares, plus condition files
    (objects drawn from ``names``, default all: a few names make object sets repeat)."""
    rng = np.random.default_rng(seed)
    names = names or list(OBJECTS)
    (root / "images").mkdir(parents=True)
    annotations = {}
    for scene in range(scenes):
        objects = list(rng.choice(names, size=3, replace=False))
        canvas = np.full((size, size, 3), 128, np.uint8)
        for step in range(3):
            x, y = rng.integers(0, size - size // 4, size=2)
            canvas[y:y + size // 4, x:x + size // 4] = rng.integers(0, 256, size=3)
            file_name = f"CLEVR_train_{scene:06d}_{step}.png"
            Image.fromarray(canvas).save(root / "images" / file_name)
            annotations[file_name] = objects[:step + 1]
    (root / "objects.json").write_text(json.dumps(OBJECTS))
    (root / "train.json").write_text(json.dumps(annotations))
    conditions = [["red cube"], ["blue sphere", "green cylinder"], ["gray cube", "red sphere", "yellow cylinder"]]
    (root / "test.json").write_text(json.dumps(conditions))
    (root / "new_test.json").write_text(json.dumps(conditions[::-1]))
    return root


@pytest.fixture()
def data_root(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv("CGAN_EXPORT_CACHE", str(tmp_path / "cache"))
    return write_fixture(tmp_path / "iclevr")


@pytest.fixture(scope="session")
def random_evaluator(tmp_path_factory, vocabulary) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("evaluator") / "evaluator.pt"
    torch.save(evaluator_checkpoint(build_classifier(), vocabulary, 64, {"holdout_lab_accuracy": 0.0}, {}), path)
    return path


def small_generator(architecture: str, seed: int = 0) -> torch.nn.Module:
    """A randomly initialised small generator with non-trivial BatchNorm statistics."""
    torch.manual_seed(seed)
    net = build_generator(architecture, SMALL_CONFIGS[architecture])
    with torch.no_grad():  # a few train-mode passes give the BatchNorms real running statistics
        net.train()
        for _ in range(3):
            cond = (torch.rand(8, 24) < 0.1).float()
            net(torch.randn(8, net.config.z_dim), cond)
        for module in net.modules():
            if hasattr(module, "gain") and isinstance(module.gain, torch.nn.Linear):
                torch.nn.init.normal_(module.gain.weight, 0, 0.1)
                torch.nn.init.normal_(module.bias.weight, 0, 0.1)
    return net.eval()


@pytest.fixture(scope="session", params=sorted(GENERATORS))
def generator_checkpoint(request, tmp_path_factory, vocabulary) -> Path:
    path = tmp_path_factory.mktemp(f"gen-{request.param}") / "generator.pt"
    save_generator(path, small_generator(request.param), vocabulary, {"score": 0.5}, {"preset": "test"})
    return path


@pytest.fixture(scope="session")
def exported_best(tmp_path_factory, vocabulary) -> Path:
    """A small ``best`` generator exported to every CPU format."""
    from cgan_export.export import export

    folder = tmp_path_factory.mktemp("exported-best")
    save_generator(folder / "generator.pt", small_generator("cbn"), vocabulary, {"score": 0.5})
    export(folder / "generator.pt", ["onnx", "torchscript"], folder, report=lambda _: None)
    return folder


def pytest_terminal_summary(terminalreporter):
    """Name every GPU test that was skipped, so a CPU-only run says exactly what it did not check."""
    skipped = [r.nodeid for r in terminalreporter.stats.get("skipped", []) if "gpu" in r.keywords]
    if skipped:
        terminalreporter.section("GPU tests skipped (no usable CUDA GPU)")
        for nodeid in skipped:
            terminalreporter.line(nodeid)
