"""The LitServe pieces of ``zoo serve``: one ``LitAPI`` per endpoint and an ASGI guard in front of them.

LitServe decodes, batches, predicts and encodes a whole dynamic batch in one go, and any exception fails every
request of that batch. So a bad request never raises inside the loop: ``decode_request`` turns it into an
:class:`Invalid` marker, ``predict`` answers only the good requests of the batch (in one forward pass), and
``encode_response`` turns each marker into its own 4xx JSON response. Malformed bodies (not JSON, too large) are
answered by :class:`RequestGuard` before they reach a worker.
"""

from __future__ import annotations

import base64
import gc
import hmac
import json
import multiprocessing
import os
import signal
from dataclasses import dataclass
from typing import Any

import litserve as ls
from fastapi import Depends, HTTPException
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader

from zoo.inference import EnsembleManifest, InferenceInputError, Manifest
from zoo.serve.page import PAGE_PATHS

API_KEY_ENV = "ZOO_SERVE_API_KEY"


@dataclass
class Invalid:
    field: str
    detail: str
    status: int = 400

    def response(self) -> JSONResponse:
        return JSONResponse(status_code=self.status, content={"error": f"{self.field}: {self.detail}",
                                                              "field": self.field})


#: the routes answered without the API key: a bare liveness probe ("ok"), and the page at "/" with its assets,
#: which hold nothing about the model (the page asks for the key before it reads /info)
OPEN_PATHS = ("/health", *PAGE_PATHS)


def _key_ok(key: str | None) -> bool:
    expected = os.environ.get(API_KEY_ENV)
    return not expected or (key is not None and hmac.compare_digest(key.encode(), expected.encode()))


def _check_key(key: str | None) -> None:
    if not _key_ok(key):
        raise HTTPException(status_code=401, detail="missing or wrong X-API-Key header")


def rebuild_with_zoo(folder: Any, manifest: Any) -> Any:
    """A ``safetensors`` model rebuilt with zoo's task classes; imported only by a worker that needs it, so a
    worker serving an onnx / torch_export folder never imports Lightning."""
    from zoo.export.formats import rebuild

    return rebuild(folder, manifest)


