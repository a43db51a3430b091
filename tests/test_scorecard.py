"""The scorecard on hand-made cases: collapse gives diversity 0, a second real sample gives ratios near 1,
blur and pixel shuffles move each figure the wrong way."""

import numpy as np
import pytest
import torch

from cgan_export import scorecard
from cgan_export.evaluator import load_evaluator

SIZE = 64


def scenes(codes: np.ndarray) -> np.ndarray:
    """Scenes drawn from codes [N, >= 5]: a gray canvas with two coloured squares placed by the codes, [N, 3, 64, 64]."""
    u = 0.5 * (1 + np.tanh(codes))  # (0, 1) per code
    images = np.full((len(codes), 3, SIZE, SIZE), -0.2, np.float32)
    for i, c in enumerate(u):
        for x, y, colour in ((c[0], c[1], 0), (c[2], c[3], 1)):
            px, py, side = int(x * (SIZE - 16)), int(y * (SIZE - 16)), 8 + int(8 * c[4])
            images[i, colour, py:py + side, px:px + side] = 0.9
    return images


def real_generator(noise: np.ndarray, condition: np.ndarray) -> np.ndarray:
    """The data distribution itself: every noise row draws another scene."""
    return scenes(noise)


def collapsed_generator(noise: np.ndarray, condition: np.ndarray) -> np.ndarray:
    """One scene whatever the noise."""
    return scenes(np.zeros_like(noise))


def one_layout_generator(noise: np.ndarray, condition: np.ndarray) -> np.ndarray:
    """One scene whatever the noise, on a gray background whose brightness follows the noise."""
    images = scenes(np.zeros_like(noise))
    background = (images == images[:, :1]).all(axis=1, keepdims=True)  # [N, 1, H, W]: gray pixels
    return np.where(background, images + 0.3 * np.tanh(noise[:, 5, None, None, None]), images).astype(np.float32)


def blurred_generator(noise: np.ndarray, condition: np.ndarray) -> np.ndarray:
    """Real scenes under a 9x9 box blur."""
    images = torch.from_numpy(scenes(noise))
    return torch.nn.functional.avg_pool2d(images, 9, 1, 4, count_include_pad=False).numpy()


def shuffled_generator(noise: np.ndarray, condition: np.ndarray) -> np.ndarray:
    """Real scenes with their pixels shuffled (same colours, no shapes)."""
    images = scenes(noise)
    order = np.random.default_rng(0).permutation(SIZE * SIZE)
    return images.reshape(len(images), 3, -1)[:, :, order].reshape(images.shape)


@pytest.fixture(scope="module")
def reference(random_evaluator) -> tuple[scorecard.RealReference, object]:
    evaluator = load_evaluator(random_evaluator)
    rng = np.random.default_rng(1)
    set_images = tuple(scenes(rng.standard_normal((24, 8))) for _ in range(6))  # 6 object sets x 24 real images
    held = scenes(rng.standard_normal((300, 8)))
    other = scenes(rng.standard_normal((300, 8)))
    conditions = np.eye(24, dtype=np.float32)[rng.integers(0, 24, 300)]
    ref = scorecard.RealReference(np.eye(24, dtype=np.float32)[:6], set_images, conditions,
                                  scorecard.pooled_features(evaluator, held), scorecard.pooled_features(evaluator, other))
    return ref, evaluator


def test_identical_images_have_zero_diversity():
    image = scenes(np.zeros((1, 8)))
    assert scorecard.pixel_diversity([np.repeat(image, 12, axis=0)] * 3) == 0.0


def test_a_generator_that_ignores_its_noise_scores_zero_diversity(reference):
    ref, evaluator = reference
    card = scorecard.score(collapsed_generator, 8, ref, evaluator)
    assert card["diversity"] == 0.0 and card["layout_diversity"] == 0.0 and card["diversity_sets"] == 6
    assert card["recall"] < 0.1  # one picture covers none of the real manifold


def test_another_real_sample_scores_close_to_the_real_reference(reference):
    ref, evaluator = reference
    card = scorecard.score(real_generator, 8, ref, evaluator)
    assert card["diversity"] == pytest.approx(1.0, abs=0.15)
    assert card["layout_diversity"] == pytest.approx(1.0, abs=0.15)
    assert card["fidelity"] == pytest.approx(1.0, abs=0.3)
    assert card["precision"] > 0.7 and card["recall"] > 0.7
    real_row = ref.real_figures()
    assert real_row["fidelity"] == 1.0 and real_row["precision"] > 0.7 and real_row["recall"] > 0.7


@pytest.mark.parametrize("damaged", [blurred_generator, shuffled_generator])
def test_blurred_or_shuffled_images_score_worse_fidelity_and_precision(reference, damaged):
    ref, evaluator = reference
    real = scorecard.score(real_generator, 8, ref, evaluator)
    card = scorecard.score(damaged, 8, ref, evaluator)
    assert card["fidelity"] > 2 * real["fidelity"]
    assert card["precision"] < real["precision"] - 0.15


def test_blur_lowers_the_diversity_ratio(reference):
    ref, evaluator = reference
    real = scorecard.diversity_ratio(real_generator, 8, ref)["diversity"]
    assert scorecard.diversity_ratio(blurred_generator, 8, ref)["diversity"] < real - 0.1


def test_one_layout_on_a_changing_background_is_diverse_in_pixels_and_not_in_layout(reference):
    ref, _ = reference
    card = scorecard.diversity_ratio(one_layout_generator, 8, ref)
    assert card["diversity"] > 0.8 and card["layout_diversity"] == 0.0


