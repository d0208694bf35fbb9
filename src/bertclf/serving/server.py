"""`bertclf serve`: a trained model behind an HTTP JSON API (FastAPI on uvicorn).

    POST /predict  {"texts": ["a text", ...]} or {"text": "a text"}
                   -> {"predictions": [{"label": ..., "probability": ..., "probabilities": {...}}]}
    GET  /health   -> {"status": "ok", "model": ..., "arch": ..., "labels": [...]}

Requests that arrive together are classified together: a single worker thread runs the model,
and while it is busy new requests queue up; the next forward pass takes all of them (up to
``max_batch`` texts, waiting at most ``max_wait_ms`` for more). One model call per batch instead
of one per request is where a CPU server's throughput comes from, and the event loop stays free
to accept connections meanwhile. Limits answer with a 4xx and a one-line ``detail``: a body over
``max_body_bytes`` (413), more than ``max_texts`` texts (413), a malformed request (422), and a
full queue (503, retry later). On SIGTERM or Ctrl-C uvicorn stops accepting connections and
finishes the requests in flight before the process exits.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from bertclf.errors import BertclfError
from bertclf.serving.predictor import TextClassifier, check_texts

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Limits:
    max_texts: int = 256  # texts per request
    max_body_bytes: int = 1 << 20  # request body
    max_batch: int = 64  # texts per forward pass
    max_wait_ms: float = 5.0  # how long a batch waits for more requests
    max_queue: int = 4096  # texts waiting; beyond it requests get 503


class Batcher:
    """Collects the texts of concurrent requests into batches for one model worker thread."""

    def __init__(self, clf: TextClassifier, limits: Limits):
        self.clf, self.limits = clf, limits
        self.queue: asyncio.Queue[tuple[list[str], asyncio.Future[np.ndarray]]] = asyncio.Queue()
        self.waiting = 0  # texts queued, not yet taken into a batch
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bertclf-model")
        self.task: asyncio.Task[None] | None = None

    async def classify(self, texts: list[str]) -> np.ndarray:
        if self.waiting + len(texts) > self.limits.max_queue:
            raise Busy(f"{self.waiting} texts are waiting already; retry in a moment")
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        self.waiting += len(texts)
        await self.queue.put((texts, future))
        return await future

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            items = [await self.queue.get()]
            count = len(items[0][0])
            deadline = loop.time() + self.limits.max_wait_ms / 1000
            while count < self.limits.max_batch:
                try:  # whatever queued while the model was busy, then a short wait for more
                    item = self.queue.get_nowait()
                except asyncio.QueueEmpty:
                    left = deadline - loop.time()
                    if left <= 0:
                        break
                    try:
                        item = await asyncio.wait_for(self.queue.get(), left)
                    except TimeoutError:
                        break
                items.append(item)
                count += len(item[0])
            self.waiting -= count
            texts = [t for chunk, _ in items for t in chunk]
            try:
                probs = await loop.run_in_executor(self.executor, self.clf.predict_proba, texts)
            except Exception:
                # one request's texts must not fail the others': each request on its own, so
                # only the one that fails gets the error
                for chunk, future in items:
                    try:
                        alone = await loop.run_in_executor(self.executor, self.clf.predict_proba, chunk)
                    except Exception as exc:
                        if not future.done():
                            future.set_exception(exc)
                    else:
                        if not future.done():
                            future.set_result(alone)
                continue
            start = 0
            for chunk, future in items:
                if not future.done():  # a client that went away
                    future.set_result(probs[start:start + len(chunk)])
                start += len(chunk)

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self.run())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
        self.executor.shutdown(wait=True)


class PredictRequest(BaseModel):
    """Either `texts` (a list) or `text` (one string)."""

    model_config = ConfigDict(extra="forbid")
    texts: list[str] | None = None
    text: str | None = None


class Answer(BaseModel):
    """One text's answer; which fields it has depends on the model's task (data.task)."""

    label: str | None = Field(None, description="single_label: the most probable class; ordinal: the "
                              "median of the predicted distribution over the ordered labels")
    probability: float | None = Field(None, description="single_label, ordinal: the probability of `label`")
    labels: list[str] | None = Field(None, description="multi_label: every label whose probability reaches "
                                     "its threshold (chosen on validation; may be empty)")
    value: float | None = Field(None, description="regression: the predicted value")
    probabilities: dict[str, float] | None = Field(None, description="every class's (multi_label: every "
                                                   "label's) probability; not for regression")


class PredictResponse(BaseModel):
    predictions: list[Answer]


class Busy(Exception):
    """The queue is full: the client should retry."""


class BodyLimit:
    """ASGI middleware: refuse a request body over `limit` bytes with 413, by its Content-Length
    or, for a chunked body, as soon as what arrived passes the limit. The body (at most `limit`
    bytes) is read here, then handed to the app."""

    def __init__(self, app: Any, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict, receive: Callable[[], Awaitable[dict]], send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await self._refuse(send)
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            if size > self.limit:
                await self._drain(receive, more)
                return await self._refuse(send)
        body = b"".join(chunks)
        sent = False

        async def replay() -> dict:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _drain(self, receive: Callable[[], Awaitable[dict]], more: bool) -> None:
        """Read and drop the rest of a refused body, up to 16 times the limit, before answering: a
        client that sends its whole body before reading (http.client, requests) then gets the 413
        instead of a broken pipe, as a server's lingering close gives it."""
        drained = 0
        while more and drained <= 16 * self.limit:
            message = await receive()
            if message["type"] != "http.request":
                return
            drained += len(message.get("body", b""))
            more = message.get("more_body", False)

    async def _refuse(self, send: Any) -> None:
        detail = f"the request body is over {self.limit:,} bytes; send fewer or shorter texts per request"
        body = json.dumps({"detail": detail}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()), (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


def create_app(clf: TextClassifier, limits: Limits | None = None) -> Any:
    """The ASGI application serving `clf`."""
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse

    limits = limits or Limits()
    batcher = Batcher(clf, limits)

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        batcher.start()
        log.info("serving %s (%s, %d labels)", clf.model_dir, clf.arch, len(clf.labels))
        yield
        await batcher.stop()

    app = FastAPI(title="bertclf", summary=f"{clf.arch} classifier of {clf.model_dir}", lifespan=lifespan)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": str(clf.model_dir), "arch": clf.arch, "labels": clf.labels,
                "waiting_texts": batcher.waiting}

    @app.post("/predict", response_model=PredictResponse, response_model_exclude_none=True)
    async def predict(request: PredictRequest) -> Any:
        if (request.texts is None) == (request.text is None):
            return JSONResponse({"detail": 'give "texts" (a list of strings) or "text" (one string)'}, 422)
        texts = request.texts if request.texts is not None else [request.text or ""]
        if not texts:
            return JSONResponse({"detail": '"texts" is empty'}, 422)
        if len(texts) > limits.max_texts:
            return JSONResponse({"detail": f"{len(texts)} texts in one request; at most {limits.max_texts}: "
                                           "split the request"}, 413)
        try:  # before the texts join a batch of other clients' texts
            check_texts(texts)
        except BertclfError as exc:
            return JSONResponse({"detail": str(exc)}, 422)
        try:
            probs = await batcher.classify(texts)
        except Busy as exc:
            return JSONResponse({"detail": str(exc)}, 503, headers={"Retry-After": "1"})
        except BertclfError as exc:
            return JSONResponse({"detail": str(exc)}, 422)
        return {"predictions": [clf.answers.of(row) for row in probs]}

    return BodyLimit(app, limits.max_body_bytes)


def serve(clf: TextClassifier, host: str, port: int, limits: Limits, access_log: bool = False) -> None:
    """Run the server until SIGTERM / Ctrl-C; in-flight requests finish first (up to 30 s)."""
    import uvicorn

    uvicorn.run(create_app(clf, limits), host=host, port=port, access_log=access_log,
                timeout_graceful_shutdown=30, log_level="info")
