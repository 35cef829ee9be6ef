"""Serving benchmark: ``zoo serve`` beside what a user would run instead, each driven by an outside client.

For each model (a text classifier, an image classifier, a recommender; a run directory, exported here to ONNX,
or an ONNX export folder) it starts each server on localhost and drives it with ``ab`` (Debian's
apache2-utils, installed with apt-get when missing) at ``--concurrency`` for ``--seconds``, pinned with
``taskset`` to the last CPU. Servers:

* ``json-only``: uvicorn + FastAPI, an endpoint that only parses the JSON body (the ceiling of any Python server);
* ``litserve-empty``: LitServe, an endpoint that does no work (1 worker, no batching): LitServe's own ceiling;
* ``plain``: uvicorn + FastAPI calling ``zoo.inference.load(folder).predict`` once per request (a ``def``
  endpoint: FastAPI runs it in its thread pool);
* ``zoo serve --engine litserve`` and ``--engine inprocess`` (``--max-batch-size``, ``--batch-timeout``).

"limit" is the model's own batched forward (ONNX Runtime, batch ``--max-batch-size``, inputs prepared outside the
timing, the fastest of ``--limit-repeats`` forwards): items/s no server around that forward can beat. Each server
runs ``--rounds`` times, interleaved with the others; the table shows its best round and the server's CPU time
per request (every process of the server, from /proc), which load elsewhere changes much less than requests/s.
Every row also reads as a share of the limit and of the JSON-only ceiling. The profile table says where a
request's time goes (JSON decode, parse / tokenize, collate, forward, answers, encode), measured in this process.

    python benchmarks/bench_serve.py --text runs/bbc_news_lora/version_0 --image runs/digits_robust/version_0 \\
        --bpr runs/bpr_ml100k/version_0 --out /tmp/bench_serve.md   # about 8 minutes
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import http.client
import io
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import litserve as ls
from fastapi import Request  # at module level: FastAPI resolves the endpoint's annotation from the globals

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def ensure_ab() -> str:
    """The path of ``ab``; installs apache2-utils with apt-get when it is missing (as .ci/run installs
    PostgreSQL)."""
    if not shutil.which("ab"):
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        subprocess.run(sudo + ["apt-get", "install", "-y", "-q", "apache2-utils"], check=False,
                       stdout=subprocess.DEVNULL)
        if not shutil.which("ab"):
            subprocess.run(sudo + ["apt-get", "update", "-q"], check=False, stdout=subprocess.DEVNULL)
            subprocess.run(sudo + ["apt-get", "install", "-y", "-q", "apache2-utils"], check=True,
                           stdout=subprocess.DEVNULL)
    return str(shutil.which("ab"))


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
        time.sleep(0.3)
    raise RuntimeError("server did not become healthy")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
    with contextlib.suppress(ProcessLookupError):  # LitServe's processes can outlive their main process
        os.killpg(proc.pid, signal.SIGKILL)


def cpu_seconds(session: int) -> float:
    """CPU seconds (user + system) of every live process in a session: the server's cost per request, which a
    busy machine changes much less than it changes requests/s."""
    total, tick = 0.0, os.sysconf("SC_CLK_TCK")
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == session:  # fields from the state on: state ppid pgrp session ...
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def cpu_split() -> tuple[list[str], list[str], str]:
    """(client prefix, server prefix, a sentence): ``ab`` on the last CPU; the servers on the others when there
    are at least 4, else on all of them (on 2 cores a server pinned to one would lose half its forward)."""
    cpus = sorted(os.sched_getaffinity(0))
    client = ["taskset", "-c", str(cpus[-1])] if shutil.which("taskset") else []
    if len(cpus) >= 4 and client:
        rest = ",".join(str(c) for c in cpus[:-1])
        return client, ["taskset", "-c", rest], f"ab pinned to CPU {cpus[-1]}, servers to CPUs {rest}"
    return client, [], f"ab pinned to CPU {cpus[-1]}, servers unpinned on all {len(cpus)} CPUs (ab shares one)"


def run_ab(ab: str, client: list[str], port: int, body: Path, concurrency: int, seconds: float,
           requests: int | None = None) -> dict[str, float]:
    count = ["-n", str(requests)] if requests else ["-t", str(seconds), "-n", "1000000"]
    cmd = client + [ab, "-q", "-s", "120", *count, "-c", str(concurrency), "-p", str(body), "-T",
                    "application/json", f"http://127.0.0.1:{port}/predict"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 180).stdout

    def grab(pattern: str, default: float = float("nan")) -> float:
        found = re.search(pattern, out, re.M)
        return float(found.group(1)) if found else default

    return {"rps": grab(r"^Requests per second:\s+([\d.]+)"), "p50": grab(r"^\s+50%\s+(\d+)"),
            "p99": grab(r"^\s+99%\s+(\d+)"), "done": grab(r"^Complete requests:\s+(\d+)"),
            "errors": grab(r"^Failed requests:\s+(\d+)", 0) + grab(r"^Non-2xx responses:\s+(\d+)", 0)}


# -- the servers a user would run instead of zoo serve (started by this script with --aux) --------------------

def aux_server(kind: str, folder: str | None, port: int) -> None:
    import uvicorn
    from fastapi import FastAPI

    if kind == "litserve-empty":
        from benchmarks.bench_serve import EmptyAPI as Empty  # by its module's name: LitServe pickles it

        ls.LitServer(Empty(), accelerator="cpu", workers_per_device=1).run(
            host="127.0.0.1", port=port, generate_client_file=False, log_level="warning", num_api_servers=1)
        return
    app = FastAPI()

    @app.get("/health")
    def health() -> str:
        return "ok"

    if kind == "json-only":
        @app.post("/predict")
        async def parse_only(request: Request) -> Any:
            await request.json()
            return {"ok": True}
    else:
        from zoo.inference import load

        predictor = load(folder)

        @app.post("/predict")
        def predict(body: dict) -> Any:  # a def endpoint: FastAPI runs it in its thread pool
            return predictor.predict([body])[0]

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


class EmptyAPI(ls.LitAPI):
    """LitServe's ceiling: an endpoint that does no work."""

    def setup(self, device: Any) -> None:
        pass

    def decode_request(self, request):  # type: ignore[no-untyped-def]
        return request

    def predict(self, x: Any) -> Any:
        return {"ok": True}


