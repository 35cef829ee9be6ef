"""Run the side-by-side benchmarks: ``python -m benchmarks.run [name ...] [-- benchmark args]`` (``make bench``).

Each ``benchmarks/bench_<name>.py`` has ``main(argv) -> dict`` that runs zoo and the tool a user would pick
instead in one process, prints a table, and returns its figures; they are saved to
``benchmarks/results/<name>.json`` with the machine they ran on, the arguments, and the load average before and
after (timings taken while other work loads the machine are not comparable with idle ones).
"""

from __future__ import annotations

import importlib
import json
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def available() -> list[str]:
    return sorted(p.stem[len("bench_"):] for p in HERE.glob("bench_*.py"))


def machine() -> dict[str, object]:
    import os

    import torch

    info: dict[str, object] = {"python": platform.python_version(), "torch": torch.__version__,
                               "cpu_count": os.cpu_count(), "threads": torch.get_num_threads(),
                               "processor": platform.processor() or platform.machine()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def _load() -> list[float] | None:
    import os

    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    bench_args = argv[argv.index("--") + 1:] if "--" in argv else []
    names = (argv[:argv.index("--")] if "--" in argv else argv) or available()
    unknown = [n for n in names if n not in available()]
    if unknown:
        print(f"unknown benchmark(s) {', '.join(unknown)}; available: {', '.join(available())}", file=sys.stderr)
        return 2
    out_dir = HERE / "results"
    out_dir.mkdir(exist_ok=True)
    for name in names:
        print(f"== benchmark {name}", flush=True)
        start, load_before = time.time(), _load()
        result = importlib.import_module(f"benchmarks.bench_{name}").main(bench_args)
        record = {"benchmark": name, "args": bench_args, "seconds": round(time.time() - start, 1), "machine": machine(),
                  "date": time.strftime("%Y-%m-%d %H:%M"), "load_average_before_after": [load_before, _load()],
                  "result": result}
        tmp = out_dir / f".{name}.json.tmp"
        tmp.write_text(json.dumps(record, indent=2))
        tmp.replace(out_dir / f"{name}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
