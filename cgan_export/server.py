"""``cli.py serve``: an HTTP generation server (FastAPI) with micro-batching and a web page.

Concurrent requests are gathered, within ``wait_ms`` and up to ``max_batch`` images, into one model call;
each request gets exactly the images ``Generator.generate(objects, n, seed)`` returns. The queue is bounded
(``ServeLimits.max_queue`` images: past it a request gets 503 with ``Retry-After``), every request has a deadline
(504) and a body read timeout (408); how the app is hosted (header timeouts, draining on SIGTERM): ``hosting``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response

from .api import GenerateRequest, Generator
from .contract import make_noise
from .errors import CganError, first_line
from .hosting import ServeLimits
from .images import captioned_grid, png_batch
from .runtime import images_uint8

MAX_N = 64  # images per request
MAX_BODY = 16 * 1024  # bytes of a request body

MAX_SEED = 2 ** 53 - 1  # the largest integer every JSON parser carries exactly


def generate_openapi(names: list[str], max_objects: int) -> dict:
    """What /openapi.json says of POST /generate's body (it reads the body itself, to answer malformed JSON with
    one line): the vocabulary's names, at most ``max_objects`` of them, n and seed with their ranges."""
    return {"requestBody": {"required": True, "description": f"at most {MAX_BODY} bytes", "content": {
        "application/json": {"schema": {"type": "object", "required": ["objects"], "properties": {
            "objects": {"type": "array", "items": {"type": "string", "enum": names}, "minItems": 1,
                        "maxItems": max_objects, "uniqueItems": True,
                        "description": "one condition: object names, group values or codes"},
            "n": {"type": "integer", "minimum": 1, "maximum": MAX_N, "default": 4},
            "seed": {"type": "integer", "minimum": 0, "maximum": MAX_SEED, "default": 0}}}}}}}


ERROR = {"content": {"application/json": {"schema": {"type": "object", "required": ["error"],
                                                     "properties": {"error": {"type": "string"}}}}}}
ERROR_RESPONSES = {
    400: {**ERROR, "description": "unknown or conflicting names, malformed JSON"},
    408: {**ERROR, "description": "the request body did not arrive in time"},
    413: {**ERROR, "description": "the request body is too large"},
    422: {**ERROR, "description": "a field of the wrong type or out of range"},
    503: {**ERROR, "description": "the queue is full: retry after the Retry-After header's seconds"},
    504: {**ERROR, "description": "the request was not answered within the server's deadline"},
}


@dataclass
class _Job:
    noise: np.ndarray  # [n, Z]
    condition: np.ndarray  # [n, C]
    done: asyncio.Future


class BadRequest(CganError):
    """A request the server refuses with a 4xx (or 5xx) status."""

    def __init__(self, message: str, status: int = 400, headers: dict | None = None):
        super().__init__(message)
        self.status, self.headers = status, headers or {}


def at_capacity(queued_images: int, max_queue: int) -> BadRequest:
    """The 503 (with Retry-After) of a request that would take the queue past ``max_queue`` images."""
    return BadRequest(f"the server is at capacity ({queued_images} images queued, at most {max_queue}): retry later",
                      503, {"Retry-After": "1"})


def past_deadline(deadline_s: float) -> BadRequest:
    """The 504 of a request not answered within ``deadline_s``."""
    return BadRequest(f"the request was not answered within {deadline_s:g} s", 504)


def warm_up(generator: Generator, largest: int) -> None:
    """One model call of ``largest`` images and one of a single image, so that ONNX Runtime takes its memory
    for them at the start (its arena keeps it), not during the first large request."""
    z_dim, classes = int(generator.metadata["z_dim"]), int(generator.metadata["num_classes"])
    for size in (largest, 1):
        images_uint8(generator.backend, make_noise(size, z_dim, 0), np.zeros((size, classes), np.float32))


