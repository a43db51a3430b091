"""How a run carries on from a checkpoint: its state record, and the resume of an interrupted run or the branch
from another run's snapshot (weights, optimizer moments, RNG states), mixed into ``training.loop.Run``."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path

from cgan_export.errors import CganError, ModelFileError
from cgan_export.io import atomic_path

from .presets import check_resume_config
from .report import read_jsonl
from .run_folder import load_last, read_run_checkpoint, set_rng_state


@dataclass
class RunState:
    """What a run has done so far; saved in ``last.pt`` and in every checkpoint's ``training`` record."""

    step: int = 0  # iterations done
    elapsed: float = 0.0  # training seconds over all resumes
    images_seen: int = 0  # real images D has seen
    best_score: float = -1.0  # the selection value of best.pt
    last_score: float = 0.0  # the mean lab accuracy at the last evaluation
    evaluator: str = ""  # sha256 prefix of the evaluator that scored the run
    selection_rule: str = ""  # the rule best.pt was picked by
    init_from: dict | None = None  # where a fine-tune's weights came from, back to a fresh start
    branched_from: dict | None = None  # the snapshot of another run this one carried on from (path, step)
    guide: dict | None = None  # the guide classifier's path, hash and accuracy
    commands: list = field(default_factory=list)  # the command lines that started and resumed the run
    devices: list = field(default_factory=list)  # what each of them trained on (training.options.describe_device)
    extra: dict = field(default_factory=dict)  # keys of older runs this version does not know

    @classmethod
    def from_dict(cls, saved: dict) -> "RunState":
        """A saved state (older runs may lack keys or carry others)."""
        known = {f.name for f in fields(cls)} - {"extra"}
        return cls(**{k: v for k, v in saved.items() if k in known},
                   extra={k: v for k, v in saved.items() if k not in known})


class CarryOn:
    """The resume and branch steps of ``Run.open`` (they read and set the run's models, state and RNG)."""

    def _restore_rng(self, saved: dict, step: int) -> None:
        set_rng_state(saved, self.noise_gen)
        if self.parallel.rank:  # rank 0's generator state was saved; the others get their own stream back
            self.noise_gen.manual_seed(self.config.seed + 1 + self.parallel.rank + 7919 * step)

    def _load_run(self, saved: dict, source: str) -> RunState:
        """Weights and optimizer moments of a run checkpoint (``source`` names it in errors; its RNG states are
        restored at the end of :meth:`open`); its state."""
        try:
            check_resume_config(saved["config"], self.config, self.out, source)
            self.models.load(saved["models"])
        except (KeyError, TypeError) as exc:
            raise ModelFileError(f"{source.format(out=self.out)} is not a run checkpoint ({exc})") from None
        self.saved_rng = (saved["rng"], saved["state"]["step"])
        return RunState.from_dict(saved["state"])

    def _branch_source(self, has_run: bool) -> RunState | None:
        """Load the snapshot ``--branch-from`` names (checked against this run's config); its state. None: no branch,
        or ``--resume`` of a branch already started."""
        if self.options.branch_from is None or (self.options.resume and has_run):
            return None
        if has_run:
            raise CganError(f"--branch-from: {self.out} already holds a run; choose a new --out, or add --resume")
        return self._load_run(read_run_checkpoint(Path(self.options.branch_from)), f"--branch-from: {self.options.branch_from}")

    def _branch(self, path: Path, state: RunState) -> None:
        """Carry on from a snapshot of another run as that run would have (step, weights, moments, RNG), under
        this run's budget options; its metrics up to the snapshot come along, best.pt is picked anew."""
        source = path.parent.parent / "metrics.jsonl"  # RUN/snapshots/stepN.pt -> RUN/metrics.jsonl
        if self.parallel.main and source.is_file():
            with atomic_path(self.out / "metrics.jsonl") as tmp:
                tmp.write_text("".join(json.dumps(r) + "\n" for r in read_jsonl(source) if r.get("step", 0) <= state.step))
        state.best_score, state.evaluator, state.selection_rule = -1.0, self.state.evaluator, self.rule
        state.branched_from = {"path": str(path), "step": state.step}
        self.console.print(f"branched from {path} at step {state.step} ({state.elapsed / 60:.1f} min trained)")
        self.state = state

    def _resume(self) -> None:
        saved = load_last(self.out, self._report_fallback)  # on the CPU: RNG states must stay there
        old = self._load_run(saved, "--resume: {out}/last.pt")
        self.console.print(f"resumed {self.out} at step {old.step} ({old.elapsed / 60:.1f} min trained)")
        why = ("the evaluator changed" if old.evaluator != self.state.evaluator
               else "the selection rule changed" if old.selection_rule != self.rule
               else "the number of scoring seeds changed" if saved["config"].get("eval_seeds") != self.config.eval_seeds
               else "")
        if self.parallel.main and why:
            old.best_score = self.scorer.rescore(self.out / "best.pt", self.device)
            self.console.print(f"{why} since best.pt was picked: its selection value now is {old.best_score:.3f}")
        old.evaluator, old.selection_rule = self.state.evaluator, self.rule
        self.state = old

    def _report_fallback(self, message: str) -> None:
        reached = max((r["step"] for r in read_jsonl(self.out / "metrics.jsonl")), default=None) \
            if (self.out / "metrics.jsonl").exists() else None
        lost = f"; metrics.jsonl had reached step {reached}" if reached is not None else ""
        self.console.print(f"warning: {message}{lost}")
