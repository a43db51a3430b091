import json
import os
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from cgan_export.checkpoint import load_generator
from cgan_export.export import export
from training.loop import RunOptions, train
from training.steps import lr_factor
from training.presets import PRESETS, budget_steps, get_preset, parse_overrides

TINY = {  # small widths so every preset trains in seconds
    "best": {"generator_config": {"z_dim": 16, "ngf": 8, "embed_dim": 16},
             "discriminator_config": {"ndf": 8}, "gpu_batch_size": 0},
    "cdcgan": {"generator_config": {"z_dim": 16, "ngf": 8}, "discriminator_config": {"ndf": 8, "norm": "batch"}},
    "wgan-gp": {"generator_config": {"z_dim": 16, "ngf": 8}, "discriminator_config": {"ndf": 8, "norm": "instance"}, "n_critic": 2},
    "sagan": {"generator_config": {"z_dim": 16, "ngf": 8, "condition_dim": 16}, "discriminator_config": {"ndf": 8}},
    "acgan": {"generator_config": {"z_dim": 16}},
    "group-acgan": {"generator_config": {"z_dim": 16}},
    "infogan": {"generator_config": {"z_dim": 16, "ngf": 8, "embed_dim": 16}, "discriminator_config": {"ndf": 8}},
    "faces": {"generator_config": {"z_dim": 16, "ngf": 8, "embed_dim": 16},  # at 96x96 on the i-CLEVR fixture
              "discriminator_config": {"ndf": 8}, "gpu_batch_size": 0},
}


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_each_preset_trains_and_its_checkpoint_exports(preset, data_root, random_evaluator, tmp_path):
    config = get_preset(preset, batch_size=4, eval_every=2, eval_seeds=1, **TINY[preset])
    out = tmp_path / "run"
    result = train(replace(config, epochs=4 / 6), RunOptions(device="cpu", out=out, data=data_root, evaluator=random_evaluator, show_progress=False))
    assert result["step"] == 4
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4]
    assert ({"info"} if preset == "infogan" else {"test", "new_test"}) <= set(records[-1])  # InfoGAN: no labels
    assert (out / "curves.png").is_file() and len(list((out / "samples").glob("*.png"))) == 2
    manifest = export(out / "best.pt", ["onnx"], tmp_path / "exported", report=lambda _: None)
    assert manifest["files"]["generator.onnx"]["parity_max_abs_diff"] < 1e-4
    assert manifest["metadata"]["training"]["preset"] == preset
    final = export(out / "last-generator.pt", ["onnx"], tmp_path / "final", report=lambda _: None)  # the end's weights
    assert final["metadata"]["training"]["step"] == 4 and manifest["metadata"]["training"]["step"] in (2, 4)


@pytest.mark.slow
def test_compiled_training_writes_plain_checkpoints_that_export(data_root, random_evaluator, tmp_path):
    config = get_preset("cdcgan", batch_size=4, eval_every=2, eval_seeds=1, **TINY["cdcgan"])  # no EMA: G itself ships
    out = tmp_path / "run"
    train(replace(config, epochs=2 / 6), RunOptions(device="cpu", out=out, data=data_root, evaluator=random_evaluator, compile=True,
                             show_progress=False))
    assert not any("_orig_mod" in k for k in torch.load(out / "last.pt", weights_only=True)["models"]["g"])
    manifest = export(out / "best.pt", ["onnx"], tmp_path / "exported", report=lambda _: None)
    assert manifest["files"]["generator.onnx"]["parity_max_abs_diff"] < 1e-4


def test_set_overrides_parse_json_values_and_refuse_unknown_fields():
    from cgan_export.errors import CganError

    assert parse_overrides(["ema_decay=0", "diffaugment=color,translation", "betas=[0, 0.9]", "aux-weight-g=2.5"]) == {
        "ema_decay": 0, "diffaugment": "color,translation", "betas": (0, 0.9), "aux_weight_g": 2.5}
    for bad in (["emadecay=0"], ["ema_decay"], ["preset=acgan"]):
        with pytest.raises(CganError, match="KEY=VALUE"):
            parse_overrides(bad)