@dataclass
class MicroBatcher:
    """Gathers concurrent requests into one model call: up to ``max_batch`` images, waiting at most ``wait_s``."""

    generator: Generator
    max_batch: int = 64
    wait_s: float = 0.005
    max_queue: int = 64 * 64  # images accepted and not yet answered, at most
    deadline_s: float = 30.0  # a request not answered by then is dropped with 504
    batches: int = 0  # model calls so far
    images: int = 0  # images generated so far
    waiting: int = 0  # requests submitted and not yet answered
    queued_images: int = 0  # their images
    refused: int = 0  # requests answered 503 because the queue was full
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    pool: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(max_workers=1))

    async def images_for(self, condition: np.ndarray, n: int, seed: int) -> np.ndarray:
        """uint8 [n, H, W, 3] for one multi-hot ``condition`` [C]: rows 0..n-1 of the noise stream of ``seed``; a
        full queue is a 503 (with Retry-After), a request not answered within the deadline a 504."""
        if self.queued_images + n > self.max_queue:
            self.refused += 1
            raise at_capacity(self.queued_images, self.max_queue)
        job = _Job(make_noise(n, int(self.generator.metadata["z_dim"]), seed), np.repeat(condition[None], n, axis=0),
                   asyncio.get_running_loop().create_future())
        self.waiting, self.queued_images = self.waiting + 1, self.queued_images + n
        try:
            await self.queue.put(job)
            return await asyncio.wait_for(job.done, self.deadline_s)  # cancels the job's future past the deadline
        except asyncio.TimeoutError:
            raise past_deadline(self.deadline_s) from None
        finally:
            self.waiting, self.queued_images = self.waiting - 1, self.queued_images - n

    def health(self) -> dict:
        """What /health says of the queue and the model calls."""
        return {"device": self.generator.device, "batches": self.batches, "images": self.images,
                "queued_requests": self.waiting, "queued_images": self.queued_images, "max_queue": self.max_queue,
                "refused": self.refused}

    def close(self) -> None:
        """Wait for the model call in progress, then free the model thread."""
        self.pool.shutdown(wait=True)

    def warm_up(self) -> None:
        """The model's memory for the largest batch gathered (max_batch - 1 images, then a whole request)."""
        warm_up(self.generator, self.max_batch + MAX_N - 1)

    async def serve_forever(self) -> None:
        """Take the first waiting job, gather more until the batch is full, every request in flight has joined
        (a lone request does not wait) or the window closes; run; split the images among the requests."""
        loop = asyncio.get_running_loop()
        while True:
            jobs = [await self.queue.get()]
            if jobs[0].done.done():  # its request has gone (deadline, client away): no model time for it
                continue
            deadline = loop.time() + self.wait_s
            while (sum(len(j.noise) for j in jobs) < self.max_batch and (len(jobs) < self.waiting or not self.queue.empty())
                   and (left := deadline - loop.time()) > 0):
                try:
                    jobs.append(await asyncio.wait_for(self.queue.get(), left))
                except asyncio.TimeoutError:
                    break
            await self._run(jobs, loop)

    async def _run(self, jobs: list[_Job], loop: asyncio.AbstractEventLoop) -> None:
        jobs = [j for j in jobs if not j.done.done()]
        if not jobs:
            return
        noise = np.concatenate([j.noise for j in jobs])  # [B, Z]
        condition = np.concatenate([j.condition for j in jobs])  # [B, C]
        try:
            images = await loop.run_in_executor(self.pool, images_uint8, self.generator.backend, noise, condition)
        except Exception as exc:  # the model failed: every waiting request hears it
            for job in jobs:
                if not job.done.done():
                    job.done.set_exception(exc)
            return
        self.batches, self.images = self.batches + 1, self.images + len(images)
        for job, part in zip(jobs, np.split(images, np.cumsum([len(j.noise) for j in jobs])[:-1])):
            if not job.done.done():  # not cancelled meanwhile (its deadline passed)
                job.done.set_result(part)


def _parse_request(objects: object, n: object, seed: object) -> GenerateRequest:
    """A request of one condition from JSON or query values, checked (a 422 otherwise)."""
    if not isinstance(objects, list) or not all(isinstance(o, str) for o in objects):
        raise BadRequest('"objects" must be a list of object names, e.g. ["red cube", "blue cylinder"]', 422)
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_N:
        raise BadRequest(f'"n" must be an integer from 1 to {MAX_N}', 422)
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= MAX_SEED:
        raise BadRequest(f'"seed" must be an integer from 0 to {MAX_SEED}', 422)
    return GenerateRequest.of([objects], n, seed)


def _base64_pngs(images: np.ndarray) -> list[str]:
    return [base64.b64encode(data).decode() for data in png_batch(images)]


