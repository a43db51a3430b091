"""One generation API over three backends: ONNX Runtime (default), TorchScript and eager PyTorch."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import io
import sys
import threading
import warnings
from pathlib import Path
from typing import Protocol

import numpy as np

from .contract import METADATA_KEY, TS_METADATA_FILE, build_metadata, parse_metadata
from .cpu import usable_cpus
from .cuda_binding import ORT_TYPES, Binding, uint8_graph
from .errors import CganError, ModelFileError, first_line
from .paths import EXPORTED_DIR, missing_shipped_hint

DEFAULT_MODELS = {
    "onnx": EXPORTED_DIR / "generator.onnx",
    "torchscript": EXPORTED_DIR / "generator.torchscript.pt",
    "torch": EXPORTED_DIR / "generator.pt",
}
DEVICES = ("auto", "cuda", "cpu")


def cuda_driver_devices() -> int:
    """How many GPUs the CUDA driver reports (0 without a driver), asked through ``libcuda`` directly.

    Milliseconds, where importing torch to ask takes seconds: CPU-only machines never import torch.
    """
    names = ("nvcuda.dll",) if sys.platform == "win32" else ("libcuda.so.1", "libcuda.so")
    for name in names:
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        count = ctypes.c_int(0)
        if lib.cuInit(0) == 0 and lib.cuDeviceGetCount(ctypes.byref(count)) == 0:
            return count.value
        return 0
    return 0


def cuda_usable() -> bool:
    """True when ONNX Runtime has a CUDA provider, the driver sees a GPU and the CUDA libraries load (from the
    ``[cuda]`` extra's wheels, or torch's)."""
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers() or cuda_driver_devices() == 0:
        return False
    return _load_cuda_libraries()


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when usable else ``cpu``; ``cuda`` without a usable GPU is an error."""
    if device not in DEVICES:
        raise CganError(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}")
    if device == "cpu":
        return "cpu"
    usable = cuda_usable()
    if device == "cuda" and not usable:
        raise CganError("--device cuda: no usable CUDA GPU / CUDAExecutionProvider here (use --device cpu or auto)")
    return "cuda" if usable else "cpu"


@functools.cache  # loading is process-wide: cuda_usable and every CUDA session share the first answer
def _load_cuda_libraries() -> bool:
    """Load the CUDA and cuDNN libraries ONNX Runtime's CUDA provider links against: from the nvidia-* wheels of
    the CUDA major onnxruntime-gpu was built for (``preload_dlls``: the ``[cuda]`` extra), else through torch's;
    False when neither is there."""
    import onnxruntime as ort

    if hasattr(ort, "preload_dlls") and _nvidia_wheels_installed():
        try:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                ort.preload_dlls()
            return True
        except Exception:  # broken wheels: the libraries may still come through torch
            pass
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:  # no torch (a base or [cuda] install), or a torch without CUDA
        return False


def _nvidia_wheels_installed() -> bool:
    """Whether the cuDNN wheel the ``[cuda]`` extra brings (and torch's CUDA builds bring) is installed."""
    from importlib.util import find_spec

    return find_spec("nvidia") is not None and find_spec("nvidia.cudnn") is not None


def torch_device(device: str) -> str:
    """For the torch backends: ``auto`` -> ``cuda`` when torch sees a GPU, else ``cpu``; ``cuda`` without one is an
    error (torch's own check: ONNX Runtime's CUDA provider does not matter here)."""
    if device not in DEVICES:
        raise CganError(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}")
    if device == "cpu":
        return "cpu"
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if device == "cuda":
        raise CganError("--device cuda: torch sees no usable CUDA GPU here (use --device cpu or auto)")
    return "cpu"


def _require_file(path: Path) -> Path:
    path = Path(path)
    if not path.is_file():
        hint = missing_shipped_hint(path) or "export one with: python cli.py export"
        raise ModelFileError(f"model file {path} does not exist ({hint})")
    return path


