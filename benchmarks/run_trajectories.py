"""Runs side by side from their own evaluations (``RUN/metrics.jsonl``): the figures at equal iterations, and
each run's time to every target (the first evaluation that meets it), as Markdown tables.

    python benchmarks/run_trajectories.py ~/.cache/cgan-export/runs/best ~/.cache/cgan-export/runs/cand-blur --every 5000

An evaluation scores test.json and new_test.json over the run's noise seeds (10 in the presets) and the
scorecard on 900 feature images; a run's ``minutes`` are its own training minutes (evaluations included),
so compare minutes only between runs that shared the machine evenly, and iterations otherwise.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from training.report import read_jsonl  # noqa: E402

TARGETS = {  # name -> (test on one evaluation record, as words)
    "diversity": (lambda r: r["scorecard"]["diversity"] >= 0.8, "diversity >= 0.8"),
    "layout": (lambda r: r["scorecard"]["layout_diversity"] >= 0.75, "layout diversity >= 0.75"),
    "recall": (lambda r: r["scorecard"]["recall"] >= 0.8, "recall >= 0.8"),
    "test": (lambda r: r["test"]["mean"] >= 0.95, "test.json accuracy >= 0.95"),
    "new_test": (lambda r: r["new_test"]["mean"] >= 0.95, "new_test.json accuracy >= 0.95"),
    "frechet": (lambda r: frechet_ratio(r) <= 1.5, "Fréchet distance <= 1.5x the floor"),
}


def frechet_ratio(record: dict) -> float:
    """The evaluation's Fréchet distance over the real data's floor."""
    card = record["scorecard"]
    return card["frechet"] / card["frechet_floor"]


def row(name: str, r: dict) -> str:
    """One evaluation as a table row."""
    card = r["scorecard"]
    return (f"| {name} | {r['step']:,} | {r['epoch']:.1f} | {r['minutes']:.1f} | {r['test']['mean']:.3f} / "
            f"{r['new_test']['mean']:.3f} | {card['diversity']:.3f} | {card['layout_diversity']:.3f} | "
            f"{frechet_ratio(r):.2f} | {card['precision']:.3f} | {card['recall']:.3f} |")


def trajectories(runs: dict[str, list[dict]], every: int) -> str:
    """Every run's evaluations at multiples of ``every`` iterations, and each run's last, interleaved by step."""
    lines = ["| run | iteration | epoch | minutes | test / new_test | diversity | layout | Fréchet (x floor) | precision | recall |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    kept = [(r["step"], name, r) for name, records in runs.items() for i, r in enumerate(records)
            if r["step"] % every == 0 or i == len(records) - 1]
    lines += [row(name, r) for _, name, r in sorted(kept, key=lambda item: item[0])]
    return "\n".join(lines)


def times_to_targets(runs: dict[str, list[dict]]) -> str:
    """For each target, the first evaluation of each run that meets it (iteration, minutes)."""
    names = list(runs)
    lines = ["| target | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for test, words in [*TARGETS.values(), (lambda r: all(t(r) for t, _ in TARGETS.values()), "**every target**")]:
        cells = []
        for records in runs.values():
            first = next((r for r in records if "scorecard" in r and test(r)), None)
            cells.append(f"{first['step']:,} ({first['minutes']:.0f} min)" if first else
                         f"not yet (last {records[-1]['step']:,})")
        lines.append(f"| {words} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (each with a metrics.jsonl)")
    parser.add_argument("--every", type=int, default=5000, help="keep evaluations at multiples of this many iterations")
    args = parser.parse_args()
    runs = {}
    for run in args.runs:
        if not (run / "metrics.jsonl").is_file():
            sys.exit(f"error: {run} has no metrics.jsonl")
        runs[run.name] = [r for r in read_jsonl(run / "metrics.jsonl") if "test" in r and "scorecard" in r]
    print(trajectories(runs, args.every), "\n", times_to_targets(runs), sep="\n")


if __name__ == "__main__":
    main()
