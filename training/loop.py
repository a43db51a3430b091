"""The training loop: one function, ``train``, plus the small steps it is made of."""

from __future__ import annotations

import copy
import math
import os
import time
from dataclasses import MISSING, dataclass, fields
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn as nn
from rich.console import Console

from cgan_export.checkpoint import GENERATOR_KIND, generator_checkpoint, load_generator, make_noise
from cgan_export.errors import CganError
from cgan_export.evaluator import Evaluator, load_evaluator
from cgan_export.io import atomic_path
from cgan_export.networks import build_generator, generator_config

from . import losses
from .augment import diff_augment
from .conditions import colour_groups, image_weights, mix_conditions
from .data import CONDITION_FILES, ICLEVRData, load_dataset, to_float
from .discriminators import build_discriminator
from .guide import load_guide
from .presets import TrainConfig
from .progress import make_progress
from .report import append_jsonl, plot_curves, save_grid


@dataclass(frozen=True)
class RunOptions:
    """Where and how long to train (not part of the model's config)."""

    out: Path
    data: Path | None = None
    evaluator: Path = Path("exported/evaluator.pt")
    minutes: float | None = None  # total training minutes over all resumed runs
    epochs: float | None = None
    anneal: float = 0.0  # learning rates fall linearly to 0 over the budget's last ``anneal`` minutes (or epochs)
    resume: bool = False
    init_from: Path | None = None  # another run's last.pt: start from its weights and optimizer moments
    guide: Path | None = None  # a guide classifier file (training/guide.py), used when config.guide_weight > 0
    device: str = "auto"
    compile: bool | None = None  # torch.compile G and D; None: on CUDA only
    threads: int = 0
    show_progress: bool = True


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise CganError("--device cuda was asked for but no CUDA GPU is usable here")
    return torch.device(name)


