"""Attribute-group conditions (anime faces' layout): the vocabulary kind, the group rule of the lab accuracy,
the per-group losses, and a groups folder through train, export, evaluate and generate."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from typer.testing import CliRunner

from cgan_export.errors import VocabularyError
from cgan_export.evaluator import group_accuracy, lab_accuracy, per_object_hits
from cgan_export.vocabulary import Vocabulary
from training.data import evaluation_conditions, load_dataset, load_vocabulary, scene_split
from training.losses import aux_group_ce

HAIR = ["blue hair", "red hair", "green hair"]
EYES = ["brown eyes", "yellow eyes"]
RGB = {"blue": (40, 60, 220), "red": (220, 40, 40), "green": (40, 200, 60), "brown": (120, 70, 20), "yellow": (230, 220, 30)}


def write_groups_fixture(root: Path, images: int = 60, seed: int = 0) -> Path:
    """A faces-layout folder: ``ID.jpg`` images whose top half shows the hair colour and a patch the eye colour."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    annotations = {}
    for i in range(images):
        hair, eyes = HAIR[i % 3], EYES[(i // 3) % 2]
        canvas = np.full((96, 96, 3), 230, np.uint8)
        canvas[:48] = RGB[hair.split()[0]]
        canvas[56:72, 24:72] = RGB[eyes.split()[0]]
        canvas = np.clip(canvas.astype(int) + rng.integers(-10, 10, canvas.shape), 0, 255).astype(np.uint8)
        Image.fromarray(canvas).save(root / "images" / f"{1000 + i}.jpg")
        annotations[f"{1000 + i}.jpg"] = [hair, eyes]
    (root / "objects.json").write_text(json.dumps({n: i for i, n in enumerate(HAIR + EYES)}))
    (root / "groups.json").write_text(json.dumps({"hair": HAIR, "eyes": EYES}))
    (root / "train.json").write_text(json.dumps(annotations))
    return root


@pytest.fixture()
def groups_root(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("CGAN_EXPORT_CACHE", str(tmp_path / "cache"))
    return write_groups_fixture(tmp_path / "faces")


@pytest.fixture(scope="module")
def groups() -> Vocabulary:
    return Vocabulary.from_mapping({n: i for i, n in enumerate(HAIR + EYES)}).with_groups({"hair": HAIR, "eyes": EYES})


def test_a_groups_condition_takes_exactly_one_value_of_each_group(groups):
    assert groups.kind == "groups" and groups.max_objects == 2
    assert groups.parse(["Yellow Eyes", "red hair"]) == [1, 4]
    with pytest.raises(VocabularyError, match="'blue hair' and 'red hair' are both hair values"):
        groups.parse(["blue hair", "red hair", "brown eyes"])
    with pytest.raises(VocabularyError, match=r"no eyes value: add one of 2, e.g. 'brown eyes'"):
        groups.parse(["blue hair"])
    with pytest.raises(VocabularyError, match="did you mean 'red hair'"):
        groups.parse(["red hairs", "brown eyes"])


def test_the_kind_and_groups_round_trip_through_stored_fields(groups):
    fields = groups.to_fields()
    assert fields["condition_kind"] == "groups" and fields["groups"] == {"hair": HAIR, "eyes": EYES}
    assert Vocabulary.from_fields(json.loads(json.dumps(fields))) == groups
    plain = Vocabulary.from_fields({"vocabulary": {"red cube": 0, "blue cube": 1}})  # files from before kinds
    assert plain.kind == "objects" and plain.max_objects == 3


def test_every_combination_is_one_value_per_group(groups):
    combos = groups.combinations()
    assert len(combos) == 6 and ["green hair", "yellow eyes"] in combos
    assert all(len(groups.parse(c)) == 2 for c in combos)


def test_group_accuracy_takes_the_top_value_within_each_group(groups):
    conditions = torch.from_numpy(groups.encode_batch([["blue hair", "brown eyes"], ["red hair", "yellow eyes"]]))
    # row 0: hair right (blue), eyes wrong; the high red-hair score does not count against eyes
    # row 1: hair wrong (green beats red), eyes right
    scores = torch.tensor([[0.9, 0.8, 0.1, 0.2, 0.3], [0.1, 0.5, 0.6, 0.1, 0.2]])
    hits, counts = per_object_hits(scores, conditions, groups.groups)
    assert hits.tolist() == [1, 0, 0, 0, 1] and counts.tolist() == [1, 1, 0, 1, 1]
    assert lab_accuracy(scores, conditions, groups.groups) == pytest.approx(0.5)
    assert group_accuracy(hits, counts, groups) == {"hair": 0.5, "eyes": 0.5}


def test_real_accuracy_weighs_each_value_as_often_as_the_condition_set_asks_for_it(groups):
    from training.evaluator_training import real_accuracy_for

    # held out: blue hair 90 faces (81 right), red 10 (1 right), no green; brown eyes 50 (45), yellow 50 (10)
    real = {"mean": 0.685, "images": 100, "hits": [81, 1, 0, 45, 10], "counts": [90, 10, 0, 50, 50]}
    combinations = groups.encode_batch(groups.combinations())  # every pair once: each hair twice, each eye 3 times
    result = real_accuracy_for(real, combinations, groups)
    assert result["per_group"] == {"hair": pytest.approx(0.5), "eyes": pytest.approx(0.55)}  # green, never seen, left out
    assert result["mean"] == pytest.approx((2 * 0.9 + 2 * 0.1 + 3 * 0.9 + 3 * 0.2) / 10)
    assert result["held_out_mean"] == 0.685  # the held-out faces' own mix, kept beside it
    only_blue = groups.encode_batch([["blue hair", "brown eyes"]] * 4)
    assert real_accuracy_for(real, only_blue, groups)["per_group"] == {"hair": pytest.approx(0.9), "eyes": pytest.approx(0.9)}


def test_each_value_s_real_accuracy_is_its_held_out_hits_over_its_count(groups):
    from training.evaluator_training import real_per_class

    real = {"mean": 0.685, "images": 100, "hits": [81, 1, 0, 45, 10], "counts": [90, 10, 0, 50, 50]}
    assert real_per_class(real, groups) == {"blue hair": pytest.approx(0.9), "red hair": pytest.approx(0.1),
                                            "brown eyes": pytest.approx(0.9), "yellow eyes": pytest.approx(0.2)}


def test_the_group_loss_is_a_cross_entropy_per_group_summed(groups):
    torch.manual_seed(0)
    logits = torch.randn(4, 5)
    labels = torch.from_numpy(groups.encode_batch([["blue hair", "brown eyes"], ["red hair", "yellow eyes"]] * 2))
    expected = F.cross_entropy(logits[:, :3], labels[:, :3].argmax(1)) + F.cross_entropy(logits[:, 3:], labels[:, 3:].argmax(1))
    assert aux_group_ce(logits, labels, groups.groups).item() == pytest.approx(expected.item(), abs=1e-6)


def test_a_groups_folder_loads_with_its_kind_split_by_file_and_combinations(groups_root):
    data = load_dataset(groups_root)
    assert data.vocabulary.kind == "groups" and data.images.shape == (60, 3, 64, 64)  # 96x96 resized
    train, held = scene_split(data.files, 0.2, seed=0)
    assert len(held) == 12 and not set(train) & set(held)
    assert list(evaluation_conditions(groups_root, data.vocabulary)) == ["combinations"]


def test_a_group_outside_objects_json_is_a_dataset_error(groups_root):
    from cgan_export.errors import DatasetError

    (groups_root / "groups.json").write_text(json.dumps({"hair": HAIR + ["pink hair"], "eyes": EYES}))
    with pytest.raises(DatasetError, match="'pink hair', which objects.json lacks"):
        load_vocabulary(groups_root)


@pytest.mark.parametrize("preset", ["faces", "group-acgan"])
def test_groups_train_export_evaluate_and_generate_from_the_cli(preset, groups_root, tmp_path):
    """``faces`` is what ``train`` picks for a groups folder when no preset is named: it draws at the data's 96x96."""
    from cli import app

    runner = CliRunner()
    evaluator = tmp_path / "evaluator.pt"
    result = runner.invoke(app, ["evaluator", "train", "--data", str(groups_root), "--out", str(evaluator), "--epochs", "1",
                                 "--stem", "imagenet", "--batch-size", "16", "--no-bf16"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(next(line for line in result.output.splitlines() if line.startswith("{")))
    assert set(metrics["holdout_group_accuracy"]) == {"hair", "eyes"}
    tiny = {"faces": ['generator_config={"z_dim": 16, "ngf": 8, "embed_dim": 16}', 'discriminator_config={"ndf": 8}',
                      "random_condition_fraction=0.5"],  # half of G's draws one uniform value per group
            "group-acgan": ['generator_config={"z_dim": 16}']}[preset]
    run = tmp_path / "run"
    named = [] if preset == "faces" else ["--preset", preset]
    result = runner.invoke(app, ["train", "--data", str(groups_root), *named, "--out", str(run), "--epochs", "1",
                                 "--batch-size", "8", "--eval-every", "3", "--evaluator", str(evaluator), "--device", "cpu",
                                 *[a for item in tiny for a in ("--set", item)], "--set", "eval_seeds=1"])
    assert result.exit_code == 0, result.output
    record = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert set(record["combinations"]["per_group"]) == {"hair", "eyes"}
    exported = tmp_path / "exported"
    assert runner.invoke(app, ["export", "--checkpoint", str(run / "best.pt"), "--format", "onnx", "--out", str(exported)]).exit_code == 0
    meta = json.loads((exported / "manifest.json").read_text())["metadata"]
    assert meta["condition_kind"] == "groups" and meta["groups"]["eyes"] == EYES
    assert json.loads((run / "config.json").read_text())["config"]["preset"] == preset
    assert meta["image_size"] == {"faces": 96, "group-acgan": 64}[preset]
    model = exported / "generator.onnx"
    result = runner.invoke(app, ["evaluate", "--model", str(model), "--data", str(groups_root), "--evaluator", str(evaluator),
                                 "--seeds", "2", "--no-scorecard", "--report", str(tmp_path / "report.json")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "report.json").read_text())["models"][str(model)]["accuracy"]["combinations"]
    assert report["conditions"] == 6 and set(report["per_group"]) == {"hair", "eyes"}
    result = runner.invoke(app, ["generate", "red hair", "yellow eyes", "--model", str(model), "-n", "2", "--scale", "1",
                                 "--out", str(tmp_path / "out")])
    assert result.exit_code == 0 and len(list((tmp_path / "out").glob("*.png"))) >= 2
    assert Image.open(next(p for p in (tmp_path / "out").glob("*.png") if p.name != "grid.png")).size == (meta["image_size"],) * 2
    result = runner.invoke(app, ["generate", "red hair", "blue hair", "--model", str(model), "--out", str(tmp_path / "bad")])
    assert result.exit_code != 0 and "both hair values" in result.output and "Traceback" not in result.output


def test_an_evaluator_of_another_vocabulary_is_refused_with_one_line(groups_root, random_evaluator, tmp_path):
    from cli import app

    result = CliRunner().invoke(app, ["train", "--data", str(groups_root), "--out", str(tmp_path / "run"), "--epochs", "1",
                                      "--evaluator", str(random_evaluator), "--device", "cpu"])
    assert result.exit_code == 1 and "scores another vocabulary" in result.output


def test_the_group_grid_s_real_cells_hold_only_faces_of_that_cell_and_pad_with_blanks(groups_root):
    import importlib.util

    spec = importlib.util.spec_from_file_location("group_grid", Path(__file__).parent.parent / "benchmarks" / "group_grid.py")
    group_grid = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(group_grid)
    faces = group_grid.real_faces(groups_root, json.loads((groups_root / "train.json").read_text()), {"red hair", "yellow eyes"}, 12, 64)  # the fixture holds 10 such faces
    assert len(faces) == 12 and all(f.shape == (64, 64, 3) and f.dtype == np.uint8 for f in faces)
    assert all(abs(int(f[10, 32, 0]) - 220) < 25 and abs(int(f[10, 32, 2]) - 40) < 25 for f in faces[:10])  # red top half
    assert all((f == 255).all() for f in faces[10:])
