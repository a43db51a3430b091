"""Runs side by side from their own evaluations (``RUN/metrics.jsonl``): the figures at equal iterations, and
each run's time to every target (the first evaluation that meets it), as Markdown tables. i-CLEVR runs are
read against the scene targets, runs on an attribute-groups folder (the faces) against the faces' targets.

    python benchmarks/run_trajectories.py ~/.cache/cgan-export/runs/best ~/.cache/cgan-export/runs/cand-blur --every 5000
    python benchmarks/run_trajectories.py RUN --hold 3     # a target counts from the first of 3 evaluations in a row

An evaluation scores test.json and new_test.json over the run's noise seeds (10 in the presets) and the
scorecard on 900 feature images; a run's ``minutes`` are its own training minutes (evaluations included),
so compare minutes only between runs that shared the machine evenly, and iterations otherwise. Each evaluation's
scorecard is one noise seed's, one draw (±0.03x on the i-CLEVR Fréchet ratio between seeds), so a target one
card meets may be luck: ``--hold K`` counts it from the first of K evaluations in a row that meet it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from training.report import read_jsonl  # noqa: E402

SHARED_TARGETS = {  # name -> (test on one evaluation record, as words), for every kind of data
    "recall": (lambda r: r["scorecard"]["recall"] >= 0.8, "recall >= 0.8"),
    "frechet": (lambda r: frechet_ratio(r) <= 1.5, "Fréchet distance <= 1.5x the floor"),
}
SCENE_TARGETS = {  # i-CLEVR (issue: training is the recipe)
    "diversity": (lambda r: r["scorecard"]["diversity"] >= 0.8, "diversity >= 0.8"),
    "layout": (lambda r: r["scorecard"]["layout_diversity"] >= 0.75, "layout diversity >= 0.75"),
    "test": (lambda r: r["test"]["mean"] >= 0.95, "test.json accuracy >= 0.95"),
    "new_test": (lambda r: r["new_test"]["mean"] >= 0.95, "new_test.json accuracy >= 0.95"),
    **SHARED_TARGETS,
}
GROUP_TARGETS = {  # an attribute-groups folder scored on every combination (the faces)
    "diversity": (lambda r: r["scorecard"]["diversity"] >= 0.9, "diversity >= 0.9"),
    "hair": (lambda r: r["combinations"]["per_group"]["hair"] >= 0.9, "hair accuracy >= 0.9"),
    "eyes": (lambda r: r["combinations"]["per_group"]["eyes"] >= 0.8, "eyes accuracy >= 0.8"),
    **SHARED_TARGETS,
}


def targets(records: list[dict]) -> dict:
    """The targets of the runs' kind of data: the faces' for a run scored on ``combinations``, else i-CLEVR's."""
    return GROUP_TARGETS if "combinations" in records[0] else SCENE_TARGETS


def accuracies(record: dict) -> dict[str, float]:
    """The accuracies a row shows: each condition set's mean (``test``, ``new_test``), or per group of one set."""
    sets = {k: v for k, v in record.items() if isinstance(v, dict) and "mean" in v}
    return next((v["per_group"] for v in sets.values() if "per_group" in v), {k: v["mean"] for k, v in sets.items()})


def frechet_ratio(record: dict) -> float:
    """The evaluation's Fréchet distance over the real data's floor."""
    card = record["scorecard"]
    return card["frechet"] / card["frechet_floor"]


def row(name: str, r: dict) -> str:
    """One evaluation as a table row."""
    card = r["scorecard"]
    return (f"| {name} | {r['step']:,} | {r['epoch']:.1f} | {r['minutes']:.1f} | "
            f"{' / '.join(f'{v:.3f}' for v in accuracies(r).values())} | "
            f"{card['diversity']:.3f} | {card.get('layout_diversity', float('nan')):.3f} | "
            f"{frechet_ratio(r):.2f} | {card['precision']:.3f} | {card['recall']:.3f} |")


def trajectories(runs: dict[str, list[dict]], every: int) -> str:
    """Every run's evaluations at multiples of ``every`` iterations, and each run's last, interleaved by step."""
    sets = " / ".join(accuracies(next(iter(runs.values()))[0]))
    lines = [f"| run | iteration | epoch | minutes | {sets} | diversity | layout | Fréchet (x floor) | precision | recall |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    kept = [(r["step"], name, r) for name, records in runs.items() for i, r in enumerate(records)
            if r["step"] % every == 0 or i == len(records) - 1]
    lines += [row(name, r) for _, name, r in sorted(kept, key=lambda item: item[0])]
    return "\n".join(lines)


def first_held(records: list[dict], test, hold: int) -> dict | None:
    """The first evaluation from which ``test`` holds at ``hold`` evaluations in a row (1: the first that meets it)."""
    met = [test(r) for r in records]
    return next((records[i] for i in range(len(records) - hold + 1) if all(met[i:i + hold])), None)


def times_to_targets(runs: dict[str, list[dict]], hold: int = 1) -> str:
    """For each target, the first evaluation of each run that meets it at ``hold`` evaluations in a row
    (iteration, minutes)."""
    names, goals = list(runs), targets(next(iter(runs.values())))
    lines = ["| target | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for test, words in [*goals.values(), (lambda r: all(t(r) for t, _ in goals.values()), "**every target**")]:
        cells = []
        for records in runs.values():
            first = first_held(records, test, hold)
            cells.append(f"{first['step']:,} ({first['minutes']:.0f} min)" if first else
                         f"not yet (last {records[-1]['step']:,})")
        lines.append(f"| {words} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (each with a metrics.jsonl)")
    parser.add_argument("--every", type=int, default=5000, help="keep evaluations at multiples of this many iterations")
    parser.add_argument("--hold", type=int, default=1, help="a target counts as met from the first of this many "
                        "evaluations in a row that meet it (each evaluation is one scorecard draw)")
    args = parser.parse_args()
    if args.hold < 1:
        sys.exit("error: --hold must be at least 1")
    runs = {}
    for run in args.runs:
        if not (run / "metrics.jsonl").is_file():
            sys.exit(f"error: {run} has no metrics.jsonl")
        runs[run.name] = [r for r in read_jsonl(run / "metrics.jsonl") if "scorecard" in r]
        if not runs[run.name]:
            sys.exit(f"error: {run} has no scored evaluation yet")
    if len({tuple(targets(records)) for records in runs.values()}) > 1:
        sys.exit("error: these runs score different kinds of data (i-CLEVR scenes and attribute groups)")
    print(trajectories(runs, args.every), "\n", times_to_targets(runs, args.hold), sep="\n")


if __name__ == "__main__":
    main()
