"""Which conditions a generator artifact misses, and what the evaluator sees instead.

    python benchmarks/condition_misses.py exported/generator.onnx --seeds 10

For every condition of each file, draw one image per seed and score it with the lab evaluator; list
the conditions with at least one missed object, how many of the seeds missed, and the objects the
evaluator ranked into the top-k in place of the asked-for ones (first missing seed).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import sys  # noqa: E402
from pathlib import Path as _Path  # noqa: E402

sys.path.insert(0, str(_Path(__file__).resolve().parent.parent))  # the checkout: training/ and cli.py

import numpy as np
import torch

from cgan_export.paths import EXPORTED_DIR
from cgan_export.contract import make_noise
from cgan_export.evaluator import Evaluator, load_evaluator
from cgan_export.contract import metadata_vocabulary
from cgan_export.runtime import Backend, open_backend
from cgan_export.vocabulary import read_condition_file
from training.data import resolve_data_root

ROOT = Path(__file__).resolve().parent.parent


def condition_misses(backend: Backend, scorer: Evaluator, conditions: list[list[str]], seeds: int) -> dict[int, list[list[str]]]:
    """Condition index -> for each seed that missed it, the wrongly ranked object names."""
    vocab = metadata_vocabulary(backend.metadata)
    cond = vocab.encode_batch(conditions)  # [N, 24]
    z_dim = int(backend.metadata["z_dim"])
    misses: dict[int, list[list[str]]] = {}
    for seed in range(seeds):
        scores = scorer.scores(torch.from_numpy(backend.run(make_noise(len(cond), z_dim, seed), cond)))  # [N, 24]
        for i, names in enumerate(conditions):
            wanted = set(np.flatnonzero(cond[i]).tolist())
            wrong = [vocab.names[t] for t in scores[i].topk(len(names)).indices.tolist() if t not in wanted]
            if wrong:
                misses.setdefault(i, []).append(wrong)
    return misses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="ONNX generator file")
    parser.add_argument("--data", type=Path, default=resolve_data_root(), help="i-CLEVR folder with test.json, new_test.json")
    parser.add_argument("--evaluator", type=Path, default=EXPORTED_DIR / "evaluator.pt", help="evaluator file")
    parser.add_argument("--seeds", type=int, default=10, help="noise seeds 0..S-1")
    args = parser.parse_args()
    backend, scorer = open_backend(args.model), load_evaluator(args.evaluator)
    for name in ("test.json", "new_test.json"):
        conditions = read_condition_file(args.data / name)
        misses = condition_misses(backend, scorer, conditions, args.seeds)
        print(f"\n{name}: {len(misses)} of {len(conditions)} conditions missed at least once\n")
        print("| condition | seeds missed | evaluator saw instead |")
        print("|---|---|---|")
        for i, wrong in sorted(misses.items(), key=lambda item: -len(item[1])):
            print(f"| {', '.join(conditions[i])} | {len(wrong)}/{args.seeds} | {', '.join(wrong[0])} |")


if __name__ == "__main__":
    main()
