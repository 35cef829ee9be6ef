"""The in-process engine of ``zoo serve``: one uvicorn process whose event loop reads requests and whose model
threads answer them in batches, with the same routes, guard, answers and drain as the LitServe engine.

Why not LitServe for every model: LitServe hands each request from its HTTP process to a model process and back
through queues; on 2 cores an endpoint that does no work answers about a quarter of what a bare FastAPI endpoint
answers (docs/serving.md, "Benchmark"), so a model whose forward takes under a millisecond per input is bounded
by the hand-off, not by the model. Here the hand-off is a future in the same process.

Batching is continuous: a batch starts as soon as a model thread is free and takes every request that arrived
meanwhile (up to ``max_batch_size``), so the batch size follows the arrival rate, an idle server answers a lone
request at once, and nothing waits for company (``--batch-timeout`` is LitServe's; waiting for full batches
measured slower here, as the HTTP work and the model's then take turns instead of overlapping). Two model threads
share the cores (``--threads`` each): one batch computes while the other is parsed and answered, and a text
encoder keeps both cores busy (on 2 cores, two batches on one thread each answered more texts per second than one
batch on two threads, whose non-matrix operators leave a core idle).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from zoo.serve.api import Invalid, PredictAPI, RequestGuard

try:  # several times faster than json for answers; the standard library when it is not installed
    import orjson

    def dumps(value: Any) -> bytes:
        return orjson.dumps(value)
except ImportError:  # pragma: no cover - depends on the environment
    def dumps(value: Any) -> bytes:
        return json.dumps(value, separators=(",", ":")).encode()


class MicroBatcher:
    """Collects requests on the event loop and answers them in batches on ``parallel`` threads (``handle(list)
    -> list``, one answer per request, in order)."""

    def __init__(self, handle: Any, max_batch_size: int, parallel: int = 1) -> None:
        self.handle, self.max_batch_size, self.parallel = handle, max_batch_size, parallel
        self.pending: collections.deque[tuple[Any, asyncio.Future[Any]]] = collections.deque()
        self.executor = ThreadPoolExecutor(parallel, thread_name_prefix="zoo-model")
        self.task: asyncio.Task[None] | None = None
        self.arrived: asyncio.Event | None = None
        self.sizes: collections.Counter[int] = collections.Counter()
        self.per_item = 0.0  # seconds per input of the recent batches (a moving average)

    def start(self) -> None:
        self.arrived = asyncio.Event()
        self.task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        self.executor.shutdown(wait=True)

    async def submit(self, item: Any) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.pending.append((item, future))
        assert self.arrived is not None
        self.arrived.set()
        return await future

    async def _loop(self) -> None:
        assert self.arrived is not None
        free = asyncio.Semaphore(self.parallel)
        while True:
            while not self.pending:
                self.arrived.clear()
                await self.arrived.wait()
            await free.acquire()  # a batch starts when a model thread is free; meanwhile requests gather
            batch = [self.pending.popleft() for _ in range(min(self.cap(), len(self.pending)))]
            self.sizes[len(batch)] += 1
            asyncio.get_running_loop().create_task(self._run(batch)).add_done_callback(lambda _: free.release())

    #: a batch is cut to what the model answers in about this long: a text encoder's cost per input does not fall
    #: with the batch, so a 32-text batch only made the requests behind it wait (text, 2 cores, concurrency 32:
    #: p99 630 -> 316 ms at the same requests/s); a model of microseconds per input keeps max_batch_size
    BATCH_SECONDS = 0.05

    def cap(self) -> int:
        if self.per_item <= 0:
            return self.max_batch_size
        return max(1, min(self.max_batch_size, int(self.BATCH_SECONDS / self.per_item)))

    async def _run(self, batch: list[tuple[Any, asyncio.Future[Any]]]) -> None:
        try:
            start = time.perf_counter()
            answers = await asyncio.get_running_loop().run_in_executor(self.executor, self.handle,
                                                                       [item for item, _ in batch])
            took = (time.perf_counter() - start) / len(batch)
            self.per_item = took if self.per_item <= 0 else 0.8 * self.per_item + 0.2 * took
        except Exception as err:  # a bug in the model path: every request of the batch gets a 500
            for _, future in batch:
                if not future.done():
                    future.set_exception(err)
            return
        for (_, future), answer in zip(batch, answers):
            if not future.done():  # its client may have timed out
                future.set_result(answer)


class InProcessServer:
    """What :func:`zoo.serve.build_server` returns for ``--engine inprocess``: a FastAPI ``app`` (other modules
    may add routes to it, as to LitServe's), ``model_metadata`` (``/info``'s ``model``) and :meth:`run`."""

    engine = "inprocess"

    def __init__(self, api: PredictAPI, *, max_batch_size: int, timeout: float, max_bytes: int,
                 model_metadata: dict[str, Any], parallel: int = 1) -> None:
        self.api, self.timeout, self.model_metadata = api, timeout, model_metadata
        self.batcher = MicroBatcher(self._answer, max_batch_size, parallel)
        self.ready = False
        self.app = FastAPI(lifespan=self._lifespan)
        self.app.add_middleware(RequestGuard, max_bytes=max_bytes)
        self._routes()

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: FastAPI) -> Any:
        await asyncio.get_running_loop().run_in_executor(None, self.api.setup, "cpu")
        # the event loop shares the GIL with the model threads: a shorter switch interval than Python's 5 ms lets it
        # read and answer requests between a batch's Python steps (BPR, 2 cores: 4,490 -> 4,760-4,860 req/s)
        sys.setswitchinterval(0.0005)
        self.batcher.start()
        self.ready = True
        try:
            yield
        finally:
            self.ready = False
            await self.batcher.stop()

    def _answer(self, requests: list[Any]) -> list[tuple[int, bytes]]:
        """On the model thread: a batch of JSON requests -> (status, body) each, as the LitServe engine answers
        them (the same PredictAPI: parse, one forward for the good ones, a 4xx for each bad one)."""
        answers = self.api.predict(self.api.decode_many(requests))
        out = []
        for answer in answers:
            if isinstance(answer, Invalid):
                out.append((answer.status, dumps({"error": f"{answer.field}: {answer.detail}",
                                                  "field": answer.field})))
            else:
                out.append((200, dumps(answer)))
        return out

    def _routes(self) -> None:
        app = self.app

        @app.get("/health")
        async def health() -> Response:
            return Response("ok" if self.ready else "not ready", status_code=200 if self.ready else 503)

        @app.get("/info")
        async def info() -> JSONResponse:
            return JSONResponse({"model": self.model_metadata,
                                 "server": {"engine": self.engine, "workers_per_device": 1, "timeout": self.timeout,
                                            "batch_sizes": dict(sorted(self.batcher.sizes.items()))}})

        async def predict(request: Request) -> Response:
            body = request.scope.get("zoo_json", RequestGuard.NO_BODY)
            if body is RequestGuard.NO_BODY:  # a route added in front of the guard
                body = json.loads(await request.body())
            try:
                async with asyncio.timeout(self.timeout):  # no task per request, unlike asyncio.wait_for
                    status, content = await self.batcher.submit(body)
            except TimeoutError:
                return JSONResponse({"error": "request timed out"}, status_code=504)
            return Response(content, status_code=status, media_type="application/json")

        # a plain Starlette route: FastAPI's dependency solving per request is CPU this path does not need
        app.router.add_route("/predict", predict, methods=["POST"])

    def run(self, host: str, port: int, drain_timeout: float) -> None:
        """Serve until SIGTERM / SIGINT, then drain: uvicorn closes the port at once and answers the requests it
        accepted (the model threads keep answering) for up to ``drain_timeout`` seconds, then this returns."""
        config = uvicorn.Config(self.app, host=host, port=port, log_level="warning", lifespan="on",
                                timeout_graceful_shutdown=drain_timeout, access_log=False)
        server = _DrainingServer(config)
        server.drain_timeout = drain_timeout
        # uvicorn raises the signal it handled again once it has stopped: this process then ends with exit 0
        # instead of being killed by it
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: None)
        server.run()


class _DrainingServer(uvicorn.Server):
    """uvicorn's server, saying once that it drains (as the LitServe engine does)."""

    drain_timeout = 0.0

    def handle_exit(self, sig: int, frame: Any) -> None:
        if not self.should_exit:
            print(f"zoo: {signal.Signals(sig).name}: draining (answering accepted requests, up to "
                  f"{self.drain_timeout:g} s)", file=sys.stderr, flush=True)
        super().handle_exit(sig, frame)


__all__ = ["InProcessServer", "MicroBatcher", "dumps"]