class OnnxSession:
    """An ONNX Runtime session with checked providers, deliberate options, dtype casting and CUDA IO binding.

    On CPU a batch of at least ``threads`` images is split into ``threads`` slices that run concurrently,
    each on a one-thread session (``run`` releases the GIL): ONNX Runtime runs ConvTranspose's col2im and
    the small element-wise ops on one thread, so slices side by side use the cores better than one
    multi-threaded run.  Smaller batches run on one session with a pool of ``threads``.
    """

    def __init__(self, path: Path, device: str = "auto", threads: int | None = None, cuda_graph: bool = False,
                 slices: bool = True, tf32: bool = True):
        self.path = _require_file(path)
        self.device = resolve_device(device)
        self.threads = threads or len(usable_cpus())
        if self.device == "cuda":
            self.session = self._open_cuda(device, cuda_graph, tf32)
        if self.device == "cpu":
            self.session = self._open(["CPUExecutionProvider"], self.threads)
        self.input_types = {i.name: ORT_TYPES.get(i.type, np.float32) for i in self.session.get_inputs()}
        self.cuda_graph = cuda_graph and self.device == "cuda"
        self._bindings: dict[int, Binding] = {}  # CUDA: one per batch size (and CUDA graph id)
        self._pixels = None  # CUDA: the session that converts images to uint8 on the device (opened on first use)
        self._uint8_on_device = self.device == "cuda" and self.session.get_outputs()[0].type == "tensor(float)"
        self._lock = threading.Lock()
        self.slices = slices and self.threads > 1
        self._single = None  # CPU: the one-thread session, opened by the first sliced or one-thread run
        self._slice_pool = None  # CPU: the threads that run a batch's slices

    def _open_cuda(self, asked: str, cuda_graph: bool, tf32: bool):
        """A CUDA session, checked: the provider must really have loaded.  ``--device cuda`` without it is an
        error; ``auto`` falls back to the CPU with a one-line notice (``self.device`` becomes ``cpu``)."""
        import onnxruntime as ort

        _load_cuda_libraries()
        options = {"enable_cuda_graph": "1" if cuda_graph else "0", "use_tf32": "1" if tf32 else "0"}
        session = self._open([("CUDAExecutionProvider", options), "CPUExecutionProvider"], self.threads)
        if "CUDAExecutionProvider" in session.get_providers():
            return session
        why = ("ONNX Runtime's CUDA provider did not load (CUDA or cuDNN libraries missing, or built for another "
               f"CUDA major than onnxruntime-gpu {ort.__version__} needs)")
        if asked == "cuda":
            raise CganError(f"--device cuda: {why}; use --device cpu")
        print(f"notice: {why}; running on the CPU", file=sys.stderr)
        self.device = "cpu"
        return None

    def _open(self, providers: list, threads: int):
        import onnxruntime as ort

        options = ort.SessionOptions()
        # Level "all" (with the CPU's NCHWc layout transform) and "extended" measured within noise of each
        # other on the 2-core CPU; pool threads keep ORT's default spinning (off halved batch-1 throughput).
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            return ort.InferenceSession(str(self.path), options, providers=providers)
        except Exception as exc:
            raise ModelFileError(f"cannot load ONNX model {self.path}: {first_line(exc)}") from None

    @property
    def metadata(self) -> dict:
        """The embedded cgan-export metadata."""
        return parse_metadata(self.session.get_modelmeta().custom_metadata_map.get(METADATA_KEY), self.path)

    def run(self, noise: np.ndarray, condition: np.ndarray) -> np.ndarray:
        """``image`` float32 [N, 3, H, W] for ``noise`` [N, Z] and ``condition`` [N, C]."""
        feeds = self._feeds(noise, condition)
        if self.device == "cuda":
            return self._run_bound(feeds)
        if self.slices and len(noise) >= self.threads:
            return self._run_sliced(feeds)
        return self.session.run(["image"], feeds)[0].astype(np.float32, copy=False)

    def run_one_thread(self, noise: np.ndarray, condition: np.ndarray) -> np.ndarray:
        """As :meth:`run`, but on CPU the batch runs on one thread: for callers that run one batch per core
        themselves (bulk generation).  On CUDA, the same as :meth:`run`."""
        if self.device == "cuda":
            return self.run(noise, condition)
        feeds = self._feeds(noise, condition)
        return self._one_thread_session().run(["image"], feeds)[0].astype(np.float32, copy=False)

    def run_uint8(self, noise: np.ndarray, condition: np.ndarray, one_thread: bool = False) -> np.ndarray:
        """uint8 images [N, H, W, 3] (the rule of :func:`to_uint8`).  On CUDA the conversion runs on the GPU and
        only the uint8 pixels are copied to the host; on CPU ``one_thread`` runs the batch on one thread."""
        if not self._uint8_on_device:
            return to_uint8(self.run_one_thread(noise, condition) if one_thread else self.run(noise, condition))
        feeds = self._feeds(noise, condition)
        with self._lock:
            if self._pixels is None:
                self._pixels = self._open_pixels()
            return self._binding(feeds).run_uint8(self.session, self._pixels, feeds)

    def _open_pixels(self):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        return ort.InferenceSession(uint8_graph(), options, providers=["CUDAExecutionProvider", "CPUExecutionProvider"])

    def _feeds(self, noise: np.ndarray, condition: np.ndarray) -> dict[str, np.ndarray]:
        """The inputs, contiguous and cast to the session's input types."""
        feeds = {"noise": noise, "condition": condition}
        return {k: np.ascontiguousarray(v, dtype=self.input_types[k]) for k, v in feeds.items()}

    def _one_thread_session(self):
        """The CPU session with one intra-op thread (opened on first use; safe to run from several threads)."""
        with self._lock:
            if self._single is None:
                self._single = self._open(["CPUExecutionProvider"], 1)
            return self._single

    def _run_sliced(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """CPU: ``threads`` contiguous slices of the batch, run concurrently on the one-thread session."""
        from concurrent.futures import ThreadPoolExecutor

        session = self._one_thread_session()
        with self._lock:  # two threads' first sliced runs must not each create a pool
            if self._slice_pool is None:
                self._slice_pool = ThreadPoolExecutor(self.threads)
        bounds = np.linspace(0, len(feeds["noise"]), self.threads + 1).astype(int)
        parts = [{k: v[a:b] for k, v in feeds.items()} for a, b in zip(bounds[:-1], bounds[1:])]
        images = self._slice_pool.map(lambda part: session.run(["image"], part)[0], parts)  # each [n_i, 3, H, W]
        return np.concatenate(list(images)).astype(np.float32, copy=False)

    def _run_bound(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """CUDA: inputs copied into device buffers, output preallocated on the device; one binding per batch size.

        With CUDA graphs each batch size gets its own graph id: ONNX Runtime replays a captured graph with the
        addresses and shapes it was captured with, so a new shape must never reuse another shape's graph.
        """
        with self._lock:  # one set of device buffers per shape: calls from several threads take turns
            return self._binding(feeds).run(self.session, feeds)

    def _binding(self, feeds: dict[str, np.ndarray]) -> Binding:
        """The binding of this batch size (created on first use; the caller holds the lock)."""
        n = feeds["noise"].shape[0]
        if n not in self._bindings:
            self._bindings[n] = Binding.create(self.session, feeds, graph_id=len(self._bindings) + 1 if self.cuda_graph else 0)
        return self._bindings[n]


class Backend(Protocol):
    """What every backend offers."""

    metadata: dict

    def run(self, noise: np.ndarray, condition: np.ndarray) -> np.ndarray: ...


class OnnxBackend:
    """ONNX Runtime backend (CUDA provider when a GPU is usable, else CPU)."""

    def __init__(self, path: Path, device: str = "auto", cuda_graph: bool = False, slices: bool = True):
        self.session = OnnxSession(path, device, cuda_graph=cuda_graph, slices=slices)
        self.device = self.session.device
        self.metadata = self.session.metadata

    def run(self, noise: np.ndarray, condition: np.ndarray) -> np.ndarray:
        return self.session.run(noise, condition)

    def run_uint8(self, noise: np.ndarray, condition: np.ndarray, one_thread: bool = False) -> np.ndarray:
        """uint8 images [N, H, W, 3]: converted on the GPU on CUDA; ``one_thread``: on one CPU thread (bulk
        generation runs one call per core)."""
        return self.session.run_uint8(noise, condition, one_thread)


class TorchScriptBackend:
    """A frozen TorchScript file with its metadata in ``_extra_files``."""

    def __init__(self, path: Path, device: str = "auto"):
        import torch

        path = _require_file(path)
        self.device = torch_device(device)
        extra = {TS_METADATA_FILE: ""}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.module = torch.jit.load(str(path), map_location=self.device, _extra_files=extra)
        except Exception as exc:
            raise ModelFileError(f"cannot load TorchScript model {path}: {first_line(exc)}") from None
        raw = extra[TS_METADATA_FILE]
        self.metadata = parse_metadata(raw.decode() if isinstance(raw, bytes) else raw, path)

    def run(self, noise: np.ndarray, condition: np.ndarray) -> np.ndarray:
        return _run_torch(self.module, self.device, noise, condition)


class TorchBackend:
    """Eager PyTorch from a generator checkpoint (the reference the exports are checked against)."""

    def __init__(self, path: Path, device: str = "auto"):

        from .checkpoint import load_generator, prepare_for_inference, weights_sha256

        self.net, info = load_generator(_require_file(path))
        self.device = torch_device(device)
        self.metadata = build_metadata(info, weights_sha256(prepare_for_inference(self.net)))  # as the exports say
        self.net = self.net.to(self.device)

    def run(self, noise: np.ndarray, condition: np.ndarray) -> np.ndarray:
        return _run_torch(self.net, self.device, noise, condition)


def _run_torch(net, device: str, noise: np.ndarray, condition: np.ndarray) -> np.ndarray:
    """A torch module (eager or TorchScript) on numpy inputs: float32 images [N, 3, H, W]."""
    import torch

    with torch.no_grad():
        out = net(torch.from_numpy(noise).to(device), torch.from_numpy(condition).to(device))
    return out.float().cpu().numpy()


BACKENDS = {"onnx": OnnxBackend, "torchscript": TorchScriptBackend, "torch": TorchBackend}


def open_backend(model: Path | None = None, backend: str = "onnx", device: str = "auto") -> Backend:
    """Open ``model`` (default: the shipped file for ``backend``) with the chosen backend."""
    if backend not in BACKENDS:
        raise CganError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    return BACKENDS[backend](Path(model) if model else DEFAULT_MODELS[backend], device)


def images_uint8(backend: Backend, noise: np.ndarray, condition: np.ndarray, one_thread: bool = False) -> np.ndarray:
    """uint8 images [N, H, W, 3] from any backend (ONNX on CUDA converts them on the GPU)."""
    if hasattr(backend, "run_uint8"):
        return backend.run_uint8(noise, condition, one_thread)
    return to_uint8(backend.run(noise, condition))


def to_uint8(images: np.ndarray) -> np.ndarray:
    """float [N, 3, H, W] in [-1, 1] -> uint8 [N, H, W, 3]."""
    return np.clip(np.rint((images + 1.0) * 127.5), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)
