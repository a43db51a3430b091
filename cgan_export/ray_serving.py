"""``serve --engine ray``: the HTTP API of ``serve`` on Ray Serve, on this machine or a cluster.

Two deployments make the application:

- ``HttpIngress`` runs the same FastAPI app as ``serve`` (``server.create_app``: the page, /health, /metadata,
  POST /generate, /grid.png and their 4xx answers) behind Ray Serve's HTTP proxy.  Its ``RayBatcher`` bounds the
  images queued (``--max-queue``: 503 with Retry-After past it) and gives each request its deadline (504).
- ``ModelReplica`` holds one model session; ``@serve.batch`` gathers concurrent requests, counted in images, into
  one model call.  Replicas are ``--replicas`` (autoscaled up to ``--max-replicas``); Ray's own queue in front of
  them is bounded too (``max_queued_requests``: past it Ray refuses, which is a 503 as well).

The model file travels with the application (its bytes), so a cluster's nodes need no copy of it.  Image ``k`` of
a request is row ``k`` of its seed's noise stream, as in ``Generator.generate``: batching never changes images.
"""

from __future__ import annotations

import asyncio
import os
import contextlib
import logging
import signal
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ray import serve
from ray.exceptions import RayError
from ray.serve.exceptions import BackPressureError

from .api import Generator
from .contract import make_noise
from .errors import CganError, first_line
from .hosting import ServeLimits, check_port
from .ray_engine import RayOptions, start_ray
from .runtime import images_uint8
from .server import MAX_N, BadRequest, at_capacity, create_app, past_deadline, warm_up

APP_NAME = "cgan-export"


@dataclass(frozen=True)
class RayServeOptions:
    """How the application is laid out on Ray: a cluster ``address`` (None: a local Ray) and the model replicas."""

    address: str | None = None
    replicas: int = 1  # model replicas at the start (each one model session and one CPU)
    max_replicas: int = 0  # > replicas: Ray autoscales between the two by requests in flight
    target_requests: int = 8  # autoscaling: requests in flight per replica it aims for
    max_batch: int = 64  # images gathered into one model call
    wait_ms: float = 5.0  # how long the first request of a batch waits for others


def _images(item: tuple) -> int:
    return int(item[1])  # (condition, n, seed): a request counts as its images in a batch


def _write_model(model_bytes: bytes, name: str) -> Path:
    """The model's bytes as a file in a fresh temporary folder on this node."""
    path = Path(tempfile.mkdtemp(prefix="cgan-export-")) / name
    path.write_bytes(model_bytes)
    return path


@serve.deployment(ray_actor_options={"num_cpus": 1})
class ModelReplica:
    """One model session; concurrent requests are drawn in one model call."""

    def __init__(self, model_bytes: bytes, name: str, max_batch: int, wait_s: float):
        self.generator = Generator.load(_write_model(model_bytes, name), "onnx", "auto", "fp32")  # the file as given
        self.z_dim = int(self.generator.metadata["z_dim"])
        self.draw.set_max_batch_size(max(max_batch, MAX_N))  # a request of MAX_N images always fits one batch
        self.draw.set_batch_wait_timeout_s(wait_s)
        warm_up(self.generator, max(max_batch, MAX_N))  # before the replica takes requests

    @serve.batch(max_batch_size=MAX_N, batch_wait_timeout_s=0.005, batch_size_fn=lambda items: sum(map(_images, items)))
    async def draw(self, items: list[tuple[np.ndarray, int, int]]) -> list[np.ndarray]:
        """uint8 [n, H, W, 3] for each (condition [C], n, seed): rows 0..n-1 of the seed's noise stream."""
        noise = np.concatenate([make_noise(n, self.z_dim, seed) for _, n, seed in items])  # [B, Z]
        condition = np.concatenate([np.repeat(np.asarray(c, np.float32)[None], n, axis=0) for c, n, _ in items])  # [B, C]
        images = await asyncio.get_running_loop().run_in_executor(None, images_uint8, self.generator.backend, noise,
                                                                  condition)  # off the replica's event loop
        return np.split(images, np.cumsum([n for _, n, _ in items])[:-1])


class RayBatcher:
    """The server's image source on Ray Serve: each request is one call to ``ModelReplica.draw``; the images
    queued here are bounded as in ``MicroBatcher``, and a request has the same deadline."""

    def __init__(self, model, limits: ServeLimits, replicas: str):
        self.model, self.limits, self.replicas = model, limits, replicas
        self.images = self.waiting = self.queued_images = self.refused = 0
        self.draining = False  # shutting down: new requests get 503, those in flight their images

    async def images_for(self, condition: np.ndarray, n: int, seed: int) -> np.ndarray:
        """uint8 [n, H, W, 3] for ``condition`` [C]; a full queue is a 503, a request past its deadline a 504."""
        if self.draining:
            self.refused += 1
            raise BadRequest("the server is shutting down: retry later", 503, {"Retry-After": "1"})
        if self.queued_images + n > self.limits.max_queue:
            self.refused += 1
            raise at_capacity(self.queued_images, self.limits.max_queue)
        self.waiting, self.queued_images = self.waiting + 1, self.queued_images + n
        response = self.model.draw.remote((condition, n, seed))
        try:
            images = await asyncio.wait_for(_result(response), self.limits.deadline_s)
        except asyncio.TimeoutError:
            response.cancel()
            raise past_deadline(self.limits.deadline_s) from None
        except BackPressureError:  # Ray's queue in front of the replicas is full
            self.refused += 1
            raise at_capacity(self.queued_images, self.limits.max_queue) from None
        finally:
            self.waiting, self.queued_images = self.waiting - 1, self.queued_images - n
        self.images += len(images)
        return images

    def health(self) -> dict:
        """What /health says: the engine, this ingress's queue and the images it has answered."""
        return {"device": "ray", "engine": "ray", "draining": self.draining, "replicas": self.replicas, "images": self.images,
                "queued_requests": self.waiting, "queued_images": self.queued_images,
                "max_queue": self.limits.max_queue, "refused": self.refused}

    def warm_up(self) -> None:
        """Nothing to warm here: the model replicas hold the sessions."""

    async def serve_forever(self) -> None:
        """Nothing to run here: Ray Serve batches in the model replicas."""

    def close(self) -> None:
        """Nothing to free here."""