@dataclass(frozen=True)
class Distributed:
    """This process's place in a data-parallel job (world 1: a plain single-process run)."""

    rank: int = 0
    world: int = 1
    created_group: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> tuple[Distributed, torch.device]:
    """Join the ``torchrun`` job described by the environment: NCCL on GPUs, gloo on CPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Distributed(), device
    if device.type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    created = not dist.is_initialized()
    if created:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Distributed(dist.get_rank(), dist.get_world_size(), created), device


class Models:
    """G, D and the EMA copy of G, with their optimizers kept beside."""

    def __init__(self, config: TrainConfig, num_classes: int, image_size: int, device: torch.device,
                 world: int = 1):
        self.world = world
        gcfg = {"num_classes": num_classes, "image_size": image_size, **config.generator_config}
        self.g = build_generator(config.generator, gcfg).to(device)
        dcfg = {"num_classes": num_classes, "image_size": config.d_resolution or image_size, **config.discriminator_config}
        self.d = build_discriminator(config.discriminator, dcfg).to(device)
        self.g_ema = copy.deepcopy(self.g).eval().requires_grad_(False) if config.ema_decay > 0 else None
        if config.channels_last:
            for net in (self.g, self.d, self.g_ema):
                if net is not None:
                    net.to(memory_format=torch.channels_last)
        if world > 1:  # every replica starts from rank 0's weights
            for net in (self.g, self.d, self.g_ema):
                for tensor in (net.state_dict().values() if net is not None else ()):
                    dist.broadcast(tensor, 0)
        self.opt_g = torch.optim.Adam(self.g.parameters(), config.lr_g, betas=config.betas)
        self.opt_d = torch.optim.Adam(self.d.parameters(), config.lr_d, betas=config.betas)
        self.base_lr = {self.opt_g: config.lr_g, self.opt_d: config.lr_d}

    def set_lr_factor(self, factor: float) -> None:
        """Both optimizers' learning rates = their config value x ``factor``."""
        for opt, base in self.base_lr.items():
            for group in opt.param_groups:
                group["lr"] = base * factor

    def optimize(self, loss: torch.Tensor, net: nn.Module, opt: torch.optim.Optimizer) -> None:
        """Backward ``loss``, average ``net``'s gradients over replicas, step ``opt``."""
        opt.zero_grad(set_to_none=True)
        loss.backward()
        self.average_gradients(net)
        opt.step()

    def average_gradients(self, net: nn.Module) -> None:
        """Data parallel: all-reduce and average ``net``'s gradients over the replicas (no-op alone)."""
        if self.world == 1:
            return
        grads = [p.grad for p in net.parameters() if p.grad is not None]
        flat = torch.cat([g.flatten() for g in grads])
        dist.all_reduce(flat)
        flat /= self.world
        for g, chunk in zip(grads, flat.split([g.numel() for g in grads])):
            g.copy_(chunk.view_as(g))

    def broadcast_buffers(self) -> None:
        """Data parallel: rank 0's BatchNorm / spectral-norm buffers on every replica (no-op alone)."""
        if self.world == 1:
            return
        for net in (self.g, self.d):
            for buffer in net.buffers():
                dist.broadcast(buffer, 0)

    def compile(self) -> None:
        """``torch.compile`` G and D in place (state_dict keys unchanged; the EMA copy stays eager)."""
        self.g.compile()
        self.d.compile()

    @property
    def inference_g(self) -> nn.Module:
        """The generator that is scored and shipped: the EMA copy when there is one."""
        return self.g_ema if self.g_ema is not None else self.g

    @torch.no_grad()
    def update_ema(self, decay: float, step: int) -> None:
        """EMA of G's weights (warm-up: decay grows with the step); buffers copied."""
        if self.g_ema is None:
            return
        d = min(decay, (1 + step) / (10 + step))
        for pe, p in zip(self.g_ema.parameters(), self.g.parameters()):
            pe.lerp_(p, 1.0 - d)
        for be, b in zip(self.g_ema.buffers(), self.g.buffers()):
            be.copy_(b)

    @torch.no_grad()
    def recalibrate_ema(self, labels: torch.Tensor, batches: int = 8, seed: int = 0) -> None:
        """Standing statistics: re-estimate the EMA generator's BatchNorm statistics from its own activations.

        The EMA weights never ran in train mode, so G's running statistics do not match them.
        ``labels`` [M, 24] are training conditions; noise comes from a private seeded generator.
        """
        if self.g_ema is None:
            return
        norms = [mod for mod in self.g_ema.modules() if isinstance(mod, nn.modules.batchnorm._BatchNorm)]
        if not norms:
            return
        momenta = [bn.momentum for bn in norms]
        for bn in norms:
            bn.reset_running_stats()
            bn.momentum = None  # cumulative average over the batches below
        gen = torch.Generator().manual_seed(seed)
        device = next(self.g_ema.parameters()).device
        self.g_ema.train()
        for chunk in labels.split(max(1, len(labels) // batches)):
            self.g_ema(torch.randn(len(chunk), self.g_ema.config.z_dim, generator=gen).to(device), chunk.to(device))
        self.g_ema.eval()
        for bn, momentum in zip(norms, momenta):
            bn.momentum = momentum

    def state(self) -> dict:
        """Weights and optimizer states for ``last.pt`` (learning rates are a function of the step)."""
        return {"g": self.g.state_dict(), "d": self.d.state_dict(),
                "g_ema": self.g_ema.state_dict() if self.g_ema is not None else None,
                "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict()}

    def load(self, state: dict) -> None:
        """Inverse of :meth:`state`."""
        for name, net in self._networks():
            net.load_state_dict(_network_state(state, name))
        self.opt_g.load_state_dict(state["opt_g"]), self.opt_d.load_state_dict(state["opt_d"])

    def _networks(self) -> list[tuple[str, nn.Module]]:
        return [(name, net) for name, net in (("g", self.g), ("d", self.d), ("g_ema", self.g_ema)) if net is not None]

    def load_for_finetuning(self, state: dict, config: TrainConfig) -> list[str]:
        """Another run's weights and Adam moments, under this run's optimizer settings (``betas``).

        Parameters these networks have and the source's lack (a branch added to a trained design, such
        as ``embed_hidden``) keep their initial values and start with fresh Adam moments; any other
        difference raises.  Returns the names of the new parameters.
        """
        new: dict[str, list[str]] = {}
        for name, net in self._networks():
            result = net.load_state_dict(_network_state(state, name), strict=False)
            if result.unexpected_keys:
                raise RuntimeError(f"the source has parameters this network lacks: {', '.join(result.unexpected_keys[:3])}")
            new[name] = list(result.missing_keys)
        for name, net, opt in (("g", self.g, self.opt_g), ("d", self.d, self.opt_d)):
            _load_moments(opt, net, state[f"opt_{name}"], set(new[name]))
            for group in opt.param_groups:
                group["betas"] = config.betas
        return new["g"] + new["d"]


def _network_state(state: dict, name: str) -> dict:
    """One network's saved weights; a run without EMA saved none, so its EMA copy starts from G."""
    return state["g"] if name == "g_ema" and state["g_ema"] is None else state[name]


def _load_moments(opt: torch.optim.Optimizer, net: nn.Module, saved: dict, new: set[str]) -> None:
    """Load ``saved`` Adam state into ``opt`` for every parameter of ``net`` except the ``new`` ones."""
    old = [p for n, p in net.named_parameters() if n not in new]  # the source's parameters, in its order
    source = torch.optim.Adam(old)
    source.load_state_dict(saved)
    for p in old:
        opt.state[p] = source.state[p]


def lr_factor(config: TrainConfig, options: RunOptions, step: int, steps_per_epoch: int, elapsed: float,
              max_steps: int | None) -> float:
    """The learning-rate multiplier at ``step``: the preset's step decay times the end-of-budget anneal.

    Step decay: ``lr_gamma`` every ``lr_step_epochs`` completed epochs.  Anneal: linear to 0 over the
    last ``options.anneal`` epochs (``--epochs`` budget) or minutes (``--minutes`` budget).
    """
    factor = config.lr_gamma ** (step // steps_per_epoch // config.lr_step_epochs) if config.lr_step_epochs else 1.0
    if options.anneal > 0 and max_steps is not None:
        factor *= min(1.0, max(0.0, (max_steps - step) / (options.anneal * steps_per_epoch)))
    elif options.anneal > 0 and options.minutes is not None:
        factor *= min(1.0, max(0.0, (options.minutes * 60 - elapsed) / (options.anneal * 60)))
    return factor


def d_input(x: torch.Tensor, config: TrainConfig) -> torch.Tensor:
    """What D sees: DiffAugment, after an area downsample to ``config.d_resolution`` when set."""
    if config.d_resolution and x.shape[-1] > config.d_resolution:
        x = nn.functional.adaptive_avg_pool2d(x, config.d_resolution)
    return diff_augment(x, config.diffaugment)


def d_step(m: Models, config: TrainConfig, real: torch.Tensor, labels: torch.Tensor, fake_labels: torch.Tensor,
           noise: torch.Tensor, autocast: dict) -> dict:
    """One discriminator update on a real batch and a generated one (drawn for ``fake_labels``)."""
    d_loss_fn = losses.ADVERSARIAL[config.loss][0]
    with torch.autocast(**autocast):
        with torch.no_grad():
            fake = m.g(noise, fake_labels)  # [B, 3, H, W]
        real_adv, real_aux = m.d(d_input(real, config), labels)
        fake_adv, _ = m.d(d_input(fake.float(), config), fake_labels)
    loss = d_loss_fn(real_adv, fake_adv)
    out = {"d_adv": loss.item()}
    if real_aux is not None and config.aux_weight_d > 0:
        aux = losses.aux_bce(real_aux, labels)
        loss = loss + config.aux_weight_d * aux
        out["d_aux"] = aux.item()
    if config.loss == "wgan-gp":
        gp = losses.gradient_penalty(lambda x: m.d(x, labels)[0], d_input(real, config), d_input(fake.float(), config))
        loss = loss + config.gp_weight * gp
        out["gp"] = gp.item()
    m.optimize(loss, m.d, m.opt_d)
    return out


def g_step(m: Models, config: TrainConfig, labels: torch.Tensor, noise: torch.Tensor, step: int, autocast: dict,
           guide: nn.Module | None = None) -> dict:
    """One generator update: adversarial loss plus the (ramped) auxiliary classification loss, plus the frozen
    guide classifier's loss on the same (augmented) images when there is one.

    With a mode-seeking weight the batch's second half repeats the first half's conditions, so each
    condition is drawn twice with different noise.
    """
    g_loss_fn = losses.ADVERSARIAL[config.loss][1]
    half = len(labels) // 2
    if config.mode_seeking_weight > 0 and half:
        labels = torch.cat([labels[:half], labels[:half], labels[2 * half:]])  # [B, 24]
    m.d.requires_grad_(False)  # D's weight gradients are not needed here: only the path to G
    with torch.autocast(**autocast):
        fake = m.g(noise, labels)
        seen = d_input(fake.float(), config)  # [B, 3, H, W]
        fake_adv, fake_aux = m.d(seen, labels)
        guide_logits = guide(seen) if guide is not None and config.guide_weight > 0 else None  # [B, 24]
    loss = g_loss_fn(fake_adv)
    out = {"g_adv": loss.item()}
    if guide_logits is not None:
        guided = losses.aux_bce(guide_logits, labels)
        loss = loss + config.guide_weight * guided
        out["g_guide"] = guided.item()
    weight = losses.ramp(step, config.aux_weight_g, config.aux_ramp_steps)
    if fake_aux is not None and weight > 0:
        aux = losses.aux_bce(fake_aux, labels)
        loss = loss + weight * aux
        out["g_aux"] = aux.item()
    if config.mode_seeking_weight > 0 and half:
        ms = losses.mode_seeking(fake, noise)
        loss = loss + config.mode_seeking_weight * ms
        out["g_ms"] = ms.item()
    m.optimize(loss, m.g, m.opt_g)
    m.d.requires_grad_(True)
    return out


def eval_conditions(data: ICLEVRData) -> dict[str, torch.Tensor]:
    """Multi-hot conditions of the folder's test files (or 32 training conditions when it has none)."""
    sets = {f.removesuffix(".json"): torch.from_numpy(data.vocabulary.encode_batch(data.conditions(f)))
            for f in CONDITION_FILES if (data.root / f).is_file()}
    return sets or {"train-sample": data.labels[:32].clone()}


@torch.no_grad()
def score_generator(g: nn.Module, evaluator: Evaluator, sets: dict[str, torch.Tensor], seeds: int,
                    device: torch.device) -> dict:
    """Lab accuracy per condition set: mean and std over ``seeds`` noise seeds, plus their mean ``score``."""
    g.eval()
    metrics: dict = {}
    for name, cond in sets.items():
        accs = []
        for seed in range(seeds):
            noise = torch.from_numpy(make_noise(len(cond), g.config.z_dim, seed)).to(device)
            images = g(noise, cond.to(device)).float().cpu()  # [N, 3, H, W]
            accs.append(evaluator.accuracy(images, cond))
        t = torch.tensor(accs)
        metrics[name] = {"mean": t.mean().item(), "std": t.std(unbiased=False).item(), "seeds": seeds}
    metrics["score"] = sum(v["mean"] for v in metrics.values()) / len(sets)
    return metrics


def _rng_state(noise_gen: torch.Generator) -> dict:
    state = {"torch": torch.get_rng_state(), "noise": noise_gen.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict, noise_gen: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    noise_gen.set_state(state["noise"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _save(path: Path, obj: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


SCORING_FIELDS = ("eval_every", "eval_seeds")  # how a run is scored, not how it trains: a resume may change them


def _check_resume_config(saved: dict, config: TrainConfig, out: Path) -> None:
    wanted = {k: v for k, v in config.to_dict().items() if k not in SCORING_FIELDS}
    saved = {k: v for k, v in saved.items() if k not in SCORING_FIELDS}
    defaults = {f.name: f.default for f in fields(TrainConfig) if f.default is not MISSING}
    saved = {**{k: defaults[k] for k in wanted if k not in saved and k in defaults}, **saved}
    diff = sorted(k for k in set(saved) | set(wanted) if saved.get(k) != wanted.get(k))
    if diff:
        details = ", ".join(f"{k}: run has {saved.get(k)!r}, asked {wanted.get(k)!r}" for k in diff)
        raise CganError(f"--resume: {out / 'last.pt'} was trained with another config ({details})")


def epoch_order(seed: int, epoch: int, n: int, weights: torch.Tensor | None = None) -> torch.Tensor:
    """The image order of one epoch (a pure function of its arguments, so resume replays it): a shuffle,
    or ``n`` draws with replacement in proportion to ``weights`` [n]."""
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    if weights is None:
        return torch.randperm(n, generator=gen)
    return torch.multinomial(weights, n, replacement=True, generator=gen)


def train(config: TrainConfig, options: RunOptions) -> dict:
    """Train ``config`` into ``options.out``; keep ``best.pt`` by lab accuracy and ``last.pt`` to resume.

    Under ``torchrun`` every process trains a replica on its own slice of each batch order (gradients
    averaged every step); rank 0 alone evaluates and writes files.
    """
    ddp, device = init_distributed(resolve_device(options.device))
    if options.threads:
        torch.set_num_threads(options.threads)
    out = Path(options.out)
    last_path = out / "last.pt"
    if last_path.exists() and not options.resume:
        raise CganError(f"{out} already holds a run: pass --resume to continue it, or choose another --out")
    evaluator = load_evaluator(options.evaluator)
    evaluator_id = evaluator.info["sha256"][:16]
    data = load_dataset(options.data)
    sets = eval_conditions(data)
    groups = colour_groups(data.vocabulary)  # [24] colour of each object
    weights = image_weights(data.labels, groups, config.same_colour_weight)  # [N] or None (uniform)
    torch.manual_seed(config.seed)
    m = Models(config, len(data.vocabulary), int(data.images.shape[-1]), device, ddp.world)
    noise_gen = torch.Generator().manual_seed(config.seed + 1 + ddp.rank)
    z_dim = m.g.config.z_dim
    steps_per_epoch = len(data) // (config.batch_size * ddp.world)
    state = {"step": 0, "elapsed": 0.0, "best_score": -1.0, "images_seen": 0}
    console = Console(stderr=True)
    if options.resume and last_path.exists():
        saved = torch.load(last_path, map_location=device, weights_only=True)
        _check_resume_config(saved["config"], config, out)
        m.load(saved["models"])
        _set_rng_state(saved["rng"], noise_gen)
        if ddp.rank:  # rank 0's generator state was saved; the others get their own stream back
            noise_gen.manual_seed(config.seed + 1 + ddp.rank + 7919 * saved["state"]["step"])
        state = saved["state"]
        console.print(f"resumed {out} at step {state['step']} ({state['elapsed'] / 60:.1f} min trained)")
        why = ("the evaluator changed" if state.get("evaluator") != evaluator_id
               else "the number of scoring seeds changed" if saved["config"].get("eval_seeds") != config.eval_seeds else "")
        if ddp.main and why:
            state["best_score"] = _rescore_best(out / "best.pt", evaluator, sets, config.eval_seeds, device, console, why)
    elif options.init_from is not None:
        state["init_from"] = _init_from(m, config, Path(options.init_from), device, console)
    state["evaluator"] = evaluator_id
    guide = _open_guide(config, options, state, data.vocabulary.to_mapping(), device)
    if options.compile or (options.compile is None and device.type == "cuda"):
        m.compile()
    max_steps = _max_steps(options, steps_per_epoch)
    autocast = {"device_type": device.type, "dtype": torch.bfloat16, "enabled": config.bf16}
    start_elapsed, t0 = state["elapsed"], time.time()
    fixed_noise = torch.from_numpy(make_noise(len(next(iter(sets.values()))), z_dim, 0)).to(device)
    running: dict[str, float] = {}
    order_epoch, order = -1, torch.empty(0, dtype=torch.long)
    with make_progress(disable=not (options.show_progress and ddp.main)) as progress:
        task = progress.add_task(config.preset, total=max_steps or None, completed=state["step"], info="")
        while True:
            state["elapsed"] = _agreed_clock(start_elapsed + time.time() - t0, ddp, device)
            if _done(state, max_steps, options.minutes):
                break
            step = state["step"]
            epoch, pos = divmod(step, steps_per_epoch)
            first = (pos * ddp.world + ddp.rank) * config.batch_size
            if epoch != order_epoch:  # one shuffle (or weighted draw) per epoch, not per step
                order_epoch, order = epoch, epoch_order(config.seed, epoch, len(data), weights)
            idx = order[first:first + config.batch_size]
            real = to_float(data.images[idx]).to(device)  # [B, 3, H, W]
            if config.channels_last:
                real = real.contiguous(memory_format=torch.channels_last)
            labels = data.labels[idx]  # [B, 24]
            fake_labels = mix_conditions(labels, config.random_condition_fraction, groups, config.random_same_colour,
                                         noise_gen).to(device)  # [B, 24] what G draws
            labels = labels.to(device)
            m.set_lr_factor(lr_factor(config, options, step, steps_per_epoch, state["elapsed"], max_steps))
            m.g.train(), m.d.train()
            for _ in range(config.n_critic):
                noise = torch.randn(len(idx), z_dim, generator=noise_gen).to(device)
                logs = d_step(m, config, real, labels, fake_labels, noise, autocast)
            noise = torch.randn(len(idx), z_dim, generator=noise_gen).to(device)
            if step >= config.d_warmup_steps:  # before that, D alone learns against the frozen G
                logs.update(g_step(m, config, fake_labels, noise, step, autocast, guide))
            m.broadcast_buffers()
            if step >= config.d_warmup_steps:
                m.update_ema(config.ema_decay, step + state.get("init_from", {}).get("step", 0))  # no fresh EMA warm-up when fine-tuning
            for k, v in logs.items():
                running[k] = 0.98 * running.get(k, v) + 0.02 * v
            state["step"] = step + 1
            state["images_seen"] += len(idx) * config.n_critic * ddp.world
            info = " ".join(f"{k} {v:.3f}" for k, v in running.items()) + f" acc {state.get('last_score', 0):.3f}"
            progress.update(task, completed=state["step"], info=info)
            if state["step"] % config.eval_every == 0 and ddp.main:
                state["elapsed"] = start_elapsed + time.time() - t0
                _evaluate_and_save(m, config, data, evaluator, sets, state, running, fixed_noise, noise_gen,
                                   out, device, console)
    if ddp.main and (state["step"] % config.eval_every != 0 or not (out / "best.pt").exists()):
        _evaluate_and_save(m, config, data, evaluator, sets, state, running, fixed_noise, noise_gen, out, device, console)
    if ddp.created_group:
        dist.barrier()
        dist.destroy_process_group()
    return {"step": state["step"], "best_score": state["best_score"], "minutes": state["elapsed"] / 60,
            "generator": m.inference_g}


def _init_from(m: Models, config: TrainConfig, path: Path, device: torch.device, console: Console) -> dict:
    """Load another run's ``last.pt`` into ``m`` (same networks, any other settings), or only G and its
    EMA copy from a generator checkpoint (``best.pt``, ``exported/generator.pt``: D starts fresh);
    returns where it came from."""
    try:
        saved = torch.load(path, map_location=device, weights_only=True)
        if isinstance(saved, dict) and saved.get("kind") == GENERATOR_KIND:
            return _init_from_generator(m, saved, path, console)
        fresh = m.load_for_finetuning(saved["models"], config)
    except FileNotFoundError:
        raise CganError(f"--init-from: {path} does not exist") from None
    except (KeyError, TypeError, RuntimeError, ValueError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CganError(f"--init-from: {path} is not a run's last.pt with the same networks as this preset ({first})") from None
    source = {"path": str(path), "step": saved["state"]["step"], "images_seen": saved["state"]["images_seen"],
              "minutes": round(saved["state"]["elapsed"] / 60, 2), "config": saved["config"]}
    if "init_from" in saved["state"]:  # a fine-tune of a fine-tune: keep the whole lineage
        source["init_from"] = saved["state"]["init_from"]
    console.print(f"starting from {path} (step {source['step']}, {source['minutes']:.1f} min trained)")
    if fresh:
        console.print(f"new parameters, not in the source, start from their initial values: {', '.join(fresh)}")
    return source


def _init_from_generator(m: Models, saved: dict, path: Path, console: Console) -> dict:
    """G and its EMA copy from a generator checkpoint; D and both optimizers keep their fresh state."""
    if saved["architecture"] != m.g.architecture or saved["config"] != generator_config(m.g):
        raise CganError(f"--init-from: {path} holds a {saved['architecture']} generator with config {saved['config']}, "
                        f"not this run's {m.g.architecture} {generator_config(m.g)}")
    for net in (m.g, m.g_ema):
        if net is not None:
            net.load_state_dict(saved["state_dict"])
    training = saved.get("training", {})
    source = {"path": str(path), "step": training.get("step", 0), "images_seen": training.get("images_seen", 0),
              "minutes": training.get("minutes", 0.0), "config": training.get("config", {}), "generator_only": True}
    if "init_from" in training:
        source["init_from"] = training["init_from"]
    console.print(f"starting G from the generator checkpoint {path} (step {source['step']}); D starts fresh")
    return source


def _open_guide(config: TrainConfig, options: RunOptions, state: dict, vocabulary: dict,
                device: torch.device) -> nn.Module | None:
    """The frozen guide classifier when ``config.guide_weight`` > 0 (``--guide``, else the file the run started
    with); its path, hash and held-out accuracy go into ``state`` and from there into every checkpoint."""
    if config.guide_weight <= 0:
        return None
    path = options.guide or (Path(state["guide"]["path"]) if "guide" in state else None)
    if path is None:
        raise CganError("guide_weight > 0 needs a guide classifier file: pass --guide PATH (python cli.py guide train)")
    net, info = load_guide(path, device)
    if info["vocabulary"] != vocabulary:
        raise CganError(f"--guide {path} was trained on another vocabulary than this data folder's objects.json")
    if "guide" in state and state["guide"]["sha256"] != info["sha256"]:
        raise CganError(f"--guide {path} is not the guide classifier this run was trained with")
    state["guide"] = {"path": str(path), "sha256": info["sha256"],
                      "holdout_lab_accuracy": info["metrics"]["holdout_lab_accuracy"], "config": info["config"]}
    return net


def _rescore_best(path: Path, evaluator: Evaluator, sets: dict[str, torch.Tensor], seeds: int,
                  device: torch.device, console: Console, why: str) -> float:
    """The score of the run's ``best.pt`` under this evaluator and number of seeds, which are not the ones that
    picked it (``why`` says which changed); -1 if there is none."""
    if not path.exists():
        return -1.0
    g, _ = load_generator(path)
    score = score_generator(g.to(device), evaluator, sets, seeds, device)["score"]
    console.print(f"{why} since {path} was picked: its score now is {score:.3f}")
    return score


def _agreed_clock(elapsed: float, ddp: Distributed, device: torch.device) -> float:
    """The training clock every rank agrees on (the slowest one's), so budget and anneal match on all replicas."""
    if ddp.world == 1:
        return elapsed
    t = torch.tensor([elapsed], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t.item())


def _max_steps(options: RunOptions, steps_per_epoch: int) -> int | None:
    if options.epochs is not None:
        return max(1, math.ceil(options.epochs * steps_per_epoch))
    return None


def _done(state: dict, max_steps: int | None, minutes: float | None) -> bool:
    if max_steps is not None and state["step"] >= max_steps:
        return True
    return minutes is not None and state["elapsed"] >= minutes * 60


def _evaluate_and_save(m: Models, config: TrainConfig, data: ICLEVRData, evaluator: Evaluator,
                       sets: dict[str, torch.Tensor], state: dict, running: dict, fixed_noise: torch.Tensor,
                       noise_gen: torch.Generator, out: Path, device: torch.device, console: Console) -> None:
    """Score the inference generator, write metrics, samples, curves, ``best.pt`` and ``last.pt``."""
    m.recalibrate_ema(data.labels[:512], seed=state["step"])
    g = m.inference_g
    metrics = score_generator(g, evaluator, sets, config.eval_seeds, device)
    record = {"step": state["step"], "epoch": state["step"] * config.batch_size / len(data),
              "images_seen": state["images_seen"], "minutes": state["elapsed"] / 60,
              "images_per_second": state["images_seen"] / max(state["elapsed"], 1e-9),
              "losses": dict(running), **metrics}
    append_jsonl(out / "metrics.jsonl", record)
    state["last_score"] = metrics["score"]
    cond = next(iter(sets.values())).to(device)
    with torch.no_grad():
        save_grid(g(fixed_noise, cond).float().cpu(), out / "samples" / f"step{state['step']:07d}.png")
    plot_curves(out / "metrics.jsonl", out / "curves.png")
    training = {"preset": config.preset, "config": config.to_dict(), "step": state["step"],
                "images_seen": state["images_seen"], "minutes": round(state["elapsed"] / 60, 2),
                "evaluator": evaluator.info.get("metrics", {})}
    if "init_from" in state:  # where the weights came from, each run with its settings, back to a fresh start
        training["init_from"] = state["init_from"]
    if "guide" in state:
        training["guide"] = state["guide"]
    if metrics["score"] > state["best_score"]:
        state["best_score"] = metrics["score"]
        _save(out / "best.pt", generator_checkpoint(_cpu_copy(g), data.vocabulary, metrics, training))
    _save(out / "last.pt", {"config": config.to_dict(), "models": m.state(), "rng": _rng_state(noise_gen),
                            "state": dict(state)})
    accs = " ".join(f"{k} {v['mean']:.3f}±{v['std']:.3f}" for k, v in metrics.items() if isinstance(v, dict))
    console.print(f"step {state['step']} ({state['elapsed'] / 60:.1f} min, "
                  f"{record['images_per_second']:.0f} img/s): {accs} best {state['best_score']:.3f}")


def _cpu_copy(g: nn.Module) -> nn.Module:
    return copy.deepcopy(g).cpu().to(memory_format=torch.contiguous_format).eval()
