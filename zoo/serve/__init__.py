"""``zoo serve``: an exported model or ensemble (or a run / ensemble directory, exported on the fly) behind
uvicorn with the model in the same process (:mod:`zoo.serve.inprocess`, one worker) or behind LitServe.

Endpoints: ``POST /predict`` (one input; LitServe batches concurrent requests up to ``max_batch_size``, waiting
at most ``batch_timeout`` seconds), ``POST /predict/batch`` (a list, one forward pass), ``GET /health``,
``GET /info`` (task, labels, versions, the export's verification figures, the model card's summary), ``GET /`` (a
page to try the model in a browser, :mod:`zoo.serve.page`). With an API key every route but ``/health`` (a bare
liveness probe) and the page needs it. SIGTERM or Ctrl-C drains: the port stops accepting, the requests
already accepted are answered (up to ``drain_timeout`` seconds), then the process exits 0. See docs/serving.md.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from zoo.errors import ConfigError

DEFAULT_MAX_BODY_MB = 20.0
DEFAULT_DRAIN_TIMEOUT = 30.0


def build_server(folder: str | Path, *, max_batch_size: int = 32, batch_timeout: float = 0.01, workers: int = 1,
                 backend: str | None = None, calibration: str = "temperature", api_key: str | None = None,
                 max_body_mb: float = DEFAULT_MAX_BODY_MB, threads: int | None = None, timeout: float = 30.0,
                 drain_timeout: float = DEFAULT_DRAIN_TIMEOUT, max_image_pixels: int | None = None,
                 engine: str = "auto") -> Any:
    """The server for an export folder (not started), after checking the folder (its files' hashes, its
    manifest against the graph); :func:`serve` takes a run directory too. Either engine's server has a FastAPI
    ``app`` other modules may add routes to. ``engine``: ``inprocess``, ``litserve`` or ``auto`` (see
    :func:`choose_engine`)."""
    import litserve as ls

    from zoo.inference import read_export
    from zoo.inference.integrity import check_export
    from zoo.serve.api import API_KEY_ENV, PredictAPI, RequestGuard
    from zoo.serve.page import add_page

    if max_batch_size < 1 or workers < 1 or batch_timeout < 0 or max_body_mb <= 0 or drain_timeout < 0:
        raise ConfigError("--max-batch-size and --workers must be >= 1, --batch-timeout and --drain-timeout >= 0, "
                          f"--max-body-mb > 0; got {max_batch_size}, {workers}, {batch_timeout}, {drain_timeout}, "
                          f"{max_body_mb}")
    if max_image_pixels is not None and max_image_pixels < 1:
        raise ConfigError(f"--max-image-pixels must be >= 1, got {max_image_pixels}")
    if engine not in ENGINES:
        raise ConfigError(f"--engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if engine == "inprocess" and workers > 1:
        raise ConfigError(f"--engine inprocess runs one model in the server's process; --workers {workers} needs "
                          "--engine litserve (or auto)")
    if backend not in (None, "torch", "onnx"):
        raise ConfigError(f"--backend must be torch or onnx, got {backend!r}")
    export = read_export(folder)
    check_export(export)
    if backend == "onnx" and export.format != "onnx":
        raise ConfigError(f"--backend onnx needs an ONNX export; {folder} is a {export.format} export "
                          "(zoo export RUN --format onnx --out DIR)")
    key = api_key or os.environ.get(API_KEY_ENV)
    if key:
        os.environ[API_KEY_ENV] = key  # read by the API servers' authorize dependency (inherited by the workers)
    engine = choose_engine(engine, workers)
    cores = os.cpu_count() or 1
    # the in-process engine runs two batches at once (zoo/serve/inprocess.py), each on half the cores
    parallel = 2 if engine == "inprocess" and cores >= 2 else 1
    threads = threads or max(1, cores // (workers * parallel))
    common = dict(export=export, backend=backend, calibration=calibration, threads=threads,
                  max_image_pixels=max_image_pixels)
    # one API: /predict/batch reaches the same workers through RequestGuard
    apis = [PredictAPI(max_batch_size=max_batch_size, batch_timeout=batch_timeout if max_batch_size > 1 else 0.0,
                       api_path="/predict", **common)]
    apis[0].serving = True
    shown = ("task", "family", "format", "model_class", "labels", "versions", "source", "verification", "temperature",
             "members")
    info = {k: _no_paths(export.raw[k]) for k in shown if k in export.raw}
    info["backend"], info["calibration"] = backend or ("onnx" if export.format == "onnx" else "torch"), calibration
    info["batching"] = {"max_batch_size": max_batch_size, "batch_timeout": batch_timeout, "workers": workers,
                        "engine": engine, "threads": threads, "model_threads": parallel}
    max_bytes = int(max_body_mb * 1024 * 1024)
    if engine == "inprocess":
        from zoo.serve.inprocess import InProcessServer

        server: Any = InProcessServer(apis[0], max_batch_size=max_batch_size, timeout=timeout, max_bytes=max_bytes,
                                      model_metadata=info, parallel=parallel)
    else:
        server = ls.LitServer(apis, accelerator="cpu", workers_per_device=workers, timeout=timeout,
                              model_metadata=info, middlewares=[(RequestGuard, {"max_bytes": max_bytes})])
        server.uvicorn_graceful_timeout = drain_timeout  # how long uvicorn waits for accepted requests on SIGTERM
    add_page(server, export.raw)  # GET / : the page a person tries the model on (zoo/serve/page.py)
    name = str(export.raw.get("model_class", export.raw.get("family", "model"))).rsplit(".", 1)[-1]
    if "members" in export.raw:
        name = f"ensemble of {len(export.raw['members'])}"
    server.zoo_summary = (f"{name}, {info['backend']}, {workers} worker{'s' if workers > 1 else ''}")
    server.zoo_drain_timeout = drain_timeout
    server.zoo_engine = engine
    return server


ENGINES = ("auto", "inprocess", "litserve")


def choose_engine(engine: str, workers: int) -> str:
    """``auto``: the in-process engine for one worker, LitServe's model processes for several. On the three
    benchmark models (text encoder, small CNN, BPR; docs/serving.md, "Benchmark") one in-process model answered
    more requests per second than LitServe did (image and BPR at a lower p99 too); LitServe's processes are what
    ``--workers N`` needs (several copies of the model, each with its own cores)."""
    if engine != "auto":
        return engine
    return "inprocess" if workers == 1 else "litserve"


def _no_paths(value: Any) -> Any:
    """``/info`` without the server's file system: an absolute path (the source checkpoint's) becomes its name."""
    if isinstance(value, dict):
        return {k: _no_paths(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_no_paths(v) for v in value]
    if isinstance(value, str) and (os.path.isabs(value) or value.startswith("~")):
        return Path(value).name
    return value


def serve(path: str | Path, host: str = "127.0.0.1", port: int = 8000, **kwargs: Any) -> None:
    """Serve an export folder, or a run / ``zoo ensemble`` directory exported on the fly to a temporary folder
    that is removed when the server stops."""
    from zoo.inference.manifest import is_export_folder

    if is_export_folder(path):  # an export folder serves without importing zoo's training stack
        folder: Any = contextlib.nullcontext(Path(path))
    else:
        from zoo.export import prepared

        folder = prepared(path)
    with folder as export:
        _run(build_server(export, **kwargs), host, port)


def _run(server: Any, host: str, port: int) -> None:
    from zoo.serve.lifecycle import announce_when_ready, drain_on_signals

    drain_timeout = getattr(server, "zoo_drain_timeout", DEFAULT_DRAIN_TIMEOUT)
    announce_when_ready(host, port, getattr(server, "zoo_summary", "model"))
    if getattr(server, "engine", None) == "inprocess":
        server.run(host, port, drain_timeout)
        return
    drain_on_signals(server, port, drain_timeout)
    try:
        server.run(host=host, port=port, generate_client_file=False, log_level="warning", num_api_servers=1)
    except KeyboardInterrupt:  # a signal before the server was up: LitServe has stopped its workers already
        pass


__all__ = ["ENGINES", "build_server", "choose_engine", "serve"]