def test_init_from_fine_tunes_another_runs_weights_under_new_settings(data_root, random_evaluator, tmp_path):
    from dataclasses import replace

    from cgan_export.errors import CganError

    options = RunOptions(device="cpu", out=tmp_path / "source", data=data_root, evaluator=random_evaluator, show_progress=False)
    train(get_preset("best", batch_size=4, eval_every=2, eval_seeds=1, epochs=2 / 6, **TINY["best"]), options)
    source = torch.load(tmp_path / "source" / "last.pt", weights_only=True)
    tuned = get_preset("best", batch_size=4, eval_every=1, eval_seeds=1, aux_weight_d=3.0, lr_g=1e-4, betas=(0.0, 0.9),
                       epochs=1 / 6, **TINY["best"])
    from rich.console import Console

    from training.finetune import init_from as _init_from
    from training.models import Models

    models = Models(tuned, 24, 64, torch.device("cpu"))
    info = _init_from(models, tuned, tmp_path / "source" / "last.pt", torch.device("cpu"), Console(quiet=True))
    for name, net in (("g", models.g), ("d", models.d), ("g_ema", models.g_ema)):
        for key, value in net.state_dict().items():
            assert torch.equal(value, source["models"][name][key]), (name, key)
    assert info["step"] == source["state"]["step"] and models.opt_d.param_groups[0]["betas"] == (0.0, 0.9)
    fine = replace(options, out=tmp_path / "fine", init_from=tmp_path / "source" / "last.pt")
    train(tuned, fine)
    lineage = torch.load(tmp_path / "fine" / "best.pt", weights_only=True)["training"]["init_from"]
    assert lineage["step"] == 2 and lineage["config"]["aux_weight_d"] == 1.0
    train(tuned, replace(fine, out=tmp_path / "finer", init_from=tmp_path / "fine" / "last.pt"))
    lineage = torch.load(tmp_path / "finer" / "best.pt", weights_only=True)["training"]["init_from"]
    assert lineage["config"]["aux_weight_d"] == 3.0 and lineage["init_from"]["step"] == 2
    wider = get_preset("best", batch_size=4, eval_every=2, eval_seeds=1, epochs=1 / 6,
                       **{**TINY["best"], "discriminator_config": {"ndf": 16}})
    with pytest.raises(CganError, match="same networks"):
        train(wider, replace(fine, out=tmp_path / "wider"))
    with pytest.raises(CganError, match="does not exist"):
        train(tuned, replace(fine, out=tmp_path / "missing", init_from=tmp_path / "nope.pt"))


def test_init_from_adds_an_embedding_mlp_that_starts_as_the_linear_network(data_root, random_evaluator, tmp_path):
    from rich.console import Console

    from training.finetune import init_from as _init_from
    from training.models import Models

    options = RunOptions(device="cpu", out=tmp_path / "source", data=data_root, evaluator=random_evaluator, show_progress=False)
    train(get_preset("best", batch_size=4, eval_every=2, eval_seeds=1, epochs=2 / 6, **TINY["best"]), options)
    source = torch.load(tmp_path / "source" / "last.pt", weights_only=True)
    wider = {**TINY["best"], "generator_config": {**TINY["best"]["generator_config"], "embed_hidden": 8}}
    config = get_preset("best", batch_size=4, eval_every=2, eval_seeds=1, **wider)
    models = Models(config, 24, 64, torch.device("cpu"))
    _init_from(models, config, tmp_path / "source" / "last.pt", torch.device("cpu"), Console(quiet=True))
    plain = Models(get_preset("best", **TINY["best"]), 24, 64, torch.device("cpu"))
    plain.load(source["models"])
    noise, cond = torch.randn(5, 16), (torch.rand(5, 24) < 0.1).float()
    with torch.no_grad():  # the new branch's output layer is zero: same images as the source
        assert torch.allclose(models.g_ema.eval()(noise, cond), plain.g_ema.eval()(noise, cond), atol=1e-6)
    moments = {n: models.opt_g.state.get(p) for n, p in models.g.named_parameters()}
    assert not moments["embed_mlp.0.weight"] and torch.equal(
        moments["embed.weight"]["exp_avg"], plain.opt_g.state[plain.g.embed.weight]["exp_avg"])
    train(replace(config, epochs=1 / 6), RunOptions(device="cpu", out=tmp_path / "fine", data=data_root, evaluator=random_evaluator,
                             show_progress=False, init_from=tmp_path / "source" / "last.pt"))
    tuned, _ = load_generator(tmp_path / "fine" / "best.pt")
    assert tuned.config.embed_hidden == 8 and tuned.embed_mlp[2].weight.abs().sum() > 0


