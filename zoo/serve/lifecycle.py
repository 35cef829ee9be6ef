"""Start and stop of ``zoo serve``: one ``listening on`` line once the server answers, and a graceful drain on
SIGTERM / SIGINT.

LitServe's own shutdown closes the response transport before it stops the HTTP servers, so requests in flight
are reset and uvicorn waits out its whole graceful timeout ("Did not terminate gracefully. Forcibly killing").
zoo drains in the other order: SIGTERM to the HTTP server processes (uvicorn stops accepting and finishes the
requests it accepted, up to the drain timeout, while the model workers keep answering), the listening socket
closed in this process too, and only then the KeyboardInterrupt that ends ``LitServer.run``, which stops the model
workers.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
import urllib.request
from typing import Any

#: LitServe names its HTTP server processes so (``litserve.server.LitServer._start_server``)
HTTP_SERVER_PREFIX = "LitServer-"


def drain_on_signals(server: Any, port: int, drain_timeout: float) -> None:
    """SIGTERM (systemd, docker) or SIGINT (Ctrl-C) to this process drains the server (see the module doc). Once
    the HTTP servers are gone, the drain sends this process SIGINT, which the handler turns into the
    KeyboardInterrupt that ends ``LitServer.run`` (its public way out) and stops the model workers."""
    main = os.getpid()
    stopping, drained = threading.Event(), threading.Event()

    def stop(signum: int, frame: Any) -> None:
        if os.getpid() != main:
            # a forked HTTP server re-raises the signal uvicorn handled, with this inherited handler: exit quietly
            raise SystemExit(0)
        if drained.is_set() or (not stopping.is_set() and not _http_servers()):
            raise KeyboardInterrupt  # drained, or still starting: LitServe stops its workers on this
        if stopping.is_set():
            return  # a second Ctrl-C while draining
        stopping.set()
        print(f"zoo: {signal.Signals(signum).name}: draining (answering accepted requests, up to "
              f"{drain_timeout:g} s)", file=sys.stderr, flush=True)
        threading.Thread(target=_drain, args=(port, drain_timeout, drained), daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)


def _http_servers() -> list[Any]:
    return [p for p in multiprocessing.active_children() if p.name.startswith(HTTP_SERVER_PREFIX)]


def _drain(port: int, drain_timeout: float, drained: threading.Event) -> None:
    started = time.monotonic()
    http = _http_servers()
    for proc in http:
        with contextlib.suppress(OSError):
            os.kill(proc.pid, signal.SIGTERM)
    time.sleep(0.2)  # uvicorn closes its copy of the listening socket first; then no process accepts on it
    _stop_listening(port)
    for proc in http:
        proc.join(timeout=max(0.0, drain_timeout + 5 - (time.monotonic() - started)))
    # LitServe's shutdown finds the HTTP servers gone and says so; that is this drain, not news to the user
    logging.getLogger("litserve").setLevel(logging.ERROR)
    logging.getLogger("litserve.server").setLevel(logging.ERROR)
    drained.set()
    os.kill(os.getpid(), signal.SIGINT)


def _stop_listening(port: int) -> None:
    """Shut this process's copy of the listening socket (LitServe binds it here and forks the HTTP servers with
    it), so new connections are refused at once instead of waiting in the kernel's backlog until exit. Linux
    lists a process's sockets in /proc/self/fd; elsewhere the port closes at exit."""
    with contextlib.suppress(OSError):
        fds = [int(fd) for fd in os.listdir("/proc/self/fd")]
        for fd in fds:
            with contextlib.suppress(OSError, ValueError):
                sock = socket.socket(fileno=os.dup(fd))
                with sock:
                    listening = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
                    if listening and sock.type == socket.SOCK_STREAM and sock.getsockname()[1] == port:
                        sock.shutdown(socket.SHUT_RDWR)


def announce_when_ready(host: str, port: int, summary: str, timeout: float = 600.0) -> None:
    """Print ``zoo: listening on http://HOST:PORT (summary)`` once ``/health`` answers 200, from a thread."""
    probe = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host

    def wait() -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://{probe}:{port}/health", timeout=2) as reply:
                    if reply.status == 200:
                        print(f"zoo: listening on http://{host}:{port} ({summary})", file=sys.stderr, flush=True)
                        return
            except OSError:
                pass
            time.sleep(0.2)

    threading.Thread(target=wait, daemon=True, name="zoo-announce").start()


__all__ = ["announce_when_ready", "drain_on_signals"]
