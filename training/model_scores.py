"""`evaluate`: lab accuracy over noise seeds per condition file, and the scorecard beside the real data's."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

from cgan_export import scorecard as cards
from cgan_export.errors import DatasetError
from cgan_export.evaluate import evaluate_sets
from cgan_export.evaluator import check_scores, load_evaluator, shipped_evaluator
from cgan_export.io import write_json
from cgan_export.contract import metadata_vocabulary
from cgan_export.runtime import open_backend
from cgan_export.vocabulary import read_condition_file

from .data import evaluation_conditions, load_dataset, load_vocabulary, resolve_data_root
from .evaluator_training import real_accuracy, real_accuracy_for, real_per_class
from .reference import build_reference


def evaluate_models(models: list[Path | None], backend: str, device: str, data: Path | None,
                    conditions: list[Path] | None, seeds: int, first_seed: int, evaluator: Path | None,
                    with_scorecard: bool, report: Path | None, echo: Callable[[str], None] = print) -> dict:
    """Score each model (None: the shipped one) on the data folder's condition sets (or ``conditions`` files)
    and its scorecard, each over ``seeds`` noise seeds from ``first_seed``; print a line per set and the
    scorecard table; write the JSON ``report`` when given.  Returns the results by model name."""
    root = resolve_data_root(data)
    vocabulary = load_vocabulary(root)
    sets = ({p.name: read_condition_file(p) for p in conditions} if conditions else
            {f"{name}.json" if (root / f"{name}.json").is_file() else name: c
             for name, c in evaluation_conditions(root, vocabulary).items()})
    scorer = load_evaluator(evaluator or shipped_evaluator(vocabulary))
    check_scores(scorer, vocabulary, f"the data's in {root}")
    runners = {str(path or "exported (shipped)"): open_backend(path, backend, device) for path in models}
    sizes = sorted({int(runner.metadata["image_size"]) for runner in runners.values()})
    references, real_scores = _references(root, scorer, sizes) if with_scorecard else ({}, {})
    rows = {_real_name(size, sizes): ref.real_figures() for size, ref in references.items()}
    accuracy = {_real_name(size, sizes): {name: real_accuracy_for(real, vocabulary.encode_batch(c), vocabulary)
                                          for name, c in sets.items()} for size, real in real_scores.items()}
    per_class = {_real_name(size, sizes): real_per_class(real, vocabulary) for size, real in real_scores.items()}
    results = {}
    for name, runner in runners.items():
        reference = references.get(int(runner.metadata["image_size"]))
        if runner.metadata.get("condition_kind") == "codes":  # InfoGAN: no labels to score; fidelity and noise
            results[name] = _codes_scores(name, runner, reference, scorer, seeds, first_seed, echo)
            continue
        results[name] = {"accuracy": evaluate_sets(runner, scorer, sets, seeds, first_seed)}
        real = per_class.get(_real_name(int(runner.metadata["image_size"]), sizes), {})  # class name -> accuracy
        for file_name, r in results[name]["accuracy"].items():
            worst = sorted(r["per_object"].items(), key=lambda kv: kv[1])[:3]
            echo(f"{name}: {file_name:14s} lab accuracy {r['mean']:.4f} ± {r['std']:.4f} over seeds "
                       f"{first_seed}-{first_seed + seeds - 1} (min {r['min']:.4f}, max {r['max']:.4f}); weakest: "
                       + ", ".join(f"{k} {v:.2f}" + (f" (real {real[k]:.2f})" if k in real else "") for k, v in worst)
                       + "".join(f"; {g} {v:.4f}" for g, v in r.get("per_group", {}).items()))
        if reference:
            rows[name] = results[name]["scorecard"] = cards.score_over_seeds(
                runner.run, int(runner.metadata["z_dim"]), reference, scorer, range(first_seed, first_seed + seeds))
    if len(rows) > len(references) and any("accuracy" in r for r in results.values()):
        accuracy.update({k: v["accuracy"] for k, v in results.items() if "accuracy" in v})
        echo(cards.markdown_table(rows, accuracy))
        echo("(real data: the evaluator's accuracy on the real images it held out, with their own labels, each class "
             "weighted as often as the condition set asks for it)")
    if report:
        write_json(report, {"backend": backend, "selection_rule": cards.SELECTION_RULE,
                            **{name: {**rows[name], "accuracy": accuracy[name], "per_class": per_class[name]}
                               for name in rows if name.startswith("real data")},
                            "models": results})
        echo(f"report: {report}")
    return results


def _references(root: Path, scorer, sizes: list[int]) -> tuple[dict, dict]:
    """The real reference and the real images' held-out accuracy at each image size of the models scored (real
    images at a model's own size reach the evaluator through the same resize as its images); none for a tiny folder."""
    references, accuracy = {}, {}
    try:
        for size in sizes:
            data = load_dataset(root, size)
            references[size], accuracy[size] = build_reference(data, scorer), real_accuracy(scorer, data)
    except DatasetError as exc:  # a data folder too small for the real-data figures
        print(f"scorecard skipped: {exc}", file=sys.stderr)
        return {}, {}
    return references, accuracy


def _real_name(size: int, sizes: list[int]) -> str:
    """The real row's name: ``real data``, with its size when models of several sizes are scored side by side."""
    return "real data" if len(sizes) == 1 else f"real data ({size}x{size})"


def _codes_scores(name: str, runner, reference, scorer, seeds: int, first_seed: int, echo: Callable[[str], None]) -> dict:
    """An InfoGAN model's scorecard per noise seed (fidelity, precision, recall, noise spread), printed beside the
    real row; its code recovery needs the run's Q head (``RUN/metrics.jsonl``), not the exported file."""
    if reference is None:
        raise DatasetError("an InfoGAN model is scored against real images: give --data a folder of them "
                           "(and leave out --no-scorecard)")
    vocabulary = metadata_vocabulary(runner.metadata)
    card = cards.over_seeds(lambda seed: cards.codes_card(runner.run, int(runner.metadata["z_dim"]), reference, scorer,
                                                          vocabulary, seed), range(first_seed, first_seed + seeds))
    real = {**reference.real_figures(), "noise_spread": 1.0}
    echo(cards.codes_table({"real data": real, f"{name}, seeds {first_seed}-{first_seed + seeds - 1}": card}))
    return {"scorecard": card}
