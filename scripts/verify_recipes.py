"""Retrain shipped recipes and check the metric each one states in recipes/results.yaml (`make verify-recipes`).

Every recipe whose stated fit time fits the budget (``--budget`` minutes, 20 by default) is trained with
``zoo fit`` and its best checkpoint scored with ``zoo test``; the run fails when a metric falls below its stated
value minus its tolerance. ``--write`` records the measured figures in recipes/results.yaml and regenerates
docs/results.md (machine, versions, one row per recipe). Not part of ``make test``: it takes minutes to hours.

    python scripts/verify_recipes.py --budget 10            # every recipe stated at <= 10 min
    python scripts/verify_recipes.py --only digits --write  # recipes whose path contains "digits"
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "recipes" / "results.yaml"
DOC = ROOT / "docs" / "results.md"


def load_results(path: Path = RESULTS) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data.get("recipes"), dict):
        raise SystemExit(f"{path}: expected a 'recipes:' mapping of recipe path -> metric, value, cpu_minutes")
    return data


def machine() -> str:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cpu, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    # bf16 autocast is fast only with these units (a recipe measured with the bf16 overlay depends on them)
    bf16 = "AMX-BF16" if "amx_bf16" in flags else "AVX512-BF16" if "avx512_bf16" in flags else ""
    gpu = "no GPU"
    try:
        import torch

        if torch.cuda.is_available():
            gpu = f"{torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}"
    except ImportError:  # the script also runs where torch is missing, to list the budget
        pass
    return f"{cores} CPU cores ({cpu}{', ' + bf16 if bf16 else ''}), {gpu}"


def versions() -> str:
    from importlib.metadata import version

    names = ("zoo", "torch", "lightning", "transformers", "peft", "scikit-learn")
    parts = [f"python {platform.python_version()}"]
    for name in names:
        try:
            parts.append(f"{name} {version(name)}")
        except Exception:  # a package missing from this environment is simply not listed
            pass
    return ", ".join(parts)


def _zoo(args: list[str], log: Path) -> tuple[int, float, float]:
    """Run ``zoo ARGS`` with output to ``log``; (exit code, wall seconds, child CPU seconds)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    with log.open("a", encoding="utf-8") as fh:
        code = subprocess.call([sys.executable, "-m", "zoo.cli", *args], stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return code, time.perf_counter() - start, cpu


def test_metric(root: Path, metric: str, since: float) -> float | None:
    """The metric from the newest metrics.csv under ``root`` written after ``since`` that has it."""
    found = sorted((p for p in root.rglob("metrics.csv") if p.stat().st_mtime >= since),
                   key=lambda p: p.stat().st_mtime)
    for path in reversed(found):
        with path.open(encoding="utf-8") as fh:
            values = [row[metric] for row in csv.DictReader(fh) if row.get(metric) not in (None, "")]
        if values:
            return float(values[-1])
    return None


def overlay_args(entry: dict[str, Any]) -> list[str]:
    """``--config`` for each overlay the entry was measured with (``overlays:``, paths under recipes/overlays/)."""
    args = []
    for overlay in entry.get("overlays") or []:
        path = ROOT / "recipes" / "overlays" / overlay
        if not path.is_file():
            raise SystemExit(f"recipes/results.yaml: overlay {overlay!r} is not a file under recipes/overlays/")
        args += ["--config", str(path)]
    return args


def verify(recipe: str, entry: dict[str, Any], runs: Path) -> dict[str, Any]:
    config = ROOT / "recipes" / recipe
    out = runs / recipe.replace("/", "_").removesuffix(".yaml")
    out.mkdir(parents=True, exist_ok=True)
    log = out / "verify.log"
    common = ["--config", str(config), *overlay_args(entry), "--trainer.default_root_dir", str(out),
              "--trainer.enable_progress_bar", "false"]
    code, wall, cpu = _zoo(["fit", *common], log)
    result: dict[str, Any] = {"recipe": recipe, "fit_minutes": round(wall / 60, 1), "cpu_minutes": round(cpu / 60, 1),
                              "log": str(log)}
    best = sorted(out.rglob("best.ckpt"), key=lambda p: p.stat().st_mtime)
    if code != 0 or not best:
        return {**result, "status": "error", "why": f"zoo fit exited {code}; see {log}"}
    since = time.time()
    code, _, _ = _zoo(["test", *common, "--ckpt_path", str(best[-1])], log)
    value = test_metric(out, entry["metric"], since) if code == 0 else None
    if value is None:
        return {**result, "status": "error", "why": f"zoo test exited {code} or logged no {entry['metric']}; see {log}"}
    if entry.get("value") is None:  # first measurement: nothing stated yet to fall below
        return {**result, "value": round(value, 4), "floor": None, "status": "pass"}
    floor = float(entry["value"]) - float(entry.get("tolerance", 0.02))
    return {**result, "value": round(value, 4), "floor": round(floor, 4),
            "status": "pass" if value >= floor else "fail"}


def write_results(data: dict[str, Any], path: Path = RESULTS) -> None:
    """recipes/results.yaml with one line per recipe (a flow mapping), as it is written by hand."""
    lines = [HEADER.rstrip("\n"), f"machine: {data.get('machine', 'unknown')}",
             f"versions: {data.get('versions', 'unknown')}", "recipes:"]
    for recipe, entry in data["recipes"].items():
        flow = yaml.safe_dump(entry, default_flow_style=True, sort_keys=False, width=10_000).strip()
        lines.append(f"  {recipe}: " + flow)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_doc(data: dict[str, Any], path: Path = DOC) -> None:
    lines = ["# Results of the shipped recipes", "",
             "Generated by `make verify-recipes` (scripts/verify_recipes.py) from recipes/results.yaml: each recipe "
             "trained with `zoo fit`, its best checkpoint scored on the test split with `zoo test`. "
             "`make verify-recipes` fails when a metric falls below its value minus the tolerance.", "",
             f"Machine: {data.get('machine', 'unknown')}.", "", f"Versions: {data.get('versions', 'unknown')}.", "",
             "| recipe | metric | value | tolerance | fit CPU-minutes | fit wall minutes (shared machine) | measured |",
             "|---|---|---|---|---|---|---|"]
    for recipe, e in sorted(data["recipes"].items()):
        measured = e.get("measured") or "not yet (estimate)"
        value = "n/a" if e.get("value") is None else f"{e['value']:.4f}"
        with_overlays = "".join(f" + `overlays/{o}`" for o in e.get("overlays") or [])
        lines.append(f"| `{recipe}`{with_overlays} | {e['metric']} | {value} | {e.get('tolerance', 0.02)} | "
                     f"{e.get('cpu_minutes', 'n/a')} | {e.get('wall_minutes', 'n/a')} | {measured} |")
    lines += ["", "A recipe stated above the budget of `make verify-recipes` (`VERIFY_BUDGET`, minutes) is not "
              "retrained by it; its row keeps the figure of its last measurement. A row with `+ overlays/...` was "
              "trained and is retrained with those overlays added (`overlays:` in recipes/results.yaml).", "",
              "The CPU's bf16 units decide what these times mean: the rows above came from the machine named at the "
              "top, which has AMX-BF16, where the MiniLM recipes trained in bf16-mixed (about twice the samples/s of "
              "fp32). The recipes now say `precision: auto`, which picks bf16-mixed on CPUs with AMX-BF16 or "
              "AVX512-BF16 and 32-true on CPUs without either; on an AVX2-only EPYC, bf16 autocast ran MiniLM + LoRA "
              "at 0.5 samples/s. Expect the MiniLM rows' times to be roughly doubled without bf16 units "
              "(docs/scaling.md, `benchmarks/bench_precision.py`).", ""]
    lines += ngram_benchmark_section()
    path.write_text("\n".join(lines), encoding="utf-8")


#: the n-gram CLI benchmark (benchmarks/bench_ngram_cli.py) whose figures results.md shows beside the recipes
NGRAM_BENCH = ROOT / "benchmarks" / "results" / "ngram_cli.json"


def ngram_benchmark_section(path: Path = NGRAM_BENCH) -> list[str]:
    """docs/results.md's rows for the n-gram models on long texts, from the benchmark's own JSON."""
    if not path.is_file():
        return []
    import json

    r = json.loads(path.read_text(encoding="utf-8"))
    m = r.get("machine", {})
    out = ["## n-gram models on long texts", "",
           f"`python -m benchmarks.bench_ngram_cli` ({r.get('date')}): `{r.get('recipe')}` as shipped (early stopping "
           f"included) with its dataset replaced by {r.get('corpus', r.get('train'))}; each command a fresh process "
           f"with {r.get('threads')} torch threads. Machine: {m.get('cpu', 'unknown')}, flags "
           f"{', '.join(m.get('flags', [])) or 'unknown'}{'' if 'amx_bf16' in m.get('flags', []) else ', no amx_bf16'} "
           f"({m.get('cores')} cores shared with other jobs: the load "
           "average before each command is given; CPU seconds are what a busy machine inflates least).", "",
           "| command | wall s | CPU s | load before | aim |", "|---|---|---|---|---|"]
    aims = {"startup": "", "fit": "<= 60 CPU-s", "test": "<= 30 s", "predict_3": "<= 5 s after start-up",
            "export_onnx": ""}
    names = {"startup": "start-up (import zoo, torch, Lightning)", "fit": "`zoo fit`", "test": "`zoo test`",
             "predict_3": "`zoo predict` of 3 texts", "export_onnx": "`zoo export --format onnx`"}
    for key, name in names.items():
        if key in r:
            out.append(f"| {name} | {r[key]['wall_s']} | {r[key]['cpu_s']} | {r[key]['load_before']} | {aims[key]} |")
    base = r.get("baseline.json") or {}
    metrics = r.get("test_metrics") or {}
    if metrics:
        out += ["", f"Test macro-F1 {metrics.get('test/f1_macro', float('nan')):.4f}, accuracy "
                f"{metrics.get('test/acc', float('nan')):.4f}; the baseline (zoo's TF-IDF + logistic regression "
                f"reference, capped) took {base.get('seconds')} s of the `zoo test`."]
    if r.get("note"):
        out += ["", r["note"]]
    return out + [""]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", type=float, default=20.0, help="retrain recipes stated at most this many minutes")
    parser.add_argument("--only", action="append", default=[],
                        help="only recipes whose path contains this (repeatable)")
    parser.add_argument("--runs", type=Path, default=Path("runs/verify"), help="where the runs go")
    parser.add_argument("--write", action="store_true", help="record measured figures; regenerate docs/results.md")
    args = parser.parse_args(argv)
    data = load_results()
    chosen = {r: e for r, e in data["recipes"].items()
              if (not args.only or any(s in r for s in args.only))
              and (args.only or float(e.get("cpu_minutes") or 1e9) <= args.budget)}
    skipped = sorted(set(data["recipes"]) - set(chosen))
    if skipped:
        print(f"not retrained (over the {args.budget:g}-minute budget or not selected): {', '.join(skipped)}")
    failed = 0
    for recipe, entry in chosen.items():
        print(f"== {recipe}: stated {entry['metric']} {entry.get('value')} (-{entry.get('tolerance', 0.02)}), about "
              f"{entry.get('cpu_minutes')} min", flush=True)
        r = verify(recipe, entry, args.runs)
        print(f"   {r['status']}: {r.get('value')} (floor {r.get('floor')}), fit {r['fit_minutes']} min wall, "
              f"{r['cpu_minutes']} CPU-min {r.get('why', '')}", flush=True)
        failed += r["status"] != "pass"
        if args.write and "value" in r:
            entry.update(value=r["value"], cpu_minutes=r["cpu_minutes"], wall_minutes=r["fit_minutes"],
                         measured=dt.date.today())
    if args.write:
        data["machine"], data["versions"] = machine(), versions()
        write_results(data)
        write_doc(data)
    return 1 if failed else 0


HEADER = """\
# What each shipped recipe reaches and how long it trains on the documented machine (`machine:`).
# Read by `make verify-recipes` (scripts/verify_recipes.py), which retrains those within its budget and fails
# when a metric falls below value - tolerance, and by `zoo fit`, which announces the time of a long recipe.
# cpu_minutes: CPU time of `zoo fit` (user + system, minutes), which a busy machine does not inflate: about the
# wall time on one unshared core, about half of it when torch has two; wall_minutes: what it took on the (shared)
# machine that measured it. overlays: files under recipes/overlays/ it was measured (and is retrained) with.
# The CLI never reads this file as a recipe.
# measured: null marks a figure not yet re-measured by `make verify-recipes` (value null: none stated yet;
# cpu_minutes then an estimate from docs/ or from the recipe's own comments).
"""

if __name__ == "__main__":
    sys.exit(main())