def test_selection_rule_lets_no_collapsed_generator_win_on_accuracy():
    diverse = {"diversity": 0.9, "layout_diversity": 0.9, "fidelity": 1.2}
    one_layout = {"diversity": 0.9, "layout_diversity": 0.2, "fidelity": 1.2}
    collapsed = {"diversity": 0.1, "fidelity": 1.2}
    blurry = {"diversity": 0.9, "fidelity": 4.0}
    assert scorecard.selection_score(0.90, diverse) == pytest.approx(0.90)
    assert scorecard.selection_score(0.99, collapsed) < scorecard.selection_score(0.80, diverse)
    assert scorecard.selection_score(0.99, one_layout) < scorecard.selection_score(0.80, diverse)
    assert scorecard.selection_score(0.99, blurry) < scorecard.selection_score(0.80, diverse)


def test_precision_and_recall_of_a_point_set_against_itself_are_one():
    points = np.random.default_rng(0).standard_normal((50, 4))
    assert scorecard.precision_recall(points, points) == (1.0, 1.0)


def test_markdown_table_keeps_the_condition_files_in_evaluation_order():
    card = {"diversity": 0.95, "layout_diversity": 0.8, "frechet": 34.7, "fidelity": 1.79, "precision": 0.88,
            "recall": 0.86}
    accuracy = {"g.onnx": {"test.json": {"mean": 0.967, "std": 0.014}, "new_test.json": {"mean": 0.964, "std": 0.014}}}
    header, _, row = scorecard.markdown_table({"g.onnx": card}, accuracy).splitlines()
    assert header.startswith("| model | test.json | new_test.json |")
    assert row.startswith("| g.onnx | 0.967 ± 0.014 | 0.964 ± 0.014 | 0.950 | 0.800 | 34.7 (1.79x) |")


def test_markdown_table_shows_each_group_and_the_real_images_accuracy_beside_the_model_s():
    card = {"diversity": 0.9, "layout_diversity": 0.9, "frechet": 15.0, "fidelity": 1.5, "precision": 0.9, "recall": 0.8}
    accuracy = {"real data": {"combinations": {"mean": 0.711, "per_group": {"hair": 0.719, "eyes": 0.703}}},
                "g.onnx": {"combinations": {"mean": 0.877, "std": 0.011, "per_group": {"hair": 0.948, "eyes": 0.807}}}}
    header, _, real, model = scorecard.markdown_table({"real data": card, "g.onnx": card}, accuracy).splitlines()
    assert header.startswith("| model | combinations | hair | eyes | diversity")
    assert real.startswith("| real data | 0.711 | 0.719 | 0.703 | 0.900 |")
    assert model.startswith("| g.onnx | 0.877 ± 0.011 | 0.948 | 0.807 | 0.900 |")


def test_a_scorecard_over_seeds_is_each_figure_s_mean_and_spread_over_one_card_per_seed(reference):
    ref, evaluator = reference
    card = scorecard.score_over_seeds(real_generator, 8, ref, evaluator, range(3, 7))
    singles = [scorecard.score(real_generator, 8, ref, evaluator, seed) for seed in range(3, 7)]
    assert card["seeds"] == [3, 4, 5, 6] and card["per_seed"] == singles
    for key in ("diversity", "layout_diversity", "frechet", "fidelity", "precision", "recall"):  # mean, population std
        values = np.array([c[key] for c in singles])
        assert card[key] == pytest.approx(values.mean(), rel=1e-9) and card["std"][key] == pytest.approx(values.std(), abs=1e-12)
    assert card["std"]["fidelity"] > 0  # each seed draws other images: one card is one draw
    assert card["diversity_sets"] == 6 and card["feature_images"] == 300  # counts are kept, not averaged


def test_markdown_table_shows_a_scorecard_over_seeds_as_mean_and_spread():
    card = {"diversity": 0.99, "layout_diversity": 0.809, "frechet": 29.6, "fidelity": 1.526, "precision": 0.846,
            "recall": 0.86, "std": {"diversity": 0.002, "layout_diversity": 0.003, "frechet": 0.6, "fidelity": 0.029,
                                    "precision": 0.01, "recall": 0.013}}
    accuracy = {"g.onnx": {"test.json": {"mean": 0.986, "std": 0.011}}}
    row = scorecard.markdown_table({"g.onnx": card}, accuracy).splitlines()[-1]
    assert row == ("| g.onnx | 0.986 ± 0.011 | 0.990 ± 0.002 | 0.809 ± 0.003 | 29.6 (1.53 ± 0.03x) | 0.846 ± 0.010 "
                   "| 0.860 ± 0.013 |")


def test_the_scorecard_draws_its_images_in_bounded_batches_with_the_same_figures(reference, monkeypatch):
    ref, evaluator = reference
    whole = scorecard.score(real_generator, 8, ref, evaluator, seed=4)  # 300 feature images > one batch of 256
    rows = []

    def recording(noise, condition):
        rows.append(len(noise))
        return real_generator(noise, condition)

    monkeypatch.setattr(scorecard, "GENERATE_BATCH", 7)
    card = scorecard.score(recording, 8, ref, evaluator, seed=4)
    assert max(rows) == 7 and sum(rows) == 6 * 24 + 300  # the diversity sets' images, then the feature images
    assert card == whole  # each row's image depends on its own noise alone