class _Base(ls.LitAPI):
    def __init__(self, export: Manifest | EnsembleManifest, backend: str | None, calibration: str,
                 threads: int | None, max_image_pixels: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # the manifest read once by build_server travels to the worker processes with the API object
        self.export, self.backend_name, self.calibration, self.threads = export, backend, calibration, threads
        self.max_image_pixels = max_image_pixels
        #: set by build_server: :meth:`setup` then tunes this process for serving (torch's and ONNX Runtime's
        #: threads), which a caller running the API in its own process (a test) would not want
        self.serving = False

    def setup(self, device: Any) -> None:
        from zoo.inference import load

        # the main process drains and then stops this worker with SIGTERM; Ctrl-C (SIGINT to the whole group)
        # must not raise KeyboardInterrupt mid-batch here (tracebacks, a dropped batch)
        if multiprocessing.parent_process() is not None:  # a worker process, not a caller running the API in-line
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if self.max_image_pixels is not None:
            from PIL import Image

            Image.MAX_IMAGE_PIXELS = self.max_image_pixels

        rebuild = rebuild_with_zoo if self.export.needs_rebuild(self.backend_name) else None
        if self.serving:
            from zoo.inference import OnnxRunner

            OnnxRunner.allow_spinning = False  # this process serves: see OnnxRunner.allow_spinning
        self.predictor = load(self.export, self.backend_name, self.calibration, self.threads, rebuild=rebuild)
        if self.serving:
            if self.predictor.backend == "onnx":
                import torch

                # torch only shapes answers here (softmax, top-k of a [batch, classes] tensor): on its default
                # thread pool those small calls took 15x longer on 2 busy cores than on one thread (docs/serving.md)
                torch.set_num_threads(1)
            # the millions of objects torch and the model left behind never die: out of the collector's reach, a
            # full collection no longer walks them all while requests wait (the in-process engine's p99 on 2
            # cores, ab at concurrency 32: BPR 110-121 -> 12-16 ms, image 28-98 -> 20-22 ms; docs/serving.md)
            gc.collect()
            gc.freeze()

    def authorize(self, key: str | None = Depends(APIKeyHeader(name="X-API-Key", auto_error=False))) -> None:
        _check_key(key)

    def _parse(self, item: Any, prefix: str = "") -> Any:
        try:
            return self.predictor.parse(item)
        except InferenceInputError as err:
            return Invalid(prefix + err.field, err.detail, err.status)

    def encode_response(self, output: Any) -> Any:
        return output.response() if isinstance(output, Invalid) else output


#: the key :class:`RequestGuard` wraps a ``/predict/batch`` body in before handing it to ``/predict``'s worker
BATCH_KEY = "zoo_batch"


@dataclass
class Batch:
    """A ``/predict/batch`` request: its parsed inputs, answered as ``{"outputs": [...]}``."""

    items: list[Any]


class PredictAPI(_Base):
    """``POST /predict``: one input per request, batched across requests by LitServe; and ``POST /predict/batch``
    (``{"inputs": [...]}`` or a bare list), which :class:`RequestGuard` sends to the same worker wrapped under
    :data:`BATCH_KEY`: one worker process per ``--workers`` serves both routes (a worker's memory is mostly torch,
    about 300 MB, so a second API's workers would cost that again)."""

    # no annotation on ``request``: LitServe reads it to decide how to parse the body (JSON without one)
    def decode_request(self, request):  # type: ignore[no-untyped-def]
        if isinstance(request, dict) and BATCH_KEY in request:
            return self._decode_batch(request[BATCH_KEY])
        return self._parse(request)

    def decode_many(self, requests: list[Any]) -> list[Any]:
        """:meth:`decode_request` of a whole batch of requests, with the single inputs parsed together (a text
        model's tokenizer encodes them in one call): what the in-process engine runs on its model thread."""
        out: list[Any] = [None] * len(requests)
        single = []
        for i, request in enumerate(requests):
            if isinstance(request, dict) and BATCH_KEY in request:
                out[i] = self._decode_batch(request[BATCH_KEY])
            else:
                single.append(i)
        for i, parsed in zip(single, self._parse_many([requests[i] for i in single])):
            out[i] = parsed
        return out

    def _parse_many(self, items: list[Any]) -> list[Any]:
        many = getattr(self.predictor, "parse_many", None)  # an ensemble parses one request at a time
        if many is None:
            return [self._parse(it) for it in items]
        return [Invalid(p.field, p.detail, p.status) if isinstance(p, InferenceInputError) else p
                for p in many(items)]

    def _decode_batch(self, request: Any) -> Batch | Invalid:
        inputs = request.get("inputs") if isinstance(request, dict) else request
        if not isinstance(inputs, list) or not inputs:
            return Invalid("inputs", "expected a non-empty list of inputs (each as /predict takes it)")
        parsed = self._parse_many(inputs)
        bad = next(((i, p) for i, p in enumerate(parsed) if isinstance(p, Invalid)), None)
        if bad is not None:
            return Invalid(f"inputs[{bad[0]}].{bad[1].field}", bad[1].detail, bad[1].status)
        return Batch(parsed)

    def batch(self, inputs: list[Any]) -> list[Any]:
        return list(inputs)

    def predict(self, x: Any) -> Any:
        items = x if isinstance(x, list) else [x]
        # every good input of the dynamic batch, single requests and batch requests' lists alike, in one run
        flat: list[Any] = []
        for it in items:
            if isinstance(it, Batch):
                flat.extend(it.items)
            elif not isinstance(it, Invalid):
                flat.append(it)
        answers = iter(self.predictor.run(flat) if flat else [])
        out: list[Any] = []
        for it in items:
            if isinstance(it, Batch):
                out.append({"outputs": [next(answers) for _ in it.items]})
            else:
                out.append(it if isinstance(it, Invalid) else next(answers))
        return out if isinstance(x, list) else out[0]

    def unbatch(self, output: Any) -> list[Any]:
        return list(output)


def _json_reply(status: int, field: str, detail: str) -> tuple[dict[str, Any], dict[str, Any]]:
    body = json.dumps({"error": f"{field}: {detail}", "field": field}).encode()
    return ({"type": "http.response.start", "status": status,
             "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]},
            {"type": "http.response.body", "body": body})


class RequestGuard:
    """ASGI middleware: with an API key, refuses a request without it on any route but ``/health`` and the page
    (:data:`OPEN_PATHS`, 401); for
    POST requests, refuses bodies over ``max_bytes`` (413) and bodies that are not JSON
    (400), reads a JSON body sent as a form (``curl -d`` without a content type) as JSON, and turns a multipart
    upload's ``image`` file into the base64 JSON field ``/predict`` takes."""

    #: ``scope["zoo_json"]`` when the guard has not parsed the body (not a POST)
    NO_BODY = object()

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        # the key guards every route (/info, /docs, /openapi.json, ...) but the liveness probe, here in front of
        # them all: LitServe's authorize dependency covers only the predict routes
        if scope["type"] == "http" and scope.get("path") not in OPEN_PATHS:
            key = dict(scope.get("headers") or []).get(b"x-api-key")
            if not _key_ok(key.decode("latin-1") if key is not None else None):
                more = scope.get("method") == "POST"
                while more:  # read the body out: a reply before that resets the client's connection
                    more = (await receive()).get("more_body", False)
                for msg in _json_reply(401, "X-API-Key", "missing or wrong API key header"):
                    await send(msg)
                return
        if scope["type"] != "http" or scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        body, more, size = b"", True, 0
        while more:  # read to the end even when too large: a reply before that resets the client's connection
            msg = await receive()
            chunk = msg.get("body", b"")
            size += len(chunk)
            body = body + chunk if size <= self.max_bytes else b""
            more = msg.get("more_body", False)
        if size > self.max_bytes:
            for msg in _json_reply(413, "body", f"{size} bytes, larger than the server's limit of {self.max_bytes}"):
                await send(msg)
            return
        ctype = headers.get(b"content-type", b"").decode("latin-1")
        if ctype.startswith("multipart/form-data"):
            body = await self._upload_as_json(scope, body)
        try:
            parsed = json.loads(body)
        except ValueError as err:
            for msg in _json_reply(400, "body", f"not valid JSON ({err}); expected a JSON object"):
                await send(msg)
            return
        scope = dict(scope)
        if scope.get("path") == "/predict/batch":  # answered by /predict's workers (PredictAPI)
            body = b'{"' + BATCH_KEY.encode() + b'": ' + body + b"}"
            parsed = {BATCH_KEY: parsed}
            scope["path"], scope["raw_path"] = "/predict", b"/predict"
        scope["zoo_json"] = parsed  # the in-process engine reads it instead of parsing the body again
        scope["headers"] = [(k, v) for k, v in scope.get("headers") or []
                            if k not in (b"content-type", b"content-length")]
        scope["headers"] += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        sent = False

        async def replay() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _upload_as_json(self, scope: dict[str, Any], body: bytes) -> bytes:
        # the standard library's MIME parser: python-multipart (what Starlette's form parsing needs) is not a
        # dependency of zoo
        from email.parser import BytesParser
        from email.policy import HTTP

        ctype = dict(scope.get("headers") or []).get(b"content-type", b"")
        message = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + ctype + b"\r\n\r\n" + body)
        fields: dict[str, Any] = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            data = part.get_payload(decode=True) or b""
            if name:
                fields[str(name)] = (base64.b64encode(data).decode("ascii") if part.get_filename()
                                     else data.decode("utf-8", "replace"))
        return json.dumps(fields).encode()


__all__ = ["API_KEY_ENV", "BATCH_KEY", "Batch", "Invalid", "PredictAPI", "RequestGuard"]
