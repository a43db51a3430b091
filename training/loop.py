"""The training loop: a run opens (new, resumed or fine-tuned), steps, and evaluates and saves in phases.

A run folder holds ``config.json`` (written when the run starts), ``metrics.jsonl``, ``curves.png``,
``samples/``, ``best.pt`` (the generator picked by the selection rule), ``last-generator.pt`` (the generator
at the latest evaluation: at the end, the run's final weights; exportable like ``best.pt``) and ``last.pt``
(everything needed to resume).
"""

from __future__ import annotations

import contextlib
import copy
import signal
import threading
import time
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn as nn
from rich.console import Console

from cgan_export.checkpoint import generator_checkpoint, require_file
from cgan_export.codes import CodeVocabulary
from cgan_export.contract import make_noise
from cgan_export.errors import CganError
from cgan_export.evaluator import check_scores, load_evaluator, shipped_evaluator
from cgan_export.io import write_json

from .carry_on import CarryOn, RunState
from .conditions import colour_groups, image_weights, mix_conditions, sample_codes
from .data import ICLEVRData, load_dataset, to_float
from .distributed import agreed_clock, init_distributed
from .finetune import init_from, open_guide
from .models import Models, autocast_for, channels_last_for, precision_name
from .options import RunOptions, describe_device, torch_device
from .pair_distances import mode_seeking_caps
from .presets import TrainConfig, budget_steps, for_device
from .progress import make_progress
from .report import append_jsonl, plot_curves, save_sample_grid
from .run_folder import CONFIG, PREVIOUS, RunFolderLock, rng_state, save_atomic, save_last, save_snapshot
from .scoring import InfoScorer, RunScorer, selection_rule
from .steps import d_step, epoch_order, g_step, lr_factor

__all__ = ["RunOptions", "RunState", "train"]


