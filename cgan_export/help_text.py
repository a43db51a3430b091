"""Text of the command line's help: each command's examples, and each training preset's schedule.

Kept as text so that ``--help`` imports neither torch nor the training package; a test checks the schedules
against ``training.presets.describe_schedule``.
"""

from __future__ import annotations

PRESET_SCHEDULES = {  # preset -> its schedule, as training.presets.describe_schedule words it
    "best": "170 epochs, anneal over the last 20, guide from 140, batch 32 (CUDA 128)",
    "acgan": "400 epochs", "group-acgan": "60 minutes", "cdcgan": "700 epochs", "wgan-gp": "86 epochs",
    "sagan": "300 epochs", "infogan": "280 epochs", "faces": "100 epochs, 96x96, batch 32 (CUDA 128)",
}

EXAMPLES = {  # command -> (example, what it does)
    "train": [("python cli.py train", "the best preset's own schedule, to its end"),
              ("python cli.py train --resume", "carry on after a stop (Ctrl-C, SIGTERM)"),
              ("python cli.py train --data ../shared/anime-faces --out runs/faces", "another data folder")],
    "export": [("python cli.py export --checkpoint RUN/best.pt --out exported", "ONNX + TorchScript, parity-checked"),
               ("python cli.py export --checkpoint RUN/best.pt --format onnx --fp16", "fp32 and fp16 ONNX"),
               ("python cli.py export --checkpoint RUN/best.pt --format onnx-int8", "int8 ONNX for the CPU"),
               ("python cli.py export --checkpoint RUN/best.pt --format triton --out repo", "a Triton model repository")],
    "generate": [('python cli.py generate "red cube" "blue cylinder"', "8 PNGs and grid.png in outputs/"),
                 ("python cli.py generate --conditions test.json -n 1000 --format npz --out shards",
                  "bulk: .npz shards"),
                 ("python cli.py generate --conditions test.json -n 1000 --engine ray", "the same files on Ray Data"),
                 ('python cli.py generate "red cube" --precision fp32', "the exact fp32 images (auto: int8 where faster)")],
    "evaluate": [("python cli.py evaluate --seeds 10", "the shipped model: accuracy and scorecard"),
                 ("python cli.py evaluate --model a.onnx --model b.onnx", "two models side by side")],
    "serve": [("python cli.py serve --port 8000", "then open http://127.0.0.1:8000/"),
              ("python cli.py serve --engine ray --replicas 1 --max-replicas 4", "the same API on Ray Serve")],
    "bench": [("python cli.py bench --batch-sizes 1,64 --repeats 8", "torch, TorchScript and ONNX Runtime")],
    "evaluator train": [("python cli.py evaluator train --data ../shared/anime-faces", "an evaluator for new data")],
    "evaluator score": [("python cli.py evaluator score", "the shipped evaluator's held-out accuracy")],
    "guide train": [("python cli.py guide train --resolution 32 --epochs 6", "the best preset's coarse guide")],
}


def examples(command: str) -> str:
    """The ``--help`` epilog of ``command``: its examples, one per paragraph (Typer keeps paragraphs apart)."""
    return "Examples:\n\n" + "\n\n".join(f"{example}    # {what}" for example, what in EXAMPLES[command])
