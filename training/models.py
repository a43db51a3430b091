"""The networks of a training run: G, D and the EMA copy of G, with their optimizers."""

from __future__ import annotations

import copy

import torch
import torch.distributed as dist
import torch.nn as nn

from cgan_export.networks import build_generator
from cgan_export.cpu import cpu_has_native_bf16

from .discriminators import build_discriminator
from .losses import auxiliary_loss
from .presets import TrainConfig


def channels_last_for(config: TrainConfig, compiled: bool) -> bool:
    """Whether a run keeps weights and batches channels_last: the config's choice, except in compiled runs.
    Compiled on CUDA (torch 2.11, H100), channels_last weights failed inductor's stride check in the
    convolution backward for acgan, cdcgan, wgan-gp and sagan; the contiguous layout trained."""
    return config.channels_last and not compiled


def autocast_for(config: TrainConfig, device: torch.device) -> dict:
    """``torch.autocast`` arguments of a run: bf16 where the config asks and the device gains from it. On a
    CPU with native bf16 (Zen 4, AVX-512 BF16) bf16 trains ``best`` 1.5x faster; on an AVX2-only CPU it is 17x
    slower (reference kernels), so a CPU without runs fp32 (``cpu_has_native_bf16``). On CUDA (H200, batch 32)
    it was slower than fp32 with TF32 (0.87x eager, 0.77x compiled: ``benchmarks/train_speed.py --compile``),
    so CUDA runs fp32."""
    enabled = config.bf16 and device.type == "cpu" and cpu_has_native_bf16()
    return {"device_type": device.type, "dtype": torch.bfloat16, "enabled": enabled}


def precision_name(bf16: bool) -> str:
    """How a training's arithmetic is done, for its records: ``bf16 autocast`` or ``fp32``."""
    return "bf16 autocast" if bf16 else "fp32"


class Models:
    """G, D and the EMA copy of G, with their optimizers, and the auxiliary loss of the vocabulary's kind."""

    def __init__(self, config: TrainConfig, num_classes: int, image_size: int, device: torch.device,
                 world: int = 1, groups: tuple = (), channels_last: bool | None = None):
        self.world = world
        self.compile_d = config.loss != "wgan-gp"  # the gradient penalty's double backward is not compilable
        # channels_last weights (default: the config's); the loop turns them off for compiled runs (channels_last_for)
        self.channels_last = config.channels_last if channels_last is None else channels_last
        # (logits [B, C], labels [B, C]) -> loss: BCE, a CE per group, or InfoGAN's term for codes
        self.aux_loss = auxiliary_loss(groups, config.info_categories, config.info_weight)
        gcfg = {"num_classes": num_classes, "image_size": image_size, **config.generator_config}
        self.g = build_generator(config.generator, gcfg).to(device)
        dcfg = {"num_classes": num_classes, "image_size": config.d_resolution or image_size, **config.discriminator_config}
        if dcfg.get("group_heads"):  # one classification head per attribute group (seed 002)
            dcfg["group_heads"] = [list(members) for _, members in groups]
        self.d = build_discriminator(config.discriminator, dcfg).to(device)
        self.g_ema = copy.deepcopy(self.g).eval().requires_grad_(False) if config.ema_decay > 0 else None
        if self.channels_last:
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
        """``torch.compile`` G, and D unless the loss needs a double backward (wgan-gp), in place (state_dict
        keys unchanged; the EMA copy stays eager).  Inductor's own channels_last choice for convolution outputs is turned off: on CUDA
        (torch 2.11, H200) it failed its stride check in the acgan generator's transposed-convolution backward
        even with contiguous weights and batches."""
        import torch._inductor.config as inductor

        inductor.layout_optimization = False
        self.g.compile()
        if self.compile_d:
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