def test_init_from_a_generator_checkpoint_keeps_g_frozen_while_a_fresh_d_warms_up(data_root, random_evaluator, tmp_path):
    from dataclasses import replace

    from cgan_export.errors import CganError

    config = get_preset("best", batch_size=4, eval_every=2, eval_seeds=1, epochs=2 / 6, **TINY["best"])
    source = RunOptions(device="cpu", out=tmp_path / "source", data=data_root, evaluator=random_evaluator, show_progress=False)
    train(config, source)
    shipped = torch.load(tmp_path / "source" / "best.pt", weights_only=True)
    warm = replace(config, d_warmup_steps=2)
    fine = replace(source, out=tmp_path / "fine", init_from=tmp_path / "source" / "best.pt")
    train(warm, fine)  # 2 iterations, both D-only: G and its EMA copy are untouched
    tuned = torch.load(tmp_path / "fine" / "last.pt", weights_only=True)
    for key, value in shipped["state_dict"].items():
        if "running" not in key and "num_batches" not in key:  # G's BatchNorm statistics still move in D's steps
            assert torch.equal(tuned["models"]["g_ema"][key], value), key
    assert tuned["state"]["init_from"]["generator_only"] and tuned["models"]["opt_g"]["state"] == {}
    train(replace(warm, epochs=4 / 6), replace(fine, out=tmp_path / "finer"))  # past the warm-up G trains
    moved = torch.load(tmp_path / "finer" / "last.pt", weights_only=True)["models"]["g"]
    assert not torch.equal(moved["fc.weight"], shipped["state_dict"]["fc.weight"])
    other = replace(config, generator_config={**TINY["best"]["generator_config"], "ngf": 4})
    with pytest.raises(CganError, match="not this run's"):
        train(other, replace(fine, out=tmp_path / "other"))


def test_discriminator_aux_mlp_starts_as_the_linear_head_and_loads_from_a_checkpoint_without_it():
    from training.discriminators import ProjectionDiscriminator

    torch.manual_seed(0)
    plain = ProjectionDiscriminator(ndf=8)
    wider = ProjectionDiscriminator(ndf=8, aux_hidden=16)
    result = wider.load_state_dict(plain.state_dict(), strict=False)
    assert sorted(result.missing_keys) == [f"aux_mlp.{i}.{p}" for i in (0, 2) for p in ("bias", "weight")]
    image, cond = torch.randn(3, 3, 64, 64), (torch.rand(3, 24) < 0.1).float()
    with torch.no_grad():
        (adv_a, aux_a), (adv_b, aux_b) = plain.eval()(image, cond), wider.eval()(image, cond)
    assert aux_b.shape == (3, 24) and torch.allclose(aux_a, aux_b) and torch.allclose(adv_a, adv_b)


def test_minibatch_std_channel_is_zero_for_identical_groups_and_the_groups_spread_otherwise():
    from training.discriminators import MinibatchStd, ProjectionDiscriminator

    torch.manual_seed(0)
    same = torch.randn(2, 5, 6, 6).repeat(4, 1, 1, 1)  # [8, 5, 6, 6]: groups (k, k+2, k+4, k+6) are one image
    assert torch.allclose(MinibatchStd(4)(same)[:, 5], torch.zeros(8, 6, 6), atol=1e-3)  # tolerance: the 1e-8 floor
    varied = MinibatchStd(4)(torch.randn(8, 5, 6, 6))[:, 5]  # [8, 6, 6]: unit-variance noise has std ~0.87 (N=4)
    assert varied.min() > 0.5 and torch.equal(varied[0], varied[2])  # 0 and 2 share a group
    d = ProjectionDiscriminator(ndf=8, image_size=96, minibatch_std=4)
    adv, aux = d(torch.randn(8, 3, 96, 96), (torch.rand(8, 24) < 0.1).float())
    assert adv.shape == (8,) and aux.shape == (8, 24)
    assert d(torch.randn(6, 3, 96, 96), torch.zeros(6, 24))[0].shape == (6,)  # 6 is not a multiple of 4: groups of 2


