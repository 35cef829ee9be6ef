"""Memory of a running ``zoo serve``: RSS, PSS and private memory of each of its processes, from
``/proc/PID/smaps_rollup`` (Linux), once the server answers. RSS counts shared libraries once per process, so its sum
overstates what the server holds; PSS shares them out and is the honest total. Not a pass/fail test; the figures go
to docs/serving.md (Memory) with the machine.

    python benchmarks/bench_serve_memory.py                      # the tiny image classifier, exported to ONNX
    python benchmarks/bench_serve_memory.py exported/digits --workers 2
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def tiny_image_export(folder: Path) -> Path:
    from zoo.export import export_model
    from zoo.tasks.image import tiny_case

    model, data = tiny_case(folder)
    export_model(model, data, "onnx", folder / "img")
    return folder / "img"


def memory(pid: str) -> dict[str, int]:
    fields = {}
    for line in open(f"/proc/{pid}/smaps_rollup"):
        key, _, value = line.partition(":")
        if value.strip().endswith("kB"):
            fields[key] = int(value.split()[0]) // 1024
    return {"rss": fields["Rss"], "pss": fields["Pss"],
            "private": fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", nargs="?", help="an image export folder (default: the tiny one, exported now)")
    parser.add_argument("--port", type=int, default=8791)
    args, extra = parser.parse_known_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.folder) if args.folder else tiny_image_export(Path(tmp))
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        proc = subprocess.Popen([sys.executable, "-m", "zoo.cli", "serve", str(folder), "--port", str(args.port),
                                 "--threads", "1", *extra], env=env, start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            from PIL import Image

            png = io.BytesIO()
            Image.new("RGB", (16, 16)).save(png, "PNG")
            body = json.dumps({"image": base64.b64encode(png.getvalue()).decode()}).encode()
            deadline = time.time() + 300
            while True:  # the first answer: every worker has loaded the model and run it once
                try:
                    request = urllib.request.Request(f"http://127.0.0.1:{args.port}/predict", data=body,
                                                     headers={"Content-Type": "application/json"})
                    urllib.request.urlopen(request, timeout=5).read()
                    break
                except OSError:
                    if time.time() > deadline or proc.poll() is not None:
                        raise SystemExit("zoo serve did not answer") from None
                    time.sleep(0.5)
            pids = subprocess.run(["pgrep", "-g", str(proc.pid)], capture_output=True, text=True).stdout.split()
            total = {"rss": 0, "pss": 0, "private": 0}
            print("| process | RSS MB | PSS MB | private MB |\n|---|---|---|---|")
            for pid in pids:
                try:
                    mem = memory(pid)
                    command = open(f"/proc/{pid}/cmdline").read().replace("\0", " ")[:60]
                except FileNotFoundError:
                    continue
                print(f"| {pid} `{command}` | {mem['rss']} | {mem['pss']} | {mem['private']} |")
                total = {k: total[k] + mem[k] for k in total}
            print(f"| **total** | {total['rss']} | {total['pss']} | {total['private']} |")
        finally:
            proc.terminate()
            proc.wait(60)


if __name__ == "__main__":
    main()
