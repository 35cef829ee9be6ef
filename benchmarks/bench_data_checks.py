"""What the data checks add to a fit: a one-epoch ``zoo fit`` of a recipe (the checks run at its start) beside the
checks' own time, read from the ``data_report.json`` the fit wrote, as a share of the fit's wall time.

    python -m benchmarks.bench_data_checks recipes/recsys/bpr_ml100k.yaml recipes/text/bbc_news.yaml \\
        recipes/vision/fashion_mnist_cnn.yaml

Each recipe runs in its own process, one after the other, on the same machine, so both figures share its load
(print ``uptime`` beside them); docs/data-checks.md holds the measured shares.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def measure(recipe: str, extra: list[str]) -> dict[str, float | str]:
    with tempfile.TemporaryDirectory(prefix="bench_checks_") as root:
        cmd = [sys.executable, "-m", "zoo.cli", "fit", "--config", recipe, "--trainer.max_epochs", "1",
               "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", root, *extra]
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "WANDB_MODE": "offline"})
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(f"{recipe}: zoo fit failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
        report = json.loads(next(Path(root).rglob("data_report.json")).read_text())
    return {"recipe": recipe, "fit_wall_s": round(wall, 1), "checks_s": report["seconds"],
            "share": round(report["seconds"] / wall, 4), "findings": len(report["findings"])}


def main() -> None:
    p = argparse.ArgumentParser(prog="bench_data_checks", description=__doc__.splitlines()[0])
    p.add_argument("recipes", nargs="+")
    p.add_argument("--extra", action="append", default=[], help="an argument passed to every zoo fit (repeat)")
    args = p.parse_args()
    print(f"load: {os.getloadavg()}", flush=True)
    for recipe in args.recipes:
        row = measure(recipe, args.extra)
        print(json.dumps(row), f"load {os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    main()
