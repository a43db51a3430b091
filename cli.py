"""cgan-export command line: train, export, generate, evaluate, bench, evaluator, guide."""

from __future__ import annotations

import dataclasses
import functools
import importlib
import importlib.util
import json
import shlex
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Callable, Optional

import typer

from cgan_export.errors import CganError, missing_extra
from cgan_export.help_text import PRESET_SCHEDULES, examples
from cgan_export.contract import ALL_FORMATS, ENGINES, EXPORT_FORMATS, OUTPUT_FORMATS, STEMS
from cgan_export.paths import EXPORTED_DIR as EXPORTED
from cgan_export.precision import PRECISIONS
from cgan_export.runtime import BACKENDS, DEVICES

# The training package: ``training/`` in a checkout, ``cgan_export.training`` in an installed wheel (which puts
# no generic top-level name into site-packages).
TRAINING = "cgan_export.training" if importlib.util.find_spec("cgan_export.training") else "training"


def training_names(module: str, *names: str) -> tuple:
    """``names`` from the training package's ``module``, wherever the package is installed."""
    loaded = importlib.import_module(f"{TRAINING}.{module}")
    return tuple(getattr(loaded, name) for name in names)

app = typer.Typer(help="Exportable conditional GAN for i-CLEVR scenes.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)
evaluator_app = typer.Typer(help="The lab evaluator (ResNet-18 scorer).", no_args_is_help=True)
app.add_typer(evaluator_app, name="evaluator")
guide_app = typer.Typer(help="The guide classifier: a small frozen classifier whose loss can join G's objective "
                             "(--set guide_weight=W); never the evaluator.", no_args_is_help=True)
app.add_typer(guide_app, name="guide")

DataOption = Annotated[Optional[Path], typer.Option("--data", help="Data folder in the lab layout, e.g. ../shared/anime-faces "
                                                    "(default: $CGAN_EXPORT_DATA or ../shared/iclevr).")]
EvaluatorOption = Annotated[Optional[Path], typer.Option("--evaluator", help="Evaluator file (default: the shipped one "
                                                         "whose classes are the data's or model's).")]


def choices(name: str, values) -> type[Enum]:
    """A Typer choice type built from the values a module defines (one list of each, kept there)."""
    return Enum(name, {v.replace("-", "_"): v for v in values}, type=str)


Backend = choices("Backend", BACKENDS)  # onnx, torchscript, torch
Device = choices("Device", DEVICES)  # auto, cuda, cpu
Stem = choices("Stem", STEMS)  # the evaluator's ResNet-18 stems
ExportFormatChoice = choices("ExportFormatChoice", [f for f in EXPORT_FORMATS if f != "onnx-fp16"] + ["all"])
OutputFormat = choices("OutputFormat", OUTPUT_FORMATS)  # png, npz
TritonKind = choices("TritonKind", ("auto", "gpu", "cpu"))
Engine = choices("Engine", ENGINES)  # local, ray
Precision = choices("Precision", PRECISIONS)  # auto, fp32, int8
PrecisionOption = Annotated[Precision, typer.Option(help="ONNX on the CPU: auto runs the int8 file beside the model "
                                                   "(generator.int8.onnx) where this CPU runs it faster (measured "
                                                   "once, recorded); fp32 or int8 choose.")]
RayAddressOption = Annotated[Optional[str], typer.Option(help="--engine ray: join this cluster (default: a local Ray "
                                                         "on this machine's CPUs).")]


def friendly_errors(fn: Callable) -> Callable:
    """Turn a CganError (bad input) or a missing optional extra into one line on stderr and exit code 1; Ctrl-C
    into exit 130."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            try:
                return fn(*args, **kwargs)
            except ModuleNotFoundError as exc:  # torch, onnx, ray ...: an extra this install lacks
                raise missing_extra(exc, fn.__name__.replace("_", " ")) or exc from None
        except CganError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None
    return wrapper


ADVANCED = "Advanced: experiments"


@app.command(epilog=examples("train"))
@friendly_errors
def train(
    data: DataOption = None,
    preset: Annotated[Optional[str], typer.Option(help="The recipe, with its schedule: " + "; ".join(
        f"{name}: {schedule}" for name, schedule in PRESET_SCHEDULES.items()) + ". Default: faces for a data "
        "folder with groups.json, else best.")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Run folder (default: ~/.cache/cgan-export/runs/PRESET).")] = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in --out from its last.pt, with the data, preset and "
                                         "fields it was started with (a budget option or --set may change its "
                                         "schedule).")] = False,
    device: Annotated[Device, typer.Option(help="auto: CUDA when available, else CPU. On CUDA a preset may train "
                                           "a larger batch with scaled learning rates (best: 128), compiled, TF32.")] = Device("auto"),
    seed: Annotated[Optional[int], typer.Option(help="Seed of weights, data order and noise (default: 0).")] = None,
    threads: Annotated[int, typer.Option(help="CPU threads (0: torch's default).")] = 0,
    epochs: Annotated[Optional[float], typer.Option(min=0.001, rich_help_panel=ADVANCED,
                                                    help="Replace the preset's budget by this many epochs.")] = None,
    minutes: Annotated[Optional[float], typer.Option(min=0.0, rich_help_panel=ADVANCED,
                                                     help="Replace the preset's budget by this many training minutes "
                                                     "(over all resumes).")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", rich_help_panel=ADVANCED, help="Override a preset field, "
                                                      "KEY=VALUE (JSON value), e.g. --set anneal=10; repeatable.")] = None,
    batch_size: Annotated[Optional[int], typer.Option(rich_help_panel=ADVANCED, help="Override the preset's batch size (on every device).")] = None,
    eval_every: Annotated[Optional[int], typer.Option(rich_help_panel=ADVANCED, help="Score and checkpoint every K iterations.")] = None,
    snapshot_every: Annotated[int, typer.Option(min=0, rich_help_panel=ADVANCED, help="Every K iterations, keep a "
                                                "resumable copy of the run in OUT/snapshots/stepK.pt (0: none).")] = 0,
    branch_from: Annotated[Optional[Path], typer.Option(rich_help_panel=ADVANCED, help="Carry on from a snapshot of "
                                                        "another run (its step, weights and RNG) under this command's "
                                                        "schedule, in a new --out: e.g. a longer budget from before its "
                                                        "guide joined.")] = None,
    init_from: Annotated[Optional[Path], typer.Option(rich_help_panel=ADVANCED, help="Fine-tune: start a new run from "
                                                      "another run's last.pt (same networks; other settings may "
                                                      "differ), or from a generator checkpoint such as "
                                                      "exported/generator.pt (D starts fresh: see --set d_warmup_steps=K).")] = None,
    guide: Annotated[Optional[Path], typer.Option(rich_help_panel=ADVANCED, help="Guide classifier file (python cli.py "
                                                  "guide train) for a preset with a guide weight (best); without it the "
                                                  "run trains its own into OUT/guide.pt first. A resumed run reopens its own.")] = None,
    evaluator: Annotated[Optional[Path], typer.Option(rich_help_panel=ADVANCED, help="Evaluator file (default: the "
                                                      "shipped one whose classes are the data's).")] = None,
    compile: Annotated[Optional[bool], typer.Option("--compile/--no-compile", rich_help_panel=ADVANCED,
                                                    help="torch.compile G and D (default: on CUDA only).")] = None,
) -> None:
    """Train a preset to the end of its own schedule; keeps best.pt (by the selection rule: accuracy gated by
    diversity and fidelity) and last.pt (to --resume) in the run folder; SIGTERM or Ctrl-C saves last.pt and stops."""
    RunOptions, run_training = training_names("loop", "RunOptions", "train")
    TrainRequest, resolve_run = training_names("command", "TrainRequest", "resolve_run")
    run = resolve_run(TrainRequest(preset=preset, out=out, data=data, evaluator=evaluator, resume=resume, seed=seed,
                                   batch_size=batch_size, eval_every=eval_every, epochs=epochs, minutes=minutes,
                                   sets=tuple(set_ or ())))
    if branch_from is not None and init_from is not None:
        raise CganError("--branch-from and --init-from both say where a run starts: give one")
    out = run.out
    result = run_training(run.config, RunOptions(
        out=out, data=run.data, evaluator=run.evaluator, resume=resume, init_from=init_from, snapshot_every=snapshot_every,
        branch_from=branch_from, guide=guide, device=device.value, threads=threads, compile=compile,
        show_progress=sys.stderr.isatty(), command=command_line()))
    if result["stopped_by"] is not None:
        typer.echo(f"stopped at step {result['step']} ({result['minutes']:.1f} min): last.pt saved; continue with "
                   f"--resume --out {out}")
        return
    typer.echo(f"done: {result['step']} steps, {result['minutes']:.1f} min, best selection value "
               f"{result['best_score']:.4f}; best checkpoint {out / 'best.pt'}")


def command_line() -> str:
    """This process's command line as a user would type it again (``python cli.py train ...``)."""
    program = Path(sys.argv[0]).name
    head = ["python", "cli.py"] if program == "cli.py" else [program]
    return shlex.join(head + sys.argv[1:])


@app.command(epilog=examples("export"))
@friendly_errors
def export(
    checkpoint: Annotated[Path, typer.Option(help="Generator checkpoint (best.pt of a run).")],
    format: Annotated[ExportFormatChoice, typer.Option("--format", help="onnx, torchscript, all (both), onnx-int8 "
                                                       "(CPU int8: sub-pixel Convs, static QDQ), or triton (a Triton "
                                                       "model repository in --out).")] = ExportFormatChoice("all"),
    out: Annotated[Path, typer.Option(help="Output folder.")] = EXPORTED,
    triton_kind: Annotated[TritonKind, typer.Option(help="triton: the instances' kind (auto: GPU when CUDA is usable "
                                                    "here).")] = TritonKind("auto"),
    data: Annotated[Optional[Path], typer.Option(help="onnx-int8: calibrate on this folder's training conditions "
                                                 "(default: $CGAN_EXPORT_DATA or ../shared/iclevr when its "
                                                 "vocabulary is the model's, else conditions drawn from it).")] = None,
    fp16: Annotated[bool, typer.Option(help="Also write an fp16 ONNX for CUDA (float32 inputs/outputs).")] = False,
    truncation: Annotated[Optional[float], typer.Option(min=0.0, max=1.0, help="Scale the noise by this inside the "
                                                        "model (truncation trick: less variety, images nearer the "
                                                        "mode); also writes OUT/generator.pt with it recorded.")] = None,
) -> None:
    """Export a generator checkpoint to ONNX / TorchScript with metadata, checking parity against PyTorch."""
    from cgan_export.export import export as run_export

    from training.calibration import int8_calibration

    formats = list(ALL_FORMATS) if format.value == "all" else [format.value]
    if fp16:
        formats.append("onnx-fp16")
    from cgan_export.export import ExportOptions

    options = int8_calibration(checkpoint, data) if "onnx-int8" in formats else ExportOptions()
    options = dataclasses.replace(options, triton_kind=triton_kind.value)
    run_export(checkpoint, formats, out, report=typer.echo, truncation=truncation, options=options)
    typer.echo(f"manifest: {out / 'manifest.json'}")


@app.command(epilog=examples("generate"))
@friendly_errors
def generate(
    objects: Annotated[Optional[list[str]], typer.Argument(help="Object names forming ONE condition, e.g. 'red cube' 'blue cylinder'.")] = None,
    n: Annotated[int, typer.Option("-n", "--n", min=1, help="Images per condition.")] = 8,
    seed: Annotated[int, typer.Option(help="Noise seed (same images on every backend).")] = 0,
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("outputs"),
    model: Annotated[Optional[Path], typer.Option(help="Model file (default: the shipped one in exported/).")] = None,
    backend: Annotated[Backend, typer.Option(help="onnx, torchscript or torch.")] = Backend("onnx"),
    device: Annotated[Device, typer.Option(help="auto: CUDA when usable, else CPU.")] = Device("auto"),
    conditions: Annotated[Optional[Path], typer.Option(help="Lab-format JSON list of conditions instead of OBJECTS.")] = None,
    scale: Annotated[int, typer.Option(min=1, max=16, help="Upscale factor of the written PNGs.")] = 4,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per inference batch.")] = 256,
    no_grid: Annotated[bool, typer.Option("--no-grid", help="Skip the captioned grid.")] = False,
    file_format: Annotated[OutputFormat, typer.Option("--format", help="png: one file per image (and grid.png); npz: "
                                                      "shards of 10,000 images with their conditions and noise rows.")] = OutputFormat("png"),
    workers: Annotated[int, typer.Option(min=0, help="Threads that each draw, encode and write a batch (0: one per CPU).")] = 0,
    precision: PrecisionOption = Precision("auto"),
    engine: Annotated[Engine, typer.Option(help="local: threads in this process; ray: Ray Data actors (the scale "
                                           "extra), the same files.")] = Engine("local"),
    ray_address: RayAddressOption = None,
) -> None:
    """Generate images for one condition (positional names) or a file of conditions."""
    from cgan_export.api import GenerateRequest, Generator
    from cgan_export.generate import FolderOutput, generate_to_folder, read_conditions

    request = GenerateRequest.of(read_conditions(objects, conditions), n=n, seed=seed)
    output = FolderOutput(out=out, file_format=file_format.value, scale=scale, grid=not no_grid, batch_size=batch_size,
                          workers=workers, engine=engine.value, ray_address=ray_address)
    generator = Generator.load(model, backend.value, device.value, precision.value)
    result = generate_to_folder(generator, request, output)
    typer.echo(f"{result['images']} images ({backend.value} {generator.metadata.get('precision', 'fp32')} on {result['device']}, "
               f"{result['images_per_second']:.0f} img/s) written to {out}")
    if result["grid"]:
        typer.echo(f"grid: {result['grid']}")


@app.command(epilog=examples("evaluate"))
@friendly_errors
def evaluate(
    model: Annotated[Optional[list[Path]], typer.Option(help="Model file (default: the shipped one); repeat to "
                                                        "compare several side by side.")] = None,
    backend: Annotated[Backend, typer.Option(help="onnx, torchscript or torch.")] = Backend("onnx"),
    device: Annotated[Device, typer.Option(help="auto, cuda or cpu.")] = Device("auto"),
    conditions: Annotated[Optional[list[Path]], typer.Option(help="Condition files (default: test.json and new_test.json "
                                                             "of the data folder; every group combination for groups).")] = None,
    data: DataOption = None,
    seeds: Annotated[int, typer.Option(min=1, help="Number of noise seeds: the accuracy and the "
                                                "scorecard are each their mean ± std over them.")] = 10,
    first_seed: Annotated[int, typer.Option(min=0, help="First noise seed (e.g. 100: seeds that checkpoint "
                                            "selection, which scores seeds 0..eval_seeds-1, never saw).")] = 0,
    evaluator: EvaluatorOption = None,
    with_scorecard: Annotated[bool, typer.Option("--scorecard/--no-scorecard", help="Also diversity, fidelity, "
                                                 "precision and recall against the real data.")] = True,
    report: Annotated[Optional[Path], typer.Option(help="Write the JSON report here.")] = None,
) -> None:
    """Lab accuracy per condition file, and the scorecard beside the real data's, each as mean ± std over seeds."""
    evaluate_models, = training_names("model_scores", "evaluate_models")
    evaluate_models(model or [None], backend.value, device.value, data, conditions, seeds, first_seed, evaluator,
                    with_scorecard, report, echo=typer.echo)


@app.command(epilog=examples("serve"))
@friendly_errors
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8000,
    model: Annotated[Optional[Path], typer.Option(help="ONNX model file (default: the shipped one).")] = None,
    device: Annotated[Device, typer.Option(help="auto: CUDA when usable, else CPU.")] = Device("auto"),
    max_batch: Annotated[int, typer.Option(min=1, help="Most images gathered into one model call.")] = 64,
    wait_ms: Annotated[float, typer.Option(min=0.0, help="How long the first request of a batch waits for others.")] = 5.0,
    max_queue: Annotated[int, typer.Option(min=1, help="Images accepted and not yet answered, at most; past it a "
                                           "request gets 503 with Retry-After (default: 64 batches of 64).")] = 4096,
    deadline_seconds: Annotated[float, typer.Option(min=0.1, help="A request not answered by then gets 504.")] = 30.0,
    drain_seconds: Annotated[float, typer.Option(min=1.0, help="On SIGTERM or Ctrl-C, how long requests in flight "
                                                 "get to finish before the server exits.")] = 30.0,
    precision: PrecisionOption = Precision("auto"),
    engine: Annotated[Engine, typer.Option(help="local: this process; ray: Ray Serve (the scale extra), the same API.")] = Engine("local"),
    ray_address: RayAddressOption = None,
    replicas: Annotated[int, typer.Option(min=1, help="--engine ray: model replicas (one CPU each).")] = 1,
    max_replicas: Annotated[int, typer.Option(min=0, help="--engine ray: autoscale up to this many replicas.")] = 0,
) -> None:
    """HTTP server: GET / (web page), /health, /metadata, /grid.png; POST /generate; concurrent requests
    micro-batched, the queue bounded; SIGTERM or Ctrl-C drains the requests in flight, then exits 0."""
    from cgan_export import Generator
    from cgan_export.hosting import ServeLimits, run
    from cgan_export.server import create_app

    limits = ServeLimits(max_queue=max_queue, deadline_s=deadline_seconds, drain_s=drain_seconds)
    generator = Generator.load(model, "onnx", device.value, precision.value)  # a bad file fails here, before Ray
    if engine.value == "ray":
        from cgan_export.ray_serving import RayServeOptions, serve_on_ray

        options = RayServeOptions(ray_address, replicas, max_replicas, max_batch=max_batch, wait_ms=wait_ms)
        path = generator.backend.session.path  # the file chosen for --precision
        serve_on_ray(path, host, port, limits, options, on_listening=lambda: typer.echo(
            f"serving {path} on Ray Serve at http://{host}:{port}; Ctrl-C stops"))
    else:
        app_ = create_app(generator, model or EXPORTED / "generator.onnx", max_batch=max_batch, wait_ms=wait_ms,
                          limits=limits)
        run(app_, host, port, limits, on_listening=lambda: typer.echo(
            f"serving {model or 'the shipped model'} on http://{host}:{port} ({generator.device}); Ctrl-C stops"))
    typer.echo("stopped: requests in flight answered")