# -- the model alone -----------------------------------------------------------------------------------------

def body_for(folder: Path) -> dict[str, Any]:
    meta = json.loads((folder / "zoo_export.json").read_text())
    task = meta["task"]
    if task == "text_classification":
        from zoo.registry import DATASETS

        return {"text": list(DATASETS.create("bbc_news").texts)[0][:2000]}
    if task == "image_classification":
        import numpy as np
        from PIL import Image

        c = meta["preprocessing"]["channels"]
        h, w = meta["preprocessing"]["input_size"]
        arr = (np.random.default_rng(0).random((h, w, c)) * 255).astype("uint8")
        buf = io.BytesIO()
        Image.fromarray(arr.squeeze(-1) if c == 1 else arr).save(buf, format="PNG")
        return {"image": base64.b64encode(buf.getvalue()).decode()}
    return {"user": meta["recsys"]["user_ids"][1]}


def timed(fn: Any, repeats: int) -> float:
    """Seconds per call of ``fn`` over ``repeats`` calls after one warm-up (``repeats`` 0: one call, no warm-up)."""
    if repeats:
        fn()
    start = time.perf_counter()
    for _ in range(max(1, repeats)):
        fn()
    return (time.perf_counter() - start) / max(1, repeats)


def profile(folder: Path, body: dict[str, Any], batch: int, repeats: int) -> tuple[float, dict[str, float]]:
    """(items/s of the batched forward, microseconds per request of each step at that batch size)."""
    import torch

    from zoo.inference import load
    from zoo.serve.inprocess import dumps

    predictor = load(folder)
    torch.set_num_threads(1)  # as zoo serve does for an ONNX model: torch only shapes the answers
    raw = json.dumps(body).encode()
    items = [json.loads(raw) for _ in range(batch)]
    parsed = [predictor.parse(x) for x in items]
    feeds = predictor.family.collate(parsed)
    out = predictor.runner(feeds)
    answers = predictor.family.answers(out, parsed, predictor.temperature)
    forward = timed(lambda: predictor.runner(feeds), repeats)
    fastest = min(timed(lambda: predictor.runner(feeds), 0) for _ in range(repeats))
    per = {"JSON decode": timed(lambda: [json.loads(raw) for _ in range(batch)], repeats),
           "parse, one request at a time": timed(lambda: [predictor.parse(x) for x in items], repeats),
           "parse, the batch at once": timed(lambda: predictor.parse_many(items), repeats),
           "collate": timed(lambda: predictor.family.collate(parsed), repeats),
           "forward": forward,
           "answers (softmax, top-k, names)": timed(lambda: predictor.family.answers(out, parsed,
                                                                                      predictor.temperature), repeats),
           "encode (json.dumps)": timed(lambda: [json.dumps(a) for a in answers], repeats),
           "encode (zoo serve's)": timed(lambda: [dumps(a) for a in answers], repeats)}
    # the limit is the fastest forward seen: on a busy machine a mean would flatter the servers' shares
    return batch / fastest, {k: 1e6 * v / batch for k, v in per.items()}