def test_a_run_whose_discriminator_has_minibatch_std_trains_and_exports(data_root, random_evaluator, tmp_path):
    tiny = dict(TINY["best"], discriminator_config={"ndf": 8, "minibatch_std": 4})
    config = get_preset("best", batch_size=8, eval_every=2, eval_seeds=1, guide_weight=0.0, **tiny)
    out = tmp_path / "run"
    result = train(replace(config, epochs=4 / 3), RunOptions(device="cpu", out=out, data=data_root,
                                                            evaluator=random_evaluator, show_progress=False))
    assert result["step"] == 4
    manifest = export(out / "best.pt", ["onnx"], tmp_path / "exported", report=lambda _: None)
    assert manifest["files"]["generator.onnx"]["parity_max_abs_diff"] < 1e-4


def test_anneal_takes_the_learning_rates_linearly_to_zero_over_the_end_of_the_budget():
    by_epochs = get_preset("best", epochs=10, anneal=4)  # 100 steps per epoch below
    assert budget_steps(by_epochs, 100) == 1000
    factors = [lr_factor(by_epochs, step, 100, 0.0) for step in (0, 600, 800, 1000)]
    assert factors == pytest.approx([1.0, 1.0, 0.5, 0.0])
    by_minutes = get_preset("best", epochs=0, minutes=60, anneal=30)
    assert budget_steps(by_minutes, 100) is None
    factors = [lr_factor(by_minutes, 0, 100, minutes * 60) for minutes in (10, 30, 45, 61)]
    assert factors == pytest.approx([1.0, 1.0, 0.5, 0.0])


def test_the_best_preset_trains_170_epochs_with_the_guide_from_epoch_140_and_an_anneal_over_the_last_20():
    """95,540 iterations at 562 per epoch (18,009 images, batch 32); the guide joins at iteration 78,680, the
    first whose share of the budget reaches 140/170; the learning rates hold until epoch 150 (84,300) and fall
    linearly to 0 at the end."""
    config, per_epoch = get_preset("best"), 18009 // 32
    assert budget_steps(config, per_epoch) == 95_540 and config.anneal == 20 and config.generator_config["blur"]
    assert all(lr_factor(config, step, per_epoch, 0.0) == 1.0 for step in (0, 78_680, 84_300))
    assert lr_factor(config, 89_920, per_epoch, 0.0) == pytest.approx(0.5) and lr_factor(config, 95_540, per_epoch, 0.0) == 0
    joins = [step for step in (78_679, 78_680) if step / budget_steps(config, per_epoch) >= config.guide_start]
    assert joins == [78_680] and 78_680 / per_epoch == pytest.approx(140, abs=0.01)


def test_step_decay_multiplies_by_gamma_every_lr_step_epochs():
    config = get_preset("cdcgan")  # x0.5 every 50 epochs
    factors = [lr_factor(config, epoch * 10, 10, 0.0) for epoch in (0, 49, 50, 100, 150)]
    assert factors == pytest.approx([1.0, 1.0, 0.5, 0.25, 0.125])


def test_mode_seeking_training_draws_each_condition_twice(data_root, random_evaluator, tmp_path):
    config = get_preset("best", batch_size=4, eval_every=2, eval_seeds=1, mode_seeking_weight=1.0, **TINY["best"])
    out = tmp_path / "run"
    train(replace(config, epochs=2 / 6), RunOptions(device="cpu", out=out, data=data_root, evaluator=random_evaluator, show_progress=False))
    record = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["losses"]["g_ms"] > 0


