"""InfoGAN codes: the code vocabulary, the mutual-information term, and an InfoGAN run through export and
generate with codes."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from cgan_export.codes import CodeVocabulary
from cgan_export.condition_kinds import vocabulary_from_fields
from cgan_export.errors import VocabularyError
from training.conditions import sample_codes
from training.losses import info_loss

from .conftest import write_fixture


@pytest.fixture(scope="module")
def codes() -> CodeVocabulary:
    return CodeVocabulary.make(4, 2)


def test_codes_encode_a_one_hot_category_then_continuous_values(codes):
    assert codes.kind == "codes" and codes.names == ("cat=0", "cat=1", "cat=2", "cat=3", "c1", "c2")
    np.testing.assert_array_equal(codes.encode(["cat=2", "c2=-1.5"]), [0, 0, 1, 0, 0, -1.5])
    assert codes.canonical(["C1 = 0.25", "cat=3"]) == ["cat=3", "c1=0.25", "c2=0"]  # a left-out code is 0
    assert codes.decode(codes.encode(["cat=1", "c1=2"])) == ["cat=1", "c1=2", "c2=0"]


@pytest.mark.parametrize("items, message", [
    (["c1=1"], "give the categorical code, e.g. cat=0"),
    (["cat=4"], "cat takes a whole number 0-3"),
    (["cat=1.5"], "cat takes a whole number 0-3"),
    (["cat=1", "c3=0"], "unknown code 'c3=0'"),
    (["cat=1", "c1=abc"], "c1 takes a number"),
    (["cat=1", "c1=nan"], "finite number"),
    (["cat=1", "cat=2"], "code cat is given twice"),
    (["red cube"], "unknown code 'red cube'"),
])
def test_bad_codes_are_one_line_errors(codes, items, message):
    with pytest.raises(VocabularyError, match=message):
        codes.encode(items)


def test_codes_round_trip_through_stored_fields(codes):
    fields = json.loads(json.dumps(codes.to_fields()))
    assert fields["codes"] == {"categorical": {"cat": 4}, "continuous": ["c1", "c2"], "continuous_prior": [-1.0, 1.0]}
    assert vocabulary_from_fields(fields) == codes


def test_training_codes_follow_the_prior():
    codes = sample_codes(4000, 4, 2, torch.Generator().manual_seed(0))
    assert codes.shape == (4000, 6) and torch.all(codes[:, :4].sum(1) == 1)
    assert codes[:, :4].mean(0).sub(0.25).abs().max() < 0.03  # uniform categories, 4000 draws
    assert codes[:, 4:].min() >= -1 and codes[:, 4:].max() <= 1 and codes[:, 4:].mean().abs() < 0.05


def test_the_information_term_is_the_categorical_ce_plus_weighted_squared_error():
    torch.manual_seed(0)
    q, codes = torch.randn(8, 6), sample_codes(8, 4, 2, torch.Generator().manual_seed(1))
    expected = F.cross_entropy(q[:, :4], codes[:, :4].argmax(1)) + 0.5 * ((q[:, 4:] - codes[:, 4:]) ** 2).sum(1).mean()
    assert info_loss(q, codes, 4, 0.5).item() == pytest.approx(expected.item(), abs=1e-6)
    perfect = torch.cat([codes[:, :4] * 50, codes[:, 4:]], 1)  # confident right category, exact values
    assert info_loss(perfect, codes, 4, 1.0).item() < 1e-6


def test_an_infogan_run_exports_a_model_that_generates_from_codes(data_root, random_evaluator, tmp_path):
    from cli import app

    runner = CliRunner()
    run = tmp_path / "run"
    result = runner.invoke(app, ["train", "--data", str(data_root), "--preset", "infogan", "--out", str(run), "--epochs", "1",
                                 "--batch-size", "8", "--eval-every", "3", "--evaluator", str(random_evaluator), "--device", "cpu",
                                 "--set", 'generator_config={"z_dim": 16, "ngf": 8, "embed_dim": 16}',
                                 "--set", 'discriminator_config={"ndf": 8}'])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert {"categorical_accuracy", "c1_rmse", "c2_correlation"} <= set(records[-1]["info"])
    assert "d_info" in records[-1]["losses"] and records[-1]["selection_rule"].startswith("categorical code recovery")
    exported = tmp_path / "exported"
    assert runner.invoke(app, ["export", "--checkpoint", str(run / "best.pt"), "--format", "onnx", "--out", str(exported)]).exit_code == 0
    meta = json.loads((exported / "manifest.json").read_text())["metadata"]
    assert meta["condition_kind"] == "codes" and meta["inputs"]["condition"] == ["N", 12]
    model = str(exported / "generator.onnx")
    result = runner.invoke(app, ["generate", "cat=3", "c1=-1.5", "--model", model, "-n", "2", "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    from cgan_export import Generator

    g = Generator.load(model)
    a, b = g.generate(["cat=3", "c1=-2"], n=2, seed=0), g.generate(["cat=3", "c1=2"], n=2, seed=0)
    assert a.shape == (2, 64, 64, 3) and np.abs(a.astype(int) - b).max() > 0  # the code reaches the image
    result = runner.invoke(app, ["generate", "cat=12", "--model", model, "--out", str(tmp_path / "bad")])
    assert result.exit_code == 1 and "cat takes a whole number 0-9" in result.output
    sets = write_fixture(tmp_path / "sets", scenes=40, names=["red cube", "blue sphere", "gray cylinder"])  # sets repeat
    result = runner.invoke(app, ["evaluate", "--model", model, "--data", str(sets), "--evaluator", str(random_evaluator),
                                 "--seeds", "2"])
    assert result.exit_code == 0, result.output  # InfoGAN's scorecard: fidelity and the noise spread at fixed codes
    rows = {line.split(" | ")[0].strip("| "): line for line in result.output.splitlines() if line.startswith("| ")}
    scored = rows[f"{model}, seeds 0-1"]
    assert "noise spread" in rows["model"] and "| 1.000 |" in rows["real data"] and " ± " in scored
    spread = float(scored.split(" | ")[4].split(" ± ")[0])
    assert 0.05 < spread < 2.0  # a random generator's noise moves its images
