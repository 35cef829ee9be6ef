"""``zoo fit`` / ``zoo test`` / ``zoo predict`` (3 texts) / ``zoo export`` of an n-gram recipe on a long-text
corpus, each as a user runs it (a fresh process), timed in wall and CPU seconds (the child's user + system time).

    python -m benchmarks.bench_ngram_cli --train corpus.csv --predict three.csv \
        --recipe recipes/text/bbc_news_tfidf.yaml

The recipe's ``dataset`` is replaced by ``--train`` (a CSV with ``text`` and ``label``); everything else is the
recipe as shipped (early stopping included). Start-up (importing torch / Lightning, ``zoo --version``-like) is timed
apart, so "predict after start-up" can be read off. Results go to ``benchmarks/results/ngram_cli.json`` with the
CPU's bf16 flags and the load average before and after each command (the machine is shared).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml


def _timed(argv: list[str], env: dict[str, str]) -> dict[str, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    load = os.getloadavg()[0]
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-3000:])
        raise SystemExit(f"{' '.join(argv)} exited {done.returncode}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    zoo_lines = [x for x in done.stderr.splitlines() if x.startswith("zoo:")]
    return {"wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "load_before": round(load, 2), "zoo_lines": zoo_lines}


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", required=True)
    parser.add_argument("--predict", required=True)
    parser.add_argument("--recipe", default="recipes/text/bbc_news_tfidf.yaml")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--corpus", default=None, help="what the training file is, for docs/results.md")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "ngram_cli.json"))
    args = parser.parse_args(argv)

    from zoo.scale import cpu_bf16_kind, cpu_flags

    work = Path(tempfile.mkdtemp(prefix="zoo_bench_ngram_"))
    recipe = yaml.safe_load(Path(args.recipe).read_text(encoding="utf-8"))
    data = recipe["data"]["init_args"]
    data.pop("dataset", None)
    data["train"] = str(Path(args.train).resolve())
    recipe["trainer"]["enable_progress_bar"] = False
    recipe["trainer"]["default_root_dir"] = str(work / "runs")
    (work / "recipe.yaml").write_text(yaml.safe_dump(recipe, allow_unicode=True), encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    zoo = [sys.executable, "-m", "zoo.cli"]
    result: dict = {"benchmark": "bench_ngram_cli", "date": time.strftime("%Y-%m-%d"), "recipe": args.recipe,
                    "train": args.train, "threads": args.threads,
                    "corpus": args.corpus or Path(args.train).name,
                    "machine": {"cpu": _cpu_name(), "cpu_bf16": cpu_bf16_kind(cpu_flags()), "cores": os.cpu_count(),
                                "flags": sorted(f for f in cpu_flags() if "bf16" in f or f in ("avx2", "avx512f"))}}
    result["startup"] = _timed([sys.executable, "-c", "import zoo.cli.lightning, zoo.tasks.text, zoo.data.text"], env)
    result["fit"] = _timed([*zoo, "fit", "--config", str(work / "recipe.yaml")], env)
    run = next((work / "runs").rglob("best.ckpt")).parent.parent
    ckpt = run / "checkpoints" / "best.ckpt"
    result["test"] = _timed([*zoo, "test", "--config", str(run / "config.yaml"), "--ckpt_path", str(ckpt)], env)
    result["predict_3"] = _timed([*zoo, "predict", "--config", str(run / "config.yaml"), "--ckpt_path", str(ckpt),
                                  "--data.init_args.predict", str(Path(args.predict).resolve()),
                                  "--output", str(work / "predictions.csv")], env)
    result["export_onnx"] = _timed([*zoo, "export", str(run), "--format", "onnx", "--out", str(work / "onnx")], env)
    for key in ("baseline.json", "trust.json"):
        found = sorted(run.parent.rglob(key))
        if found:
            result[key] = json.loads(found[-1].read_text(encoding="utf-8"))
    metrics = sorted(run.parent.rglob("test_metrics.json"))
    if metrics:
        result["test_metrics"] = json.loads(metrics[-1].read_text(encoding="utf-8"))
    result["load_after"] = os.getloadavg()
    Path(args.out).write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    for key in ("startup", "fit", "test", "predict_3", "export_onnx"):
        row = result[key]
        print(f"{key}: {row['wall_s']} s wall, {row['cpu_s']} CPU-s (load {row['load_before']})")
    return result


if __name__ == "__main__":
    main()