class Run(CarryOn):
    """One training run: its networks, data, scorer and state, and the phases it goes through."""

    def __init__(self, config: TrainConfig, options: RunOptions):
        self.parallel, self.device = init_distributed(torch_device(options.device))
        if options.threads:
            torch.set_num_threads(options.threads)
        config = for_device(config, self.device.type)  # CUDA: the preset's GPU batch and scaled learning rates
        self.config, self.options, self.out = config, options, Path(options.out)
        self.console = Console(stderr=True, soft_wrap=True)  # log lines stay whole in files
        self.last_path = self.out / "last.pt"
        if self.last_path.exists() and not options.resume:
            raise CganError(f"{self.out} already holds a run: pass --resume to continue it, or choose another --out")
        for path, what in ((options.branch_from, "run checkpoint"), (options.init_from, "--init-from checkpoint")):
            if path is not None:  # a missing start fails before the data and the scorer's reference load
                require_file(path, what)
        self.lock = RunFolderLock(self.out)  # taken by open(), given back by close()
        self.stop_signal: int | None = None  # set by SIGTERM / SIGINT: save last.pt and stop
        self.data: ICLEVRData = load_dataset(options.data, config.image_size)  # [N, 3, S, S] at the preset's size
        evaluator = load_evaluator(options.evaluator or shipped_evaluator(self.data.vocabulary))
        check_scores(evaluator, self.data.vocabulary, "the training data's")
        # what G draws for: the data's labels, or InfoGAN codes (the data's labels are then never used)
        self.vocabulary = (CodeVocabulary.make(config.info_categories, config.info_continuous) if config.info_categories
                           else self.data.vocabulary)
        self.groups = colour_groups(self.data.vocabulary)  # [24] colour of each object
        self.weights = image_weights(self.data.labels, self.groups, config.same_colour_weight)  # [N] or None
        torch.manual_seed(config.seed)
        self.compiled = bool(options.compile or (options.compile is None and self.device.type == "cuda"))
        self.channels_last = channels_last_for(config, self.compiled)  # [B, 3, H, W] batches in the weights' layout
        self.models = Models(config, len(self.vocabulary), int(self.data.images.shape[-1]), self.device,
                             self.parallel.world, self.vocabulary.groups, self.channels_last)
        self.noise_gen = torch.Generator().manual_seed(config.seed + 1 + self.parallel.rank)
        self.steps_per_epoch = len(self.data) // (config.batch_size * self.parallel.world)
        on_gpu = self.device.type == "cuda"  # the uint8 images live on the GPU: no host copies per step
        if on_gpu:  # fp32 matmuls on TF32 tensor cores, as cuDNN's convolutions already are by default
            torch.set_float32_matmul_precision("high")
        self.images = self.data.images.to(self.device) if on_gpu else self.data.images  # [N, 3, H, W] uint8
        self.labels = self.data.labels.to(self.device) if on_gpu else self.data.labels  # [N, 24]
        caps = mode_seeking_caps(config, self.data)  # [max objects + 1] or None: one cap for all pairs
        self.ms_caps = None if caps is None else caps.to(self.device)  # indexed per step where G's labels are
        evaluator.net.to(self.device)  # scoring runs where training runs
        self.rule = selection_rule(config)
        self.scorer = (None if not self.parallel.main else
                       InfoScorer(evaluator, self.data, self.vocabulary, self.models.d) if config.info_categories else
                       RunScorer(evaluator, self.data, config.eval_seeds))
        self.state = RunState(evaluator=evaluator.info["sha256"][:16], selection_rule=self.rule)
        self.running: dict[str, torch.Tensor] = {}  # running means of the losses (on the device: no sync per step)
        self.saved_rng: tuple[dict, int] | None = None  # RNG states (and step) of the checkpoint a run carries on from

    # -- phase 1: open ------------------------------------------------------------------------------
    def open(self) -> None:
        """Resume, fine-tune or start fresh; write ``config.json``; open the guide; compile on request."""
        has_run = self.last_path.exists() or (self.out / PREVIOUS).exists()
        branch = self._branch_source(has_run)  # loaded before the folder is made: a bad snapshot leaves nothing
        if self.parallel.main:
            self.lock.acquire()  # before anything is written: one run per folder
        if self.options.resume and not has_run:
            self.console.print(f"--resume: {self.out} holds no run yet; starting a new one")
        if self.options.resume and has_run:
            self._resume()
        elif branch is not None:
            self._branch(Path(self.options.branch_from), branch)
        elif self.options.init_from is not None:
            self.state.init_from = init_from(self.models, self.config, Path(self.options.init_from), self.device, self.console)
        self.state.commands.append(self.options.command)  # None: called from Python
        precision = precision_name(autocast_for(self.config, self.device)["enabled"])
        self.state.devices.append(f"{describe_device(self.device)}, {precision}")
        if self.parallel.main and self.config.bf16 and self.device.type == "cpu" and precision == "fp32":
            self.console.print("bf16 autocast off: this CPU has no native bf16 (AVX512-BF16 or AMX); training in fp32")
        if self.parallel.main and self.scorer.note:
            self.console.print(self.scorer.note)
        if self.parallel.main:
            caps = (None if self.ms_caps is None else  # JSON has no infinity: an uncapped count is null
                    [round(c, 5) if c < float("inf") else None for c in self.ms_caps.tolist()])
            write_json(self.out / CONFIG, {"config": self.config.to_dict(), "options": _jsonable(self.options),
                                           "selection_rule": self.rule, "mode_seeking_caps": caps})
        self.guide = open_guide(self.config, self.options, self.state, self.data, self.device, self.console,
                                self.parallel)
        if self.compiled:
            self.models.compile()
        if self.saved_rng is not None:  # last: building the guide or rescoring best.pt draws from torch's RNG
            self._restore_rng(*self.saved_rng)

    # -- phase 2: train -----------------------------------------------------------------------------
    def train(self) -> dict:
        """Iterate until the budget is spent, evaluating and saving every ``eval_every`` iterations."""
        config, state = self.config, self.state
        max_steps = budget_steps(config, self.steps_per_epoch)  # iterations (None: a budget in minutes)
        autocast = autocast_for(config, self.device)  # bf16 on the CPU only
        start_elapsed, t0 = state.elapsed, time.time()
        order_epoch, order = -1, torch.empty(0, dtype=torch.long)
        with make_progress(disable=not (self.options.show_progress and self.parallel.main)) as progress:
            task = progress.add_task(config.preset, total=max_steps or None, completed=state.step, info="")
            while True:
                state.elapsed = agreed_clock(start_elapsed + time.time() - t0, self.parallel, self.device)
                if _budget_spent(state, max_steps, config.minutes) >= 1 or self.stop_signal is not None:
                    break
                epoch, pos = divmod(state.step, self.steps_per_epoch)
                if epoch != order_epoch:  # one shuffle (or weighted draw) per epoch, not per step
                    order_epoch, order = epoch, epoch_order(config.seed, epoch, len(self.data), self.weights)
                first = (pos * self.parallel.world + self.parallel.rank) * config.batch_size
                self.step(order[first:first + config.batch_size], autocast, max_steps)
                if state.step % 50 == 0:  # reading the losses syncs with the device: not every step
                    info = " ".join(f"{k} {v:.3f}" for k, v in self.losses().items()) + f" acc {state.last_score:.3f}"
                    progress.update(task, completed=state.step, info=info)
                evaluate = state.step % config.eval_every == 0
                snapshot = self.options.snapshot_every and state.step % self.options.snapshot_every == 0
                if (evaluate or snapshot) and self.parallel.main:
                    state.elapsed = start_elapsed + time.time() - t0
                    if evaluate:
                        self.evaluate_and_save()
                    if snapshot:  # after the evaluation: the state last.pt has
                        save_snapshot(self.out, self.run_state())
        if self.stop_signal is not None:  # preempted: keep the progress, skip the scoring
            if self.parallel.main:
                self.save_last()
        elif self.parallel.main and (state.step % config.eval_every != 0 or not (self.out / "best.pt").exists()):
            self.evaluate_and_save()
        return {"step": state.step, "best_score": state.best_score, "minutes": state.elapsed / 60,
                "generator": self.models.inference_g, "stopped_by": self.stop_signal}

    def step(self, idx: torch.Tensor, autocast: dict, max_steps: int | None) -> None:
        """One iteration on the images ``idx``: critic steps, a G step, the EMA update."""
        config, models, state, device = self.config, self.models, self.state, self.device
        idx = idx.to(self.images.device)
        real = to_float(self.images[idx])  # [B, 3, H, W]
        if self.channels_last:
            real = real.contiguous(memory_format=torch.channels_last)
        labels = self.labels[idx]  # [B, 24]
        if config.info_categories:  # InfoGAN: G draws for codes from their prior; D sees no condition
            fake_labels = sample_codes(len(idx), config.info_categories, config.info_continuous, self.noise_gen).to(device)
            labels = torch.zeros_like(fake_labels)  # [B, K + M]
        else:
            fake_labels = (labels if config.random_condition_fraction <= 0 else  # [B, 24] what G draws
                           mix_conditions(labels.cpu(), config.random_condition_fraction, self.groups,
                                          config.random_same_colour, self.noise_gen, self.vocabulary.groups).to(device))
        models.set_lr_factor(lr_factor(config, state.step, self.steps_per_epoch, state.elapsed))
        models.g.train(), models.d.train()
        z_dim = models.g.config.z_dim
        for _ in range(config.n_critic):
            noise = torch.randn(len(idx), z_dim, generator=self.noise_gen).to(device)  # [B, Z]
            logs = d_step(models, config, real, labels, fake_labels, noise, autocast)
        noise = torch.randn(len(idx), z_dim, generator=self.noise_gen).to(device)  # [B, Z]
        guide = self.guide if _budget_spent(state, max_steps, config.minutes) >= config.guide_start else None
        if state.step >= config.d_warmup_steps:  # before that, D alone learns against the frozen G
            logs.update(g_step(models, config, fake_labels, noise, state.step, autocast, guide, self.ms_caps))
        models.broadcast_buffers()
        if state.step >= config.d_warmup_steps:  # no fresh EMA warm-up when fine-tuning
            models.update_ema(config.ema_decay, state.step + (state.init_from or {}).get("step", 0))
        for k, v in logs.items():
            self.running[k] = 0.98 * self.running.get(k, v) + 0.02 * v
        state.step += 1
        state.images_seen += len(idx) * self.parallel.world  # each real batch once, however many critic steps

    # -- phase 3: evaluate and save -----------------------------------------------------------------
    def evaluate_and_save(self) -> None:
        """Score the inference generator; write metrics, samples, curves, ``best.pt``, ``last-generator.pt`` and
        ``last.pt``."""
        config, state, out = self.config, self.state, self.out
        self.models.recalibrate_ema(self.calibration_conditions(), seed=state.step)
        g = self.models.inference_g
        metrics = self.scorer.score(g, self.device)
        record = {"step": state.step, "epoch": state.step * config.batch_size * self.parallel.world / len(self.data),
                  "images_seen": state.images_seen, "minutes": state.elapsed / 60,
                  "images_per_second": state.images_seen / max(state.elapsed, 1e-9),
                  "losses": self.losses(), **metrics, "selection_rule": self.rule}
        append_jsonl(out / "metrics.jsonl", record)
        state.last_score = metrics["score"]
        cond = torch.from_numpy(self.vocabulary.encode_batch(next(iter(self.scorer.sets.values())))).to(self.device)  # [N, C]
        fixed_noise = torch.from_numpy(make_noise(len(cond), g.config.z_dim, 0)).to(self.device)  # [N, Z]
        with torch.no_grad():
            save_sample_grid(g(fixed_noise, cond).float().cpu(), out / "samples" / f"step{state.step:07d}.png")
        plot_curves(out / "metrics.jsonl", out / "curves.png")
        checkpoint = generator_checkpoint(_cpu_copy(g), self.vocabulary, metrics, self.training_record())
        if metrics["selection"] > state.best_score:
            state.best_score = metrics["selection"]
            save_atomic(out / "best.pt", checkpoint)
        self.save_last()  # the state to resume from first; then the exportable copy of the latest generator
        save_atomic(out / "last-generator.pt", checkpoint)
        accs = " ".join(f"{k} {v['mean']:.3f}±{v['std']:.3f}" for k, v in metrics.items() if isinstance(v, dict) and "mean" in v)
        card = metrics.get("scorecard") or {}
        shown = (("diversity", ".3f"), ("layout_diversity", ".3f"), ("fidelity", ".2f"), ("recall", ".2f"))
        figures = "".join(f" {k} {card[k]:{spec}}" for k, spec in shown if k in card)
        figures += "".join(f" {k} {v:.3f}" for k, v in metrics.get("info", {}).items() if k != "images")
        self.console.print(f"step {state.step}{self._time_left()} ({state.elapsed / 60:.1f} min, "
                           f"{record['images_per_second']:.0f} img/s): "
                           f"{accs}{figures} selection {metrics['selection']:.3f} best {state.best_score:.3f}")

    def _time_left(self) -> str:
        """``/95540, ~13.2 h left``: the budget in iterations and the time to its end at the run's pace so far
        (a budget in minutes: the minutes left); '' before the first iteration."""
        state, config = self.state, self.config
        max_steps = budget_steps(config, self.steps_per_epoch)
        if max_steps is None:
            seconds = max(0.0, config.minutes * 60 - state.elapsed)
            return f", ~{seconds / 60:.0f} min left"
        if not state.step:
            return ""
        seconds = (max_steps - state.step) * state.elapsed / state.step
        left = f"{seconds / 3600:.1f} h" if seconds >= 5400 else f"{seconds / 60:.0f} min"
        return f"/{max_steps}, ~{left} left"

    def calibration_conditions(self) -> torch.Tensor:
        """[512, C] conditions the EMA generator's BatchNorm statistics are re-estimated on: training labels, or
        InfoGAN codes from a fixed seed."""
        if not self.config.info_categories:
            return self.data.labels[:512]
        return sample_codes(512, self.config.info_categories, self.config.info_continuous, torch.Generator().manual_seed(0))

    def losses(self) -> dict[str, float]:
        """The running means of the loss terms, as numbers."""
        return {k: float(v) for k, v in self.running.items()}

    def run_state(self) -> dict:
        """Everything needed to resume: config, weights and optimizer moments, RNG, state."""
        return {"config": self.config.to_dict(), "models": self.models.state(), "rng": rng_state(self.noise_gen),
                "state": asdict(self.state)}

    def save_last(self) -> None:
        """The run's state in ``last.pt`` (the one it replaces is kept as ``last-previous.pt``)."""
        save_last(self.out, self.run_state())

    def training_record(self) -> dict:
        """What a checkpoint says about how it was trained."""
        s = self.state
        record = {"preset": self.config.preset, "command": s.commands[0], "device": s.devices[-1],
                  "config": self.config.to_dict(), "step": s.step, "images_seen": s.images_seen,
                  "minutes": round(s.elapsed / 60, 2), "selection_rule": self.rule,
                  "evaluator": self.scorer.evaluator.info.get("metrics", {})}
        if len(s.commands) > 1:  # resumed: every command line in order, and where each ran
            record.update(commands=s.commands, devices=s.devices)
        record.update({k: v for k, v in (("init_from", s.init_from), ("branched_from", s.branched_from), ("guide", s.guide))
                       if v is not None})
        return record

    def close(self) -> None:
        """Give the run folder back; leave the process group this run created (data-parallel runs)."""
        self.lock.release()
        if self.parallel.created_group:
            import torch.distributed as dist

            dist.barrier()
            dist.destroy_process_group()