def test_mode_seeking_caps_by_object_count_are_recorded_and_train(data_root, random_evaluator, tmp_path):
    config = get_preset("best", batch_size=4, eval_every=2, eval_seeds=1, mode_seeking_real_share=0.5, **TINY["best"])
    out = tmp_path / "run"
    train(replace(config, epochs=2 / 6), RunOptions(device="cpu", out=out, data=data_root, evaluator=random_evaluator, show_progress=False))
    caps = json.loads((out / "config.json").read_text())["mode_seeking_caps"]
    assert len(caps) == 4 and all(0 < c <= config.mode_seeking_target for c in caps)  # counts 0-3, none above the target
    assert json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])["losses"]["g_ms"] > 0


def _ddp_worker(rank: int, world: int, port: int, data_root: str, evaluator: str, out: str, result_dir: str) -> None:
    import torch.distributed as dist

    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
                       "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank), "CGAN_EXPORT_CACHE": str(Path(out) / "cache")})
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    config = get_preset("best", batch_size=2, eval_every=100, eval_seeds=1, epochs=0.5, **TINY["best"])
    result = train(config, RunOptions(out=Path(out), data=Path(data_root), evaluator=Path(evaluator),
                                      device="cpu", show_progress=False))
    flat = torch.cat([p.detach().flatten() for p in result["generator"].parameters()])
    gathered = [torch.zeros_like(flat) for _ in range(world)]
    dist.all_gather(gathered, flat)
    if rank == 0:
        torch.save({"replicas": gathered, "step": result["step"]}, Path(result_dir) / "replicas.pt")
    dist.destroy_process_group()


@pytest.mark.slow
def test_two_gloo_processes_keep_identical_replicas(data_root, random_evaluator, tmp_path):
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    mp.spawn(_ddp_worker, args=(2, port, str(data_root), str(random_evaluator), str(tmp_path / "run"), str(tmp_path)),
             nprocs=2, join=True)
    result = torch.load(tmp_path / "replicas.pt", weights_only=True)
    assert result["step"] == 3  # 24 images / (2 per replica x 2 replicas) = 6 steps per epoch, half an epoch
    assert torch.equal(result["replicas"][0], result["replicas"][1])
    assert (tmp_path / "run" / "best.pt").is_file()


def test_training_with_random_conditions_and_weighted_images_saves_and_exports(data_root, random_evaluator, tmp_path):
    config = get_preset("best", batch_size=4, eval_every=2, eval_seeds=1, random_condition_fraction=0.5,
                        random_same_colour=0.5, same_colour_weight=4.0, **TINY["best"])
    out = tmp_path / "run"
    train(replace(config, epochs=2 / 6), RunOptions(device="cpu", out=out, data=data_root, evaluator=random_evaluator, show_progress=False))
    saved = torch.load(out / "last.pt", weights_only=True)
    assert saved["config"]["random_condition_fraction"] == 0.5
    export(out / "best.pt", ["onnx"], tmp_path / "exported", report=lambda _: None)


def test_guide_classifier_trains_loads_frozen_and_refuses_other_files(data_root, random_evaluator, tmp_path):
    from cgan_export.errors import CganError
    from training.guide import GuideConfig, load_guide, train_guide

    config = GuideConfig(width=4, epochs=1, batch_size=4, resolution=32)
    metrics = train_guide(data_root, tmp_path / "guide.pt", config, show_progress=False)
    assert 0.0 <= metrics["holdout_lab_accuracy"] <= 1.0
    from cgan_export.cpu import cpu_has_native_bf16

    assert metrics["precision"] == ("bf16 autocast" if cpu_has_native_bf16() else "fp32")  # what it trained in
    net, info = load_guide(tmp_path / "guide.pt")
    assert info["metrics"]["precision"] == metrics["precision"]
    assert not any(p.requires_grad for p in net.parameters()) and not net.training and net.resolution == 32
    assert net(torch.zeros(2, 3, 64, 64)).shape == (2, 24) and len(info["sha256"]) == 64
    with pytest.raises(CganError, match="not a guide classifier"):
        load_guide(random_evaluator)
    with pytest.raises(CganError, match="does not exist"):
        load_guide(tmp_path / "missing.pt")