async def _result(response):
    return await response


@serve.deployment(ray_actor_options={"num_cpus": 0})
@serve.ingress()
class HttpIngress:
    """The FastAPI app of ``serve``, its images drawn by ``ModelReplica``."""

    def __init__(self, model, model_bytes: bytes, name: str, limits: ServeLimits, options: RayServeOptions):
        self.model, self.limits, self.options = model, limits, options
        self.path = _write_model(model_bytes, name)

    def __serve_build_asgi_app__(self):
        generator = Generator.load(self.path, "onnx", "cpu", "fp32")  # vocabulary and metadata; no model calls here
        replicas = (f"{self.options.replicas}-{self.options.max_replicas}" if self.options.max_replicas > self.options.replicas
                    else str(self.options.replicas))
        self.batcher = RayBatcher(self.model, self.limits, replicas)
        self.admitted = _Admitted(create_app(generator, self.path, self.options.max_batch, self.options.wait_ms,
                                        self.limits, batcher=self.batcher), self.batcher)
        return self.admitted

    def drain(self) -> int:
        """Refuse new requests (503); the number of admitted ones still being answered."""
        self.batcher.draining = True
        return self.admitted.answering


class _Admitted:
    """ASGI wrapper counting the HTTP requests that arrived before the drain began and are not answered yet
    (their images may be drawn and still be encoding or on the wire)."""

    def __init__(self, app, batcher: RayBatcher):
        self.app, self.batcher, self.answering = app, batcher, 0

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or self.batcher.draining:
            return await self.app(scope, receive, send)
        self.answering += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.answering -= 1


def application(model: Path, limits: ServeLimits, options: RayServeOptions):
    """The Ray Serve application (ingress bound to the model deployment) for the ONNX file ``model``."""
    model_bytes = model.read_bytes()
    scaling = ({"autoscaling_config": {"min_replicas": options.replicas, "max_replicas": options.max_replicas,
                                       "target_ongoing_requests": options.target_requests}}
               if options.max_replicas > options.replicas else {"num_replicas": options.replicas})
    replica = ModelReplica.options(
        max_ongoing_requests=max(options.max_batch, MAX_N),  # requests one replica holds: enough for a full batch
        max_queued_requests=limits.max_queue,  # Ray's queue in front of the replicas (a request is >= 1 image)
        graceful_shutdown_timeout_s=limits.drain_s, **scaling,
    ).bind(model_bytes, model.name, options.max_batch, options.wait_ms / 1000)
    return HttpIngress.options(
        num_replicas=1,  # one ingress: its queue bound is the server's, and SIGTERM drains it
        max_ongoing_requests=limits.max_connections,  # requests in flight through the ingress, at most
        max_queued_requests=limits.max_connections, graceful_shutdown_timeout_s=limits.drain_s,
    ).bind(replica, model_bytes, model.name, limits, options)


def serve_on_ray(model: Path, host: str, port: int, limits: ServeLimits, options: RayServeOptions,
                 on_listening=lambda: None) -> None:
    """Run the application until SIGTERM or Ctrl-C, then shut Serve and Ray down (requests in flight get up to
    ``limits.drain_s``).  A port that cannot be listened on is a CganError before Ray starts."""
    if not model.is_file():
        raise CganError(f"model file not found: {model}")
    check_port(host, port)
    # A busy machine starts the proxy's worker slowly; Ray's 5 s readiness check then kills it in a loop.
    os.environ.setdefault("RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S", "60")
    ray = start_ray(RayOptions(options.address))
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):  # after ray.init, which installs its own SIGTERM handler
        signal.signal(sig, lambda *_: stop.set())
    logging.getLogger("ray.serve").setLevel(logging.WARNING)  # Serve's start-up lines; its warnings stay
    try:
        try:
            serve.start(http_options={"host": host, "port": port, "request_timeout_s": limits.deadline_s + limits.body_timeout_s,
                                      "keep_alive_timeout_s": int(max(1, limits.keep_alive_s))})
            serve.run(application(model, limits, options), name=APP_NAME, route_prefix="/", blocking=False)
        except (RuntimeError, RayError) as exc:  # the proxy or a replica failed to start
            raise CganError(f"Ray Serve did not start: {first_line(exc)} (Ray's logs: "
                            "/tmp/ray/session_latest/logs/serve/)") from None
        on_listening()
        while not stop.wait(0.5):
            pass
    finally:
        with contextlib.suppress(Exception):
            _drain(limits.drain_s)
        serve.shutdown()
        ray.shutdown()


def _drain(seconds: float) -> None:
    """New requests get 503 while those in flight finish, for at most ``seconds`` (then Serve shuts down)."""
    ingress = serve.get_app_handle(APP_NAME)
    deadline = time.monotonic() + seconds
    while ingress.drain.remote().result(timeout_s=seconds) and time.monotonic() < deadline:
        time.sleep(0.1)