@app.command(epilog=examples("bench"))
@friendly_errors
def bench(
    batch_sizes: Annotated[str, typer.Option(help="Comma-separated batch sizes.")] = "1,64,256",
    checkpoint: Annotated[Path, typer.Option(help="Generator checkpoint (eager reference).")] = EXPORTED / "generator.pt",
    repeats: Annotated[int, typer.Option(min=3, help="Timed repeats per cell (median reported).")] = 10,
    markdown: Annotated[bool, typer.Option(help="Print a Markdown table.")] = True,
) -> None:
    """Images/s of torch eager, TorchScript and ONNX Runtime side by side, with ratios and a matmul roofline."""
    from cgan_export.bench import run_bench

    sizes = [int(s) for s in batch_sizes.split(",") if s.strip()]
    if not sizes or min(sizes) < 1:
        raise CganError("--batch-sizes takes positive integers, e.g. 1,64,256")
    run_bench(checkpoint, sizes, repeats, echo=typer.echo, markdown=markdown)


@evaluator_app.command("train", epilog=examples("evaluator train"))
@friendly_errors
def evaluator_train(
    data: DataOption = None,
    out: Annotated[Optional[Path], typer.Option(help="Evaluator file to write (default: the shipped evaluator of the "
                                                "data's classes, else exported/DATA-FOLDER-NAME/evaluator.pt).")] = None,
    epochs: Annotated[int, typer.Option(min=1, help="Training epochs.")] = 10,
    stem: Annotated[Stem, typer.Option(help="ResNet-18 stem: the torchvision one; without its max-pool (finer features); or a 3x3 stride-1 first "
                                      "conv before the max-pool (same compute as no-maxpool).")] = Stem("conv3x3"),
    batch_size: Annotated[int, typer.Option(min=8, help="Batch size.")] = 128,
    seed: Annotated[int, typer.Option(help="Seed of the split and the weights.")] = 0,
    bf16: Annotated[bool, typer.Option(help="bf16 autocast where the CPU multiplies bf16 natively (AVX512-BF16 or AMX; else fp32).")] = True,
) -> None:
    """Train the lab evaluator on the real images with a scene-level holdout."""
    from cgan_export.evaluator import shipped_evaluator
    from cgan_export.io import ensure_writable_dir
    EvaluatorConfig, train_evaluator = training_names("evaluator_training", "EvaluatorConfig", "train_evaluator")
    load_vocabulary, resolve_data_root = training_names("data", "load_vocabulary", "resolve_data_root")

    if out is None:
        root = resolve_data_root(data)
        try:
            out = shipped_evaluator(load_vocabulary(root))
        except CganError:  # data of a kind nothing shipped scores yet
            out = EXPORTED / root.resolve().name / "evaluator.pt"
    ensure_writable_dir(out.parent)
    metrics = train_evaluator(data, out, EvaluatorConfig(epochs=epochs, batch_size=batch_size, seed=seed, bf16=bf16,
                                                                 stem=stem.value),
                              show_progress=sys.stderr.isatty())
    typer.echo(json.dumps(metrics))
    typer.echo(f"evaluator: {out}")


