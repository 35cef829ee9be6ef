"""Serving benchmark: ``zoo serve`` (LitServe, dynamic batching) against what a user would write instead.

For each model (the BBC LoRA text classifier merged, the digits image classifier, BPR) it exports the run, then
drives each server on localhost with a bounded closed-loop client (``--requests`` requests at concurrency 1, 8
and 32, every client thread sending its next request when the previous one is answered) and reports requests/s
and p50 / p95 / p99 latency for:

* ``plain``: a FastAPI endpoint calling the eager PyTorch model once per request (uvicorn, one process);
* ``litserve-nobatch``: ``zoo serve --max-batch-size 1``;
* ``zoo-serve-torch`` / ``zoo-serve-onnx``: ``zoo serve --max-batch-size B --batch-timeout T`` on each backend.

It also measures the limit: the model's own batched forward rate (items/s at batch size B, no HTTP), eager and
ONNX. Not a pass/fail test; results go to docs/serving.md with the machine.

    python benchmarks/bench_serve.py --text runs/bbc_news_lora/version_0 --image runs/digits/version_0 \\
        --bpr runs/bpr_ml100k/version_0 --out /tmp/bench_serve.md
"""

from __future__ import annotations

import argparse
import base64
import http.client
import io
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from fastapi import Request  # at module level: FastAPI resolves the endpoint's annotation from the globals

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(port: int, proc: subprocess.Popen, limit: float = 300) -> None:
    deadline = time.time() + limit
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stdout.read().decode()[-2000:] if proc.stdout else ''}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError("server did not become healthy")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def drive(port: int, bodies: list[bytes], concurrency: int, total: int) -> dict[str, float]:
    """Closed loop: ``concurrency`` threads, each with its own keep-alive connection, ``total`` requests."""
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    counter = iter(range(total))

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            body = bodies[i % len(bodies)]
            t = time.perf_counter()
            conn.request("POST", "/predict", body=body, headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            resp.read()
            dt = time.perf_counter() - t
            with lock:
                latencies.append(dt)
                errors[0] += resp.status != 200

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    lat = sorted(latencies)

    def pct(p: float) -> float:
        return 1000 * lat[min(len(lat) - 1, int(p * len(lat)))]

    return {"rps": len(lat) / wall, "p50": pct(0.50), "p95": pct(0.95), "p99": pct(0.99), "errors": errors[0]}


def plain_server(folder: str, port: int) -> None:
    """What a user writes without zoo serve: FastAPI calling the eager model once per request."""
    import uvicorn
    from fastapi import FastAPI

    from zoo.export import load_predictor

    predictor = load_predictor(folder)
    app = FastAPI()

    @app.get("/health")
    def health() -> str:
        return "ok"

    @app.post("/predict")
    async def predict(request: Request) -> Any:
        return predictor.predict([await request.json()])[0]

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def start(cmd: list[str], port: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    wait_healthy(port, proc)
    return proc


def forward_limit(folder: Path, backend: str | None, batch: list[Any], repeats: int) -> float:
    """Items/s of the model alone (preprocessing once, outside the timing) at the server's batch size."""
    from zoo.export import load_predictor

    predictor = load_predictor(folder, backend)
    parsed = [predictor.parse(x) for x in batch]
    feeds = predictor.family.collate(parsed)
    predictor.runner(feeds)
    t = time.perf_counter()
    for _ in range(repeats):
        predictor.runner(feeds)
    return repeats * len(batch) / (time.perf_counter() - t)


def inputs_for(task: str, folder: Path, n: int) -> list[Any]:
    meta = json.loads((folder / "zoo_export.json").read_text())
    if task == "text_classification":
        from zoo.registry import DATASETS

        texts = list(DATASETS.create("bbc_news").texts)
        return [{"text": t[:2000]} for t in texts[:n]]
    if task == "image_classification":
        import numpy as np
        from PIL import Image

        rng = np.random.default_rng(0)
        c = meta["preprocessing"]["channels"]
        h, w = meta["preprocessing"]["input_size"]
        out = []
        for _ in range(min(n, 64)):
            buf = io.BytesIO()
            arr = (rng.random((h, w, c)) * 255).astype("uint8")
            Image.fromarray(arr.squeeze(-1) if c == 1 else arr).save(buf, format="PNG")
            out.append({"image": base64.b64encode(buf.getvalue()).decode()})
        return out
    return [{"user": u} for u in meta["recsys"]["user_ids"][:n]]


def bench_model(name: str, source: str, args: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    from zoo.export import export_run

    folders = {}
    for fmt in ("safetensors", "onnx"):
        folders[fmt] = work / f"{name}_{fmt}"
        if not (folders[fmt] / "zoo_export.json").is_file():
            export_run(source, fmt, folders[fmt], overwrite=True)
    task = json.loads((folders["onnx"] / "zoo_export.json").read_text())["task"]
    items = inputs_for(task, folders["onnx"], 256)
    bodies = [json.dumps(x).encode() for x in items]
    rows = []
    limit_batch = items[:args.max_batch_size] * max(1, args.max_batch_size // max(1, len(items)))
    for backend, folder in (("torch", folders["safetensors"]), ("onnx", folders["onnx"])):
        rate = forward_limit(folder, backend, limit_batch[:args.max_batch_size], args.limit_repeats)
        rows.append({"model": name, "server": f"limit: batched forward ({backend}, batch {args.max_batch_size})",
                     "concurrency": "-", "rps": rate})
    zoo = [sys.executable, "-m", "zoo.cli", "serve"]
    servers = {
        "plain FastAPI, eager, 1 request / forward": lambda p: [sys.executable, __file__, "--plain-server",
                                                                 str(folders["safetensors"]), "--port", str(p)],
        "LitServe, no batching (torch)": lambda p: zoo + [str(folders["safetensors"]), "--port", str(p),
                                                          "--max-batch-size", "1"],
        "zoo serve, batching (torch)": lambda p: zoo + [str(folders["safetensors"]), "--port", str(p),
                                                        "--max-batch-size", str(args.max_batch_size),
                                                        "--batch-timeout", str(args.batch_timeout)],
        "zoo serve, batching (onnx)": lambda p: zoo + [str(folders["onnx"]), "--port", str(p), "--max-batch-size",
                                                       str(args.max_batch_size), "--batch-timeout",
                                                       str(args.batch_timeout)],
    }
    for label, cmd in servers.items():
        port = free_port()
        proc = start(cmd(port), port)
        try:
            if drive(port, bodies, 4, 16)["errors"]:  # warm-up, and a check that the server answers
                raise RuntimeError(f"{label} answers errors to {name} requests")
            for c in args.concurrency:
                result = drive(port, bodies, c, max(args.requests, 2 * c))
                rows.append({"model": name, "server": label, "concurrency": c, **result})
                print(json.dumps(rows[-1]), flush=True)
        finally:
            stop(proc)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| model | server | concurrency | requests/s | p50 ms | p95 ms | p99 ms |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lat = [f"{r[k]:.0f}" if k in r else "-" for k in ("p50", "p95", "p99")]
        lines.append(f"| {r['model']} | {r['server']} | {r['concurrency']} | {r['rps']:.1f} | {' | '.join(lat)} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--text")
    parser.add_argument("--image")
    parser.add_argument("--bpr")
    parser.add_argument("--requests", type=int, default=128)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--batch-timeout", type=float, default=0.01)
    parser.add_argument("--limit-repeats", type=int, default=10)
    parser.add_argument("--work", default=None, help="folder for the exports (default: a temporary one)")
    parser.add_argument("--out", default=None, help="write the markdown table here")
    parser.add_argument("--plain-server", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=8000, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plain_server:
        plain_server(args.plain_server, args.port)
        return
    work = Path(args.work or tempfile.mkdtemp(prefix="bench_serve_"))
    rows: list[dict[str, Any]] = []
    for name, source in (("text (BBC LoRA, merged)", args.text), ("image (digits)", args.image), ("BPR", args.bpr)):
        if source:
            rows += bench_model(name.split()[0], source, args, work)
    load = os.getloadavg()
    header = (f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, no GPU; load "
              f"average at the end {load[0]:.1f}. {args.requests} requests per cell, batch {args.max_batch_size}, "
              f"timeout {args.batch_timeout} s.\n\n")
    text = header + table(rows)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