def create_app(generator: Generator, model_path: Path | None = None, max_batch: int = 64, wait_ms: float = 5.0,
               limits: ServeLimits = ServeLimits(), batcher=None) -> FastAPI:
    """The FastAPI app serving ``generator`` within ``limits`` (queue, deadline, body read timeout).  ``batcher``
    draws the images: ``warm_up``, ``images_for``, ``health``, ``serve_forever`` and ``close`` (default: a ``MicroBatcher``
    on ``generator``; on Ray Serve, ``ray_serving.RayBatcher``)."""
    batcher = batcher or MicroBatcher(generator, max_batch, wait_ms / 1000, limits.max_queue, limits.deadline_s)
    encoders = ThreadPoolExecutor(max_workers=2)  # PNG encoding (libdeflate releases the GIL)
    sha256 = hashlib.sha256(model_path.read_bytes()).hexdigest() if model_path and model_path.is_file() else None

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await asyncio.get_running_loop().run_in_executor(None, batcher.warm_up)  # before the first request
        task = asyncio.create_task(batcher.serve_forever())
        yield
        task.cancel()
        batcher.close()
        encoders.shutdown(wait=True)

    app = FastAPI(title="cgan-export", lifespan=lifespan)
    app.state.batcher = batcher

    @app.exception_handler(CganError)
    async def refuse(request: Request, exc: CganError) -> JSONResponse:
        return JSONResponse({"error": first_line(exc, 500)}, status_code=getattr(exc, "status", 400),
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("query", "body"))
        return JSONResponse({"error": f"{where}: {first.get('msg', 'invalid request')}"}, status_code=422)

    @app.middleware("http")
    async def limit_body(request: Request, call_next):
        if int(request.headers.get("content-length") or 0) > MAX_BODY:
            return JSONResponse({"error": f"request body over {MAX_BODY} bytes"}, status_code=413)
        return await call_next(request)

    async def draw(request: GenerateRequest) -> tuple[list[str], np.ndarray]:
        names, multi_hot = generator.parse([list(c) for c in request.conditions])  # VocabularyError -> 400
        return names[0], await batcher.images_for(multi_hot[0], request.n, request.seed)

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", **batcher.health()}

    @app.get("/metadata")
    async def metadata() -> dict:
        meta = generator.metadata
        fields = generator.vocabulary.to_fields()
        return {"vocabulary": generator.vocabulary.names, "max_objects": generator.vocabulary.max_objects,
                "condition_kind": fields["condition_kind"], "groups": fields.get("groups", {}), "codes": fields.get("codes"),
                "z_dim": meta["z_dim"], "image_size": meta["image_size"], "model_sha256": sha256,
                "weights_sha256": meta.get("weights_sha256"), "max_n": MAX_N, "max_batch": max_batch}

    @app.post("/generate", responses=ERROR_RESPONSES,
              openapi_extra=generate_openapi(list(generator.vocabulary.names), generator.vocabulary.max_objects))
    async def generate(request: Request) -> Response:
        try:
            body = await asyncio.wait_for(request.body(), limits.body_timeout_s)
        except asyncio.TimeoutError:
            raise BadRequest(f"the request body did not arrive within {limits.body_timeout_s:g} s", 408) from None
        if len(body) > MAX_BODY:
            raise BadRequest(f"request body over {MAX_BODY} bytes", 413)
        try:
            payload = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise BadRequest("malformed JSON body") from None
        if not isinstance(payload, dict):
            raise BadRequest('the body must be a JSON object: {"objects": [...], "n": 4, "seed": 0}', 422)
        request = _parse_request(payload.get("objects"), payload.get("n", 4), payload.get("seed", 0))
        names, images = await draw(request)
        pngs = await asyncio.get_running_loop().run_in_executor(encoders, _base64_pngs, images)  # off the event loop
        return Response(json.dumps({"objects": names, "n": request.n, "seed": request.seed, "images": pngs}),
                        media_type="application/json")

    @app.get("/grid.png", responses={200: {"content": {"image/png": {}}, "description": "a captioned grid"},
                                     **ERROR_RESPONSES})
    async def grid(objects: list[str] = Query(default=[]), n: int = Query(default=4, ge=1, le=MAX_N),
                   seed: int = Query(default=0, ge=0, le=MAX_SEED)) -> Response:
        names, images = await draw(_parse_request(objects, n, seed))
        buffer = io.BytesIO()
        captioned_grid(list(images), [", ".join(names)] * len(images), columns=min(len(images), 8), scale=2).save(buffer, "PNG")
        return Response(buffer.getvalue(), media_type="image/png")

    @app.get("/", response_class=HTMLResponse)
    async def page() -> str:
        return (resources.files("cgan_export") / "web" / "index.html").read_text()

    return app
