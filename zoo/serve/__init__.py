"""``zoo serve``: an exported model or ensemble (or a run / ensemble directory, exported on the fly) behind
LitServe.

Endpoints: ``POST /predict`` (one input; LitServe batches concurrent requests up to ``max_batch_size``, waiting
at most ``batch_timeout`` seconds), ``POST /predict/batch`` (a list, one forward pass), ``GET /health``,
``GET /info`` (task, labels, versions, the export's verification figures). See docs/serving.md.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from zoo.errors import ConfigError

DEFAULT_MAX_BODY_MB = 20.0


def build_server(folder: str | Path, *, max_batch_size: int = 32, batch_timeout: float = 0.01, workers: int = 1,
                 backend: str | None = None, calibration: str = "temperature", api_key: str | None = None,
                 max_body_mb: float = DEFAULT_MAX_BODY_MB, threads: int | None = None, timeout: float = 30.0) -> Any:
    """The LitServer for an export folder (not started); :func:`serve` takes a run directory too."""
    import litserve as ls

    from zoo.inference import read_export
    from zoo.serve.api import API_KEY_ENV, BatchListAPI, PredictAPI, RequestGuard

    if max_batch_size < 1 or workers < 1 or batch_timeout < 0 or max_body_mb <= 0:
        raise ConfigError("--max-batch-size and --workers must be >= 1, --batch-timeout >= 0, --max-body-mb > 0; got "
                          f"{max_batch_size}, {workers}, {batch_timeout}, {max_body_mb}")
    if backend not in (None, "torch", "onnx"):
        raise ConfigError(f"--backend must be torch or onnx, got {backend!r}")
    export = read_export(folder)
    if backend == "onnx" and export.format != "onnx":
        raise ConfigError(f"--backend onnx needs an ONNX export; {folder} is a {export.format} export "
                          "(zoo export RUN --format onnx --out DIR)")
    key = api_key or os.environ.get(API_KEY_ENV)
    if key:
        os.environ[API_KEY_ENV] = key  # read by the API servers' authorize dependency (inherited by the workers)
    threads = threads or max(1, (os.cpu_count() or 1) // workers)
    common = dict(export=export, backend=backend, calibration=calibration, threads=threads)
    apis = [PredictAPI(max_batch_size=max_batch_size, batch_timeout=batch_timeout if max_batch_size > 1 else 0.0,
                       api_path="/predict", **common),
            BatchListAPI(max_batch_size=1, api_path="/predict/batch", **common)]
    info = {k: export.raw[k] for k in ("task", "family", "format", "model_class", "labels", "versions", "source",
                                       "verification", "temperature", "members") if k in export.raw}
    info["backend"], info["calibration"] = backend or ("onnx" if export.format == "onnx" else "torch"), calibration
    info["batching"] = {"max_batch_size": max_batch_size, "batch_timeout": batch_timeout, "workers": workers}
    return ls.LitServer(apis, accelerator="cpu", workers_per_device=workers, timeout=timeout, model_metadata=info,
                        middlewares=[(RequestGuard, {"max_bytes": int(max_body_mb * 1024 * 1024)})])


def _stop_children_on_signals() -> None:
    """SIGTERM (systemd, docker) or a SIGINT to this process alone stops the API servers and model workers too,
    as Ctrl-C (a SIGINT to the whole process group) does."""
    import multiprocessing
    import signal

    def stop(signum: int, frame: Any) -> None:
        for child in multiprocessing.active_children():
            try:
                os.kill(child.pid, signal.SIGINT)
            except OSError:
                pass
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)


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
    _stop_children_on_signals()
    server.run(host=host, port=port, generate_client_file=False, log_level="warning", num_api_servers=1)


__all__ = ["build_server", "serve"]
