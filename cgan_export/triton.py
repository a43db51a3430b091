"""A Triton Inference Server model repository: ``REPO/generator/config.pbtxt`` and ``REPO/generator/1/model.onnx``.

The config is the fixed contract without the batch dimension (Triton adds it up to ``max_batch_size``), run by
the onnxruntime backend with dynamic batching, on GPU instances when the repository is made for CUDA.  The
product's metadata rides along as the config's ``cgan_export_metadata`` parameter (a JSON string).
"""

from __future__ import annotations

import json
from pathlib import Path

from .contract import METADATA_KEY

MODEL_NAME = "generator"
MODEL_FILE = Path(MODEL_NAME) / "1" / "model.onnx"  # version 1 of model "generator"
MAX_BATCH_SIZE = 256
PREFERRED_BATCH_SIZES = (64, 128, 256)
QUEUE_DELAY_US = 5000  # how long Triton holds a request for others to batch with (as `serve`'s 5 ms)
KINDS = ("auto", "gpu", "cpu")


def instance_kind(kind: str, cuda: bool) -> str:
    """``KIND_GPU`` or ``KIND_CPU`` for ``kind`` (auto: GPU when CUDA is usable where the repository is made)."""
    if kind not in KINDS:
        raise ValueError(f"unknown instance kind {kind!r}; choose one of {', '.join(KINDS)}")
    return "KIND_GPU" if kind == "gpu" or (kind == "auto" and cuda) else "KIND_CPU"


def config_pbtxt(metadata: dict, kind: str) -> str:
    """The model's ``config.pbtxt`` (protobuf text format of Triton's ``ModelConfig``)."""
    height = width = metadata["image_size"]
    return f"""name: "{MODEL_NAME}"
backend: "onnxruntime"
max_batch_size: {MAX_BATCH_SIZE}
input [
  {{ name: "noise" data_type: TYPE_FP32 dims: [ {metadata["z_dim"]} ] }},
  {{ name: "condition" data_type: TYPE_FP32 dims: [ {metadata["num_classes"]} ] }}
]
output [
  {{ name: "image" data_type: TYPE_FP32 dims: [ 3, {height}, {width} ] }}
]
dynamic_batching {{
  preferred_batch_size: [ {", ".join(str(b) for b in PREFERRED_BATCH_SIZES)} ]
  max_queue_delay_microseconds: {QUEUE_DELAY_US}
}}
instance_group [ {{ count: 1 kind: {kind} }} ]
parameters {{
  key: "{METADATA_KEY}"
  value {{ string_value: "{text_format_string(json.dumps(metadata, sort_keys=True))}" }}
}}
"""


def text_format_string(text: str) -> str:
    """``text`` (ASCII, as ``json.dumps`` writes it) escaped for a double-quoted protobuf text-format string."""
    return text.replace("\\", "\\\\").replace('"', '\\"')