def exported(name: str, source: str, work: Path) -> Path:
    from zoo.inference.manifest import is_export_folder

    if is_export_folder(source):
        return Path(source)
    folder = work / name
    if not (folder / "zoo_export.json").is_file():
        from zoo.export import export_run

        export_run(source, "onnx", folder, overwrite=True)
    return folder


def bench_model(name: str, folder: Path, args: argparse.Namespace, ab: str, client: list[str],
                server_cpus: list[str]) -> tuple[list[dict[str, Any]], dict[str, float]]:
    body = body_for(folder)
    body_file = folder.parent / f"{folder.name}.body.json"
    body_file.write_text(json.dumps(body))
    limit, steps = profile(folder, body, args.max_batch_size, args.limit_repeats)
    rows: list[dict[str, Any]] = [{"model": name, "server": f"limit: batched forward (onnx, batch "
                                                            f"{args.max_batch_size})", "rps": limit}]
    me = [sys.executable, __file__]
    zoo = [sys.executable, "-m", "zoo.cli", "serve", str(folder), "--max-batch-size", str(args.max_batch_size),
           "--batch-timeout", str(args.batch_timeout)]
    servers = {
        "uvicorn + FastAPI, JSON parse only (ceiling)": me + ["--aux", "json-only"],
        "LitServe, empty endpoint (ceiling)": me + ["--aux", "litserve-empty"],
        "plain: uvicorn + FastAPI, load(...).predict per request": me + ["--aux", "plain", "--folder", str(folder)],
        "zoo serve --engine litserve": zoo + ["--engine", "litserve"],
        "zoo serve --engine inprocess": zoo + ["--engine", "inprocess"],
    }
    runs: dict[str, list[dict[str, Any]]] = {}
    for _ in range(args.rounds):  # rounds interleave the servers, so a burst of load elsewhere hits them all
        for label, cmd in servers.items():
            if args.only and not any(word in label for word in args.only):
                continue
            runs.setdefault(label, []).append(serve_and_drive(label, cmd, name, body_file, args, ab, client,
                                                              server_cpus))
            print(json.dumps({"model": name, "server": label, **runs[label][-1]}), flush=True)
    for label, results in runs.items():
        rows.append({"model": name, "server": label, **max(results, key=lambda r: r["rps"])})
    return rows, steps


