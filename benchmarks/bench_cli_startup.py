"""How long `zoo` takes to answer before it does any work: `zoo --help`, `zoo list models`, argument errors
(an unknown command; a misspelt flag of `zoo fit`, answered by zoo.cli.fast_args) and `zoo fit --help`, against
what every command paid before the light dispatcher (importing the training stack:
`import zoo.cli.lightning`). Each is timed cold (no byte-compiled modules: an empty PYTHONPYCACHEPREFIX with
PYTHONDONTWRITEBYTECODE, as a machine with an uncompiled install sees it) and warm (the .pyc files the Makefile
writes at install), median of repeats, one process per run.

    python -m benchmarks.run cli_startup
    python -m benchmarks.bench_cli_startup --repeats 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

CASES = {
    "zoo --help": ["-m", "zoo.cli", "--help"],
    "zoo list models": ["-m", "zoo.cli", "list", "models"],
    "zoo fitt (argument error)": ["-m", "zoo.cli", "fitt"],
    "zoo fit --trainer.max_epohcs (argument error)": ["-m", "zoo.cli", "fit", "--config", "recipes/vision/digits.yaml",
                                                      "--trainer.max_epohcs", "3"],
    "zoo fit --help": ["-m", "zoo.cli", "fit", "--help"],
    "import zoo.cli.lightning (every command, before)": ["-c", "import zoo.cli.lightning"],
}


def _time(args: list[str], cold: bool) -> float:
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    with tempfile.TemporaryDirectory() as empty:
        if cold:
            env["PYTHONPYCACHEPREFIX"] = empty
        start = time.perf_counter()
        subprocess.run([sys.executable, *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       check=False)
        return time.perf_counter() - start


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv or [])
    rows: dict[str, dict[str, float]] = {}
    for name, cmd in CASES.items():
        rows[name] = {mode: round(statistics.median(_time(cmd, mode == "cold") for _ in range(args.repeats)), 2)
                      for mode in ("cold", "warm")}
    before = rows["import zoo.cli.lightning (every command, before)"]
    print(f"{'command':<50} {'cold s':>8} {'warm s':>8} {'warm speed-up vs before':>24}")
    for name, r in rows.items():
        print(f"{name:<50} {r['cold']:>8.2f} {r['warm']:>8.2f} {before['warm'] / max(r['warm'], 1e-3):>23.1f}x")
    return {"seconds": rows, "repeats": args.repeats}


if __name__ == "__main__":
    main(sys.argv[1:])
