"""Where an ONNX file's time goes on the CPU: ONNX Runtime's profiler, kernel time per operator type.

    python benchmarks/operator_profile.py exported/generator.onnx exported/generator.int8.onnx --batch 64
"""

from __future__ import annotations

import argparse
import collections
import json
import tempfile
import time
from pathlib import Path

import onnxruntime as ort

from cgan_export.export import parity_inputs
from cgan_export.cpu import cpu_model
from cgan_export.runtime import OnnxSession


def operator_shares(path: Path, batch: int, runs: int, threads: int) -> tuple[float, collections.Counter]:
    """Images/s of one ``threads``-thread session at ``batch``, and the kernel microseconds per operator type."""
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.enable_profiling, options.log_severity_level = threads, True, 3
    options.profile_file_prefix = str(Path(tempfile.mkdtemp()) / "profile")  # not into the working folder
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    noise, condition = parity_inputs(OnnxSession(path, "cpu").metadata, batch)
    feeds = {"noise": noise, "condition": condition}
    for _ in range(3):
        session.run(None, feeds)
    start = time.perf_counter()
    for _ in range(runs):
        session.run(None, feeds)
    images_per_second = batch * runs / (time.perf_counter() - start)
    events = json.loads(Path(session.end_profiling()).read_text())
    per_op = collections.Counter()
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            per_op[event["args"]["op_name"]] += event["dur"]
    return images_per_second, per_op


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=Path)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    print(f"cpu: {cpu_model()}; batch {args.batch}, one session of {args.threads} threads")
    print("| model | images/s | time per operator type (share of kernel time) |\n|---|---|---|")
    for path in args.models:
        ips, per_op = operator_shares(path, args.batch, args.runs, args.threads)
        total = sum(per_op.values())
        shares = ", ".join(f"{op} {us / total:.0%}" for op, us in per_op.most_common(8))
        print(f"| {path.name} | {ips:.0f} | {shares} |")


if __name__ == "__main__":
    main()