def test_training_with_a_guide_records_it_and_resumes_with_the_same_file(data_root, random_evaluator, tmp_path):
    from dataclasses import replace

    from cgan_export.errors import CganError
    from training.guide import GuideConfig, train_guide

    train_guide(data_root, tmp_path / "guide.pt", GuideConfig(width=4, epochs=1, batch_size=4), show_progress=False)
    config = get_preset("best", batch_size=4, eval_every=2, eval_seeds=1, guide_start=0.0, epochs=2 / 6, **TINY["best"])
    options = RunOptions(device="cpu", out=tmp_path / "run", data=data_root, evaluator=random_evaluator, show_progress=False)
    train(replace(config, guide_epochs=1, guide_resolution=32), replace(options, out=tmp_path / "own"))
    own = torch.load(tmp_path / "own" / "best.pt", weights_only=True)["training"]["guide"]  # trained in-run, phase 0
    assert own["path"] == str(tmp_path / "own" / "guide.pt") and own["config"]["resolution"] == 32
    train(replace(config, guide_start=0.5, epochs=4 / 6), replace(options, out=tmp_path / "staged"))  # joins at step 2
    records = [json.loads(line) for line in (tmp_path / "staged" / "metrics.jsonl").read_text().splitlines()]
    assert ["g_guide" in r["losses"] for r in records] == [False, True]
    train(config, replace(options, guide=tmp_path / "guide.pt"))
    saved = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert "g_guide" in (tmp_path / "run" / "metrics.jsonl").read_text()
    best = torch.load(tmp_path / "run" / "best.pt", weights_only=True)
    assert best["training"]["guide"]["sha256"] == saved["state"]["guide"]["sha256"]
    train(replace(config, epochs=4 / 6), replace(options, resume=True))  # reopens the run's own guide file
    train_guide(data_root, tmp_path / "other.pt", GuideConfig(width=4, epochs=1, batch_size=4, seed=5), show_progress=False)
    with pytest.raises(CganError, match="not the guide classifier this run"):
        train(replace(config, epochs=6 / 6), replace(options, resume=True, guide=tmp_path / "other.pt"))


@pytest.mark.slow
def test_wgan_gp_trains_with_compile_on_because_its_critic_stays_eager(data_root, random_evaluator, tmp_path):
    config = get_preset("wgan-gp", batch_size=4, eval_every=2, eval_seeds=1, **TINY["wgan-gp"])
    result = train(replace(config, epochs=2 / 6), RunOptions(device="cpu", out=tmp_path / "run", data=data_root, evaluator=random_evaluator,
                                      compile=True, show_progress=False))
    assert result["step"] == 2


def test_compiled_runs_keep_weights_and_batches_in_the_contiguous_layout(data_root, random_evaluator, tmp_path):
    """CUDA inductor (torch 2.11, H100) failed its stride check in the convolution backward of channels_last
    weights; a compiled run keeps the default layout, an eager one the preset's channels_last."""
    from training.loop import Run

    config = get_preset("acgan", batch_size=4, **TINY["acgan"])
    assert config.channels_last
    for compiled, expected in ((True, False), (False, True)):
        run = Run(config, RunOptions(device="cpu", out=tmp_path / f"run-{compiled}", data=data_root,
                                     evaluator=random_evaluator, compile=compiled, show_progress=False))
        convs = [p for p in run.models.g.parameters() if p.dim() == 4]  # conv weights [O, I, k, k]
        assert run.channels_last is expected
        assert all(p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous() for p in convs) is expected


def test_each_evaluation_line_says_how_long_the_run_has_left(data_root, random_evaluator, tmp_path, capsys):
    config = get_preset("acgan", batch_size=4, eval_every=2, eval_seeds=1, epochs=4 / 6, **TINY["acgan"])
    train(config, RunOptions(device="cpu", out=tmp_path / "run", data=data_root, evaluator=random_evaluator,
                             show_progress=False))
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("step ")]
    assert [line.split(" (")[0] for line in lines] == ["step 2/4, ~0 min left", "step 4/4, ~0 min left"]