def train(config: TrainConfig, options: RunOptions) -> dict:
    """Train ``config`` into ``options.out``; keep ``best.pt`` by the selection rule and ``last.pt`` to resume.

    Under ``torchrun`` every process trains a replica on its own slice of each batch order (gradients
    averaged every step); rank 0 alone evaluates and writes files.
    """
    run = Run(config, options)
    try:
        run.open()
        with _stop_on_signals(run):
            return run.train()
    finally:
        run.close()


@contextlib.contextmanager
def _stop_on_signals(run: Run):
    """SIGTERM / SIGINT ask the run to save ``last.pt`` and stop after the current step; a second one acts at
    once (Ctrl-C: KeyboardInterrupt; every file is written atomically, so nothing is left half-written)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def ask_to_stop(signum, frame):
        run.stop_signal = signum
        run.console.print(f"{signal.Signals(signum).name}: saving last.pt after this step (again to stop at once)")
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

    previous = {sig: signal.signal(sig, ask_to_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _jsonable(options: RunOptions) -> dict:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(options).items()}


def _budget_spent(state: RunState, max_steps: int | None, minutes: float) -> float:
    """The share of the run's budget spent so far (1: done): iterations of ``max_steps``, else seconds of
    ``minutes``."""
    if max_steps is not None:
        return state.step / max_steps
    return state.elapsed / (minutes * 60) if minutes > 0 else 1.0


def _cpu_copy(g: nn.Module) -> nn.Module:
    return copy.deepcopy(g).cpu().to(memory_format=torch.contiguous_format).eval()
