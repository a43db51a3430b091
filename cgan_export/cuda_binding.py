"""ONNX Runtime on CUDA: device buffers bound per batch size, CUDA-graph ids, and the uint8 conversion on the GPU.

A batch of 256 images leaves the generator as 12.6 MB of float32 [N, 3, H, W]; converted on the GPU by a small
ONNX graph (the rule of :func:`cgan_export.runtime.to_uint8`), a quarter of the bytes cross to the host and the
host's cores do no per-pixel work, which is what bounds bulk generation on a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ORT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}
UINT8_OPSET = 18


def uint8_graph() -> bytes:
    """A serialized ONNX model: ``image`` float32 [N, 3, H, W] in [-1, 1] -> ``pixels`` uint8 [N, H, W, 3].

    The same float32 steps as ``to_uint8``: (x + 1) * 127.5, round half to even, clip to [0, 255], cast.
    """
    from onnx import TensorProto, helper

    def scalar(name: str, value: float):
        return helper.make_tensor(name, TensorProto.FLOAT, [], [value])

    nodes = [helper.make_node("Add", ["image", "one"], ["shifted"]),
             helper.make_node("Mul", ["shifted", "half_range"], ["scaled"]),
             helper.make_node("Round", ["scaled"], ["rounded"]),  # half to even, as numpy's rint
             helper.make_node("Clip", ["rounded", "zero", "top"], ["clipped"]),
             helper.make_node("Transpose", ["clipped"], ["nhwc"], perm=[0, 2, 3, 1]),
             helper.make_node("Cast", ["nhwc"], ["pixels"], to=TensorProto.UINT8)]
    graph = helper.make_graph(
        nodes, "to_uint8",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("pixels", TensorProto.UINT8, ["N", "H", "W", 3])],
        initializer=[scalar("one", 1.0), scalar("half_range", 127.5), scalar("zero", 0.0), scalar("top", 255.0)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", UINT8_OPSET)], ir_version=10)
    return model.SerializeToString()


@dataclass
class Binding:
    """Device buffers bound to one batch size's inputs and output, with the run options that pick its graph;
    for the uint8 path, a second binding that reads the output buffer on the device."""

    binding: object
    inputs: dict
    output: object
    run_options: object
    pixels: object = None  # the uint8 conversion's binding (made on first use)
    pixels_output: object = None  # uint8 [N, H, W, 3] on the device

    @classmethod
    def create(cls, session, feeds: dict[str, np.ndarray], graph_id: int) -> "Binding":
        """Buffers for ``feeds``' batch size; ``graph_id`` > 0 names the CUDA graph this shape replays."""
        import onnxruntime as ort

        n = feeds["noise"].shape[0]
        out_meta = session.get_outputs()[0]
        inputs = {k: ort.OrtValue.ortvalue_from_numpy(v, "cuda", 0) for k, v in feeds.items()}
        output = ort.OrtValue.ortvalue_from_shape_and_type([n, 3, *out_meta.shape[2:]],
                                                           ORT_TYPES.get(out_meta.type, np.float32), "cuda", 0)
        binding = session.io_binding()
        for k, v in inputs.items():
            binding.bind_ortvalue_input(k, v)
        binding.bind_ortvalue_output("image", output)
        run_options = ort.RunOptions()
        if graph_id:  # ids from 1: 0 is ONNX Runtime's own
            run_options.add_run_config_entry("gpu_graph_id", str(graph_id))
        return cls(binding, inputs, output, run_options)

    def run(self, session, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """Copy ``feeds`` into the bound buffers (same addresses), run, return float32 images on the host."""
        self._run_on_device(session, feeds)
        return self.output.numpy().astype(np.float32, copy=False)

    def run_uint8(self, session, pixels_session, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """As :meth:`run`, then ``pixels_session`` (:func:`uint8_graph`) converts on the device: uint8 [N, H, W, 3]."""
        self._run_on_device(session, feeds)
        if self.pixels is None:
            import onnxruntime as ort

            n, _, h, w = self.output.shape()
            self.pixels_output = ort.OrtValue.ortvalue_from_shape_and_type([n, h, w, 3], np.uint8, "cuda", 0)
            self.pixels = pixels_session.io_binding()
            self.pixels.bind_ortvalue_input("image", self.output)
            self.pixels.bind_ortvalue_output("pixels", self.pixels_output)
        pixels_session.run_with_iobinding(self.pixels)
        return self.pixels_output.numpy()

    def _run_on_device(self, session, feeds: dict[str, np.ndarray]) -> None:
        for k, v in feeds.items():
            self.inputs[k].update_inplace(v)
        session.run_with_iobinding(self.binding, self.run_options)