@evaluator_app.command("score", epilog=examples("evaluator score"))
@friendly_errors
def evaluator_score(
    data: DataOption = None,
    evaluator: EvaluatorOption = None,
) -> None:
    """Lab accuracy of the evaluator on its held-out scenes of the real data."""
    from cgan_export.evaluator import load_evaluator, shipped_evaluator
    score_holdout, = training_names("evaluator_training", "score_holdout")
    load_vocabulary, resolve_data_root = training_names("data", "load_vocabulary", "resolve_data_root")

    scorer = load_evaluator(evaluator or shipped_evaluator(load_vocabulary(resolve_data_root(data))))
    typer.echo(f"held-out lab accuracy {score_holdout(scorer, data):.4f}")


@guide_app.command("train", epilog=examples("guide train"))
@friendly_errors
def guide_train(
    data: DataOption = None,
    out: Annotated[Path, typer.Option(help="Guide file to write.")] = Path.home() / ".cache" / "cgan-export" / "guide" / "guide.pt",
    epochs: Annotated[int, typer.Option(min=1, help="Training epochs.")] = 12,
    width: Annotated[int, typer.Option(min=4, help="Channels of the first stage (doubling per stage).")] = 32,
    seed: Annotated[int, typer.Option(help="Seed of the split and the weights.")] = 1,
    resolution: Annotated[int, typer.Option(min=0, help="Area-downsample images to this size first (0: full size).")] = 0,
) -> None:
    """Train the guide classifier (VGG-style convnet, not the evaluator) on the real images with a scene-level holdout."""
    from cgan_export.io import ensure_writable_dir
    GuideConfig, train_guide = training_names("guide", "GuideConfig", "train_guide")

    ensure_writable_dir(out.parent)
    config = GuideConfig(width=width, epochs=epochs, seed=seed, resolution=resolution)
    metrics = train_guide(data, out, config, show_progress=sys.stderr.isatty())
    typer.echo(json.dumps(metrics))
    typer.echo(f"guide: {out}")


if __name__ == "__main__":
    app()