def serve_and_drive(label: str, cmd: list[str], name: str, body_file: Path, args: argparse.Namespace, ab: str,
                    client: list[str], server_cpus: list[str]) -> dict[str, float]:
    port = free_port()
    proc = subprocess.Popen(server_cpus + cmd + ["--port", str(port)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        wait_healthy(port, proc)
        warm = run_ab(ab, client, port, body_file, min(8, args.concurrency), 0, requests=2 * args.concurrency)
        if warm["errors"] or not warm["done"]:
            raise RuntimeError(f"{label} answers errors to {name} requests: {warm}")
        used = cpu_seconds(proc.pid)
        result = run_ab(ab, client, port, body_file, args.concurrency, args.seconds)
        result["cpu_us"] = 1e6 * (cpu_seconds(proc.pid) - used) / max(1.0, result["done"])
        return result
    finally:
        stop(proc)


def shares(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by_model: dict[str, dict[str, float]] = {}
    for r in rows:
        by_model.setdefault(r["model"], {})[r["server"]] = r["rps"]
    for r in rows:
        got = by_model[r["model"]]
        limit = next(v for k, v in got.items() if k.startswith("limit"))
        ceiling = next((v for k, v in got.items() if k.startswith("uvicorn + FastAPI, JSON")), float("nan"))
        plain = next((v for k, v in got.items() if k.startswith("plain")), float("nan"))
        r["of_limit"], r["of_ceiling"], r["x_plain"] = r["rps"] / limit, r["rps"] / ceiling, r["rps"] / plain
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| model | server | requests/s | p50 ms | p99 ms | errors | server CPU µs / request | of limit | "
             "of JSON-only | x plain |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in shares(rows):
        lat = [f"{r[k]:.0f}" if k in r else "-" for k in ("p50", "p99")]
        err = f"{r['errors']:.0f}" if "errors" in r else "-"
        cpu = f"{r['cpu_us']:,.0f}" if "cpu_us" in r else "-"
        lines.append(f"| {r['model']} | {r['server']} | {r['rps']:.1f} | {' | '.join(lat)} | {err} | {cpu} | "
                     f"{100 * r['of_limit']:.0f} % | {100 * r['of_ceiling']:.0f} % | {r['x_plain']:.2f} |")
    return "\n".join(lines)


def profile_table(steps: dict[str, dict[str, float]]) -> str:
    names = list(steps)
    lines = ["| step (microseconds per request) | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for step in next(iter(steps.values())):
        lines.append(f"| {step} | " + " | ".join(f"{steps[n][step]:,.0f}" for n in names) + " |")
    return "\n".join(lines)


def machine(load: tuple[float, float, float], split: str, args: argparse.Namespace) -> str:
    flags = sorted(set(re.findall(r"\b(avx512_bf16|amx\w*|avx2)\b", Path("/proc/cpuinfo").read_text())))
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor() or platform.machine())
    shown = ", ".join(flags) or "none of avx2 / avx512_bf16 / amx"
    return (f"Machine: {cpu}, {len(os.sched_getaffinity(0))} CPUs, flags {shown}; load average {load[0]:.1f} "
            f"before the run, {os.getloadavg()[0]:.1f} after. "
            f"{split}. ab at concurrency {args.concurrency} for {args.seconds:g} s per server, best of {args.rounds} "
            f"interleaved rounds, batch "
            f"{args.max_batch_size}, batch timeout {args.batch_timeout} s.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--text", help="a text classifier's run directory or ONNX export folder")
    parser.add_argument("--image", help="an image classifier's run directory or ONNX export folder")
    parser.add_argument("--bpr", help="a recommender's run directory or ONNX export folder")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=6.0, help="ab's time per server and round")
    parser.add_argument("--rounds", type=int, default=2, help="runs of every server; the table shows each one's best")
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--batch-timeout", type=float, default=0.01)
    parser.add_argument("--limit-repeats", type=int, default=10)
    parser.add_argument("--only", nargs="+", help="run only the servers whose label holds one of these words")
    parser.add_argument("--work", default=None, help="folder for the exports (default: a temporary one)")
    parser.add_argument("--out", default=None, help="write the markdown tables here")
    parser.add_argument("--aux", choices=("json-only", "litserve-empty", "plain"), help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=8000, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.aux:
        aux_server(args.aux, args.folder, args.port)
        return
    load = os.getloadavg()
    ab = ensure_ab()
    client, server_cpus, split = cpu_split()
    work = Path(args.work or tempfile.mkdtemp(prefix="bench_serve_"))
    work.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    steps: dict[str, dict[str, float]] = {}
    for name, source in (("text", args.text), ("image", args.image), ("BPR", args.bpr)):
        if source:
            got, steps[name] = bench_model(name, exported(name, source, work), args, ab, client, server_cpus)
            rows += got
    text = machine(load, split, args) + "\n\n" + table(rows) + "\n\n" + profile_table(steps)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
