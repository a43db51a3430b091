"""Score the best.pt of several run folders side by side (mean ± std over noise seeds) as a Markdown table.

    python benchmarks/compare_runs.py ~/.cache/cgan-export/runs/cmp-* --seeds 10
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cgan_export.evaluate import evaluate_files  # noqa: E402
from cgan_export.evaluator import load_evaluator  # noqa: E402
from cgan_export.runtime import EXPORTED_DIR, TorchBackend  # noqa: E402
from training.data import CONDITION_FILES, resolve_data_root  # noqa: E402
from training.report import read_jsonl  # noqa: E402


def run_row(run: Path, evaluator, files: list[Path], seeds: int) -> dict:
    """Accuracy of a run's best.pt plus the run's budget figures from its metrics.jsonl."""
    backend = TorchBackend(run / "best.pt", "cpu")
    result = evaluate_files(backend, evaluator, files, seeds)
    last = read_jsonl(run / "metrics.jsonl")[-1]
    training = backend.metadata["training"]
    return {"preset": training["preset"], "run": run.name, "best_step": training["step"], **{
        name: (r["mean"], r["std"]) for name, r in result.items()},
        "minutes": last["minutes"], "images_seen": last["images_seen"], "images_per_second": last["images_per_second"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--evaluator", type=Path, default=EXPORTED_DIR / "evaluator.pt")
    args = parser.parse_args()
    evaluator = load_evaluator(args.evaluator)
    files = [resolve_data_root(args.data) / f for f in CONDITION_FILES]
    rows = [run_row(run, evaluator, files, args.seeds) for run in args.runs if (run / "best.pt").is_file()]
    rows.sort(key=lambda r: -(r["test.json"][0] + r["new_test.json"][0]))
    print(f"| run | preset | test.json (mean ± std, {args.seeds} seeds) | new_test.json | training images/s | "
          "wall minutes | images seen | best at step |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['run']} | {r['preset']} | {r['test.json'][0]:.3f} ± {r['test.json'][1]:.3f} | "
              f"{r['new_test.json'][0]:.3f} ± {r['new_test.json'][1]:.3f} | {r['images_per_second']:.0f} | "
              f"{r['minutes']:.1f} | {r['images_seen']} | {r['best_step']} |")
    print(json.dumps(rows), file=sys.stderr)


if __name__ == "__main__":
    main()
