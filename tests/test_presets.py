"""Presets and the resume check: which saved configs a run may continue under."""

from pathlib import Path

import pytest

from cgan_export.errors import CganError
from training.presets import check_resume_config, default_preset, get_preset, parse_overrides


def test_a_run_resumes_under_the_config_it_saved():
    config = get_preset("best")
    check_resume_config(config.to_dict(), config, Path("run"))


def test_a_run_saved_before_a_field_existed_resumes_when_the_field_keeps_its_default():
    config = get_preset("best", guide_weight=0.0, guide_resolution=0, guide_start=0.0)
    saved = {k: v for k, v in config.to_dict().items() if not k.startswith("guide")}
    check_resume_config(saved, config, Path("run"))


def test_a_retired_field_at_its_old_default_is_ignored_and_any_other_value_refused():
    config = get_preset("best")
    check_resume_config({**config.to_dict(), "guide_start_step": 0}, config, Path("run"))
    with pytest.raises(CganError, match="guide_start_step: run has 66000"):
        check_resume_config({**config.to_dict(), "guide_start_step": 66000}, config, Path("run"))


def test_a_changed_training_field_is_refused_by_name_but_scoring_fields_may_change():
    config = get_preset("best")
    with pytest.raises(CganError, match=r"guide_weight: run has 0.0, asked 1.0"):
        check_resume_config({**config.to_dict(), "guide_weight": 0.0}, config, Path("run"))
    check_resume_config({**config.to_dict(), "eval_every": 1000, "eval_seeds": 3}, config, Path("run"))
    check_resume_config({**config.to_dict(), "epochs": 380, "guide_start": 340 / 380}, config, Path("run"))  # the schedule
    check_resume_config({**config.to_dict(), "anneal": 0.0}, config, Path("run"))  # a run saved before best annealed


def test_a_run_saved_in_the_contiguous_layout_resumes_under_a_channels_last_preset():
    config = get_preset("best")
    assert config.channels_last  # runs started before the preset trained channels_last resume under it
    check_resume_config({**config.to_dict(), "channels_last": False}, config, Path("run"))


def test_the_best_preset_adds_its_coarse_guide_only_for_the_end_of_the_budget():
    config = get_preset("best")
    assert config.guide_weight > 0 and config.guide_resolution == 32 and 0.5 < config.guide_start < 1.0


def test_overrides_are_read_as_json_and_unknown_fields_are_one_error():
    assert parse_overrides(["guide_start=0.9", "diffaugment=color,translation"]) == {
        "guide_start": 0.9, "diffaugment": "color,translation"}
    with pytest.raises(CganError, match="expected KEY=VALUE"):
        parse_overrides(["guide_start_step=100"])


def test_a_folder_of_attribute_groups_gets_the_faces_preset_at_its_own_size_and_any_other_best(tmp_path):
    faces, scenes = tmp_path / "faces", tmp_path / "scenes"
    faces.mkdir(), scenes.mkdir()
    (faces / "groups.json").write_text('{"hair": ["blue hair"], "eyes": ["red eyes"]}')
    assert default_preset(faces) == "faces" and default_preset(scenes) == "best"
    config = get_preset("faces")
    assert config.image_size == 96 and config.guide_weight == 0 and get_preset("best").image_size == 64
    assert config.generator_config == get_preset("best").generator_config  # best's networks, drawn at 96x96


def test_the_faces_preset_caps_mode_seeking_by_the_real_share_alone():
    # best's ceiling (0.03) is an i-CLEVR figure: real faces of one hair x eyes set sit ~14x further apart
    faces, best = get_preset("faces"), get_preset("best")
    assert faces.mode_seeking_target == 0 and faces.mode_seeking_real_share == best.mode_seeking_real_share > 0
    assert faces.mode_seeking_weight == best.mode_seeking_weight > 0
